"""File-localisation benchmark: the context engine against plain BM25 on real SWE-bench issues.

    python tests/benchmarks/bench_localize.py [--via-cli] [--repo owner/name] [--json OUT] [--loro]

The benchmark itself lives in ``localize.py`` (the name the issue gives it); this is the
``bench_<topic>.py`` entry point the project's convention asks for.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localize import main

if __name__ == "__main__":
    raise SystemExit(main())

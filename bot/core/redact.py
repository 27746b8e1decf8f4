"""Redaction of credentials from anything the bot shows (DESIGN.md section 4 rule 8).

Token formats: https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/
and Anthropic API keys (``sk-ant-``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

TOKEN_PATTERN = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{20,255}"
    r"|github_pat_[A-Za-z0-9_]{20,255}"
    r"|sk-ant-[A-Za-z0-9_\-]{10,255}"
    r"|v1\.[0-9a-f]{40})"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace known token patterns and the given secret values with ``[redacted]``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)

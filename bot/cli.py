"""The ``vibe`` command line: serve, worker, jobs, run, action, demo, context."""

from __future__ import annotations

import typer

from bot import __version__

app = typer.Typer(
    name="vibe",
    help="vibe-bot: issues in, draft pull requests out, every review a new iteration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()

"""vibe-bot: issues in, draft pull requests out, every review a new iteration."""

__version__ = "0.1.0"

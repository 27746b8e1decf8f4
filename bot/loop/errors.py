"""The loop's own errors."""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)


class Refused(Exception):
    """The loop will not do what was asked; the message is the reply to post."""

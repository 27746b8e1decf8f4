"""The loop's own errors."""

from __future__ import annotations


class StopRequested(Exception):
    """The task was asked to stop (``/vibe stop``, shutdown, a lost lease) while it ran;
    raised to unwind the iteration."""


class AgentUnavailable(Exception):
    """The model API failed in a way that may pass (overload, 5xx): retry the job later, not
    before ``retry_at`` (epoch seconds) when the API said when to come back."""

    def __init__(self, reason: str, retry_at: float | None = None) -> None:
        super().__init__(reason)
        self.retry_at = retry_at


class Interrupted(Exception):
    """The worker stopped or lost its lease mid-iteration: the job, run again, resumes the
    iteration (DESIGN.md section 2)."""

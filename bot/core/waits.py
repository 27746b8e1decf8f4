"""How long a server asked us to wait. No I/O."""

from __future__ import annotations

from email.utils import parsedate_to_datetime


def delay_seconds(value: str, now: float) -> float | None:
    """A ``Retry-After`` value, delay-seconds or an HTTP-date (RFC 9110 section 10.2.3), as
    seconds from ``now`` (epoch seconds); None when it is neither."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return None if when.tzinfo is None else max(0.0, when.timestamp() - now)

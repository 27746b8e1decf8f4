"""Fixtures shared with other test folders (tests/support/)."""

from tests.support.context import project  # noqa: F401 - a fixture
from tests.support.web import live  # noqa: F401 - a fixture

"""The sample project of tests/support/context.py."""

from tests.support.context import project  # noqa: F401 - a fixture

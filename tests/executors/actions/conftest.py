"""The executor tests share the fake GitHub world and clock of tests/support/actions.py."""

from tests.support.actions import clock, engine, world  # noqa: F401 - fixtures

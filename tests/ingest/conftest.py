"""The service fixture of tests/support/web.py."""

from tests.support.web import live  # noqa: F401 - a fixture

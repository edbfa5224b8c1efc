"""The app's tests use the dispatch tests' people and the console's browser."""

from tests.console.test_console import browser, settings
from tests.dispatch.conftest import admin, resident

__all__ = ["admin", "browser", "resident", "settings"]

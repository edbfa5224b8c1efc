"""The console's tests use the dispatch tests' people."""

from tests.dispatch.conftest import admin, resident

__all__ = ["admin", "resident"]

"""Fixtures shared by the dispatch tests."""

from __future__ import annotations

import pytest


@pytest.fixture
async def admin(principals) -> dict[str, str]:
    return await principals.admin()


@pytest.fixture
async def resident(principals) -> dict[str, str]:
    return (await principals.user("resident"))[1]

"""One real number is one account: every typed form of a phone is the same E.164 string for the
rate limits, the code and the user; what is not a number is 422 `invalid_phone`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.identity.phones import InvalidPhone, hide_phones, normalize_phone, region_of_timezone
from dispatch.models import User
from tests.dispatch.test_identity import latest_code, request_code, sign_in
from tests.redis_mode import flush_all

PHONE = "+8613812345678"
SAME_NUMBER = [
    "+8613812345678\n",
    " +8613812345678 ",
    "+86 138 1234 5678",
    "+86-138-1234-5678",
    "(+86) 138-1234-5678",
    "008613812345678",
    "13812345678",
    "138 1234 5678",
    "＋８６１３８１２３４５６７８",
    "１３８１２３４５６７８",
]


@pytest.mark.parametrize("typed", SAME_NUMBER)
def test_every_typed_form_is_one_e164_number(typed: str) -> None:
    assert normalize_phone(typed, "CN") == PHONE


def test_a_national_number_is_read_in_the_given_country() -> None:
    assert normalize_phone("(202) 555-0101", "US") == "+12025550101"
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert region_of_timezone("Asia/Shanghai") == "CN"
    assert region_of_timezone("America/New_York") == "US"
    assert region_of_timezone("UTC", "HK") == "HK"


@pytest.mark.parametrize(
    "typed", ["", "   ", "12345", "+0123", "1-800-FLOWERS", "+8613812345678;ext=1", "++86138"]
)
def test_what_is_not_a_valid_number_is_refused(typed: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(typed, "CN")
    assert caught.value.status == 422 and caught.value.code == "invalid_phone"


async def test_trailing_whitespace_is_the_same_account_and_the_same_limit(
    client, principals, engine: AsyncEngine
) -> None:
    admin = await principals.admin()
    assert (await request_code(client, PHONE)).status_code == 202
    # The same number with a newline is the same rate-limit key: the 30 s gap applies.
    again = await request_code(client, PHONE + "\n")
    assert again.status_code == 429 and again.json()["code"] == "rate_limited"
    code = await latest_code(client, admin, PHONE)
    first = await sign_in(client, code, phone="+86 138-1234-5678\n")
    assert first.status_code == 200, first.text
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(User)) == 2  # admin + one


async def test_one_account_whatever_form_the_number_is_typed_in(
    client, principals, redis, engine: AsyncEngine
) -> None:
    admin = await principals.admin()
    ids = set()
    for typed in ("+8613812345678", "008613812345678", "１３８１２３４５６７８"):
        await flush_all(redis)  # skip the gap between two requests for one phone
        assert (await request_code(client, typed)).status_code == 202
        r = await sign_in(client, await latest_code(client, admin, "138 1234 5678"), phone=typed)
        assert r.status_code == 200, r.text
        ids.add(r.json()["user_id"])
    assert len(ids) == 1


def test_numbers_are_found_in_the_forms_people_type() -> None:
    text = (
        "call 138 0013 8001, or +86-138-0013-8001, 我的电话是13800138001谢谢, "
        "１３８００１３８００１, (+86) 138.0013.8001, 1 3 8 0 0 1 3 8 0 0 1; "
        "room 1203, building 5, 200 yuan"
    )
    hidden = hide_phones(text, "CN")
    assert "8001" not in hidden and "８００１" not in hidden
    assert hidden.count("[number hidden]") == 6
    assert "room 1203, building 5, 200 yuan" in hidden

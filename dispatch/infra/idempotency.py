"""Idempotency-Key handling: the first answer to a (user, key) is stored with the request's
fingerprint; a retry with the same body replays it, a different body is refused."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.errors import Unprocessable, ValidationFailed
from dispatch.models import IdempotencyKey

MAX_KEY_LENGTH = 200
_KEY = re.compile(r"[\x20-\x7e]+")


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).digest()


def check_key(key: str | None) -> str:
    if not key:
        raise ValidationFailed(
            "this call needs an Idempotency-Key header", code="idempotency_key_required"
        )
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ValidationFailed(
            f"Idempotency-Key must be printable ASCII, at most {MAX_KEY_LENGTH} characters",
            code="invalid_idempotency_key",
        )
    return key


async def run_once(
    session: AsyncSession,
    user_id: int,
    key: str,
    print_: bytes,
    produce: Callable[[], Awaitable[tuple[int, bytes]]],
) -> tuple[int, bytes]:
    """Answer (status, body) for this key: replayed if stored, else produced and stored.

    The key row is claimed in the caller's transaction before `produce` runs, so a concurrent
    request with the same key waits for this one to commit and then replays its answer; if this
    transaction rolls back, the key is free again.
    """
    claimed = await session.scalar(
        insert(IdempotencyKey)
        .values(
            user_id=user_id,
            key=key,
            fingerprint=print_,
            status_code=0,
            body=b"",
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.user_id)
    )
    if claimed is None:
        stored = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
            )
        )
        assert stored is not None
        if stored.fingerprint != print_:
            raise Unprocessable(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            )
        return stored.status_code, stored.body
    status, body = await produce()
    row = await session.get(IdempotencyKey, (user_id, key))
    assert row is not None
    row.status_code, row.body = status, body
    return status, body

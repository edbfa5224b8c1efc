"""Redis Cluster readiness, checked on the plain Redis of the normal suite: after a community's
day (workers online and moving, a job posted, offered, taken, its timers armed), every key the
service wrote carries the hash tag of its family, all of one community's keys share one slot, all
of SAQ's keys share one slot, and no command (nor transaction) the service sent spans slots.
`make test-cluster` runs the same code against a real cluster; this catches a new key or a
multi-key command that would break there, without one."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.crc import key_slot
from redis.exceptions import ResponseError

from dispatch.grab.statements import CLAIM_TAG
from dispatch.infra.redis_client import community_tag
from dispatch.infra.timers import QUEUE_NAME
from dispatch.infra.wire import Pipeliner
from tests.dispatch.helpers import community
from tests.dispatch.test_grab import crew, offers_of, post_job, wait_for
from tests.redis_mode import CLUSTER

TAGGED = {
    re.compile(rb"^[^{]*:\{c:(\d+)\}[:/]"): "community",  # live index: {prefix}:{c:ID}:w …
    re.compile(rb"^ops:events:\{c:(\d+)\}$"): "community",
    re.compile(rb"^(offer|claim|bslot):\{grab\}:"): "grab",
    re.compile(rb"^saq:(job:|abort:)?\{dispatch\}"): "saq",
}
SINGLE = re.compile(rb"^(rl|sms:budget|board:listed|otp):")
"""Families whose keys are only ever used one at a time (no tag needed)."""

Command = tuple[tuple[object, ...], bool]
"""(the command's words, whether it ran inside a MULTI/EXEC transaction with others)."""


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[Command]]]:
    """Every command the service sends through redis-py or its pipeliner, grouped: a group is
    one command, or one transaction's commands (which must share a slot as a whole)."""
    groups: list[list[Command]] = []
    execute_command = Redis.execute_command
    execute_pipeline = Pipeline.execute
    call = Pipeliner.call

    async def record_command(self, *args, **options):  # type: ignore[no-untyped-def]
        groups.append([(args, False)])
        return await execute_command(self, *args, **options)

    async def record_pipeline(self, raise_on_error=True):  # type: ignore[no-untyped-def]
        stack = [tuple(args) for args, _ in self.command_stack]
        if self.is_transaction:
            groups.append([(args, True) for args in stack])
        else:
            groups.extend([(args, False)] for args in stack)
        return await execute_pipeline(self, raise_on_error)

    async def record_call(self, *words):  # type: ignore[no-untyped-def]
        groups.append([(words, False)])
        return await call(self, *words)

    monkeypatch.setattr(Redis, "execute_command", record_command)
    monkeypatch.setattr(Pipeline, "execute", record_pipeline)
    monkeypatch.setattr(Pipeliner, "call", record_call)
    yield groups


async def keys_of(redis: Redis, words: tuple[object, ...]) -> list[bytes]:
    """The keys of one command, as the server names them (COMMAND GETKEYS)."""
    name = str(words[0]).upper()
    if name.startswith(("SUBSCRIBE", "SSUBSCRIBE", "PSUBSCRIBE", "PUBSUB", "CLIENT", "INFO")):
        return []
    try:
        found = await redis.command_getkeys(*words)
    except ResponseError:  # the command takes no keys
        return []
    return [k if isinstance(k, bytes) else str(k).encode() for k in found]


def _slots(keys: list[bytes]) -> set[int]:
    return {key_slot(k) for k in keys}


@pytest.mark.skipif(CLUSTER, reason="the plain-Redis check of what the cluster run exercises")
async def test_keys_of_a_community_share_a_slot_and_no_command_spans_slots(
    client, principals, admin, resident, redis: Redis, sent
) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100, 150, 200])
    job = await post_job(client, resident)
    await wait_for(lambda: _has_offer(client, team[0][1]))
    [offer] = await offers_of(client, team[0][1])
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=team[0][1])
    assert r.status_code == 200, r.text
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).status_code == 200
    await asyncio.sleep(1.5)  # SAQ's upkeep (schedule, sweep, worker info) runs once at least

    groups = list(sent)
    keys = [k async for k in redis.scan_iter(count=1000)]
    families: dict[str, set[bytes]] = {}
    for key in keys:
        for pattern, family in TAGGED.items():
            found = pattern.match(key)
            if found:
                name = f"{family}:{found.group(1).decode()}" if family == "community" else family
                families.setdefault(name, set()).add(key)
                break
        else:
            assert SINGLE.match(key), f"{key!r}: a key of no known family (give it a hash tag)"

    mine = families.get(f"community:{cid}", set())
    assert any(b"ops:events:" in k for k in mine) and any(b":w" in k for k in mine), mine
    assert _slots(list(mine)) == {key_slot(community_tag(cid).encode())}, mine
    assert families.get("grab") and _slots(list(families["grab"])) == {key_slot(CLAIM_TAG.encode())}
    saq = families.get("saq", set())
    assert any(b"saq:job:" in k for k in saq) and any(b":stats" in k for k in saq), saq
    assert _slots(list(saq)) == {key_slot(QUEUE_NAME.encode())}, saq
    assert all(k.startswith(b"saq:") == (k in saq) for k in keys)

    # No command, nor any transaction as a whole, spans slots.
    multi = 0
    for group in groups:
        group_keys: list[bytes] = []
        for words, _ in group:
            group_keys += await keys_of(redis, words)
        if len(group_keys) > 1:
            multi += 1
            assert len(_slots(group_keys)) == 1, (group, group_keys)
    assert multi > 0  # scripts with several keys, transactions: checked, not missed


async def _has_offer(client, headers) -> bool:
    return bool(await offers_of(client, headers))

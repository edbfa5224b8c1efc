"""The relay as a real process: SIGKILLed while a batch of texts is in flight at the (slow)
Twilio API, then restarted. Nothing is lost, and no text goes out more than twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import text

from dispatch.identity.phones import PhoneVault, phone_hint
from tests.conftest import TEST_SECRET
from tests.notifications.conftest import FROM, SID, TOKEN, wait_for
from tests.processes import ONE_AT_A_TIME, ServiceProcess

pytestmark = [pytest.mark.slow, ONE_AT_A_TIME]

MESSAGES = 40


def service(urls: tuple[str, str], twilio_base: str) -> ServiceProcess:
    return ServiceProcess(
        urls,
        TEST_SECRET,
        TWILIO_ACCOUNT_SID=SID,
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_FROM_NUMBER=FROM,
        TWILIO_API_BASE=twilio_base,
        PUBLIC_BASE_URL="https://dispatch.example.org",
        DISPATCH_RELAY_LEASE_S="2",
    )


async def test_relay_killed_mid_batch_loses_nothing(server_urls, engine, clean_state, twilio_peer):
    vault = PhoneVault(TEST_SECRET)
    phones = [f"+861390000{i:04d}" for i in range(MESSAGES)]
    async with engine.begin() as conn:
        for i, phone in enumerate(phones):
            await conn.execute(
                text(
                    "INSERT INTO outbox (channel, kind, to_hash, to_enc, to_hint, body, payload, "
                    "status, attempts, dedupe_key) VALUES ('sms', 'reminder', :h, :e, :t, :b, "
                    "'{}', 'pending', 0, :d)"
                ),
                {"h": vault.hash(phone), "e": vault.encrypt(phone), "t": phone_hint(phone),
                 "b": f"reminder {i}", "d": f"test:{i}"},
            )  # fmt: skip
    twilio_peer.delay_s = 0.6  # each send is taken, then answered late: a kill loses the answer
    first = service(server_urls, twilio_peer.base_url)
    try:
        await asyncio.to_thread(first.wait_ready)
        await twilio_peer.wait_until(lambda: len(twilio_peer.messages) >= 5, within_s=60)
        first.kill()
    finally:
        first.stop()
    await asyncio.sleep(1.0)  # let the peer finish reading what the dead relay had sent
    in_flight = len(twilio_peer.messages)
    async with engine.connect() as conn:
        unfinished = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE status <> 'sent'"))
        ).scalar_one()
    assert unfinished > 0  # the kill did land mid-batch

    twilio_peer.delay_s = 0.0
    second = service(server_urls, twilio_peer.base_url)
    try:
        await asyncio.to_thread(second.wait_ready)

        async def all_sent():
            async with engine.connect() as conn:
                n = await conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'sent'"))
                return n.scalar_one() == MESSAGES

        await wait_for(all_sent, within=60)
    finally:
        second.stop()

    sent = Counter(m["to"] for m in twilio_peer.messages)
    assert set(sent) == set(phones)  # nothing lost
    assert max(sent.values()) <= 2  # at most one duplicate each
    duplicates = sum(n - 1 for n in sent.values())
    print(f"in flight at the kill: {in_flight}, duplicates: {duplicates}")
    assert duplicates <= in_flight  # only the sends the kill interrupted were repeated
    async with engine.connect() as conn:
        refs = (
            (await conn.execute(text("SELECT provider_ref FROM outbox ORDER BY id")))
            .scalars()
            .all()
        )
    recorded = {m["sid"] for m in twilio_peer.messages}
    assert all(ref in recorded for ref in refs)

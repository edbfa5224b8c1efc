"""The relay as a real process: SIGKILLed while a batch of texts is in flight at the (slow)
Twilio API, then restarted. Nothing is lost, and no text goes out more than twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import text

from dispatch.phones import PhoneVault, phone_hint
from tests.conftest import TEST_SECRET
from tests.notifications.conftest import FROM, SID, TOKEN, wait_for
from tests.processes import free_port, wait_ready

pytestmark = pytest.mark.slow

MESSAGES = 40


class Service:
    def __init__(self, urls: tuple[str, str], twilio_base: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": urls[0],
            "REDIS_URL": urls[1],
            "DISPATCH_SECRET_KEY": TEST_SECRET,
            "DISPATCH_LOG_LEVEL": "WARNING",
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM_NUMBER": FROM,
            "TWILIO_API_BASE": twilio_base,
            "PUBLIC_BASE_URL": "https://dispatch.example.org",
            "DISPATCH_RELAY_LEASE_S": "2",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        await asyncio.to_thread(wait_ready, self.base, self.proc)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


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
    first = Service(server_urls, twilio_peer.base_url)
    try:
        await first.ready()
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
    second = Service(server_urls, twilio_peer.base_url)
    try:
        await second.ready()

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

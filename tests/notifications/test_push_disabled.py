"""Without a VAPID key the service says so instead of handing out a key."""

from __future__ import annotations


async def test_no_vapid_key_is_404_push_disabled(client) -> None:
    r = await client.get("/v1/push/vapid-public-key")
    assert r.status_code == 404 and r.json()["code"] == "push_disabled"

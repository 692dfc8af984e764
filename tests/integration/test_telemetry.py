"""Machine telemetry: signed Nostr events over HTTP and through a real local
relay, merged so that a sparse or late beacon never loses a known field."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from bech32 import bech32_encode, convertbits
from conftest import Actor
from nostr_relay import Relay, executable, publish
from waits import until

BEACON, FLEET = 30078, 30079


def keypair() -> tuple[bytes, str]:
    from satmachineadmin.telemetry import public_key_hex

    secret = os.urandom(32)
    pub = bytes.fromhex(public_key_hex(secret))
    data = convertbits(pub, 8, 5)
    assert data is not None
    return secret, bech32_encode("npub", data)


def sign(secret: bytes, content: dict | str, kind: int = BEACON, **kwargs) -> dict:
    from satmachineadmin.telemetry import sign_event

    text = content if isinstance(content, str) else json.dumps(content)
    return sign_event(secret, kind, text, **kwargs)


async def register(http, operator: Actor, npub: str, wallet_index: int = 1) -> str:
    response = await http.post(
        "/satmachineadmin/api/v1/dca/machines",
        json={
            "npub": npub,
            "wallet_id": operator.wallets[wallet_index].id,
            "name": "ATM telemetry",
            "currency": "GTQ",
        },
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def post(http, event) -> tuple[int, dict]:
    response = await http.post("/satmachineadmin/api/v1/dca/telemetry", json=event)
    return response.status_code, response.json()


async def telemetry(http, operator: Actor, machine_id: str) -> dict:
    response = await http.get(
        f"/satmachineadmin/api/v1/dca/machines/{machine_id}/telemetry",
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    from satmachineadmin.telemetry import rate_limiter

    rate_limiter.reset()
    yield
    rate_limiter.reset()


async def test_a_signed_beacon_is_stored_and_the_machine_is_online(http, operator):
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    listed = await http.get(
        "/satmachineadmin/api/v1/dca/machines", headers=operator.headers
    )
    [before] = [m for m in listed.json() if m["id"] == machine_id]
    assert before["online"] is False and before["last_seen_at"] is None

    beacon = {
        "firmware_version": "1.4.2",
        "cash_level": "12500.50",
        "currency": "GTQ",
        "cassettes": [{"position": 1, "denomination": 100, "count": 240}],
    }
    status, body = await post(http, sign(secret, beacon))
    assert status == 200, body
    assert body["duplicate"] is False and body["machine_id"] == machine_id

    state = await telemetry(http, operator, machine_id)
    assert state["online"] is True
    assert state["latest"]["fields"] == beacon
    assert state["latest"]["firmware_version"] == "1.4.2"
    assert state["latest"]["cash_level_minor"] == 1250050
    assert len(state["history"]) == 1
    listed = await http.get(
        "/satmachineadmin/api/v1/dca/machines", headers=operator.headers
    )
    [after] = [m for m in listed.json() if m["id"] == machine_id]
    assert after["online"] is True and after["last_seen_at"] is not None


async def test_refused_events_store_nothing(http, operator):
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    good = sign(secret, {"firmware_version": "1"})

    tampered = {**good, "content": json.dumps({"firmware_version": "evil"})}
    status, body = await post(http, tampered)
    assert status == 422 and body["detail"].startswith("id:"), body

    from satmachineadmin.telemetry import event_id

    resigned = {**tampered, "id": event_id(tampered)}  # id fixed, signature not
    status, body = await post(http, resigned)
    assert status == 422 and body["detail"].startswith("sig:"), body

    stranger_secret, _ = keypair()  # signs correctly, but is no machine
    status, body = await post(http, sign(stranger_secret, {"x": 1}))
    assert status == 403 and body["detail"].startswith("pubkey:"), body

    now = int(time.time())
    status, body = await post(http, sign(secret, {"a": 1}, created_at=now - 7200))
    assert status == 422 and "stale" in body["detail"], body
    status, body = await post(http, sign(secret, {"a": 1}, created_at=now + 3600))
    assert status == 422 and "future" in body["detail"], body
    status, body = await post(http, sign(secret, {"a": 1}, kind=1))
    assert status == 422 and body["detail"].startswith("kind:"), body
    status, body = await post(http, sign(secret, {"blob": "x" * 20_000}))
    assert status == 413, body
    status, body = await post(http, sign(secret, "[1, 2]"))
    assert status == 422 and body["detail"].startswith("content:"), body
    status, body = await post(http, {"id": "zz"})
    assert status == 422 and body["detail"].startswith("id:"), body
    response = await http.post(
        "/satmachineadmin/api/v1/dca/telemetry", content=b"not json"
    )
    assert response.status_code == 422

    state = await telemetry(http, operator, machine_id)
    assert state["latest"] is None and state["history"] == []

    # A deactivated machine's key is refused as well.
    await http.put(
        f"/satmachineadmin/api/v1/dca/machines/{machine_id}",
        json={"is_active": False},
        headers=operator.headers,
    )
    status, body = await post(http, good)
    assert status == 403, body


async def test_a_replayed_event_is_stored_once(http, operator):
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    event = sign(secret, {"firmware_version": "2"})
    assert (await post(http, event))[1]["duplicate"] is False
    for _ in range(3):
        status, body = await post(http, event)
        assert status == 200 and body["duplicate"] is True
    assert len((await telemetry(http, operator, machine_id))["history"]) == 1


async def test_sparse_and_late_beacons_never_lose_a_known_field(http, operator):
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    now = int(time.time())
    newer = {
        "firmware_version": "2.0",
        "cassettes": [{"position": 1, "count": 50}],
        "door": "closed",
    }
    older = {"firmware_version": "1.0", "cash_level": "300", "currency": "GTQ"}
    sparse = {"door": "open", "firmware_version": None}
    assert (await post(http, sign(secret, newer, created_at=now - 60)))[0] == 200
    assert (await post(http, sign(secret, older, created_at=now - 600)))[0] == 200
    assert (await post(http, sign(secret, sparse, created_at=now - 30)))[0] == 200

    latest = (await telemetry(http, operator, machine_id))["latest"]
    assert latest["fields"]["firmware_version"] == "2.0"  # not the late 1.0
    assert latest["fields"]["cassettes"] == [{"position": 1, "count": 50}]
    assert latest["fields"]["cash_level"] == "300"  # nothing newer said
    assert latest["fields"]["door"] == "open"  # the newest said so
    assert latest["firmware_version"] == "2.0"
    assert latest["cash_level_minor"] == 30000
    assert latest["field_times"]["door"] == now - 30

    fleet = {"machines": [{"id": "a", "state": "ok"}], "schema": 0}
    assert (await post(http, sign(secret, fleet, kind=FLEET)))[0] == 200
    old_fleet = sign(secret, {"machines": []}, kind=FLEET, created_at=now - 900)
    assert (await post(http, old_fleet))[0] == 200
    state = await telemetry(http, operator, machine_id)
    assert state["latest"]["fleet_snapshot"] == fleet
    assert state["latest"]["fields"]["firmware_version"] == "2.0"
    assert len(state["history"]) == 5


async def test_old_history_is_pruned_and_the_latest_state_kept(http, operator):
    from datetime import datetime, timedelta, timezone

    from satmachineadmin import crud_telemetry

    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    assert (await post(http, sign(secret, {"firmware_version": "9"})))[0] == 200
    await crud_telemetry.prune_history(datetime.now(timezone.utc) - timedelta(days=1))
    assert len((await telemetry(http, operator, machine_id))["history"]) == 1
    await crud_telemetry.prune_history(
        datetime.now(timezone.utc) + timedelta(seconds=1)
    )
    state = await telemetry(http, operator, machine_id)
    assert state["history"] == []
    assert state["latest"]["fields"] == {"firmware_version": "9"}


async def test_events_are_rate_limited_per_machine(http, operator, monkeypatch):
    from satmachineadmin import telemetry as t

    monkeypatch.setattr(t.rate_limiter, "limit", 3)
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    other_secret, other_npub = keypair()
    await register(http, operator, other_npub, wallet_index=2)
    codes = [(await post(http, sign(secret, {"n": i})))[0] for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert (await post(http, sign(other_secret, {"n": 0})))[0] == 200
    assert len((await telemetry(http, operator, machine_id))["history"]) == 3


async def test_telemetry_is_the_owners_only(http, operator, other_operator):
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    await post(http, sign(secret, {"a": 1}))
    url = f"/satmachineadmin/api/v1/dca/machines/{machine_id}/telemetry"
    assert (await http.get(url, headers=other_operator.headers)).status_code == 404
    assert (await http.get(url)).status_code == 401


async def test_relay_settings_are_validated_and_per_operator(
    http, operator, other_operator
):
    url = "/satmachineadmin/api/v1/dca/relays"
    bad = await http.put(
        url, json={"relays": ["https://not-a-relay"]}, headers=operator.headers
    )
    assert bad.status_code == 422
    bad = await http.put(
        url,
        json={"relays": [], "offline_after_minutes": 0},
        headers=operator.headers,
    )
    assert bad.status_code == 422
    ok = await http.put(
        url,
        json={
            "relays": ["wss://relay.example.com"],
            "offline_after_minutes": 15,
            "low_cassette_bills": 30,
        },
        headers=operator.headers,
    )
    assert ok.status_code == 200, ok.text
    mine = (await http.get(url, headers=operator.headers)).json()
    assert mine["relays"] == ["wss://relay.example.com"]
    assert mine["offline_after_minutes"] == 15 and mine["low_cassette_bills"] == 30
    theirs = (await http.get(url, headers=other_operator.headers)).json()
    assert theirs["relays"] == [] and theirs["offline_after_minutes"] == 10
    await http.put(url, json={"relays": []}, headers=operator.headers)


# --- through a real relay ----------------------------------------------------

needs_relay = pytest.mark.skipif(
    not executable().exists() and os.environ.get("CI") != "true",
    reason=f"no nostr-relay at {executable()} (make relay-venv)",
)


async def wait_for(predicate, timeout: float = 120.0, what: str = "telemetry"):
    return await until(predicate, what=what, timeout=timeout, every=0.2)


@needs_relay
async def test_telemetry_through_a_local_relay(http, operator):
    secret, npub = keypair()
    machine_id = await register(http, operator, npub)
    relay = Relay()
    await asyncio.to_thread(relay.start)
    try:
        put = await http.put(
            "/satmachineadmin/api/v1/dca/relays",
            json={"relays": [relay.url]},
            headers=operator.headers,
        )
        assert put.status_code == 200, put.text

        async def connected():
            body = (
                await http.get(
                    "/satmachineadmin/api/v1/dca/relays", headers=operator.headers
                )
            ).json()
            return body["status"] and body["status"][0]["connected"]

        await wait_for(connected)
        now = int(time.time())
        full = {"firmware_version": "3.1", "cassettes": [{"position": 1, "count": 9}]}
        ok = await publish(relay.url, sign(secret, full, created_at=now - 20))
        assert ok[2] is True, ok

        async def history_len(n):
            state = await telemetry(http, operator, machine_id)
            # The route reads the history, then the merged state: the state
            # includes every event the history lists.
            ready = len(state["history"]) >= n
            if ready:
                assert state["latest"] is not None, state
            return state if ready else None

        state = await wait_for(lambda: history_len(1))
        assert state["latest"]["fields"] == full
        assert state["history"][0]["source"] == f"relay:{relay.url}"

        # A tampered event (the relay stores anything) is refused by us.
        forged = sign(secret, {"firmware_version": "evil"}, tags=[["d", "forged"]])
        forged["content"] = json.dumps({"firmware_version": "worse"})
        assert (await publish(relay.url, forged))[2] is True
        # A stranger's event is not even asked for (authors = our machines).
        stranger, _ = keypair()
        await publish(relay.url, sign(stranger, {"firmware_version": "x"}))
        # A sparse beacon and a fleet snapshot: the sparse one clears nothing.
        await publish(relay.url, sign(secret, {"door": "open"}, created_at=now - 10))
        fleet = sign(secret, {"machines": [1]}, kind=FLEET, created_at=now - 5)
        await publish(relay.url, fleet)
        state = await wait_for(lambda: history_len(3))
        await asyncio.sleep(1)  # anything else would have arrived by now
        state = await telemetry(http, operator, machine_id)
        assert len(state["history"]) == 3
        assert state["latest"]["fields"]["firmware_version"] == "3.1"
        assert state["latest"]["fields"]["door"] == "open"
        assert state["latest"]["fields"]["cassettes"] == full["cassettes"]
        assert state["latest"]["fleet_snapshot"] == {"machines": [1]}

        # The relay goes away and comes back: the subscription resumes.
        await asyncio.to_thread(relay.stop)
        await asyncio.to_thread(relay.start)
        await wait_for(connected, timeout=40)
        await publish(relay.url, sign(secret, {"door": "closed"}))
        state = await wait_for(lambda: history_len(4), timeout=40)
        assert state["latest"]["fields"]["door"] == "closed"
    finally:
        await http.put(
            "/satmachineadmin/api/v1/dca/relays",
            json={"relays": []},
            headers=operator.headers,
        )
        await asyncio.to_thread(relay.stop)

"""Notifications in a real LNbits: settings over HTTP (the webhook secret shown
once), one message per problem start and clear, the signed webhook received by
a local HTTP server, LNbits' own notification queue producing the operator's
message (only LNbits' outbound Telegram sender is stubbed, at the network
edge), and the watcher raising and clearing settlement problems."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os

import pytest
from fixed_support import WebhookServer

API = "/satmachineadmin/api/v1/dca"


@pytest.fixture
def webhook_rules():
    """LNbits' own setting: allow callbacks to this machine (the receiver)."""
    from lnbits.settings import settings

    saved = settings.lnbits_callback_url_rules
    settings.lnbits_callback_url_rules = []
    yield
    settings.lnbits_callback_url_rules = saved


@pytest.fixture
def quick_retries(monkeypatch):
    from satmachineadmin import notifications

    monkeypatch.setattr(notifications, "WEBHOOK_BACKOFF_SECONDS", (0.05, 0.05, 0.05))


async def log_entries(http, operator):
    response = await http.get(f"{API}/notifications/log", headers=operator.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_settings_show_the_secret_once(http, operator, webhook_rules):
    got = await http.get(f"{API}/notifications", headers=operator.headers)
    assert got.json()["webhook_url"] is None and not got.json()["has_webhook_secret"]

    made = await http.put(
        f"{API}/notifications",
        json={"webhook_url": "http://127.0.0.1:9/hook", "stuck_after_minutes": 45},
        headers=operator.headers,
    )
    assert made.status_code == 200, made.text
    secret = made.json()["webhook_secret"]
    assert secret and len(secret) == 64

    again = await http.put(
        f"{API}/notifications",
        json={"webhook_url": "http://127.0.0.1:9/other"},
        headers=operator.headers,
    )
    assert again.json()["webhook_secret"] is None  # kept, not shown
    got = await http.get(f"{API}/notifications", headers=operator.headers)
    assert got.json()["webhook_secret"] is None
    assert got.json()["has_webhook_secret"] is True
    assert secret not in got.text and secret not in again.text

    rotated = await http.put(
        f"{API}/notifications",
        json={"webhook_url": "http://127.0.0.1:9/other", "rotate_secret": True},
        headers=operator.headers,
    )
    assert rotated.json()["webhook_secret"] not in (None, secret)


@pytest.mark.parametrize(
    "body",
    [
        {"webhook_url": "ftp://example.com/x"},
        {"webhook_url": "http://user:pw@example.com/x"},
        {"stuck_after_minutes": 0},
        {"offline_after_minutes": -5},
        {"rotate_secret": True},
    ],
)
async def test_settings_refuse_bad_input(http, operator, body):
    response = await http.put(
        f"{API}/notifications", json=body, headers=operator.headers
    )
    assert response.status_code == 422, response.text


async def test_signed_webhook_once_per_problem_and_retried(
    http, operator, other_operator, webhook_rules, quick_retries
):
    from satmachineadmin import notifications

    server = WebhookServer(statuses=[500])  # the first delivery fails
    try:
        made = await http.put(
            f"{API}/notifications",
            json={"webhook_url": server.url, "lnbits_channels": False},
            headers=operator.headers,
        )
        secret = made.json()["webhook_secret"]
        key = f"settlement-errored:{os.urandom(4).hex()}"
        for _ in range(3):  # a retrying caller: one message
            await notifications.problem_started(
                operator.id, key, "Settlement errored", "a leg failed"
            )
        await notifications.wait_for_webhooks()
        assert len(server.received) == 2  # the failed attempt, then the retry
        headers, body = server.received[-1]
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Satmachine-Signature"] == f"sha256={expected}"
        payload = json.loads(body)
        assert payload["event"] == "problem_started" and payload["key"] == key
        assert payload["title"] == "Settlement errored"

        for _ in range(2):
            await notifications.problem_cleared(operator.id, key, "retried: fine")
        await notifications.wait_for_webhooks()
        assert len(server.received) == 3
        assert json.loads(server.received[-1][1])["event"] == "problem_cleared"

        log = await log_entries(http, operator)
        assert [(e["kind"], e["problem_key"]) for e in log] == [
            ("cleared", key),
            ("started", key),
        ]
        assert log[1]["webhook_status"] == "delivered (200)"
        assert log[1]["webhook_attempts"] == 2
        assert all(secret not in json.dumps(e) for e in log)
        # The other operator sees none of it.
        assert await log_entries(http, other_operator) == []
    finally:
        server.close()


async def test_lnbits_notification_queue_sends_the_operators_message(
    http, operator, monkeypatch
):
    """The operator set a Telegram chat in LNbits: LNbits' own queue worker
    formats and sends the message; only the HTTP call to Telegram is stubbed."""
    from lnbits.core.services import notifications as lnbits_notifications
    from lnbits.settings import settings
    from satmachineadmin import notifications

    sent: list[tuple[str, str, str]] = []

    async def telegram_edge(token: str, chat_id: str, message: str) -> dict:
        sent.append((token, chat_id, message))
        return {"ok": True}

    monkeypatch.setattr(lnbits_notifications, "send_telegram_message", telegram_edge)
    monkeypatch.setattr(settings, "lnbits_telegram_notifications_enabled", True)
    monkeypatch.setattr(
        settings, "lnbits_telegram_notifications_access_token", "bot-token"
    )

    me = (await http.get("/api/v1/auth", headers=operator.headers)).json()
    extra = me.get("extra") or {}
    extra["notifications"] = {
        **(extra.get("notifications") or {}),
        "telegram_chat_id": "4242",
    }
    updated = await http.patch(
        "/api/v1/auth",
        json={"user_id": operator.id, "username": me["username"], "extra": extra},
        headers=operator.headers,
    )
    assert updated.status_code == 200, updated.text

    key = f"machine-offline:{os.urandom(4).hex()}"
    await notifications.problem_started(
        operator.id, key, "ATM Zona 10 stopped reporting", "no telemetry for 20 min"
    )
    await notifications.problem_started(operator.id, key, "again", "again")
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert len(sent) == 1
    token, chat_id, message = sent[0]
    assert (token, chat_id) == ("bot-token", "4242")
    assert "ATM Zona 10 stopped reporting" in message
    assert "no telemetry for 20 min" in message
    [entry] = await log_entries(http, operator)
    assert entry["channels"] == "lnbits"


async def test_watcher_raises_and_clears_settlement_problems(http, operator):
    from satmachineadmin import crud, notifications
    from satmachineadmin.models import DcaSettlement
    from scenario import add_machine

    machine = await add_machine(operator, operator.wallets[1])
    settlement, _ = await crud.create_settlement_idempotent(
        DcaSettlement(
            id=crud.new_id(),
            machine_id=machine.id,
            operator_user_id=operator.id,
            payment_hash=os.urandom(32).hex(),
            gross_sats=1000,
            net_sats=970,
            commission_sats=30,
            platform_fee_sats=0,
            operator_fee_sats=30,
            super_fee_pct=0,
            currency="GTQ",
            status="errored",
            error="leg failed: insufficient balance",
        )
    )
    await notifications.watch_once()
    await notifications.watch_once()
    log = await log_entries(http, operator)
    assert [(e["kind"], e["problem_key"]) for e in log] == [
        ("started", f"settlement-errored:{settlement.id}")
    ]
    assert "insufficient balance" in log[0]["body"]
    problems = await http.get(f"{API}/notifications/problems", headers=operator.headers)
    assert [p["problem_key"] for p in problems.json()] == [
        f"settlement-errored:{settlement.id}"
    ]

    settlement.status = "processed"
    await crud.update_settlement(settlement)
    await notifications.watch_once()
    log = await log_entries(http, operator)
    assert [e["kind"] for e in log] == ["cleared", "started"]
    problems = await http.get(f"{API}/notifications/problems", headers=operator.headers)
    assert problems.json() == []


async def test_watcher_tells_of_stuck_and_awaiting_funds_settlements(
    http, operator, quiet_tasks
):
    """(The funding loop would release the settlement awaiting funds, which
    owes nothing, and the recovery loop would process it: they are stopped.)"""
    from datetime import timedelta

    from satmachineadmin import crud, notifications
    from satmachineadmin.models import DcaSettlement, utc_now
    from scenario import add_machine

    machine = await add_machine(operator, operator.wallets[1])
    quiet_tasks()
    rows = []
    for _ in range(2):
        settlement, _ = await crud.create_settlement_idempotent(
            DcaSettlement(
                id=crud.new_id(),
                machine_id=machine.id,
                operator_user_id=operator.id,
                payment_hash=os.urandom(32).hex(),
                gross_sats=1000,
                net_sats=970,
                commission_sats=30,
                platform_fee_sats=0,
                operator_fee_sats=30,
                super_fee_pct=0,
                currency="GTQ",
                status="processed",
            )
        )
        rows.append(settlement)
    stuck, waiting = rows
    async with crud.connection() as c:
        # `awaiting_funds` is another area's status: set by its string.
        await crud._execute(
            c,
            "UPDATE satmachineadmin.settlements SET status = 'awaiting_funds' "
            "WHERE id = :id",
            {"id": waiting.id},
        )
        await crud._execute(
            c,
            # Stuck: a worker holds it (a live lease, so the resume loop of
            # the same LNbits leaves it alone) and made no progress for 31 min.
            "UPDATE satmachineadmin.settlements SET status = 'processing', "
            "updated_at = :t, claimed_until = :lease WHERE id = :id",
            {
                "id": stuck.id,
                "t": utc_now() - timedelta(minutes=31),
                "lease": utc_now() + timedelta(hours=1),
            },
        )
    await notifications.watch_once()
    keys = {e["problem_key"] for e in await log_entries(http, operator)}
    assert keys == {
        f"settlement-stuck:{stuck.id}",
        f"settlement-awaiting-funds:{waiting.id}",
    }
    # A longer threshold: the stuck one is no longer a problem.
    await http.put(
        f"{API}/notifications",
        json={"stuck_after_minutes": 60},
        headers=operator.headers,
    )
    await notifications.watch_once()
    log = await log_entries(http, operator)
    assert (log[0]["kind"], log[0]["problem_key"]) == (
        "cleared",
        f"settlement-stuck:{stuck.id}",
    )
    assert len(log) == 3

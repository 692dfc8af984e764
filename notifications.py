"""Telling the operator about problems: one message when a problem starts,
one when it clears, never one per retry.

Every part of the extension that notices a problem calls ``problem_started``
with a stable ``key`` (e.g. ``settlement-errored:<id>``, ``machine-offline:<id>``)
and ``problem_cleared`` with the same key once it is gone. Both are cheap and
idempotent, and never raise: a notification must never slow or stop the
pipeline.

An open problem is a row of ``problems`` (UNIQUE on operator and key): the
caller whose INSERT makes the row sends the "started" message, the caller whose
DELETE removes it sends the "cleared" one, in any number of workers. Each
message is written to ``notification_log`` (listed on the console) and sent
- through LNbits' notification service to the operator's own channels, as the
  operator set them in LNbits (Telegram, Nostr, e-mail): queued, LNbits sends;
- to the operator's webhook, if set: a JSON POST signed with HMAC-SHA256 of
  the body under the operator's secret (header ``X-Satmachine-Signature:
  sha256=<hex>``), in a background task that retries with backoff.

A watcher loop raises and clears the problems the database shows: settlements
errored, stuck in processing past the operator's threshold, or awaiting funds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
from lnbits.core.crud.users import get_user
from lnbits.core.models.notifications import NotificationType
from lnbits.core.services.notifications import enqueue_user_notification
from loguru import logger

from . import loops
from .models import NotificationLogEntry, OpenProblem, utc_now

SIGNATURE_HEADER = "X-Satmachine-Signature"
WEBHOOK_TIMEOUT_SECONDS = 6
WEBHOOK_BACKOFF_SECONDS = (2.0, 10.0, 60.0)  # waits between the 4 attempts

_background: set[asyncio.Task] = set()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def problem_started(
    operator_user_id: str, key: str, title: str, body: str = ""
) -> None:
    """A problem began (or is still there: then nothing is sent again)."""
    try:
        from . import crud_notifications as store

        problem = OpenProblem(
            id=store.new_id(),
            operator_user_id=operator_user_id,
            problem_key=key[:300],
            title=title[:300],
            body=body[:2000],
        )
        if not await store.open_problem(problem):
            return
        logger.warning(f"satmachineadmin: [{operator_user_id}] {title}: {body}")
        await _notify(operator_user_id, key, "started", title, body)
    except Exception:  # never stop the caller
        logger.exception(f"satmachineadmin: notifying {key} failed")


async def problem_cleared(operator_user_id: str, key: str, body: str = "") -> None:
    """The problem under ``key`` is gone (nothing is sent if none was open)."""
    try:
        from . import crud_notifications as store

        problem = await store.close_problem(operator_user_id, key[:300])
        if problem is None:
            return
        logger.info(f"satmachineadmin: [{operator_user_id}] cleared {key}: {body}")
        await _notify(
            operator_user_id, key, "cleared", f"Resolved: {problem.title}", body
        )
    except Exception:
        logger.exception(f"satmachineadmin: notifying {key} cleared failed")


def _text(kind: str, title: str, body: str) -> str:
    head = "PROBLEM" if kind == "started" else "RESOLVED"
    return f"Satoshi Machine {head}: {title}" + (f"\n{body}" if body else "")


async def _notify(
    operator_user_id: str, key: str, kind: str, title: str, body: str
) -> None:
    from . import crud_notifications as store

    settings = await store.get_settings(operator_user_id)
    channels = []
    if settings.lnbits_channels and await _send_lnbits(
        operator_user_id, _text(kind, title, body)
    ):
        channels.append("lnbits")
    entry = NotificationLogEntry(
        id=store.new_id(),
        operator_user_id=operator_user_id,
        problem_key=key[:300],
        kind="started" if kind == "started" else "cleared",
        title=title[:300],
        body=body[:2000],
    )
    if settings.webhook_url and settings.webhook_secret:
        channels.append("webhook")
        entry.webhook_status = "pending"
    entry.channels = ",".join(channels)
    await store.add_log(entry)
    if settings.webhook_url and settings.webhook_secret:
        payload = {
            "event": f"problem_{entry.kind}",
            "key": key,
            "title": title,
            "body": body,
            "operator_user_id": operator_user_id,
            "notification_id": entry.id,
            "created_at": entry.created_at.isoformat(),
        }
        task = asyncio.create_task(
            _deliver_webhook(
                entry.id, settings.webhook_url, settings.webhook_secret, payload
            )
        )
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _send_lnbits(user_id: str, text: str) -> bool:
    """Queue the message for the user's own LNbits channels (LNbits sends it)."""
    user = await get_user(user_id)
    if user is None or user.extra is None:
        return False
    prefs = user.extra.notifications
    if not (prefs.telegram_chat_id or prefs.nostr_identifier or prefs.email_address):
        return False
    enqueue_user_notification(NotificationType.text_message, {"message": text}, prefs)
    return True


async def _deliver_webhook(
    log_id: str, url: str, secret: str, payload: dict[str, Any]
) -> None:
    from . import crud_notifications as store

    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
    }
    status = "failed"
    attempts = 0
    for attempt in range(len(WEBHOOK_BACKOFF_SECONDS) + 1):
        attempts = attempt + 1
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
                response = await client.post(url, content=body, headers=headers)
            if response.status_code < 300:
                status = f"delivered ({response.status_code})"
                break
            status = f"failed (HTTP {response.status_code})"
        except httpx.HTTPError as exc:
            status = f"failed ({exc.__class__.__name__})"
        if attempt < len(WEBHOOK_BACKOFF_SECONDS):
            await asyncio.sleep(WEBHOOK_BACKOFF_SECONDS[attempt])
    try:
        await store.set_webhook_status(log_id, status, attempts)
    except Exception:
        logger.exception("satmachineadmin: recording a webhook delivery failed")


async def wait_for_webhooks() -> None:
    """Tests: wait for the webhook deliveries under way."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


# --- the watcher -------------------------------------------------------------

WATCHED = ("settlement-errored:", "settlement-stuck:", "settlement-awaiting-funds:")


_watching = asyncio.Lock()  # one watch at a time: a run never undoes another's


async def watch_once() -> None:
    """Raise and clear the settlement problems the database shows."""
    async with _watching:
        await _watch()


async def _watch() -> None:
    from . import crud_notifications as store

    now = utc_now()
    wanted: dict[tuple[str, str], tuple[str, str]] = {}
    thresholds: dict[str, int] = {}
    for row in await store.list_troubled_settlements():
        op, sid, status = row["operator_user_id"], row["id"], row["status"]
        short = sid[:8]
        if status == "errored":
            wanted[(op, f"settlement-errored:{sid}")] = (
                f"Settlement {short} errored",
                f"{row.get('error') or 'a leg failed'}; retry it from the console.",
            )
        elif status == "awaiting_funds":
            wanted[(op, f"settlement-awaiting-funds:{sid}")] = (
                f"Settlement {short} waits for funds",
                "The machine wallet cannot cover its legs; top it up.",
            )
        else:
            if op not in thresholds:
                thresholds[op] = (await store.get_settings(op)).stuck_after_minutes
            updated = store.as_datetime(row["updated_at"])
            if updated < now - timedelta(minutes=thresholds[op]):
                wanted[(op, f"settlement-stuck:{sid}")] = (
                    f"Settlement {short} is stuck ({status})",
                    f"No progress for more than {thresholds[op]} min.",
                )
    for (op, key), (title, body) in wanted.items():
        await problem_started(op, key, title, body)
    for problem in await store.list_open_problems(WATCHED):
        if (problem.operator_user_id, problem.problem_key) not in wanted:
            await problem_cleared(
                problem.operator_user_id, problem.problem_key, "It is resolved."
            )


async def watcher_loop() -> None:
    while True:
        try:
            await watch_once()
        except Exception:
            logger.exception("satmachineadmin: notification watcher failed")
        await loops.pause("watcher")

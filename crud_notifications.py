"""Data access for notifications: settings, open problems, the log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from loguru import logger
from sqlalchemy.exc import IntegrityError

from .crud import (
    S,
    _execute,
    _fetchall,
    _fetchone,
    _insert,
    _scalar_rows,
    connection,
    new_id,
    transaction,
)
from .crud_telemetry import set_offline_after
from .models import NotificationLogEntry, NotificationSettings, OpenProblem, utc_now
from .secret_box import SecretUnreadableError, open_secret, seal

__all__ = ["new_id"]


def as_datetime(value: Any) -> datetime:
    """A raw row's timestamp (SQLite: epoch seconds; PostgreSQL: naive UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


async def get_settings(operator_user_id: str) -> NotificationSettings:
    async with connection() as c:
        row = await _fetchone(
            c,
            f"SELECT * FROM {S}.notification_settings WHERE operator_user_id = :op",
            {"op": operator_user_id},
            NotificationSettings,
        )
    if row is None:
        return NotificationSettings(operator_user_id=operator_user_id)
    try:  # stored sealed; the caller sees the plain secret
        row.webhook_secret = open_secret(row.webhook_secret)
    except SecretUnreadableError:
        logger.warning(
            "satmachineadmin: a webhook secret cannot be opened with this LNbits' "
            "key (sealed under another one): the operator must rotate it"
        )
        row.webhook_secret = None
    return row


async def put_settings(
    settings: NotificationSettings, offline_after_seconds: int | None = None
) -> NotificationSettings:
    """Replace the settings; with ``offline_after_seconds``, also the offline
    threshold (stored in telemetry_settings), in the same transaction."""
    settings.updated_at = utc_now()
    async with transaction() as c:
        if offline_after_seconds is not None:
            await set_offline_after(c, settings.operator_user_id, offline_after_seconds)
        await _execute(
            c,
            f"DELETE FROM {S}.notification_settings WHERE operator_user_id = :op",
            {"op": settings.operator_user_id},
            commit=False,
        )
        stored = settings.copy(update={"webhook_secret": seal(settings.webhook_secret)})
        await _insert(c, "notification_settings", stored, commit=False)
    return settings


async def open_problem(problem: OpenProblem) -> bool:
    """True when this call opened it (it was not open already)."""
    async with connection() as c:
        try:
            await _insert(c, "problems", problem)
            return True
        except IntegrityError:
            await c.conn.rollback()
            return False


async def close_problem(operator_user_id: str, key: str) -> OpenProblem | None:
    """The problem this call closed, or None when none was open."""
    async with transaction() as c:
        problem = await _fetchone(
            c,
            f"""SELECT * FROM {S}.problems
                WHERE operator_user_id = :op AND problem_key = :k""",
            {"op": operator_user_id, "k": key},
            OpenProblem,
        )
        if problem is None:
            return None
        result = await _execute(
            c,
            f"DELETE FROM {S}.problems WHERE id = :id",
            {"id": problem.id},
            commit=False,
        )
    return problem if result.rowcount == 1 else None


async def list_open_problems(
    prefixes: Sequence[str] = (), operator_user_id: str | None = None
) -> list[OpenProblem]:
    where, values = ["1 = 1"], {}
    if operator_user_id is not None:
        where.append("operator_user_id = :op")
        values["op"] = operator_user_id
    if prefixes:
        names = []
        for i, prefix in enumerate(prefixes):
            values[f"p{i}"] = f"{prefix}%"
            names.append(f"problem_key LIKE :p{i}")
        where.append("(" + " OR ".join(names) + ")")
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.problems WHERE {" AND ".join(where)}
                ORDER BY opened_at DESC, id DESC""",
            values,
            OpenProblem,
        )


async def add_log(entry: NotificationLogEntry) -> None:
    async with connection() as c:
        await _insert(c, "notification_log", entry)


async def set_webhook_status(log_id: str, status: str, attempts: int) -> None:
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.notification_log SET webhook_status = :s,
                webhook_attempts = :a, updated_at = :now WHERE id = :id""",
            {"id": log_id, "s": status, "a": attempts, "now": utc_now()},
        )


async def list_log(
    operator_user_id: str, limit: int = 100, offset: int = 0
) -> list[NotificationLogEntry]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.notification_log WHERE operator_user_id = :op
                ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset""",
            {"op": operator_user_id, "limit": limit, "offset": offset},
            NotificationLogEntry,
        )


async def list_troubled_settlements() -> list[dict[str, Any]]:
    """Settlements errored or awaiting funds, and pending or processing ones
    untouched for a minute (the watcher applies each operator's threshold)."""
    async with connection() as c:
        return await _scalar_rows(
            c,
            f"""SELECT id, operator_user_id, status, error, updated_at
                FROM {S}.settlements WHERE status IN ('errored', 'awaiting_funds')
                OR (status IN ('pending', 'processing') AND updated_at < :cutoff)
                ORDER BY created_at LIMIT 5000""",
            {"cutoff": utc_now() - timedelta(minutes=1)},
        )

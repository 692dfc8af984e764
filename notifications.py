"""Telling the operator about problems: one message when a problem starts,
one when it clears, never one per retry.

Every part of the extension that notices a problem calls ``problem_started``
with a stable ``key`` (e.g. ``settlement-errored:<id>``, ``machine-offline:<id>``)
and ``problem_cleared`` with the same key once it is gone. Both are cheap and
idempotent, and never raise: a notification must never slow or stop the
pipeline.
"""

from __future__ import annotations

from loguru import logger


async def problem_started(
    operator_user_id: str, key: str, title: str, body: str = ""
) -> None:
    """A problem began (or is still there: then nothing is sent again)."""
    logger.warning(f"satmachineadmin: [{operator_user_id}] {title}: {body}")


async def problem_cleared(operator_user_id: str, key: str, body: str = "") -> None:
    """The problem under ``key`` is gone (nothing is sent if none was open)."""
    logger.info(f"satmachineadmin: [{operator_user_id}] cleared {key}: {body}")

"""The sources loop (one permanent task): polls each active Lamassu machine
when its interval is due, and releases settlements awaiting funds once their
machine wallet is topped up. Both find their work in the database (the poll
status, the settlement rows), so a restart loses nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from loguru import logger

from . import crud, crud_sources, funding, lamassu, loops

_last_poll: dict[str, float] = {}  # machine id -> monotonic time of last poll


async def poll_due(queue: Callable[[str], None]) -> int:
    """Poll the Lamassu machines whose interval has passed; returns landed."""
    landed = 0
    now = time.monotonic()
    for source in await crud_sources.list_lamassu_sources():
        last = _last_poll.get(source.machine_id)
        if last is not None and now - last < source.poll_seconds:
            continue
        machine = await crud.get_machine(source.machine_id)
        if machine is None or not machine.is_active or machine.source != "lamassu":
            continue
        _last_poll[source.machine_id] = now
        outcome = await lamassu.poll(machine, source)
        for settlement_id in outcome.to_pay:
            queue(settlement_id)
        landed += outcome.landed
    return landed


async def release_funded(queue: Callable[[str], None]) -> int:
    ids = await funding.release_funded()
    for settlement_id in ids:
        queue(settlement_id)
    return len(ids)


async def sources_loop(queue: Callable[[str], None]) -> None:
    funding_check = loops.Every("funding")
    while True:
        try:
            await poll_due(queue)
            if funding_check.due():
                await release_funded(queue)
        except Exception as exc:  # never stop: the next tick tries again
            # No traceback: a driver's exception could carry connection details.
            logger.error(f"satmachineadmin: sources loop: {exc.__class__.__name__}")
        await loops.pause("sources")

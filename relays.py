"""Relay subscriptions: telemetry from the relays operators list.

One supervisor (a permanent task) keeps one websocket per relay URL that some
operator lists, subscribed (NIP-01 ``REQ``) to kinds 30078/30079 authored by
the active machines of the operators that list it. Every event goes to the
same ``telemetry.handle_event`` as ``POST /telemetry``. A dropped connection is
retried with exponential backoff (1 s doubling to ``MAX_BACKOFF_SECONDS``).
The supervisor re-reads the wanted subscriptions every ``RESYNC_SECONDS`` or
at once when ``refresh()`` is called (relays or machines changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets
from loguru import logger

from . import crud_telemetry
from .telemetry import (
    KINDS,
    MAX_AGE_SECONDS,
    TelemetryRefusedError,
    handle_event,
    npub_to_hex,
)

RESYNC_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0
OPEN_TIMEOUT_SECONDS = 10.0


@dataclass
class RelayState:
    url: str
    authors: frozenset[str]
    connected: bool = False
    connected_at: float | None = None
    last_event_at: float | None = None
    last_error: str | None = None
    failures: int = 0
    events: int = 0
    task: asyncio.Task | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "connected": self.connected,
            "connected_at": self.connected_at,
            "last_event_at": self.last_event_at,
            "last_error": self.last_error,
            "failures": self.failures,
            "events": self.events,
            "machines": len(self.authors),
        }


_relays: dict[str, RelayState] = {}
_wake = asyncio.Event()


def refresh() -> None:
    """Re-read the wanted subscriptions now (after relays or machines change)."""
    _wake.set()


def relay_status(urls: list[str] | None = None) -> list[dict[str, Any]]:
    """The state of the relay connections (all, or those in ``urls``)."""
    states = [state for url, state in _relays.items() if urls is None or url in urls]
    return [state.public() for state in states]


async def _on_message(state: RelayState, raw: str | bytes) -> None:
    try:
        message = json.loads(raw)
    except ValueError:
        return
    if not isinstance(message, list) or not message:
        return
    if message[0] == "EVENT" and len(message) >= 3:
        state.last_event_at = time.time()
        try:
            result = await handle_event(message[2], source=f"relay:{state.url}")
        except TelemetryRefusedError as refused:
            logger.debug(f"satmachineadmin: relay {state.url} event refused: {refused}")
            return
        if not result.duplicate:
            state.events += 1
    elif message[0] == "CLOSED":
        raise ConnectionError(f"relay closed the subscription: {message[-1]}")
    elif message[0] == "NOTICE":
        logger.info(f"satmachineadmin: relay {state.url} says: {message[-1]}")


async def _session(state: RelayState) -> None:
    authors = sorted(h for h in (npub_to_hex(n) for n in state.authors) if h)
    async with websockets.connect(
        state.url, open_timeout=OPEN_TIMEOUT_SECONDS, max_size=2**20
    ) as ws:
        request = {
            "kinds": list(KINDS),
            "authors": authors,
            "since": int(time.time()) - MAX_AGE_SECONDS,
        }
        await ws.send(json.dumps(["REQ", uuid.uuid4().hex[:16], request]))
        state.connected = True
        state.connected_at = time.time()
        state.failures = 0
        state.last_error = None
        async for raw in ws:
            await _on_message(state, raw)


async def _connection(state: RelayState) -> None:
    while True:
        try:
            await _session(state)
            state.last_error = "connection closed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any network failure: retried with backoff
            state.last_error = f"{type(exc).__name__}: {exc}"[:300]
        state.connected = False
        state.failures += 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** min(state.failures - 1, 6))
        logger.debug(
            f"satmachineadmin: relay {state.url} down ({state.last_error}); "
            f"retry in {delay:.0f} s"
        )
        await asyncio.sleep(delay)


def _stop(state: RelayState) -> None:
    if state.task is not None and not state.task.done():
        state.task.cancel()
    state.connected = False


async def sync() -> None:
    """Open, restart or close connections to match what operators want."""
    wanted = await crud_telemetry.list_relay_subscriptions()
    for url in list(_relays):
        if url not in wanted:
            _stop(_relays.pop(url))
    for url, npubs in wanted.items():
        authors = frozenset(npubs)
        state = _relays.get(url)
        if state is not None and state.authors == authors and state.task is not None:
            if not state.task.done():
                continue
        if state is not None:
            _stop(state)
        state = RelayState(url=url, authors=authors)
        state.task = asyncio.create_task(_connection(state))
        _relays[url] = state


async def supervisor() -> None:
    try:
        while True:
            try:
                await sync()
            except Exception:
                logger.exception("satmachineadmin: relay sync failed; retrying")
            _wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_wake.wait(), RESYNC_SECONDS)
    finally:
        for state in _relays.values():
            _stop(state)
        _relays.clear()

"""How often the extension's background loops run, and a way to wake them.

Every loop waits between its passes with ``pause(name)``: the loop's interval,
or less when someone calls ``wake(name)`` (the next pass starts at once).
Production intervals are the defaults below. A process may override any of
them through its environment, ``SATMACHINEADMIN_LOOP_<NAME>=<seconds>`` (the
process tests start LNbits so, to see a restart recover within a second or
two); in-process tests call ``set_interval`` or ``wake`` instead of sleeping
for a loop's period.
"""

from __future__ import annotations

import asyncio
import os
import time

from loguru import logger

DEFAULTS: dict[str, float] = {
    "resume": 5.0,  # pending settlements, expired leases, half-done transfers
    "recovery": 180.0,  # a scan of LNbits' payments for sales the listener missed
    "sources": 5.0,  # Lamassu polls that are due (each source has its own period)
    "funding": 15.0,  # settlements awaiting funds whose wallet was topped up
    "fixed": 20.0,  # fixed-mode slots that are due
    "watcher": 60.0,  # the notification watcher
    "health": 60.0,  # machine health checks
    "autoforward": 30.0,  # LP autoforward passes
}

# Passes that run inside another loop: waking one wakes its host too.
_HOST = {"recovery": "resume", "funding": "sources"}

# The name autoforward's interval had before every loop had one.
_LEGACY_ENV = {"autoforward": "SATMACHINEADMIN_AUTOFORWARD_INTERVAL"}

_intervals: dict[str, float] = {}
_wakers: dict[str, asyncio.Event] = {}


def _from_env(name: str) -> float | None:
    for key in (f"SATMACHINEADMIN_LOOP_{name.upper()}", _LEGACY_ENV.get(name)):
        raw = os.environ.get(key) if key else None
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            logger.warning(f"satmachineadmin: {key}={raw!r} is not a number")
            continue
        if value > 0:
            return value
        logger.warning(f"satmachineadmin: {key} must be above 0")
    return None


def interval(name: str) -> float:
    """Seconds between two passes of loop ``name``."""
    if name not in DEFAULTS:
        raise KeyError(f"no loop named {name!r}")
    if name not in _intervals:
        env = _from_env(name)
        _intervals[name] = env if env is not None else DEFAULTS[name]
    return _intervals[name]


def set_interval(name: str, seconds: float | None) -> None:
    """Change a loop's interval (None: back to the environment or default).
    Takes effect from the loop's next pause; ``wake`` it to apply at once."""
    if name not in DEFAULTS:
        raise KeyError(f"no loop named {name!r}")
    if seconds is None:
        _intervals.pop(name, None)
    elif seconds <= 0:
        raise ValueError("an interval is above 0 seconds")
    else:
        _intervals[name] = seconds


def _waker(name: str) -> asyncio.Event:
    if name not in _wakers:
        _wakers[name] = asyncio.Event()
    return _wakers[name]


def wake(name: str) -> None:
    """End loop ``name``'s current pause: its next pass starts now."""
    if name not in DEFAULTS:
        raise KeyError(f"no loop named {name!r}")
    _waker(name).set()
    if name in _HOST:
        _waker(_HOST[name]).set()


async def pause(name: str, seconds: float | None = None) -> None:
    """Wait ``seconds`` (default: the loop's interval) or until woken."""
    event = _waker(name)
    try:
        await asyncio.wait_for(event.wait(), seconds or interval(name))
    except asyncio.TimeoutError:
        pass
    event.clear()


class Every:
    """A pass that runs at most once per interval of ``name`` inside another
    loop (recovery inside the resume loop, funding inside the sources loop):
    ``due()`` is true when the interval has passed or ``wake(name)`` was
    called since the last pass."""

    def __init__(self, name: str, *, ran_now: bool = False) -> None:
        self.name = name
        self.last = time.monotonic() if ran_now else float("-inf")

    def due(self) -> bool:
        event = _waker(self.name)
        if event.is_set() or time.monotonic() - self.last >= interval(self.name):
            event.clear()
            self.last = time.monotonic()
            return True
        return False

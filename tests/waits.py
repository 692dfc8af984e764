"""Waiting on what a test expects, with a deadline that says what it saw.

A test never sleeps for a background loop's period: it wakes the loop
(``satmachineadmin.loops.wake``) or runs the pass itself, then waits here for
the outcome. The deadline is generous on purpose (a loaded machine is slow,
not wrong): it only decides how long a broken run takes to say so, and when
it runs out the error names what was awaited and the last value read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEADLINE_S = 120.0


class WaitTimeout(AssertionError):  # noqa: N818 - reads as what happened
    pass


def _fail(what: str, timeout: float, last: Any) -> WaitTimeout:
    text = repr(last)
    if len(text) > 2000:
        text = text[:2000] + "..."
    return WaitTimeout(f"waited {timeout:.0f} s for {what}; last seen: {text}")


async def until(
    read: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool] = bool,
    *,
    what: str,
    timeout: float = DEADLINE_S,
    every: float = 0.05,
) -> T:
    """``await read()`` until ``ok(value)``; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise _fail(what, timeout, value)
        await asyncio.sleep(every)


def until_sync(
    read: Callable[[], T],
    ok: Callable[[T], bool] = bool,
    *,
    what: str,
    timeout: float = DEADLINE_S,
    every: float = 0.2,
) -> T:
    """The same for tests that drive a process over HTTP, without a loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise _fail(what, timeout, value)
        time.sleep(every)

"""Where the time goes: pyinstrument (statistical, whole call tree) and a step
timer (exact wall time per call of chosen module functions)."""

from __future__ import annotations

import functools
import inspect
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any


class StepTimer:
    """Wraps coroutine functions on modules while active and adds up their wall
    time. Nested calls are counted in both (a crud call inside a service)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._patched: list[tuple[ModuleType, str, Any]] = []

    def wrap(self, module: ModuleType, names: list[str] | None = None) -> None:
        for name in names or dir(module):
            fn = getattr(module, name, None)
            if not inspect.iscoroutinefunction(fn):
                continue
            label = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
            self._patched.append((module, name, fn))
            setattr(module, name, self._timed(fn, label))

    def _timed(self, fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.total[label] += time.perf_counter() - start
                self.calls[label] += 1

        return timed

    def restore(self) -> None:
        for module, name, fn in reversed(self._patched):
            setattr(module, name, fn)
        self._patched.clear()

    def report(self, per: int = 1) -> list[dict[str, Any]]:
        rows = [
            {
                "step": label,
                "calls": self.calls[label],
                "total_ms": round(total * 1000, 1),
                "ms_per_unit": round(total * 1000 / per, 2),
            }
            for label, total in self.total.items()
        ]
        return sorted(rows, key=lambda r: -r["total_ms"])


@contextmanager
def pyinstrument_to(path: Path, interval: float = 0.001) -> Iterator[Any]:
    """Profile the awaited code (async_mode="enabled": time spent awaiting
    is charged to the awaiting coroutine) and write a text tree to ``path``."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=interval, async_mode="enabled")
    profiler.start()
    try:
        yield profiler
    finally:
        profiler.stop()
        from pyinstrument.renderers import ConsoleRenderer

        path.parent.mkdir(parents=True, exist_ok=True)
        tree = profiler.output_text(unicode=False, color=False, show_all=False)
        flat = profiler.output(
            ConsoleRenderer(flat=True, flat_time="total", show_all=True)
        )
        path.write_text(
            tree + "\n\nFunctions by total time (flat, all frames)\n\n" + flat
        )

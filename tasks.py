"""Background work: the invoice listener, the settlement worker, recovery."""

import asyncio


def start_tasks() -> list[asyncio.Task]:
    return []


def stop_tasks(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()

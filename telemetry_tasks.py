"""The telemetry area's permanent tasks: the relay supervisor and the
periodic machine health check (offline, low cassette)."""

from __future__ import annotations

from lnbits.task_manager import Task, task_manager

from . import health, relays


def start_telemetry_tasks() -> list[Task]:
    return [
        task_manager.create_permanent_task(
            relays.supervisor, name="ext_satmachineadmin_relays"
        ),
        task_manager.create_permanent_task(
            health.check_loop, name="ext_satmachineadmin_machine_health"
        ),
    ]

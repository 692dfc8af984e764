from fastapi import APIRouter
from lnbits.db import Database

db = Database("ext_satmachineadmin")

satmachineadmin_ext: APIRouter = APIRouter(
    prefix="/satmachineadmin", tags=["satmachineadmin"]
)

satmachineadmin_static_files = [
    {
        "path": "/satmachineadmin/static",
        "name": "satmachineadmin_static",
    }
]

from .tasks import start_tasks, stop_tasks
from .telemetry_tasks import start_telemetry_tasks
from .views import satmachineadmin_generic_router
from .views_api import satmachineadmin_api_router

satmachineadmin_ext.include_router(satmachineadmin_generic_router)
satmachineadmin_ext.include_router(satmachineadmin_api_router)

scheduled_tasks: list = []


def satmachineadmin_start() -> None:
    """Start the invoice listener, the settlement worker and recovery."""
    scheduled_tasks.extend(start_tasks())
    scheduled_tasks.extend(start_telemetry_tasks())


def satmachineadmin_stop() -> None:
    stop_tasks(scheduled_tasks)
    scheduled_tasks.clear()


__all__ = [
    "db",
    "satmachineadmin_ext",
    "satmachineadmin_start",
    "satmachineadmin_static_files",
    "satmachineadmin_stop",
]

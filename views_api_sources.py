"""Routes for sale sources (issue 10): a machine's Lamassu connection (the
password is write-only: answers say ``password_set``), test and poll now,
manual sales, and what each machine owes against what its wallet holds."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, Depends
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import crud, crud_sources, funding, lamassu, manual
from .errors import Conflict, NotFound
from .models import (
    DcaSettlement,
    LamassuPollResult,
    LamassuSettings,
    LamassuSettingsData,
    LamassuSource,
    LamassuTestResult,
    Machine,
    MachineFunding,
    ManualSaleData,
)
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    check_precision,
    owned_machine,
    refuse_unstorable_input,
)

sources_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


def _require_lamassu(machine: Machine) -> None:
    if machine.source != "lamassu":
        raise Conflict(
            f"the machine's source is {machine.source}, not lamassu: "
            "create the machine with source=lamassu"
        )


async def _settings_of(machine: Machine) -> LamassuSource:
    _require_lamassu(machine)
    source = await crud_sources.get_lamassu_source(machine.id)
    if source is None:
        raise Conflict("the machine has no Lamassu connection settings yet")
    return source


@sources_router.get("/machines/{machine_id}/lamassu")
async def api_get_lamassu(
    machine_id: str, user: User = Depends(check_user_exists)
) -> LamassuSettings:
    machine = await owned_machine(machine_id, user)
    source = await crud_sources.get_lamassu_source(machine.id)
    if source is None:
        raise NotFound("the machine has no Lamassu connection settings")
    return LamassuSettings.of(source)


@sources_router.put("/machines/{machine_id}/lamassu")
async def api_put_lamassu(
    machine_id: str,
    data: LamassuSettingsData,
    user: User = Depends(check_user_exists),
) -> LamassuSettings:
    """Set the connection. ``password`` left out keeps the stored one."""
    machine = await owned_machine(machine_id, user)
    _require_lamassu(machine)
    existing = await crud_sources.get_lamassu_source(machine.id)
    password = data.password
    if password is None:
        password = existing.password if existing else ""
    source = LamassuSource(
        machine_id=machine.id,
        operator_user_id=user.id,
        host=data.host,
        port=data.port,
        database_name=data.database,
        db_user=data.user,
        password=password,
        sslmode=data.sslmode,
        device_id=data.device_id,
        poll_seconds=data.poll_seconds,
    )
    return LamassuSettings.of(await crud_sources.save_lamassu_source(source))


@sources_router.post("/machines/{machine_id}/lamassu/test")
async def api_test_lamassu(
    machine_id: str, user: User = Depends(check_user_exists)
) -> LamassuTestResult:
    """Connect and check the source as the poller reads it; answers in words."""
    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    error = await lamassu.check_connection(source)
    return LamassuTestResult(ok=error is None, error=error)


@sources_router.post("/machines/{machine_id}/lamassu/poll")
async def api_poll_lamassu(
    machine_id: str, user: User = Depends(check_user_exists)
) -> LamassuPollResult:
    """Poll now: land the new sales (they are then paid by the workers)."""
    from .tasks import queue_for_processing  # tasks imports the routes' modules

    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    if not machine.is_active:
        raise Conflict("the machine is inactive")
    outcome = await lamassu.poll(machine, source)
    for settlement in outcome.landed:
        if settlement.status == "pending":
            queue_for_processing(settlement.id)
    return LamassuPollResult(landed=len(outcome.landed), error=outcome.error)


@sources_router.post("/settlements/manual", status_code=HTTPStatus.CREATED)
async def api_manual_sale(
    data: ManualSaleData, user: User = Depends(check_user_exists)
) -> DcaSettlement:
    """Record a sale settled outside Lightning; paid from the machine wallet.
    A reference already used at the machine answers 409."""
    from .tasks import queue_for_processing

    machine = await owned_machine(data.machine_id, user)
    if not machine.is_active:
        raise Conflict("machine_id: the machine is inactive")
    check_precision(data.fiat_amount, machine.currency, "fiat_amount")
    settlement = await manual.land_manual_sale(machine, data, user.id)
    if settlement.status == "pending":
        queue_for_processing(settlement.id)
    return settlement


@sources_router.get("/funding")
async def api_funding(user: User = Depends(check_user_exists)) -> list[MachineFunding]:
    """Per machine: sats its wallet still has to pay out against its balance,
    and for a Lamassu machine its source's status."""
    owed = await crud_sources.owed_by_machine(user.id)
    waiting = await crud_sources.count_awaiting_funds(user.id)
    sources = {
        s.machine_id: s for s in await crud_sources.list_lamassu_sources(user.id)
    }
    rows = []
    for machine in await crud.list_machines(user.id, 1000, 0):
        source = sources.get(machine.id)
        rows.append(
            MachineFunding(
                machine_id=machine.id,
                source=machine.source,
                owes_sats=owed.get(machine.id, 0),
                holds_sats=await funding.wallet_sats(machine.wallet_id),
                awaiting_funds=waiting.get(machine.id, 0),
                last_poll_at=source.last_poll_at if source else None,
                last_success_at=source.last_success_at if source else None,
                last_error=source.last_error if source else None,
            )
        )
    return rows

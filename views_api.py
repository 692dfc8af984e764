"""REST API under /satmachineadmin/api/v1/dca: the operator's machines, LP
positions ("clients"), deposits and commission split rules.

Every route authenticates with ``check_user_exists``, lets pydantic validate,
checks ownership (another operator's resource is 404, never 403), calls one
crud or service function and declares its return type. Errors are mapped to
HTTP in one place, ``DcaRoute``. Settlements, payment legs and exports live in
``views_api_settlements.py``; the LP's own view and the platform fee in
``views_api_lp.py``.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, Depends, Query, Response
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import actions, crud, crud_sources, lp_self, ssh_tunnel
from .calculations import to_minor_units
from .errors import Conflict, Invalid
from .health import with_presence
from .models import (
    ClientBalance,
    CommissionSplit,
    CreateClientData,
    CreateDepositData,
    CreateMachineData,
    DcaClient,
    DcaDeposit,
    DcaPayment,
    DcaSettlement,
    Machine,
    MachineWithPresence,
    SetCommissionSplitsData,
    SettleClientData,
    SettlementStatus,
    UpdateClientData,
    UpdateDepositData,
    UpdateDepositStatusData,
    UpdateMachineData,
    utc_now,
)
from .views_api_fixed import check_limit_within_max, fixed_router
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    Page,
    check_precision,
    check_wallet_exists,
    check_wallet_of,
    json_rows,
    machine_of,
    owned_client,
    owned_deposit,
    owned_machine,
    page_params,
    refuse_unstorable_input,
)
from .views_api_lp import lp_router, platform_router
from .views_api_lp_self import lp_self_router
from .views_api_reconciliation import reconciliation_router
from .views_api_settlements import settlements_router
from .views_api_sources import sources_router
from .views_api_telemetry import telemetry_public_router, telemetry_router
from .views_api_upgrade import upgrade_router

operator_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


# --- machines --------------------------------------------------------------


@operator_router.post("/machines", status_code=HTTPStatus.CREATED)
async def api_create_machine(
    data: CreateMachineData, user: User = Depends(check_user_exists)
) -> Machine:
    """Register a machine (bitSpire by its npub; Lamassu or manual), bound to
    one of the operator's wallets."""
    await check_wallet_of(data.wallet_id, user.id, "wallet_id")
    if await crud.get_machine_by_wallet(data.wallet_id) is not None:
        raise Conflict("wallet_id: the wallet is already bound to a machine")
    if data.npub and await crud.get_machine_by_npub(data.npub) is not None:
        raise Conflict("npub: a machine with this npub is already registered")
    machine_id = crud.new_id()
    machine = Machine(
        id=machine_id,
        operator_user_id=user.id,
        # Lamassu/manual machines have no Nostr key: a unique stand-in.
        npub=data.npub or f"{data.source}:{machine_id}",
        wallet_id=data.wallet_id,
        name=data.name,
        currency=data.currency,
        fallback_commission_pct=data.fallback_commission_pct,
        source=data.source,
    )
    return await crud.create_machine(machine)


@operator_router.get("/machines")
async def api_list_machines(
    page: Page = Depends(page_params), user: User = Depends(check_user_exists)
) -> list[MachineWithPresence]:
    machines = await crud.list_machines(user.id, page.limit, page.offset)
    return await with_presence(machines, user.id)


@operator_router.get("/machines/{machine_id}")
async def api_get_machine(
    machine_id: str, user: User = Depends(check_user_exists)
) -> Machine:
    return await owned_machine(machine_id, user)


@operator_router.put("/machines/{machine_id}")
async def api_update_machine(
    machine_id: str, data: UpdateMachineData, user: User = Depends(check_user_exists)
) -> Machine:
    """Rename, change the fallback commission, (de)activate a machine, or
    change its source (``source``, with ``npub`` for bitSpire): its
    settlements stay, the new source starts from the change."""
    machine = await owned_machine(machine_id, user)
    if data.source is not None and data.source != machine.source:
        await _change_source(machine, data)
    elif data.npub is not None and data.npub != machine.npub:
        raise Invalid("npub", "is given only with a change of source to bitspire")
    if data.name is not None:
        machine.name = data.name
    if data.clear_fallback:
        machine.fallback_commission_pct = None
    elif data.fallback_commission_pct is not None:
        machine.fallback_commission_pct = data.fallback_commission_pct
    if data.is_active is not None:
        machine.is_active = data.is_active
    return await crud.update_machine(machine)


async def _change_source(machine: Machine, data: UpdateMachineData) -> None:
    """The new source starts now: a Lamassu source keeps its settings and
    starts again from now (its device's sales in between never land by
    themselves); a bitSpire machine lands payments made from now on."""
    assert data.source is not None  # noqa: S101
    now = utc_now()
    if data.source == "bitspire":
        if not data.npub:
            raise Invalid("npub", "a bitSpire machine needs its npub")
        other = await crud.get_machine_by_npub(data.npub)
        if other is not None and other.id != machine.id:
            raise Conflict("npub: a machine with this npub is already registered")
        machine.npub = data.npub
    else:
        if data.npub is not None:
            raise Invalid("npub", "only a bitSpire machine has an npub")
        machine.npub = f"{data.source}:{machine.id}"
        machine.fallback_commission_pct = None  # bitSpire's fallback only
        if data.fallback_commission_pct is not None:
            raise Invalid(
                "fallback_commission_pct", "only a bitSpire machine has a fallback rate"
            )
    if machine.source == "lamassu":
        await ssh_tunnel.close(machine.id)
    if data.source == "lamassu" and await crud_sources.get_lamassu_source(machine.id):
        await crud_sources.restart_lamassu_source(machine.id, now)
    machine.source = data.source
    machine.source_since = now


@operator_router.delete(
    "/machines/{machine_id}", status_code=HTTPStatus.NO_CONTENT, response_model=None
)
async def api_delete_machine(
    machine_id: str, user: User = Depends(check_user_exists)
) -> None:
    """Only a machine without history: deactivate one that has any."""
    machine = await owned_machine(machine_id, user)
    if await crud.machine_has_settlements(machine.id):
        raise Conflict(
            "the machine has settlements; deactivate it instead (is_active=false)"
        )
    if await crud.machine_has_payment_history(machine.id):
        raise Conflict(
            "the machine has payment legs or confirmed deposits; "
            "deactivate it instead (is_active=false)"
        )
    await crud.delete_machine(machine.id)


@operator_router.get(
    "/machines/{machine_id}/settlements", response_model=list[DcaSettlement]
)
async def api_machine_settlements(
    machine_id: str,
    status: SettlementStatus | None = None,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> Response:
    machine = await owned_machine(machine_id, user)
    return json_rows(
        await crud.list_settlements(
            user.id, status, machine.id, page.limit, page.offset
        )
    )


# --- LP positions ("clients") ----------------------------------------------


@operator_router.post("/clients", status_code=HTTPStatus.CREATED)
async def api_create_client(
    data: CreateClientData, user: User = Depends(check_user_exists)
) -> DcaClient:
    """Register an LNbits user as an LP at one of the operator's machines."""
    machine = await owned_machine(data.machine_id, user)
    await check_wallet_of(data.wallet_id, data.user_id, "wallet_id")
    check_precision(
        data.fixed_mode_daily_limit, machine.currency, "fixed_mode_daily_limit"
    )
    await check_limit_within_max(machine, data.fixed_mode_daily_limit)
    if await crud.get_client_by_machine_user(machine.id, data.user_id) is not None:
        raise Conflict("user_id: the user already has a position at this machine")
    client = DcaClient(
        id=crud.new_id(),
        machine_id=machine.id,
        operator_user_id=user.id,
        user_id=data.user_id,
        wallet_id=data.wallet_id,
        username=data.username,
        dca_mode=data.dca_mode,
        fixed_mode_daily_limit_minor=(
            None
            if data.fixed_mode_daily_limit is None
            else to_minor_units(data.fixed_mode_daily_limit, machine.currency)
        ),
    )
    return await crud.create_client(client)


@operator_router.get("/clients")
async def api_list_clients(
    machine_id: str | None = None,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> list[DcaClient]:
    return await crud.list_clients(user.id, machine_id, page.limit, page.offset)


@operator_router.get("/clients/{client_id}")
async def api_get_client(
    client_id: str, user: User = Depends(check_user_exists)
) -> DcaClient:
    return await owned_client(client_id, user)


@operator_router.put("/clients/{client_id}")
async def api_update_client(
    client_id: str, data: UpdateClientData, user: User = Depends(check_user_exists)
) -> DcaClient:
    client = await owned_client(client_id, user)
    machine = await machine_of(client)
    await lp_self.refuse_lp_owned_changes(client, data)
    if data.wallet_id is not None:
        await check_wallet_of(data.wallet_id, client.user_id, "wallet_id")
        client.wallet_id = data.wallet_id
    if data.fixed_mode_daily_limit is not None:
        check_precision(
            data.fixed_mode_daily_limit, machine.currency, "fixed_mode_daily_limit"
        )
        await check_limit_within_max(machine, data.fixed_mode_daily_limit)
        client.fixed_mode_daily_limit_minor = to_minor_units(
            data.fixed_mode_daily_limit, machine.currency
        )
    if data.username is not None:
        client.username = data.username
    if data.dca_mode is not None:
        client.dca_mode = data.dca_mode
    if data.status is not None:
        client.status = data.status
    return await crud.update_client(client)


@operator_router.delete(
    "/clients/{client_id}", status_code=HTTPStatus.NO_CONTENT, response_model=None
)
async def api_delete_client(
    client_id: str, user: User = Depends(check_user_exists)
) -> None:
    """Only a position without payments or confirmed deposits."""
    client = await owned_client(client_id, user)
    if await crud.client_has_history(client.id):
        raise Conflict(
            "the client has payment history or confirmed deposits; "
            "set status=inactive instead"
        )
    await crud.delete_client(client.id)


@operator_router.get("/clients/{client_id}/balance")
async def api_client_balance(
    client_id: str, user: User = Depends(check_user_exists)
) -> ClientBalance:
    client = await owned_client(client_id, user)
    return (await crud.get_client_balances([client.id]))[client.id]


@operator_router.post("/clients/{client_id}/settle")
async def api_settle_client(
    client_id: str, data: SettleClientData, user: User = Depends(check_user_exists)
) -> DcaPayment:
    """Pay the LP's remaining (or the given) balance in sats from one of the
    operator's wallets, recorded as a `settlement` leg."""
    client = await owned_client(client_id, user)
    machine = await machine_of(client)
    await check_wallet_of(data.funding_wallet_id, user.id, "funding_wallet_id")
    check_precision(data.amount_fiat, machine.currency, "amount_fiat")
    return await actions.settle_client_balance(
        client,
        funding_wallet_id=data.funding_wallet_id,
        exchange_rate=data.exchange_rate,
        amount_fiat=data.amount_fiat,
        notes=data.notes,
    )


# --- deposits --------------------------------------------------------------


@operator_router.post("/deposits", status_code=HTTPStatus.CREATED)
async def api_create_deposit(
    data: CreateDepositData, user: User = Depends(check_user_exists)
) -> DcaDeposit:
    """Record fiat an LP handed over; pending until confirmed."""
    client = await owned_client(data.client_id, user)
    machine = await machine_of(client)
    if data.currency is not None and data.currency != machine.currency:
        raise Invalid("currency", f"must be {machine.currency}, the machine's currency")
    check_precision(data.amount, machine.currency, "amount")
    deposit = DcaDeposit(
        id=crud.new_id(),
        client_id=client.id,
        machine_id=machine.id,
        operator_user_id=user.id,
        amount_minor=to_minor_units(data.amount, machine.currency),
        currency=machine.currency,
        notes=data.notes,
        creator_user_id=user.id,
    )
    return await crud.create_deposit(deposit)


@operator_router.get("/deposits")
async def api_list_deposits(
    client_id: str | None = None,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> list[DcaDeposit]:
    return await crud.list_deposits(user.id, client_id, page.limit, page.offset)


@operator_router.get("/deposits/{deposit_id}")
async def api_get_deposit(
    deposit_id: str, user: User = Depends(check_user_exists)
) -> DcaDeposit:
    return await owned_deposit(deposit_id, user)


@operator_router.put("/deposits/{deposit_id}")
async def api_update_deposit(
    deposit_id: str, data: UpdateDepositData, user: User = Depends(check_user_exists)
) -> DcaDeposit:
    """Edit a pending deposit; confirmed and rejected ones are immutable."""
    deposit = await owned_deposit(deposit_id, user)
    if deposit.status != "pending":
        raise Conflict(
            f"only a pending deposit can be edited, not a {deposit.status} one"
        )
    if data.amount is not None:
        check_precision(data.amount, deposit.currency, "amount")
        deposit.amount_minor = to_minor_units(data.amount, deposit.currency)
    if data.notes is not None:
        deposit.notes = data.notes
    if not await crud.update_deposit_if_pending(deposit):
        raise Conflict("the deposit is no longer pending")
    return await owned_deposit(deposit.id, user)


@operator_router.put("/deposits/{deposit_id}/status")
async def api_set_deposit_status(
    deposit_id: str,
    data: UpdateDepositStatusData,
    user: User = Depends(check_user_exists),
) -> DcaDeposit:
    """Confirm (counts toward the LP's balance) or reject a pending deposit."""
    deposit = await owned_deposit(deposit_id, user)
    if deposit.status != "pending":
        raise Conflict(f"the deposit is already {deposit.status}")
    deposit.status = data.status
    if data.status == "confirmed":
        deposit.confirmed_at = utc_now()
    if not await crud.update_deposit_if_pending(deposit):
        raise Conflict("the deposit is no longer pending")
    return await owned_deposit(deposit.id, user)


@operator_router.delete(
    "/deposits/{deposit_id}", status_code=HTTPStatus.NO_CONTENT, response_model=None
)
async def api_delete_deposit(
    deposit_id: str, user: User = Depends(check_user_exists)
) -> None:
    deposit = await owned_deposit(deposit_id, user)
    if not await crud.delete_deposit_if_pending(deposit.id):
        raise Conflict(
            f"only a pending deposit can be deleted, not a {deposit.status} one"
        )


# --- commission split rules ------------------------------------------------


@operator_router.get("/commission-splits")
async def api_get_commission_splits(
    machine_id: str | None = None,
    effective: bool = Query(
        False, description="with machine_id: the override if set, else the default"
    ),
    user: User = Depends(check_user_exists),
) -> list[CommissionSplit]:
    """The operator's default rules, or one machine's override (or, with
    effective=true, what the pipeline applies to that machine)."""
    if machine_id is None:
        return await crud.get_commission_splits(user.id, None)
    machine = await owned_machine(machine_id, user)
    if effective:
        return await crud.get_effective_commission_splits(user.id, machine.id)
    return await crud.get_commission_splits(user.id, machine.id)


@operator_router.put("/commission-splits")
async def api_set_commission_splits(
    data: SetCommissionSplitsData, user: User = Depends(check_user_exists)
) -> list[CommissionSplit]:
    """Replace the default rules (no machine_id) or a machine's override,
    atomically. The legs' pct must sum to exactly 1."""
    if data.machine_id is not None:
        await owned_machine(data.machine_id, user)
    for i, leg in enumerate(data.legs):
        await check_wallet_exists(leg.wallet_id, f"legs.{i}.wallet_id")
    return await crud.replace_commission_splits(user.id, data.machine_id, data.legs)


@operator_router.delete(
    "/commission-splits", status_code=HTTPStatus.NO_CONTENT, response_model=None
)
async def api_clear_commission_splits(
    machine_id: str | None = None, user: User = Depends(check_user_exists)
) -> None:
    """Clear the default rules, or a machine's override (it then falls back to
    the default)."""
    if machine_id is not None:
        await owned_machine(machine_id, user)
    await crud.replace_commission_splits(user.id, machine_id, [])


satmachineadmin_api_router = APIRouter(prefix="/api/v1/dca", route_class=DcaRoute)
satmachineadmin_api_router.include_router(operator_router)
satmachineadmin_api_router.include_router(settlements_router)
satmachineadmin_api_router.include_router(sources_router)
satmachineadmin_api_router.include_router(lp_router)
satmachineadmin_api_router.include_router(platform_router)
satmachineadmin_api_router.include_router(fixed_router)
satmachineadmin_api_router.include_router(telemetry_router)
satmachineadmin_api_router.include_router(telemetry_public_router)
satmachineadmin_api_router.include_router(lp_self_router)
satmachineadmin_api_router.include_router(reconciliation_router)
satmachineadmin_api_router.include_router(upgrade_router)

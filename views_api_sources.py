"""Routes for sale sources (issue 10): a machine's Lamassu connection (the
password is write-only: answers say ``password_set``), test and poll now,
manual sales, and what each machine owes against what its wallet holds.

Lamassu in the field (issue 18): SSH settings with the extension's own key
pair and a pinned host key, the cash-outs the source holds with what became
of each, ignoring one, and importing a period of the machine's past."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Literal

from fastapi import APIRouter, Depends, Query
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import crud, crud_sources, funding, lamassu, manual, ssh_tunnel
from .errors import Conflict, Invalid, NotFound
from .models import (
    DcaSettlement,
    IgnoreCashOutData,
    LamassuCashOut,
    LamassuIgnored,
    LamassuImportData,
    LamassuImportDay,
    LamassuImportResult,
    LamassuPollResult,
    LamassuSettings,
    LamassuSettingsData,
    LamassuSource,
    LamassuTestResult,
    Machine,
    MachineFunding,
    ManualSaleData,
    PinHostKeyData,
    utc_now,
)
from .secret_box import seal
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
    """Set the connection. ``password`` left out keeps the stored one. With
    ``ssh_host``, the extension makes its own SSH key pair (once) and answers
    the public key and the ``authorized_keys`` line; the host key must then
    be pinned (test, then pin-host-key). The source starts now (or keeps its
    start; a new device starts again now)."""
    machine = await owned_machine(machine_id, user)
    _require_lamassu(machine)
    existing = await crud_sources.get_lamassu_source(machine.id)
    password = seal(data.password) if data.password is not None else None
    if password is None:
        password = existing.password if existing else ""
    now = utc_now()
    same_device = existing is not None and existing.device_id == data.device_id
    private_key = existing.ssh_private_key if existing else None
    public_key = existing.ssh_public_key if existing else None
    if data.ssh_host and not private_key:
        try:
            plain, public_key = await ssh_tunnel.generate_key_pair()
        except ssh_tunnel.SshError as exc:
            raise Conflict(str(exc)) from None
        private_key = seal(plain)
    same_server = (
        existing is not None
        and existing.ssh_host == data.ssh_host
        and (existing.ssh_port or 22) == data.ssh_port
    )
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
        ssh_host=data.ssh_host,
        ssh_port=data.ssh_port if data.ssh_host else None,
        ssh_user=data.ssh_user if data.ssh_host else None,
        ssh_private_key=private_key,
        ssh_public_key=public_key,
        # Another SSH server must be pinned again.
        ssh_host_key=existing.ssh_host_key if existing and same_server else None,
        ssh_host_key_fingerprint=(
            existing.ssh_host_key_fingerprint if existing and same_server else None
        ),
        start_at=lamassu.start_of(existing) if existing and same_device else now,
        cursor_created=existing.cursor_created if existing and same_device else None,
    )
    async with lamassu.lock_of(machine.id):
        saved = await crud_sources.save_lamassu_source(source)
    await ssh_tunnel.close(machine.id)  # the next poll opens the new one
    return LamassuSettings.of(saved)


@sources_router.post("/machines/{machine_id}/lamassu/test")
async def api_test_lamassu(
    machine_id: str, user: User = Depends(check_user_exists)
) -> LamassuTestResult:
    """Connect and check the source as the poller reads it; answers in words."""
    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    outcome = await lamassu.test_connection(source)
    return LamassuTestResult(
        ok=outcome.ok,
        error=outcome.error,
        step=outcome.step,
        host_key_fingerprint=outcome.host_key_fingerprint,
    )


@sources_router.post("/machines/{machine_id}/lamassu/pin-host-key")
async def api_pin_host_key(
    machine_id: str, data: PinHostKeyData, user: User = Depends(check_user_exists)
) -> LamassuSettings:
    """Trust the SSH server's host key whose fingerprint the test showed. The
    key is read again now: a server showing another key is refused."""
    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    if not source.ssh_host:
        raise Conflict("the source connects directly: there is no SSH host key")
    try:
        key, fingerprint = await ssh_tunnel.scan_host_key(
            source.ssh_host, source.ssh_port or 22
        )
    except ssh_tunnel.SshError as exc:
        raise Conflict(str(exc)) from None
    if fingerprint != data.fingerprint:
        raise Conflict(
            f"fingerprint: the server now shows {fingerprint}, not "
            f"{data.fingerprint}: test the connection again"
        )
    async with lamassu.lock_of(machine.id):
        await crud_sources.pin_host_key(machine.id, key, fingerprint)
    await ssh_tunnel.close(machine.id)
    saved = await crud_sources.get_lamassu_source(machine.id)
    assert saved is not None  # noqa: S101
    return LamassuSettings.of(saved)


CashOutOutcome = Literal["landed", "not_a_sale", "before_start", "ignored", "to_land"]


@sources_router.get("/machines/{machine_id}/lamassu/cash-outs")
async def api_lamassu_cash_outs(
    machine_id: str,
    since: datetime | None = Query(None, description="default: 7 days ago"),
    until: datetime | None = Query(None, description="default: now"),
    outcome: CashOutOutcome | None = None,
    limit: int = Query(500, ge=1, le=5000),
    user: User = Depends(check_user_exists),
) -> list[LamassuCashOut]:
    """Every cash-out (and cash-in) the source holds for the machine's device
    in the period, newest first, with its outcome."""
    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    start, end = _period(since, until, default_days=7)
    try:
        seen = await lamassu.cash_outs(
            machine, source, since=start, until=end, limit=limit
        )
    except lamassu.SourceUnreadableError as exc:
        raise Conflict(f"the Lamassu source cannot be read: {exc}") from None
    return [
        LamassuCashOut(
            id=row.id,
            kind=row.kind,  # type: ignore[arg-type]
            created=row.created,
            fiat=None if row.fiat is None else str(row.fiat),
            fiat_code=row.fiat_code,
            crypto_atoms=row.crypto_atoms,
            crypto_code=row.crypto_code,
            outcome=row.outcome,
            reason=row.reason,
            settlement_id=row.settlement_id,
            ignored_by=row.ignored_by,
            ignored_at=row.ignored_at,
        )
        for row in seen
        if outcome is None or row.outcome == outcome
    ]


PERIOD_MIN = datetime(1970, 1, 2, tzinfo=timezone.utc)
PERIOD_MAX = datetime(2999, 12, 31, tzinfo=timezone.utc)


def _period(
    since: datetime | None, until: datetime | None, *, default_days: int
) -> tuple[datetime, datetime]:
    # Out of range, ``end - default_days`` would overflow (a 500).
    for name, value in (("since", since), ("until", until)):
        if value is not None and not (PERIOD_MIN <= lamassu.aware(value) <= PERIOD_MAX):
            raise Invalid(name, "must be between 1970 and 2999")
    now = utc_now()
    end = lamassu.aware(until) if until is not None else now + timedelta(minutes=1)
    start = (
        lamassu.aware(since)
        if since is not None
        else end - timedelta(days=default_days)
    )
    if start >= end:
        raise Invalid("until", "must be after since")
    return start, end


def _txid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid("txid", "is not a Lamassu transaction id (a UUID)") from None


@sources_router.post(
    "/machines/{machine_id}/lamassu/cash-outs/{txid}/ignore",
    status_code=HTTPStatus.CREATED,
)
async def api_ignore_cash_out(
    machine_id: str,
    txid: str,
    data: IgnoreCashOutData,
    user: User = Depends(check_user_exists),
) -> LamassuIgnored:
    """A cash-out settled outside this extension: it never lands. Refused
    once it has landed."""
    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    txid = _txid(txid)
    async with lamassu.lock_of(machine.id):
        landed = await crud_sources.landed_txids(machine.id, [txid])
        if txid in landed:
            raise Conflict(
                f"the cash-out has landed (settlement {landed[txid]}): it cannot "
                "be ignored"
            )
        try:
            created = await lamassu.cash_out_created(source, txid)
        except lamassu.SourceUnreadableError as exc:
            raise Conflict(f"the Lamassu source cannot be read: {exc}") from None
        if created is None:
            raise NotFound(f"no cash-out {txid} of device {source.device_id}")
        row = LamassuIgnored(
            id=crud.new_id(),
            machine_id=machine.id,
            operator_user_id=user.id,
            txid=txid,
            reason=data.reason,
            author_user_id=user.id,
        )
        if not await crud_sources.add_ignored(row):
            raise Conflict("the cash-out is ignored already")
    return row


@sources_router.delete(
    "/machines/{machine_id}/lamassu/cash-outs/{txid}/ignore",
    status_code=HTTPStatus.NO_CONTENT,
    response_model=None,
)
async def api_unignore_cash_out(
    machine_id: str, txid: str, user: User = Depends(check_user_exists)
) -> None:
    """Ignore no more: the cash-out lands at the next poll if it is a sale
    made since the source's start (an older one only through an import)."""
    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    txid = _txid(txid)
    async with lamassu.lock_of(machine.id):
        if not await crud_sources.remove_ignored(machine.id, txid):
            raise NotFound("the cash-out is not ignored")
        try:
            created = await lamassu.cash_out_created(source, txid)
        except lamassu.SourceUnreadableError:
            created = None  # the next poll reads again from the start
        current = await crud_sources.get_lamassu_source(machine.id)
        if current is not None:
            rewind, cursor = lamassu.cursor_for_unignored(current, created)
            if rewind:
                await crud_sources.advance_cursor(machine.id, cursor)


@sources_router.post("/machines/{machine_id}/lamassu/import")
async def api_import_lamassu(
    machine_id: str, data: LamassuImportData, user: User = Depends(check_user_exists)
) -> LamassuImportResult:
    """A period of the machine's past: without ``confirm`` what it holds (the
    successful cash-outs not landed nor ignored; nothing lands), with it
    land them, once, paid like any sale."""
    from .tasks import queue_for_processing

    machine = await owned_machine(machine_id, user)
    source = await _settings_of(machine)
    if data.confirm and not machine.is_active:
        raise Conflict("the machine is inactive")
    since, until = _period(data.since, data.until, default_days=0)
    try:
        result = await lamassu.import_period(
            machine, source, since=since, until=until, confirm=data.confirm
        )
    except lamassu.SourceUnreadableError as exc:
        raise Conflict(f"the Lamassu source cannot be read: {exc}") from None
    if isinstance(result, lamassu.PollOutcome):
        for settlement_id in result.to_pay:
            queue_for_processing(settlement_id)
        return LamassuImportResult(
            since=since, until=until, confirmed=True, landed=result.landed
        )
    return LamassuImportResult(
        since=since,
        until=until,
        confirmed=False,
        count=result.count,
        gross_sats=result.gross_sats,
        fiat=str(result.fiat),
        days=[
            LamassuImportDay(
                day=d.day, count=d.count, gross_sats=d.gross_sats, fiat=str(d.fiat)
            )
            for d in result.days
        ],
        already_landed=result.already_landed,
        ignored=result.ignored,
    )


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
    for settlement_id in outcome.to_pay:
        queue_for_processing(settlement_id)
    return LamassuPollResult(landed=outcome.landed, error=outcome.error)


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
                lamassu_configured=source is not None,
                last_poll_at=source.last_poll_at if source else None,
                last_success_at=source.last_success_at if source else None,
                last_error=source.last_error if source else None,
            )
        )
    return rows

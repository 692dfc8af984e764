"""The settlement pipeline's orchestration: claim, plan, record, pay, close.

A sale is landed once (``landing.py``); ``process_settlement`` then claims
it (one atomic conditional update with a lease), loads what planning needs
and plans the round's legs once with the pure ``planner.plan_legs`` (all legs
recorded in one transaction before anything is paid), pays the pending legs
(``payer.pay_legs``) and closes the settlement.
"""

from __future__ import annotations

from datetime import timedelta

from lnbits.db import Connection

from . import crud, funding, payer
from .models import DcaPayment, DcaSettlement, Machine, SettlementStatus, utc_now
from .planner import plan_legs

# A worker's hold on a settlement it processes, renewed at every chunk of
# legs (``payer.pay_legs``). Short, so that a settlement cut off by a crash is
# resumed within seconds of a restart (the recovery loop looks every
# ``loops.interval("resume")``); long enough for a chunk of transfers.
LEASE = timedelta(seconds=20)
BOOT_ID = crud.new_id()  # this process: whose claim a settlement's is


async def process_settlement(settlement_id: str) -> DcaSettlement | None:
    """Pay what a settlement still owes, if this worker can claim it."""
    async with crud.connection() as conn:
        settlement = await crud.claim_settlement(
            settlement_id, LEASE, conn, claimed_by=BOOT_ID
        )
        if settlement is None:  # not ours to process (or no such settlement)
            return await crud.get_settlement(settlement_id, conn)
        machine = await crud.get_machine(settlement.machine_id, conn)
    if machine is None:
        return settlement
    return await _process(settlement, machine)


def hold(settlement: DcaSettlement) -> DcaSettlement:
    """Mark a settlement claimed by this process, for an operator action that
    writes it back (``crud.update_settlement``) and then calls
    ``process_held``: no worker can take it in between, and if this process
    dies, the claim runs out and the recovery loop resumes it."""
    settlement.status = "processing"
    settlement.claimed_until = utc_now() + LEASE
    settlement.claimed_by = BOOT_ID
    return settlement


async def process_held(settlement: DcaSettlement) -> DcaSettlement | None:
    """Process a settlement this process holds (see ``hold``)."""
    machine = await crud.get_machine(settlement.machine_id)
    if machine is None:
        return settlement
    return await _process(settlement, machine)


async def _process(settlement: DcaSettlement, machine: Machine) -> DcaSettlement | None:
    legs = await _planned_legs(settlement, machine)
    payer.checkpoint("planned")
    pending = [leg for leg in legs if leg.status == "pending"]
    if await funding.hold_if_unfunded(settlement, machine, pending):
        return await crud.get_settlement(settlement.id)  # awaiting_funds
    if not pending:  # a resumed run after every leg was recorded
        return await _finish(settlement.id)
    closed: list[DcaSettlement] = []

    async def close(conn: Connection) -> None:
        """Closes the settlement in the transaction that records the last
        chunk's outcomes (one transaction fewer per settlement)."""
        payer.checkpoint("before_finish")
        legs = await crud.get_legs(settlement.id, settlement.distribution_round, conn)
        if _close(settlement, legs):
            closed.extend(filter(None, [await crud.close_settlement(settlement, conn)]))

    for start in range(0, len(pending), payer.CHUNK):
        chunk = pending[start : start + payer.CHUNK]
        last = start + payer.CHUNK >= len(pending)
        await payer.pay_legs(
            chunk, machine, settlement.id, LEASE, close if last else None
        )
    return closed[0] if closed else await crud.get_settlement(settlement.id)


async def _planned_legs(
    settlement: DcaSettlement, machine: Machine
) -> list[DcaPayment]:
    """This round's legs: planned and recorded once, all in one transaction,
    with the machine's LP balances locked while they are read and charged."""
    async with crud.transaction() as conn:
        await crud.lock_machine(machine.id, conn)
        legs = await crud.get_legs(settlement.id, settlement.distribution_round, conn)
        if not legs:
            clients = await crud.get_flow_clients(machine.id, conn)
            legs = plan_legs(
                settlement,
                machine,
                config=await crud.get_super_config(conn),
                rules=await crud.get_effective_commission_splits(
                    machine.operator_user_id, machine.id, conn
                ),
                clients=clients,
                balances=await crud.get_client_balances([c.id for c in clients], conn),
            )
            await crud.insert_legs(legs, conn)
    return legs


async def _finish(settlement_id: str) -> DcaSettlement | None:
    async with crud.transaction() as conn:
        settlement = await crud.get_settlement(settlement_id, conn)
        if settlement is None:
            return None
        legs = await crud.get_legs(settlement.id, settlement.distribution_round, conn)
        if _close(settlement, legs):
            await crud.update_settlement(settlement, conn, commit=False)
    return settlement


def _close(settlement: DcaSettlement, legs: list[DcaPayment]) -> bool:
    """A settlement's status once its legs have been tried; False (nothing to
    write) while a leg is still pending."""
    if any(leg.status == "pending" for leg in legs):
        return False  # cut off: resumed when the lease runs out
    failed = [leg for leg in legs if leg.status == "failed"]
    if failed:
        settlement.status = "errored"
        settlement.error = "; ".join(
            f"{leg.leg_type} leg of {leg.amount_sats} sats failed: {leg.error}"
            for leg in failed
        )[:2000]
    else:
        settlement.status = _done_status(settlement)
        settlement.error = None
        settlement.processed_at = utc_now()
    settlement.claimed_until = None
    return True


def _done_status(settlement: DcaSettlement) -> SettlementStatus:
    if settlement.dispensed_fraction is None:
        return "processed"
    if settlement.net_sats + settlement.commission_sats == 0:
        return "refunded"
    return "partial"

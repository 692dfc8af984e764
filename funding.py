"""Funding: Lamassu and manual sales are paid from the machine wallet, which
the operator tops up (the customer paid elsewhere; the extension never creates
sats). A settlement whose pending legs the wallet cannot cover waits as
``awaiting_funds`` with nothing paid, and goes on by itself once the wallet
holds enough (``release_funded``, run every few seconds by the sources loop).

bitSpire sales are never held back: their sats are already in the wallet.
"""

from __future__ import annotations

from lnbits.core.crud import get_wallet

from . import crud, crud_sources, notifications
from .models import DcaPayment, DcaSettlement, Machine


def _key(machine_id: str) -> str:
    return f"awaiting-funds:{machine_id}"


async def wallet_sats(wallet_id: str) -> int:
    wallet = await get_wallet(wallet_id)
    return 0 if wallet is None else wallet.balance_msat // 1000


def needs_funds(settlement: DcaSettlement) -> bool:
    return settlement.source != "bitspire"


async def hold_if_unfunded(
    settlement: DcaSettlement, machine: Machine, pending: list[DcaPayment]
) -> bool:
    """Before paying: True (and the settlement is now ``awaiting_funds``)
    when the machine wallet cannot cover the legs it has to pay."""
    if not needs_funds(settlement):
        return False
    owed = sum(
        leg.amount_sats for leg in pending if leg.source_wallet_id == machine.wallet_id
    )
    holds = await wallet_sats(machine.wallet_id)
    if owed <= holds:
        return False
    if await crud_sources.set_awaiting_funds(settlement.id):
        await notifications.problem_started(
            machine.operator_user_id,
            _key(machine.id),
            f"Top up the wallet of {machine.name}",
            f"a settlement needs {owed} sats and the machine wallet holds {holds}",
        )
    return True


async def release_funded() -> list[str]:
    """Settlements awaiting funds whose machine wallet now covers them, oldest
    first, each machine's balance counted once across its settlements; back
    to ``pending``. Returns their ids, for the caller to queue."""
    released: list[str] = []
    left: dict[str, int] = {}
    waiting: dict[str, int] = {}
    machines: dict[str, Machine | None] = {}
    for settlement in await crud_sources.list_awaiting_funds():
        if settlement.machine_id not in machines:
            machines[settlement.machine_id] = await crud.get_machine(
                settlement.machine_id
            )
        machine = machines[settlement.machine_id]
        if machine is None:
            continue
        if machine.id not in left:
            left[machine.id] = await wallet_sats(machine.wallet_id)
        owed = await crud_sources.pending_leg_sats(
            settlement.id, settlement.distribution_round, machine.wallet_id
        )
        if owed <= left[machine.id]:
            left[machine.id] -= owed
            if await crud_sources.release_awaiting_funds(settlement.id):
                released.append(settlement.id)
        else:
            waiting[machine.id] = waiting.get(machine.id, 0) + 1
    for machine_id in left:
        machine = machines[machine_id]
        if machine is not None and machine_id not in waiting:
            await notifications.problem_cleared(
                machine.operator_user_id,
                _key(machine_id),
                "the machine wallet covers its settlements",
            )
    return released

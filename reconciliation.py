"""Reconciliation: for a machine (or all of an operator's machines) and a
period, what was sold, where the sats went and what stayed, and whether the
machine wallet's LNbits balance is what the ledger says it should be.

Two parts:
- the queries (``load_*``): the ledger's rows, and LNbits' own payments and
  balance of the machine wallet (``lnbits.core.crud``), read once;
- ``assemble``, a pure function from those rows to the report.

Period figures (sales, legs, held sats) cover settlements created in
[since, until) and, for legs that belong to no settlement (fixed-mode buys,
balance settlements, autoforwards), legs created in it. The wallet check is
over the wallet's whole life up to ``until`` (up to now without it): LNbits'
balance then is the sum of its payments made before that moment, and the
ledger is taken as it stood then (``as_of``): sales landed before it, legs
created before it, completed only if they were completed by then. So the
books of a closed month still balance after later sales and top-ups.

Expected balance = gross of the sales paid into the wallet (bitSpire; a
Lamassu or manual sale was paid elsewhere) + every other incoming payment
LNbits recorded (top-ups) - every completed leg paid from the wallet. Any
difference from LNbits' balance is broken down into ``WalletDifference``
items whose effects add up to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from lnbits.core.crud import get_wallet
from lnbits.core.models import Payment

from . import crud, crud_payouts
from .models import (
    DcaPayment,
    DcaSettlement,
    HeldSats,
    LegTotal,
    Machine,
    MachineReconciliation,
    ReconciliationReport,
    ReconciliationTotals,
    SourceSales,
    WalletDifference,
    WalletReconciliation,
    utc_now,
)

LIGHTNING_SOURCES = frozenset({"bitspire"})  # sales whose gross lands in LNbits
SUCCESS = "success"


# A settlement with its ``source`` (bitspire, lamassu, manual).
SettlementRow = DcaSettlement


@dataclass(frozen=True)
class LnbitsEntry:
    """One LNbits payment of a wallet, as LNbits recorded it."""

    payment_hash: str
    amount_msat: int  # > 0 incoming, < 0 outgoing
    fee_msat: int
    status: str
    extra_source: str | None = None
    # When it counted in the balance: an incoming invoice when it was paid
    # (LNbits' updated_at), an outgoing payment when it was made.
    when: datetime | None = None

    @classmethod
    def of(cls, payment: Payment) -> LnbitsEntry:
        extra = payment.extra or {}
        source = extra.get("source")
        when = payment.updated_at if payment.amount > 0 else payment.created_at
        return cls(
            payment_hash=payment.payment_hash,
            amount_msat=payment.amount,
            fee_msat=payment.fee,
            status=str(payment.status),
            extra_source=source if isinstance(source, str) else None,
            when=when,
        )


@dataclass
class MachineInputs:
    """Everything ``assemble`` needs about one machine."""

    machine: Machine
    settlements: list[SettlementRow]  # all of the machine's, all time
    legs: list[DcaPayment]  # the machine's legs and any paid from its wallet
    wallet_payments: list[LnbitsEntry]  # LNbits' payments counted in the balance
    balance_msat: int  # LNbits' balance of the machine wallet
    destination_status: Mapping[str, str]  # payment hash -> destination status
    as_of: datetime | None = None  # the moment the wallet block is taken at


# --- queries -------------------------------------------------------------------


async def load_settlements(machine_id: str) -> list[SettlementRow]:
    async with crud.connection() as c:
        return await crud._fetchall(
            c,
            f"SELECT * FROM {crud.S}.settlements WHERE machine_id = :m",  # noqa: S608
            {"m": machine_id},
            SettlementRow,
        )


async def load_legs(machine: Machine) -> list[DcaPayment]:
    async with crud.connection() as c:
        return await crud._fetchall(
            c,
            f"""SELECT * FROM {crud.S}.payments
                WHERE machine_id = :m OR source_wallet_id = :w""",  # noqa: S608
            {"m": machine.id, "w": machine.wallet_id},
            DcaPayment,
        )


async def load_wallet_payments(wallet_id: str) -> list[LnbitsEntry]:
    """LNbits' payments that make up the wallet's balance: successful ones,
    and outgoing ones still pending (LNbits already counts them)."""
    payments = await crud_payouts.get_wallet_payments(wallet_id, complete=True)
    return [LnbitsEntry.of(p) for p in payments]


async def load_balance_msat(wallet_id: str) -> int:
    wallet = await get_wallet(wallet_id)
    return 0 if wallet is None else wallet.balance_msat


async def load_destination_status(
    legs: Iterable[DcaPayment], cache: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The status of each leg's invoice on its destination wallet, from
    LNbits (one read per destination wallet, kept in ``cache``)."""
    status: dict[str, str] = {}
    by_wallet: dict[str, list[str]] = defaultdict(list)
    for leg in legs:
        if leg.payment_hash and leg.destination_wallet_id:
            by_wallet[leg.destination_wallet_id].append(leg.payment_hash)
    for wallet_id, hashes in by_wallet.items():
        if wallet_id not in cache:
            incoming = await crud_payouts.get_wallet_payments(wallet_id, incoming=True)
            cache[wallet_id] = {p.payment_hash: str(p.status) for p in incoming}
        known = cache[wallet_id]
        for payment_hash in hashes:
            status[payment_hash] = known.get(payment_hash, "missing")
    return status


async def load_machine_inputs(
    machine: Machine, destination_cache: dict[str, dict[str, str]] | None = None
) -> MachineInputs:
    # The ledger first, LNbits after: a leg paid in between shows as paid by
    # LNbits and not yet recorded (explained), never the other way round.
    settlements = await load_settlements(machine.id)
    legs = await load_legs(machine)
    wallet_payments = await load_wallet_payments(machine.wallet_id)
    balance = await load_balance_msat(machine.wallet_id)
    paid_out = {
        e.payment_hash
        for e in wallet_payments
        if e.amount_msat < 0 and e.status == SUCCESS
    }
    destination = await load_destination_status(
        (leg for leg in legs if leg.payment_hash in paid_out),
        destination_cache if destination_cache is not None else {},
    )
    return MachineInputs(
        machine, settlements, legs, wallet_payments, balance, destination
    )


async def reconcile(
    machines: Sequence[Machine],
    since: datetime | None = None,
    until: datetime | None = None,
) -> ReconciliationReport:
    cache: dict[str, dict[str, str]] = {}
    now = utc_now()
    reports = [
        assemble(
            as_of(await load_machine_inputs(machine, cache), until or now),
            since,
            until,
        )
        for machine in machines
    ]
    return ReconciliationReport(
        since=since,
        until=until,
        as_of=until or now,
        generated_at=now,
        machines=reports,
        totals=totals(reports),
    )


# --- the pure part -----------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def as_of(inputs: MachineInputs, moment: datetime) -> MachineInputs:
    """The inputs as they stood at ``moment`` (pure): LNbits' payments that
    counted in the balance before it, and its balance then; the sales landed
    and legs created before it, a leg completed after it as still pending."""
    moment = _aware(moment)
    payments = [
        e for e in inputs.wallet_payments if e.when is None or _aware(e.when) < moment
    ]
    if len(payments) == len(inputs.wallet_payments):
        balance = inputs.balance_msat  # nothing after it: LNbits' own figure
    else:
        balance = sum(e.amount_msat - abs(e.fee_msat) for e in payments)
    legs = []
    for leg in inputs.legs:
        if _aware(leg.created_at) >= moment:
            continue
        done = leg.completed_at or leg.updated_at
        if leg.status == "completed" and _aware(done) >= moment:
            leg = leg.copy(update={"status": "pending"})
        legs.append(leg)
    return MachineInputs(
        machine=inputs.machine,
        settlements=[s for s in inputs.settlements if _aware(s.created_at) < moment],
        legs=legs,
        wallet_payments=payments,
        balance_msat=balance,
        destination_status=inputs.destination_status,
        as_of=moment,
    )


def in_period(when: datetime, since: datetime | None, until: datetime | None) -> bool:
    when = _aware(when)
    if since is not None and when < _aware(since):
        return False
    return until is None or when < _aware(until)


def _add(total: LegTotal, leg: DcaPayment) -> None:
    total.count += 1
    total.sats += leg.amount_sats
    if leg.fiat_amount is not None:
        total.fiat += leg.fiat_amount


def _held_reason(leg: DcaPayment) -> str:
    if leg.status == "skipped":
        return leg.reason or "no reason recorded"
    if leg.status == "failed":
        return f"payment failed: {leg.error or 'unknown error'}"[:200]
    return "not paid yet (in flight, or waiting for funds)"


def assemble(
    inputs: MachineInputs, since: datetime | None, until: datetime | None
) -> MachineReconciliation:
    """The reconciliation of one machine (pure)."""
    machine = inputs.machine
    period = [s for s in inputs.settlements if in_period(s.created_at, since, until)]
    period_ids = {s.id for s in period}
    by_source: dict[str, SourceSales] = {}
    by_status: dict[str, int] = defaultdict(int)
    report = MachineReconciliation(
        machine_id=machine.id,
        machine_name=machine.name,
        currency=machine.currency,
        wallet_id=machine.wallet_id,
        wallet=reconcile_wallet(inputs),
        ok=True,
    )
    for s in period:
        report.sales_count += 1
        report.sales_gross_sats += s.gross_sats
        report.sales_net_sats += s.net_sats
        report.sales_commission_sats += s.commission_sats
        report.sales_fiat += s.fiat_amount or Decimal(0)
        source = by_source.setdefault(s.source, SourceSales(source=s.source))
        source.count += 1
        source.gross_sats += s.gross_sats
        by_status[s.status] += 1

    own = [leg for leg in inputs.legs if leg.machine_id == machine.id]
    legs_of: dict[str, list[DcaPayment]] = defaultdict(list)
    held: dict[tuple[str, str, str], HeldSats] = {}
    for leg in own:
        if leg.settlement_id is not None:
            if leg.settlement_id not in period_ids:
                continue
            legs_of[leg.settlement_id].append(leg)
        elif not in_period(leg.created_at, since, until):
            continue
        _count_leg(report, leg, held)

    for s in period:
        legs = [leg for leg in legs_of.get(s.id, []) if leg.status != "voided"]
        if not legs:  # not planned yet: the whole gross waits in the wallet
            key = ("sale", s.status, f"not distributed yet ({s.status})")
            entry = held.setdefault(
                key, HeldSats(leg_type=key[0], status=key[1], reason=key[2])
            )
            entry.count += 1
            entry.sats += s.gross_sats
        elif sum(leg.amount_sats for leg in legs) != s.gross_sats:
            report.unbalanced_settlements.append(s.id)

    report.sales_by_source = sorted(by_source.values(), key=lambda x: x.source)
    report.settlements_by_status = dict(sorted(by_status.items()))
    report.held = sorted(held.values(), key=lambda h: (-h.sats, h.reason))
    report.held_sats = sum(h.sats for h in report.held)
    report.ok = report.wallet.balanced and not report.unbalanced_settlements
    return report


def _count_leg(
    report: MachineReconciliation,
    leg: DcaPayment,
    held: dict[tuple[str, str, str], HeldSats],
) -> None:
    if leg.status == "voided":
        return
    if leg.status != "completed":
        if leg.leg_type == "autoforward":
            # The sats wait in the LP's wallet, not the machine's.
            report.autoforward_failed += leg.status == "failed"
            return
        if leg.leg_type == "refund" and leg.status == "skipped":
            report.refund_held_sats += leg.amount_sats
        key = (leg.leg_type, leg.status, _held_reason(leg))
        entry = held.setdefault(
            key, HeldSats(leg_type=key[0], status=key[1], reason=key[2])
        )
        entry.count += 1
        entry.sats += leg.amount_sats
        return
    target = {
        "super_fee": report.platform_fee,
        "operator_split": report.operator_split,
        "settlement": report.lp_settlement,
        "autoforward": report.autoforward,
        "refund": report.refund_paid,
    }.get(leg.leg_type)
    if leg.leg_type == "dca":
        target = report.lp_flow if leg.settlement_id else report.lp_fixed
    if target is not None:
        _add(target, leg)


def reconcile_wallet(inputs: MachineInputs) -> WalletReconciliation:
    """LNbits' balance of the machine wallet against the ledger (pure)."""
    wallet_id = inputs.machine.wallet_id
    incoming = {e.payment_hash: e for e in inputs.wallet_payments if e.amount_msat > 0}
    outgoing = {e.payment_hash: e for e in inputs.wallet_payments if e.amount_msat < 0}
    sales = [s for s in inputs.settlements if s.source in LIGHTNING_SOURCES]
    from_wallet = [leg for leg in inputs.legs if leg.source_wallet_id == wallet_id]

    differences = _sale_differences(sales, incoming)
    other_incoming, not_landed = _other_incoming(inputs.settlements, incoming)
    differences += not_landed
    differences += _leg_differences(from_wallet, outgoing, inputs.destination_status)
    differences += _payments_not_legs(from_wallet, outgoing)
    fees = sum(abs(e.fee_msat) for e in inputs.wallet_payments)
    if fees:
        differences.append(
            WalletDifference(
                kind="lnbits_fees",
                balance_effect_msat=-fees,
                sats=fees // 1000,
                explanation="fees LNbits charged on the wallet's payments",
            )
        )

    sales_in = sum(s.gross_sats for s in sales)
    legs_out = sum(leg.amount_sats for leg in from_wallet if leg.status == "completed")
    expected = sales_in * 1000 + other_incoming - legs_out * 1000
    difference = inputs.balance_msat - expected
    unexplained = difference - sum(d.balance_effect_msat for d in differences)
    if unexplained:
        differences.append(
            WalletDifference(
                kind="unexplained",
                balance_effect_msat=unexplained,
                sats=abs(unexplained) // 1000,
                explanation="LNbits' balance differs from its own payments by "
                "this much",
            )
        )
    return WalletReconciliation(
        wallet_id=wallet_id,
        as_of=inputs.as_of,
        lnbits_balance_msat=inputs.balance_msat,
        lnbits_balance_sats=inputs.balance_msat // 1000,
        sales_in_sats=sales_in,
        other_incoming_msat=other_incoming,
        legs_out_sats=legs_out,
        expected_balance_msat=expected,
        expected_balance_sats=expected // 1000,
        difference_msat=difference,
        balanced=difference == 0 and not differences,
        differences=differences,
    )


def _sale_differences(
    sales: Sequence[SettlementRow], incoming: Mapping[str, LnbitsEntry]
) -> list[WalletDifference]:
    differences = []
    for s in sales:
        entry = incoming.get(s.payment_hash)
        if entry is None:
            differences.append(
                WalletDifference(
                    kind="sale_without_payment",
                    balance_effect_msat=-s.gross_sats * 1000,
                    sats=s.gross_sats,
                    explanation="the ledger has this sale, LNbits has no paid "
                    "invoice for it in the machine wallet",
                    settlement_id=s.id,
                    payment_hash=s.payment_hash,
                )
            )
        elif entry.amount_msat != s.gross_sats * 1000:
            differences.append(
                WalletDifference(
                    kind="sale_amount_differs",
                    balance_effect_msat=entry.amount_msat - s.gross_sats * 1000,
                    sats=s.gross_sats,
                    explanation=f"LNbits received {entry.amount_msat} msat for "
                    f"this sale, the ledger says {s.gross_sats} sats",
                    settlement_id=s.id,
                    payment_hash=s.payment_hash,
                )
            )
    return differences


def _other_incoming(
    settlements: Sequence[SettlementRow], incoming: Mapping[str, LnbitsEntry]
) -> tuple[int, list[WalletDifference]]:
    """Incoming payments that are no sale of the ledger (top-ups), in msat;
    and any that looks like a bitSpire sale, flagged as not landed."""
    sale_hashes = {s.payment_hash for s in settlements}
    total = 0
    flagged = []
    for payment_hash, entry in incoming.items():
        if payment_hash in sale_hashes:
            continue
        total += entry.amount_msat
        if entry.extra_source in LIGHTNING_SOURCES:
            flagged.append(
                WalletDifference(
                    kind="sale_not_landed",
                    balance_effect_msat=0,
                    sats=entry.amount_msat // 1000,
                    explanation="a bitSpire sale LNbits received that is not in "
                    "the ledger (counted as other incoming)",
                    payment_hash=payment_hash,
                )
            )
    return total, flagged


def _leg_differences(
    from_wallet: Sequence[DcaPayment],
    outgoing: Mapping[str, LnbitsEntry],
    destination_status: Mapping[str, str],
) -> list[WalletDifference]:
    """Completed legs LNbits did not pay as recorded, or whose destination
    was not credited."""
    differences = []
    for leg in from_wallet:
        if leg.status != "completed":
            continue
        paid = outgoing.get(leg.payment_hash) if leg.payment_hash else None
        destination = destination_status.get(leg.payment_hash or "", SUCCESS)
        if paid is None:
            differences.append(
                _leg_difference(
                    "completed_leg_without_payment",
                    leg.amount_sats * 1000,
                    leg,
                    "the ledger has this leg completed, LNbits has no payment "
                    "of it out of the machine wallet",
                )
            )
        elif -paid.amount_msat != leg.amount_sats * 1000:
            differences.append(
                _leg_difference(
                    "leg_amount_differs",
                    paid.amount_msat + leg.amount_sats * 1000,
                    leg,
                    f"LNbits paid {-paid.amount_msat} msat for this leg, the "
                    f"ledger says {leg.amount_sats} sats",
                )
            )
        elif destination != SUCCESS:
            differences.append(
                _leg_difference(
                    "destination_not_credited",
                    0,
                    leg,
                    "LNbits paid this leg out of the machine wallet but its "
                    f"invoice on the destination wallet is {destination}: the "
                    "destination was not credited",
                )
            )
    return differences


def _payments_not_legs(
    from_wallet: Sequence[DcaPayment], outgoing: Mapping[str, LnbitsEntry]
) -> list[WalletDifference]:
    """Payments out of the wallet that are no completed leg."""
    by_hash = {leg.payment_hash: leg for leg in from_wallet if leg.payment_hash}
    differences = []
    for payment_hash, paid in outgoing.items():
        leg = by_hash.get(payment_hash)
        state = "" if paid.status == SUCCESS else f" ({paid.status} in LNbits)"
        if leg is None:
            differences.append(
                WalletDifference(
                    kind="payment_not_a_leg",
                    balance_effect_msat=paid.amount_msat,
                    sats=-paid.amount_msat // 1000,
                    explanation="a payment out of the machine wallet that is no "
                    f"leg of the ledger{state}",
                    payment_hash=payment_hash,
                )
            )
        elif leg.status != "completed":
            differences.append(
                _leg_difference(
                    "payment_of_unrecorded_leg",
                    paid.amount_msat,
                    leg,
                    f"LNbits paid this leg{state} but the ledger has it "
                    f"{leg.status}: cut off between paying and recording; the "
                    "recovery marks it completed",
                )
            )
    return differences


def _leg_difference(
    kind: str, effect_msat: int, leg: DcaPayment, explanation: str
) -> WalletDifference:
    return WalletDifference(
        kind=kind,
        balance_effect_msat=effect_msat,
        sats=leg.amount_sats,
        explanation=f"{leg.leg_type} leg: {explanation}",
        leg_id=leg.id,
        settlement_id=leg.settlement_id,
        payment_hash=leg.payment_hash,
    )


def totals(reports: Sequence[MachineReconciliation]) -> ReconciliationTotals:
    t = ReconciliationTotals(machines=len(reports))
    for r in reports:
        t.sales_count += r.sales_count
        t.sales_gross_sats += r.sales_gross_sats
        t.platform_fee_sats += r.platform_fee.sats
        t.operator_split_sats += r.operator_split.sats
        t.lp_flow_sats += r.lp_flow.sats
        t.lp_fixed_sats += r.lp_fixed.sats
        t.lp_settlement_sats += r.lp_settlement.sats
        t.autoforward_sats += r.autoforward.sats
        t.refund_paid_sats += r.refund_paid.sats
        t.refund_held_sats += r.refund_held_sats
        t.held_sats += r.held_sats
        t.lnbits_balance_msat += r.wallet.lnbits_balance_msat
        t.expected_balance_msat += r.wallet.expected_balance_msat
        t.differences += len(r.wallet.differences)
        t.unbalanced_settlements += len(r.unbalanced_settlements)
        t.ok = t.ok and r.ok
    return t

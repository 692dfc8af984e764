"""Data models: what the API accepts (``Create*``/``Update*``), what is stored
(one model per row) and what is shown.

Fiat is stored as integer minor units (``*_minor``); rows expose the
``Decimal`` value beside it as a field that is never written back
(``no_database``). Rates and percentages are exact ``Decimal``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from bech32 import bech32_decode, convertbits
from pydantic import BaseModel, Field, root_validator, validator

from .calculations import from_minor_units, is_currency_code, minor_units

DcaMode = Literal["flow", "fixed"]
ClientStatus = Literal["active", "inactive"]
DepositStatus = Literal["pending", "confirmed", "rejected"]
SettlementStatus = Literal[
    "pending", "processing", "processed", "errored", "partial", "refunded"
]
LegType = Literal[
    "super_fee", "operator_split", "dca", "settlement", "autoforward", "refund"
]
LegStatus = Literal["pending", "completed", "failed", "skipped", "voided"]

MAX_FIAT = Decimal("1000000000000")  # 10^12 of any currency is not a deposit
MAX_NOTE_CHARS = 2000


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# --- validators shared by several models -----------------------------------


def check_npub(value: str) -> str:
    value = value.strip().lower()
    hrp, data = bech32_decode(value)
    if hrp != "npub" or data is None:
        raise ValueError("must be a bech32 'npub1...' Nostr public key")
    key = convertbits(data, 5, 8, False)
    if key is None or len(key) != 32:
        raise ValueError("must encode a 32-byte public key")
    return value


def check_currency(value: str) -> str:
    value = value.strip().upper()
    if not is_currency_code(value):
        raise ValueError(f"'{value}' is not an ISO 4217 currency code")
    return value


MAX_FRACTION_DECIMALS = 12


def check_fraction(value: Decimal | None) -> Decimal | None:
    """A percentage written as a fraction: 0.03 is 3 %. More decimals than any
    rule needs would only make the exact maths slow: refused."""
    if value is None:
        return None
    if not value.is_finite() or value < 0 or value > 1:
        raise ValueError("must be a number from 0 to 1 (0.03 means 3 %)")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DECIMALS:
        raise ValueError(f"has more than {MAX_FRACTION_DECIMALS} decimals")
    return value.normalize() if value != 0 else Decimal(0)


def check_fiat_amount(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a positive amount")
    if value >= MAX_FIAT:
        raise ValueError("is too large")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -3:
        raise ValueError("has more decimals than any currency allows")
    return value


def check_currency_precision(amount: Decimal, currency: str) -> None:
    """Refuse an amount finer than the currency's minor unit (1.005 GTQ)."""
    if amount != amount.quantize(Decimal(1).scaleb(-minor_units(currency))):
        raise ValueError(
            f"{currency} amounts have at most {minor_units(currency)} decimals"
        )


class _Row(BaseModel):
    """A stored row: fields marked ``no_database`` are derived, not stored."""

    @staticmethod
    def fiat(minor: int | None, currency: str | None) -> Decimal | None:
        if minor is None or currency is None:
            return None
        return from_minor_units(minor, currency)


# --- platform --------------------------------------------------------------


class SuperConfig(_Row):
    id: str = "singleton"
    super_fee_pct: Decimal = Decimal(0)
    super_fee_wallet_id: str | None = None
    updated_at: datetime = Field(default_factory=utc_now)


class UpdateSuperConfigData(BaseModel):
    super_fee_pct: Decimal
    super_fee_wallet_id: str | None = None

    _pct = validator("super_fee_pct", allow_reuse=True)(check_fraction)


# --- machines --------------------------------------------------------------


class CreateMachineData(BaseModel):
    npub: str
    wallet_id: str = Field(..., min_length=1, max_length=64)
    name: str = Field(..., min_length=1, max_length=100)
    currency: str
    fallback_commission_pct: Decimal | None = None

    _npub = validator("npub", allow_reuse=True)(check_npub)
    _currency = validator("currency", allow_reuse=True)(check_currency)
    _pct = validator("fallback_commission_pct", allow_reuse=True)(check_fraction)


class UpdateMachineData(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    fallback_commission_pct: Decimal | None = None
    clear_fallback: bool = False
    is_active: bool | None = None

    _pct = validator("fallback_commission_pct", allow_reuse=True)(check_fraction)


class Machine(_Row):
    id: str
    operator_user_id: str
    npub: str
    wallet_id: str
    name: str
    currency: str
    fallback_commission_pct: Decimal | None = None
    is_active: bool = True
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


# --- LP positions ("clients") ----------------------------------------------


class CreateClientData(BaseModel):
    machine_id: str
    user_id: str = Field(..., min_length=1, max_length=64)
    wallet_id: str = Field(..., min_length=1, max_length=64)
    username: str | None = Field(None, max_length=100)
    dca_mode: DcaMode = "flow"
    fixed_mode_daily_limit: Decimal | None = None

    @validator("fixed_mode_daily_limit")
    def _limit(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else check_fiat_amount(value)


class UpdateClientData(BaseModel):
    wallet_id: str | None = Field(None, min_length=1, max_length=64)
    username: str | None = Field(None, max_length=100)
    dca_mode: DcaMode | None = None
    fixed_mode_daily_limit: Decimal | None = None
    status: ClientStatus | None = None

    @validator("fixed_mode_daily_limit")
    def _limit(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else check_fiat_amount(value)


class DcaClient(_Row):
    id: str
    machine_id: str
    operator_user_id: str
    user_id: str
    wallet_id: str
    username: str | None = None
    dca_mode: DcaMode = "flow"
    fixed_mode_daily_limit_minor: int | None = None
    status: ClientStatus = "active"
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class ClientBalance(BaseModel):
    client_id: str
    currency: str
    total_deposits: Decimal
    total_charged: Decimal
    remaining_balance: Decimal
    total_sats: int


MAX_EXCHANGE_RATE = Decimal("1000000000000000")  # fiat per BTC, any currency


class SettleClientData(BaseModel):
    """Pay an LP its remaining (or the given) balance in sats."""

    funding_wallet_id: str = Field(..., min_length=1, max_length=64)
    exchange_rate: Decimal  # fiat per 1 BTC
    amount_fiat: Decimal | None = None
    notes: str | None = Field(None, max_length=MAX_NOTE_CHARS)

    @validator("exchange_rate")
    def _rate(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 1:
            raise ValueError("must be the fiat price of 1 BTC, at least 1")
        if value >= MAX_EXCHANGE_RATE:
            raise ValueError("is too large")
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -8:
            raise ValueError("has more than 8 decimals")
        return value

    @validator("amount_fiat")
    def _amount(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else check_fiat_amount(value)


class LpPosition(BaseModel):
    """An LP's own view of one of its positions (any operator's machine)."""

    client_id: str
    machine_id: str
    machine_name: str
    operator_user_id: str
    wallet_id: str
    username: str | None = None
    dca_mode: DcaMode
    status: ClientStatus
    currency: str
    total_deposits: Decimal
    total_charged: Decimal
    remaining_balance: Decimal
    sats_received: int
    # Fiat paid per BTC on average (completed payouts); None before any sats.
    average_price: Decimal | None = None
    created_at: datetime


class LpPayment(BaseModel):
    """A payout as its LP sees it: no operator wallets or internal ids."""

    id: str
    machine_id: str
    client_id: str | None = None
    leg_type: LegType
    status: LegStatus
    amount_sats: int
    fiat_amount: Decimal | None = None
    currency: str | None = None
    price: Decimal | None = None
    destination_wallet_id: str | None = None
    memo: str = ""
    payment_hash: str | None = None
    created_at: datetime
    completed_at: datetime | None = None


# --- deposits --------------------------------------------------------------


class CreateDepositData(BaseModel):
    client_id: str
    amount: Decimal
    currency: str | None = None
    notes: str | None = Field(None, max_length=MAX_NOTE_CHARS)

    _amount = validator("amount", allow_reuse=True)(check_fiat_amount)

    @validator("currency")
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else check_currency(value)


class UpdateDepositData(BaseModel):
    amount: Decimal | None = None
    notes: str | None = Field(None, max_length=MAX_NOTE_CHARS)

    @validator("amount")
    def _amount(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else check_fiat_amount(value)


class UpdateDepositStatusData(BaseModel):
    status: Literal["confirmed", "rejected"]


class DcaDeposit(_Row):
    id: str
    client_id: str
    machine_id: str
    operator_user_id: str
    amount_minor: int
    currency: str
    status: DepositStatus = "pending"
    notes: str | None = None
    creator_user_id: str
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    confirmed_at: datetime | None = None
    amount: Decimal | None = Field(None, no_database=True)

    @root_validator(skip_on_failure=True)
    def _derive(cls, values: dict[str, Any]) -> dict[str, Any]:
        values["amount"] = cls.fiat(values["amount_minor"], values["currency"])
        return values


# --- settlements -----------------------------------------------------------


class DcaSettlement(_Row):
    id: str
    machine_id: str
    operator_user_id: str
    payment_hash: str
    bitspire_event_id: str | None = None
    txid: str | None = None
    gross_sats: int
    net_sats: int
    commission_sats: int
    platform_fee_sats: int
    operator_fee_sats: int
    super_fee_pct: Decimal
    fee_pct: Decimal | None = None
    exchange_rate: Decimal | None = None
    fiat_amount_minor: int | None = None
    currency: str
    used_fallback_split: bool = False
    bills: str | None = None
    cassettes: str | None = None
    status: SettlementStatus = "pending"
    error: str | None = None
    notes: str | None = None
    distribution_round: int = 0
    dispensed_fraction: Decimal | None = None
    claimed_until: datetime | None = None
    paid_at: datetime | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    processed_at: datetime | None = None
    fiat_amount: Decimal | None = Field(None, no_database=True)

    @root_validator(skip_on_failure=True)
    def _derive(cls, values: dict[str, Any]) -> dict[str, Any]:
        values["fiat_amount"] = cls.fiat(
            values["fiat_amount_minor"], values["currency"]
        )
        return values


class PartialDispenseData(BaseModel):
    dispensed_fraction: Decimal | None = None
    dispensed_sats: int | None = Field(None, ge=0)
    notes: str = Field("", max_length=MAX_NOTE_CHARS)

    _fraction = validator("dispensed_fraction", allow_reuse=True)(check_fraction)

    @root_validator(skip_on_failure=True)
    def _exactly_one(cls, values: dict[str, Any]) -> dict[str, Any]:
        given = [
            k
            for k in ("dispensed_fraction", "dispensed_sats")
            if values.get(k) is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of dispensed_fraction, dispensed_sats")
        return values


class AppendNoteData(BaseModel):
    note: str = Field(..., max_length=MAX_NOTE_CHARS)

    @validator("note")
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


# --- commission split rules ------------------------------------------------


class CommissionSplitLeg(BaseModel):
    wallet_id: str = Field(..., min_length=1, max_length=64)
    pct: Decimal
    label: str = Field("", max_length=100)

    @validator("pct")
    def _pct(cls, value: Decimal) -> Decimal:
        checked = check_fraction(value)
        assert checked is not None  # noqa: S101 - value is required
        if checked == 0:
            raise ValueError("must be more than 0")
        return checked


class SetCommissionSplitsData(BaseModel):
    machine_id: str | None = None
    legs: list[CommissionSplitLeg] = Field(..., min_items=1, max_items=20)

    @validator("legs")
    def _sum_to_one(cls, legs: list[CommissionSplitLeg]) -> list[CommissionSplitLeg]:
        total = sum((leg.pct for leg in legs), Decimal(0))
        if total != 1:
            raise ValueError(f"pct must sum to exactly 1, not {total}")
        wallets = [leg.wallet_id for leg in legs]
        if len(set(wallets)) != len(wallets):
            raise ValueError("each wallet may appear only once")
        return legs


class CommissionSplit(_Row):
    id: str
    operator_user_id: str
    machine_id: str | None = None
    position: int
    wallet_id: str
    pct: Decimal
    label: str = ""
    created_at: datetime = Field(default_factory=utc_now)


# --- payment legs ----------------------------------------------------------


class DcaPayment(_Row):
    id: str
    idempotency_key: str
    settlement_id: str | None = None
    distribution_round: int = 0
    machine_id: str
    operator_user_id: str
    client_id: str | None = None
    leg_type: LegType
    status: LegStatus = "pending"
    amount_sats: int
    fiat_amount_minor: int | None = None
    currency: str | None = None
    price: Decimal | None = None
    source_wallet_id: str
    destination_wallet_id: str | None = None
    label: str = ""
    memo: str = ""
    reason: str | None = None
    error: str | None = None
    payment_request: str | None = None
    payment_hash: str | None = None
    attempts: int = 0
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    completed_at: datetime | None = None
    fiat_amount: Decimal | None = Field(None, no_database=True)

    @root_validator(skip_on_failure=True)
    def _derive(cls, values: dict[str, Any]) -> dict[str, Any]:
        values["fiat_amount"] = cls.fiat(
            values["fiat_amount_minor"], values["currency"]
        )
        return values


class SettlementWithLegs(BaseModel):
    settlement: DcaSettlement
    legs: list[DcaPayment]


# --- telemetry -------------------------------------------------------------


class TelemetrySnapshot(_Row):
    id: str
    machine_id: str
    kind: str
    received_at: datetime = Field(default_factory=utc_now)
    cash_level_minor: int | None = None
    currency: str | None = None
    firmware_version: str | None = None
    payload: str = "{}"


# --- reconciliation (issue 13) ---------------------------------------------


class SourceSales(BaseModel):
    source: str
    count: int = 0
    gross_sats: int = 0


class LegTotal(BaseModel):
    """Completed legs of one kind: how many, their sats and fiat charged."""

    count: int = 0
    sats: int = 0
    fiat: Decimal = Decimal(0)


class HeldSats(BaseModel):
    """Sats that stay in the machine wallet, grouped by why."""

    leg_type: str
    status: str
    reason: str
    count: int = 0
    sats: int = 0


class WalletDifference(BaseModel):
    """One thing LNbits and the ledger disagree on. ``balance_effect_msat`` is
    what it does to (LNbits balance - ledger's expected balance); the effects
    of all differences add up to the wallet's difference. A difference with
    no effect on the balance (a destination wallet not credited) has 0."""

    kind: str
    balance_effect_msat: int
    sats: int
    explanation: str
    leg_id: str | None = None
    settlement_id: str | None = None
    payment_hash: str | None = None


class WalletReconciliation(BaseModel):
    """The machine wallet now (not only the period): LNbits' balance against
    sales in + other incoming (top-ups) - completed legs paid from it."""

    wallet_id: str
    lnbits_balance_msat: int
    lnbits_balance_sats: int
    sales_in_sats: int
    other_incoming_msat: int
    legs_out_sats: int
    expected_balance_msat: int
    expected_balance_sats: int
    difference_msat: int
    balanced: bool
    differences: list[WalletDifference] = []


class MachineReconciliation(BaseModel):
    machine_id: str
    machine_name: str
    currency: str
    wallet_id: str
    sales_count: int = 0
    sales_gross_sats: int = 0
    sales_net_sats: int = 0
    sales_commission_sats: int = 0
    sales_fiat: Decimal = Decimal(0)
    sales_by_source: list[SourceSales] = []
    settlements_by_status: dict[str, int] = {}
    platform_fee: LegTotal = Field(default_factory=LegTotal)
    operator_split: LegTotal = Field(default_factory=LegTotal)
    lp_flow: LegTotal = Field(default_factory=LegTotal)
    lp_fixed: LegTotal = Field(default_factory=LegTotal)
    lp_settlement: LegTotal = Field(default_factory=LegTotal)
    autoforward: LegTotal = Field(default_factory=LegTotal)
    autoforward_failed: int = 0
    refund_paid: LegTotal = Field(default_factory=LegTotal)
    refund_held_sats: int = 0
    held: list[HeldSats] = []
    held_sats: int = 0
    # Settlements whose non-voided legs do not add up to the gross.
    unbalanced_settlements: list[str] = []
    wallet: WalletReconciliation
    ok: bool


class ReconciliationTotals(BaseModel):
    machines: int = 0
    sales_count: int = 0
    sales_gross_sats: int = 0
    platform_fee_sats: int = 0
    operator_split_sats: int = 0
    lp_flow_sats: int = 0
    lp_fixed_sats: int = 0
    lp_settlement_sats: int = 0
    autoforward_sats: int = 0
    refund_paid_sats: int = 0
    refund_held_sats: int = 0
    held_sats: int = 0
    lnbits_balance_msat: int = 0
    expected_balance_msat: int = 0
    differences: int = 0
    unbalanced_settlements: int = 0
    ok: bool = True


class ReconciliationReport(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    generated_at: datetime
    machines: list[MachineReconciliation]
    totals: ReconciliationTotals

"""Data models: what the API accepts (``Create*``/``Update*``), what is stored
(one model per row) and what is shown.

Fiat is stored as integer minor units (``*_minor``); rows expose the
``Decimal`` value beside it as a field that is never written back
(``no_database``). Rates and percentages are exact ``Decimal``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from bech32 import bech32_decode, convertbits
from pydantic import BaseModel, Field, StrictBool, root_validator, validator

from .calculations import from_minor_units, is_currency_code, minor_units

DcaMode = Literal["flow", "fixed"]
ClientStatus = Literal["active", "inactive"]
DepositStatus = Literal["pending", "confirmed", "rejected"]
SettlementStatus = Literal[
    "pending",
    "processing",
    "processed",
    "errored",
    "partial",
    "refunded",
    "awaiting_funds",
]
SaleSource = Literal["bitspire", "lamassu", "manual"]
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
    npub: str | None = None  # required for bitSpire; Lamassu/manual have none
    wallet_id: str = Field(..., min_length=1, max_length=64)
    name: str = Field(..., min_length=1, max_length=100)
    currency: str
    fallback_commission_pct: Decimal | None = None
    source: SaleSource = "bitspire"

    @validator("npub")
    def _npub(cls, value: str | None) -> str | None:
        return None if value is None else check_npub(value)

    @root_validator(skip_on_failure=True)
    def _npub_for_bitspire(cls, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("source") == "bitspire" and not values.get("npub"):
            raise ValueError("npub: a bitSpire machine needs its npub")
        if values.get("source") != "bitspire" and values.get("fallback_commission_pct"):
            raise ValueError(
                "fallback_commission_pct: only a bitSpire machine has a fallback rate"
            )
        return values

    _currency = validator("currency", allow_reuse=True)(check_currency)
    _pct = validator("fallback_commission_pct", allow_reuse=True)(check_fraction)


class UpdateMachineData(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    fallback_commission_pct: Decimal | None = None
    clear_fallback: bool = False
    is_active: bool | None = None
    # Change where sales come from (a bitSpire machine needs its npub); the
    # settlements stay, the new source starts from the change.
    source: SaleSource | None = None
    npub: str | None = None

    _pct = validator("fallback_commission_pct", allow_reuse=True)(check_fraction)

    @validator("npub")
    def _npub(cls, value: str | None) -> str | None:
        return None if value is None else check_npub(value)


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
    source: SaleSource = "bitspire"
    # When the current source began: a source changed later starts there.
    source_since: datetime | None = Field(default_factory=utc_now)


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
    # fiat per 1 BTC; None: LNbits' own rate for the machine's currency
    exchange_rate: Decimal | None = None
    amount_fiat: Decimal | None = None
    notes: str | None = Field(None, max_length=MAX_NOTE_CHARS)

    @validator("exchange_rate")
    def _rate(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
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
    claimed_by: str | None = None  # the process (boot id) holding the claim
    paid_at: datetime | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    processed_at: datetime | None = None
    source: SaleSource = "bitspire"
    source_txid: str | None = None
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
    # A fixed-mode buy's slot: "<local date>T<HH:MM>@<time zone>" (m005).
    slot: str | None = None
    repaired_at: datetime | None = None  # a half-done transfer finished forward
    repair_note: str | None = None
    invoice_replacements: int = 0  # invoices LNbits failed, replaced by a fresh one
    fiat_amount: Decimal | None = Field(None, no_database=True)

    @root_validator(skip_on_failure=True)
    def _derive(cls, values: dict[str, Any]) -> dict[str, Any]:
        values["fiat_amount"] = cls.fiat(
            values["fiat_amount_minor"], values["currency"]
        )
        return values


class LegInvoice(_Row):
    """An invoice a leg had before LNbits failed it (payout recovery)."""

    id: str
    leg_id: str
    payment_hash: str
    payment_request: str
    status: str  # 'replaced'
    reason: str | None = None
    created_at: datetime = Field(default_factory=utc_now)


class SettlementWithLegs(BaseModel):
    settlement: DcaSettlement
    legs: list[DcaPayment]
    wait_reason: str | None = None  # why it is not finished yet (payout recovery)
    replaced_invoices: list[LegInvoice] = []  # invoices legs gave up, oldest first


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


# --- sale sources: Lamassu settings, manual sales (issue 10) ----------------

BITCOIN_GENESIS = datetime(2009, 1, 3, tzinfo=timezone.utc)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class LamassuSettingsData(BaseModel):
    """``PUT /machines/{id}/lamassu``. Leave ``password`` out (or null) to
    keep the stored one; an empty string clears it. With ``ssh_host``, the
    database is reached through SSH and ``host``/``port`` are its address as
    the SSH server sees it (127.0.0.1:5432 by default)."""

    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    port: int = Field(5432, ge=1, le=65535)
    database: str = Field(..., min_length=1, max_length=63)
    user: str = Field(..., min_length=1, max_length=63)
    password: str | None = Field(None, max_length=1000)
    sslmode: SslMode = "prefer"
    device_id: str = Field(..., min_length=1, max_length=200)
    poll_seconds: int = Field(60, ge=10, le=86400)
    ssh_host: str | None = Field(None, max_length=255)
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str | None = Field(None, max_length=32)

    @validator("host", "database", "user", "device_id")
    def _trimmed(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @validator("host")
    def _host(cls, value: str) -> str:
        return check_host(value)

    @validator("ssh_host")
    def _ssh_host(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return check_host(value.strip())

    @validator("ssh_user")
    def _ssh_user(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]*", value, re.IGNORECASE):
            raise ValueError(
                "must be a user name on the SSH server (letters, digits, _.-)"
            )
        return value

    @root_validator(skip_on_failure=True)
    def _ssh_user_with_host(cls, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("ssh_host") and not values.get("ssh_user"):
            raise ValueError("ssh_user: SSH needs the user to log in as")
        return values


def check_host(value: str) -> str:
    """A host name or IP address (never an option: no leading '-')."""
    if (
        not value
        or value.startswith("-")
        or any(ch.isspace() or ch in "/@?#'\"," for ch in value)
    ):
        raise ValueError("must be a host name or IP address")
    return value.lower()


class LamassuSource(_Row):
    """A machine's Lamassu connection and poll status (the stored row)."""

    machine_id: str
    operator_user_id: str
    host: str
    port: int = 5432
    database_name: str
    db_user: str
    password: str = ""
    sslmode: SslMode = "prefer"
    device_id: str
    poll_seconds: int = 60
    cursor_created: datetime | None = None
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_landed: int = 0
    landed_total: int = 0
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    # SSH (issue 18): no ssh_host means a direct connection. The private key
    # and the password are stored sealed (secret_box), never answered.
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_user: str | None = None
    ssh_private_key: str | None = None
    ssh_public_key: str | None = None
    ssh_host_key: str | None = None  # the pinned key: "ssh-ed25519 AAAA..."
    ssh_host_key_fingerprint: str | None = None  # "SHA256:..."
    # Cash-outs created before it land only through a confirmed import.
    start_at: datetime | None = None


class LamassuIgnored(_Row):
    """A cash-out the operator settled outside this extension: never lands."""

    id: str
    machine_id: str
    operator_user_id: str
    txid: str
    reason: str
    author_user_id: str
    created_at: datetime = Field(default_factory=utc_now)


class LamassuSettings(BaseModel):
    """What routes answer: never the password nor the SSH private key, only
    whether a password is set; the public key, the line for the server's
    ``authorized_keys`` and the pinned host key's fingerprint."""

    machine_id: str
    host: str
    port: int
    database: str
    user: str
    password_set: bool
    sslmode: SslMode
    device_id: str
    poll_seconds: int
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_landed: int = 0
    landed_total: int = 0
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_user: str | None = None
    ssh_public_key: str | None = None
    ssh_authorized_keys_line: str | None = None
    ssh_host_key_fingerprint: str | None = None
    ssh_host_key_pinned: bool = False
    start_at: datetime | None = None

    @classmethod
    def of(cls, row: LamassuSource) -> LamassuSettings:
        from .ssh_tunnel import authorized_keys_line

        line = (
            authorized_keys_line(row.ssh_public_key, row.host, row.port)
            if row.ssh_public_key
            else None
        )
        return cls(
            ssh_host=row.ssh_host,
            ssh_port=row.ssh_port if row.ssh_host else None,
            ssh_user=row.ssh_user,
            ssh_public_key=row.ssh_public_key,
            ssh_authorized_keys_line=line,
            ssh_host_key_fingerprint=row.ssh_host_key_fingerprint,
            ssh_host_key_pinned=bool(row.ssh_host_key),
            start_at=row.start_at or row.created_at,
            machine_id=row.machine_id,
            host=row.host,
            port=row.port,
            database=row.database_name,
            user=row.db_user,
            password_set=bool(row.password),
            sslmode=row.sslmode,
            device_id=row.device_id,
            poll_seconds=row.poll_seconds,
            last_poll_at=row.last_poll_at,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            last_landed=row.last_landed,
            landed_total=row.landed_total,
        )


class LamassuTestResult(BaseModel):
    ok: bool
    error: str | None = None
    # Which step failed: ssh_missing, connect, host_key_unknown,
    # host_key_changed, key_refused, tunnel, secret, database, not_read_only,
    # no_table, device_unknown (None when ok).
    step: str | None = None
    # What the SSH server shows now (to pin it); None without SSH.
    host_key_fingerprint: str | None = None


class PinHostKeyData(BaseModel):
    fingerprint: str = Field(..., min_length=8, max_length=100)

    @validator("fingerprint")
    def _fingerprint(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", value):
            raise ValueError("must be a SHA256:... fingerprint as the test showed")
        return value


class IgnoreCashOutData(BaseModel):
    reason: str = Field(..., min_length=1, max_length=500)

    @validator("reason")
    def _reason(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must say why (e.g. paid by hand on 2026-01-05)")
        return value


class LamassuImportData(BaseModel):
    """``POST /machines/{id}/lamassu/import``: without ``confirm`` a preview."""

    since: datetime
    until: datetime | None = None
    # Lands money: only a JSON true confirms ("yes", 1 are refused).
    confirm: StrictBool = False

    @validator("since", "until")
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        if value < BITCOIN_GENESIS:
            raise ValueError("is before bitcoin existed")
        if value > utc_now() + timedelta(minutes=10):
            raise ValueError("is in the future")
        return value

    @root_validator(skip_on_failure=True)
    def _order(cls, values: dict[str, Any]) -> dict[str, Any]:
        until = values.get("until")
        if until is not None and until <= values["since"]:
            raise ValueError("until: must be after since")
        return values


class LamassuImportDay(BaseModel):
    day: str
    count: int
    gross_sats: int
    fiat: str  # exact decimal


class LamassuImportResult(BaseModel):
    """A preview (``confirm`` false: nothing landed) or what landed."""

    since: datetime
    until: datetime
    confirmed: bool
    count: int | None = None
    gross_sats: int | None = None
    fiat: str | None = None  # exact decimal, the machine's currency
    days: list[LamassuImportDay] | None = None
    already_landed: int | None = None
    ignored: int | None = None
    landed: int | None = None


class LamassuCashOut(BaseModel):
    """A cash-out (or cash-in) the source holds for the machine's device."""

    id: str
    kind: Literal["cash_out", "cash_in"] = "cash_out"
    created: datetime
    fiat: str | None = None  # exact decimal
    fiat_code: str | None = None
    crypto_atoms: int
    crypto_code: str | None = None
    # landed, not_a_sale, before_start, ignored, or to_land (a sale the next
    # poll lands)
    outcome: str
    reason: str | None = None
    settlement_id: str | None = None
    ignored_by: str | None = None
    ignored_at: datetime | None = None


class LamassuPollResult(BaseModel):
    landed: int
    error: str | None = None


class ManualSaleData(BaseModel):
    """``POST /settlements/manual``: a sale settled outside Lightning."""

    machine_id: str = Field(..., min_length=1, max_length=64)
    reference: str = Field(..., min_length=1, max_length=100)
    fiat_amount: Decimal
    exchange_rate: Decimal  # fiat per 1 BTC
    commission_sats: int | None = Field(None, ge=0, le=21_000_000 * 100_000_000)
    fee_pct: Decimal | None = None
    occurred_at: datetime
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)

    _fiat = validator("fiat_amount", allow_reuse=True)(check_fiat_amount)
    _pct = validator("fee_pct", allow_reuse=True)(check_fraction)

    @validator("reference")
    def _reference(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

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

    @validator("occurred_at")
    def _when(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        if value > utc_now() + timedelta(minutes=10):
            raise ValueError("is in the future")
        if value < BITCOIN_GENESIS:
            raise ValueError("is before bitcoin existed")
        return value

    @root_validator(skip_on_failure=True)
    def _one_commission(cls, values: dict[str, Any]) -> dict[str, Any]:
        given = [k for k in ("commission_sats", "fee_pct") if values.get(k) is not None]
        if len(given) != 1:
            raise ValueError(
                "commission_sats, fee_pct: give exactly one of commission_sats, fee_pct"
            )
        return values


class MachineFunding(BaseModel):
    """What a machine owes (legs still to pay from its wallet) and holds."""

    machine_id: str
    source: SaleSource
    owes_sats: int
    holds_sats: int
    awaiting_funds: int
    # Lamassu machines: the source's status (None otherwise / never polled).
    lamassu_configured: bool = False
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None


# --- fixed mode and notifications (issue 11) --------------------------------

DEFAULT_MAX_DAILY_LIMIT = Decimal(2000)
MAX_SLOTS_PER_DAY = 48


def check_slot_time(value: str) -> str:
    """ "HH:MM", 24-hour clock."""
    if (
        not isinstance(value, str)
        or len(value) != 5
        or value[2] != ":"
        or not (value[:2].isdigit() and value[3:].isdigit())
        or int(value[:2]) > 23
        or int(value[3:]) > 59
    ):
        raise ValueError(f"'{value}' is not a time of day HH:MM (00:00 to 23:59)")
    return value


def check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = value.strip()
    if not value or len(value) > 64 or value.startswith("/") or ".." in value:
        raise ValueError(f"'{value}' is not an IANA time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"'{value}' is not an IANA time zone name") from exc
    return value


class SetFixedScheduleData(BaseModel):
    machine_id: str | None = None
    times: list[str] = Field(..., min_items=1, max_items=MAX_SLOTS_PER_DAY)
    timezone: str
    max_daily_limit: Decimal = DEFAULT_MAX_DAILY_LIMIT
    funding_wallet_id: str | None = Field(None, min_length=1, max_length=64)

    @validator("times")
    def _times(cls, values: list[str]) -> list[str]:
        checked = [check_slot_time(v) for v in values]
        if len(set(checked)) != len(checked):
            raise ValueError("each time may appear only once")
        return sorted(checked)

    _tz = validator("timezone", allow_reuse=True)(check_timezone)
    _max = validator("max_daily_limit", allow_reuse=True)(check_fiat_amount)


class FixedSchedule(_Row):
    id: str
    operator_user_id: str
    machine_id: str | None = None
    times: list[str] = []
    timezone: str
    max_daily_limit: Decimal = DEFAULT_MAX_DAILY_LIMIT
    funding_wallet_id: str | None = None
    times_since: datetime = Field(default_factory=utc_now)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class RunSlotData(BaseModel):
    slot: str | None = None  # "HH:MM" of today's schedule; None: the current one

    @validator("slot")
    def _slot(cls, value: str | None) -> str | None:
        return None if value is None else check_slot_time(value)


class FixedSlotRun(_Row):
    id: str
    machine_id: str
    operator_user_id: str
    slot: str
    local_date: str
    slot_time: str
    status: Literal["done", "incomplete"] = "incomplete"
    reason: str | None = None
    price: Decimal | None = None
    lps_bought: int = 0
    lps_skipped: int = 0
    fiat_minor: int = 0
    sats: int = 0
    runs: int = 0
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class SlotRunResult(BaseModel):
    run: FixedSlotRun
    legs: list[DcaPayment]


class SlotPreview(BaseModel):
    """What the next slot of a machine would buy, at LNbits' current rate."""

    machine_id: str
    slot: str | None = None  # None: no schedule
    at: datetime | None = None
    timezone: str | None = None
    lp_count: int = 0
    currency: str
    fiat: Decimal = Decimal(0)
    price: Decimal | None = None
    estimated_sats: int | None = None
    source_wallet_id: str | None = None
    wallet_sats: int | None = None
    short_by_sats: int = 0
    reason: str | None = None


class NotificationSettings(_Row):
    operator_user_id: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    lnbits_channels: bool = True
    stuck_after_minutes: int = 30
    # The offline threshold is stored once, in
    # telemetry_settings.offline_after_seconds (what health reads); the
    # notification_settings.offline_after_minutes column is left unused, as
    # dropping it would take a migration.
    updated_at: datetime = Field(default_factory=utc_now)


class NotificationSettingsOut(BaseModel):
    """What an operator sees: the secret only in the answer that made it."""

    webhook_url: str | None = None
    has_webhook_secret: bool = False
    webhook_secret: str | None = None
    lnbits_channels: bool = True
    stuck_after_minutes: int = 30
    offline_after_minutes: int = 15


class SetNotificationSettingsData(BaseModel):
    webhook_url: str | None = Field(None, max_length=500)
    rotate_secret: bool = False
    lnbits_channels: bool = True
    stuck_after_minutes: int = Field(30, ge=1, le=7 * 24 * 60)
    # stored as telemetry_settings.offline_after_seconds (shared with PUT
    # /relays); left out or null: unchanged
    offline_after_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)


class NotificationLogEntry(_Row):
    id: str
    operator_user_id: str
    problem_key: str
    kind: Literal["started", "cleared"]
    title: str
    body: str = ""
    channels: str = ""
    webhook_status: str | None = None
    webhook_attempts: int = 0
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class OpenProblem(_Row):
    id: str
    operator_user_id: str
    problem_key: str
    title: str
    body: str = ""
    opened_at: datetime = Field(default_factory=utc_now)


# --- telemetry, health and overview (issue 12) ------------------------------


class MachineStatus(_Row):
    """The merged latest state of one machine's telemetry."""

    machine_id: str
    operator_user_id: str
    last_seen_at: datetime
    last_event_at: datetime
    beacon_at: datetime | None = None
    fields: str = "{}"
    cash_level_minor: int | None = None
    currency: str | None = None
    firmware_version: str | None = None
    fleet_at: datetime | None = None
    fleet_snapshot: str | None = None
    updated_at: datetime = Field(default_factory=utc_now)


class TelemetrySettings(_Row):
    operator_user_id: str
    relays: list[str] = Field(default_factory=list)
    offline_after_seconds: int = 600
    low_cassette_bills: int = 20
    updated_at: datetime = Field(default_factory=utc_now)


MAX_RELAYS = 10


class SetRelaysData(BaseModel):
    relays: list[str] = Field(..., max_items=MAX_RELAYS)
    offline_after_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    low_cassette_bills: int | None = Field(None, ge=0, le=100_000)

    @validator("relays", each_item=True)
    def _relay(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("ws://", "wss://")) or len(value) > 300:
            raise ValueError("must be a ws:// or wss:// URL of at most 300 chars")
        if any(c.isspace() for c in value) or len(value) < 8:
            raise ValueError("is not a URL")
        return value


class MachineWithPresence(Machine):
    """A machine as ``GET /machines`` lists it: with when it last reported
    and whether it is online (reported within the operator's threshold)."""

    last_seen_at: datetime | None = None
    online: bool = False


# --- LP self-service: invites, preferences, autoforward, dashboard (issue 14) --

MIN_AUTOFORWARD_THRESHOLD_SATS = 1000
MAX_SATS = 21_000_000 * 100_000_000
SeriesRange = Literal["7d", "30d", "90d", "1y", "all"]


class CreateInviteData(BaseModel):
    machine_id: str = Field(..., min_length=1, max_length=64)
    username: str | None = Field(None, min_length=1, max_length=100)


class Invite(_Row):
    id: str
    code: str
    machine_id: str
    operator_user_id: str
    username: str | None = None
    user_id: str | None = None
    expires_at: datetime
    accepted_at: datetime | None = None
    accepted_by: str | None = None
    client_id: str | None = None
    created_at: datetime = Field(default_factory=utc_now)


class InviteOut(BaseModel):
    """What the operator gets back: the one-time code and the link to send."""

    id: str
    code: str
    url: str
    machine_id: str
    username: str | None = None
    expires_at: datetime
    created_at: datetime


class InvitePreview(BaseModel):
    """What the invited LP sees before accepting."""

    code: str
    machine_id: str
    machine_name: str
    currency: str
    operator_user_id: str
    operator_username: str | None = None
    username: str | None = None
    expires_at: datetime


class AcceptInviteData(BaseModel):
    wallet_id: str = Field(..., min_length=1, max_length=64)


_ADDRESS_HELP = (
    "must be a Lightning address (name@domain), an LNURL (lnurl1...) "
    "or an lnurlp:// link"
)


def check_lnurl_pay_address(value: str) -> str:
    """A Lightning address (``name@domain``), a bech32 LNURL (``lnurl1...``)
    or a LUD-17 ``lnurlp://`` link. Syntax only: it is resolved when paid."""
    from lnurl import LnAddress, Lnurl

    value = value.strip()
    if value.lower().startswith("lightning:"):
        value = value[len("lightning:") :]
    lowered = value.lower()
    try:
        if "@" in value and "://" not in value:
            LnAddress(value)
            return value
        if lowered.startswith("lnurl1"):
            if Lnurl(value).is_login:
                raise ValueError("an LNURL-auth link")
            return lowered
        if lowered.startswith("lnurlp://"):
            Lnurl(value)
            return value
    except Exception as exc:  # the lnurl library raises many kinds
        raise ValueError(_ADDRESS_HELP) from exc
    raise ValueError(_ADDRESS_HELP)


class UpdateLpPositionData(BaseModel):
    """The LP's own preferences for one position; omitted fields keep their
    value. ``autoforward_address: null`` with ``autoforward_enabled: false``
    clears it."""

    wallet_id: str | None = Field(None, min_length=1, max_length=64)
    dca_mode: DcaMode | None = None
    fixed_mode_daily_limit: Decimal | None = None
    autoforward_enabled: bool | None = None
    autoforward_address: str | None = Field(None, max_length=2000)
    autoforward_threshold_sats: int | None = None

    @validator("fixed_mode_daily_limit")
    def _limit(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else check_fiat_amount(value)

    @validator("autoforward_address")
    def _address(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else check_lnurl_pay_address(value)

    @validator("autoforward_threshold_sats")
    def _threshold(cls, value: int | None) -> int | None:
        if value is None:
            return None
        if value < MIN_AUTOFORWARD_THRESHOLD_SATS:
            raise ValueError(f"must be at least {MIN_AUTOFORWARD_THRESHOLD_SATS} sats")
        if value > MAX_SATS:
            raise ValueError("is more sats than will ever exist")
        return value


class LpPreferences(_Row):
    """A position's preferences once its LP has taken them over (one row per
    position; no row: the operator still manages the position)."""

    client_id: str
    user_id: str
    autoforward_enabled: bool = False
    autoforward_address: str | None = None
    autoforward_threshold_sats: int | None = None
    autoforward_failures: int = 0
    autoforward_next_try_at: datetime | None = None
    autoforward_last_error: str | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class LpPositionPreferences(BaseModel):
    """A position with its preferences, as the LP (and its operator) sees it."""

    client_id: str
    machine_id: str
    wallet_id: str
    dca_mode: DcaMode
    fixed_mode_daily_limit: Decimal | None = None
    max_fixed_mode_daily_limit: Decimal
    currency: str
    status: ClientStatus
    lp_managed: bool
    autoforward_enabled: bool = False
    autoforward_address: str | None = None
    autoforward_threshold_sats: int | None = None
    autoforward_failures: int = 0
    autoforward_next_try_at: datetime | None = None
    autoforward_last_error: str | None = None
    updated_at: datetime


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
    """The machine wallet as of ``as_of`` (the period's end, or now; its whole
    life up to then, not only the period): LNbits' balance then against sales
    in + other incoming (top-ups) - completed legs paid from it."""

    wallet_id: str
    as_of: datetime | None = None
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
    as_of: datetime | None = None  # the wallet blocks' moment: until, or now
    generated_at: datetime
    machines: list[MachineReconciliation]
    totals: ReconciliationTotals

"""Machine telemetry: signed Nostr events from the machines themselves.

A machine reports with events signed by its own key: kind 30078 beacons
(sparse JSON objects: whatever fields the firmware knows today) and kind 30079
fleet snapshots (kept as raw JSON). They arrive over HTTP
(``POST /api/v1/dca/telemetry``) or from the relays operators list; both go
through ``handle_event``, which checks, in order:

1. the shape (id, pubkey, sig hex of the right length, kind 30078/30079,
   content at most ``MAX_CONTENT_BYTES``, tags a list of string lists);
2. ``created_at`` inside the window: at most ``MAX_AGE_SECONDS`` old and
   ``MAX_FUTURE_SECONDS`` ahead;
3. the id is the sha256 of the NIP-01 serialisation, and the BIP-340
   signature of the id verifies under ``pubkey`` (coincurve, shipped with
   LNbits);
4. the author is a registered, active machine;
5. the same event id is stored once (a replay answers ``duplicate``);
6. at most ``RATE_LIMIT_EVENTS`` new events per machine in
   ``RATE_LIMIT_WINDOW_SECONDS``.
Anything refused raises ``TelemetryRefusedError`` (a 4xx with the reason) and
stores nothing.

Merging: the latest state per machine (``machine_status.fields``) keeps, for
every field, the value of the newest event that carried it (not null). A
sparse beacon never clears a known field and an older beacon arriving late
never overwrites a newer value (it may still fill a field nothing newer
carried).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from bech32 import bech32_decode, bech32_encode, convertbits
from coincurve import PrivateKey, PublicKeyXOnly
from loguru import logger

from . import crud_telemetry
from .calculations import is_currency_code, minor_units

BEACON_KIND = 30078
FLEET_KIND = 30079
KINDS = (BEACON_KIND, FLEET_KIND)
MAX_CONTENT_BYTES = 16 * 1024
MAX_TAGS = 50
MAX_AGE_SECONDS = 3600
MAX_FUTURE_SECONDS = 300
RATE_LIMIT_EVENTS = 30
RATE_LIMIT_WINDOW_SECONDS = 60.0
MAX_FIELDS = 100


class TelemetryRefusedError(Exception):
    """An event that is not stored, with the HTTP status and the reason."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.status = status
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Accepted:
    machine_id: str
    event_id: str
    kind: int
    duplicate: bool


# --- keys ------------------------------------------------------------------


def npub_to_hex(npub: str) -> str | None:
    hrp, data = bech32_decode(npub)
    if hrp != "npub" or data is None:
        return None
    key = convertbits(data, 5, 8, False)
    if key is None or len(key) != 32:
        return None
    return bytes(key).hex()


def hex_to_npub(pubkey_hex: str) -> str:
    data = convertbits(bytes.fromhex(pubkey_hex), 8, 5)
    return bech32_encode("npub", data or [])


# --- NIP-01 ------------------------------------------------------------------


def event_id(event: dict[str, Any]) -> str:
    serialized = json.dumps(
        [
            0,
            event["pubkey"],
            event["created_at"],
            event["kind"],
            event["tags"],
            event["content"],
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(serialized.encode()).hexdigest()


def _is_hex(value: Any, length: int) -> bool:
    if not isinstance(value, str) or len(value) != length:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def check_shape(event: Any) -> None:
    """The event's fields have the NIP-01 types; refuses with the field."""
    if not isinstance(event, dict):
        raise TelemetryRefusedError(422, "event", "must be a JSON object")
    for name, length in (("id", 64), ("pubkey", 64), ("sig", 128)):
        if not _is_hex(event.get(name), length):
            raise TelemetryRefusedError(
                422, name, f"must be {length} lowercase hex digits"
            )
    created_at = event.get("created_at")
    if isinstance(created_at, bool) or not isinstance(created_at, int):
        raise TelemetryRefusedError(422, "created_at", "must be a Unix time in seconds")
    kind = event.get("kind")
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise TelemetryRefusedError(422, "kind", "must be an integer")
    if kind not in KINDS:
        raise TelemetryRefusedError(
            422, "kind", f"only kinds {BEACON_KIND} and {FLEET_KIND} are telemetry"
        )
    _check_content_and_tags(event)


def _check_content_and_tags(event: dict[str, Any]) -> None:
    content = event.get("content")
    if not isinstance(content, str):
        raise TelemetryRefusedError(422, "content", "must be a string")
    if len(content.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES:
        raise TelemetryRefusedError(
            413, "content", f"is larger than {MAX_CONTENT_BYTES} bytes"
        )
    if "\x00" in content:
        raise TelemetryRefusedError(422, "content", "must not contain NUL characters")
    tags = event.get("tags")
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or not all(
            isinstance(tag, list) and all(isinstance(x, str) for x in tag)
            for tag in tags
        )
    ):
        raise TelemetryRefusedError(
            422, "tags", f"must be a list of at most {MAX_TAGS} lists of strings"
        )


def check_time(created_at: int, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if created_at < now - MAX_AGE_SECONDS:
        raise TelemetryRefusedError(
            422, "created_at", f"is stale (older than {MAX_AGE_SECONDS} s)"
        )
    if created_at > now + MAX_FUTURE_SECONDS:
        raise TelemetryRefusedError(
            422, "created_at", f"is in the future (more than {MAX_FUTURE_SECONDS} s)"
        )


def check_signature(event: dict[str, Any]) -> None:
    try:
        computed = event_id(event)
    except UnicodeEncodeError as exc:
        raise TelemetryRefusedError(422, "content", "is not valid UTF-8") from exc
    if computed != event["id"]:
        raise TelemetryRefusedError(
            422, "id", "is not the sha256 of the event's NIP-01 serialisation"
        )
    try:
        key = PublicKeyXOnly(bytes.fromhex(event["pubkey"]))
        valid = key.verify(bytes.fromhex(event["sig"]), bytes.fromhex(event["id"]))
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise TelemetryRefusedError(
            422, "sig", "is not a valid BIP-340 signature by pubkey"
        )


def parse_content(kind: int, content: str) -> Any:
    try:
        document = json.loads(content) if content else {}
    except (ValueError, RecursionError) as exc:
        raise TelemetryRefusedError(422, "content", "must be JSON") from exc
    if kind == BEACON_KIND:
        if not isinstance(document, dict):
            raise TelemetryRefusedError(
                422, "content", "a beacon must be a JSON object"
            )
        if len(document) > MAX_FIELDS:
            raise TelemetryRefusedError(
                422, "content", f"a beacon has at most {MAX_FIELDS} fields"
            )
    return document


# --- rate limit ----------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` events per machine in a sliding ``window`` (memory:
    LNbits is one process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def reset(self) -> None:
        self._seen.clear()


rate_limiter = RateLimiter(RATE_LIMIT_EVENTS, RATE_LIMIT_WINDOW_SECONDS)
_machine_locks: dict[str, asyncio.Lock] = {}


# --- merging ---------------------------------------------------------------


def merge_fields(
    current: dict[str, dict[str, Any]], incoming: dict[str, Any], at: int
) -> dict[str, dict[str, Any]]:
    """``current`` maps each field to ``{"value", "at"}`` (the event time that
    set it). A field takes the incoming value unless it is null or a newer
    event already set the field."""
    merged = dict(current)
    for key, value in incoming.items():
        if value is None:
            continue
        known = merged.get(key)
        if known is None or int(known.get("at", 0)) <= at:
            merged[key] = {"value": value, "at": at}
    return merged


def _field(fields: dict[str, dict[str, Any]], name: str) -> Any:
    entry = fields.get(name)
    return None if entry is None else entry.get("value")


def derived_columns(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The columns kept beside the merged fields: cash level, currency,
    firmware version (None when the beacon never said, or said nonsense)."""
    currency = _field(fields, "currency")
    currency = (
        currency.upper()
        if isinstance(currency, str) and is_currency_code(currency.upper())
        else None
    )
    cash = _field(fields, "cash_level")
    cash_minor = None
    if (
        currency is not None
        and isinstance(cash, (int, str))
        and not isinstance(cash, bool)
    ):
        try:
            amount = Decimal(str(cash))
            if amount.is_finite() and 0 <= amount < 10**15:
                cash_minor = int(amount.scaleb(minor_units(currency)))
        except (InvalidOperation, ValueError):
            cash_minor = None
    firmware = _field(fields, "firmware_version")
    return {
        "cash_level_minor": cash_minor,
        "currency": currency,
        "firmware_version": str(firmware)[:100] if firmware is not None else None,
    }


# --- the handler -------------------------------------------------------------


async def handle_event(event: Any, source: str = "http") -> Accepted:
    """Check and store one signed telemetry event; raises TelemetryRefusedError."""
    check_shape(event)
    check_time(event["created_at"])
    check_signature(event)
    document = parse_content(event["kind"], event["content"])
    machine = await crud_telemetry.get_machine_by_npub(hex_to_npub(event["pubkey"]))
    if machine is None or not machine.is_active:
        raise TelemetryRefusedError(
            403, "pubkey", "is not the key of a registered, active machine"
        )
    if await crud_telemetry.event_known(event["id"]):
        return Accepted(machine.id, event["id"], event["kind"], duplicate=True)
    if not rate_limiter.allow(machine.id):
        raise TelemetryRefusedError(
            429,
            "pubkey",
            f"too many events from this machine (at most {RATE_LIMIT_EVENTS} "
            f"in {RATE_LIMIT_WINDOW_SECONDS:.0f} s)",
        )
    lock = _machine_locks.setdefault(machine.id, asyncio.Lock())
    async with lock:
        stored = await crud_telemetry.store_event(
            machine=machine,
            event=event,
            document=document,
            created_at=datetime.fromtimestamp(event["created_at"], timezone.utc),
            source=source[:200],
        )
    if not stored:  # lost a race with the same event from another relay
        return Accepted(machine.id, event["id"], event["kind"], duplicate=True)
    logger.debug(
        f"satmachineadmin: telemetry {event['kind']} from {machine.id} via {source}"
    )
    return Accepted(machine.id, event["id"], event["kind"], duplicate=False)


# --- signing (the demo's ATM simulator and the tests) -------------------------


def public_key_hex(secret: bytes) -> str:
    return PublicKeyXOnly.from_secret(secret).format().hex()


def sign_event(
    secret: bytes,
    kind: int,
    content: str,
    *,
    tags: list[list[str]] | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """A NIP-01 event signed with ``secret`` (32 bytes) by BIP-340."""
    event: dict[str, Any] = {
        "pubkey": public_key_hex(secret),
        "created_at": int(time.time()) if created_at is None else created_at,
        "kind": kind,
        "tags": tags if tags is not None else [["d", "bitspire-telemetry"]],
        "content": content,
    }
    event["id"] = event_id(event)
    signature = PrivateKey(secret).sign_schnorr(bytes.fromhex(event["id"]))
    event["sig"] = signature.hex()
    return event

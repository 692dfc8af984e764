"""fixed.py's pure slot maths: instants across DST changes and midnight, the
per-slot amount, sats at a price. (Here, not in tests/unit: the module is
imported as LNbits loads the extension.)"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


@pytest.fixture(scope="module")
def fixed(app):
    from satmachineadmin import fixed

    return fixed


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_nonexistent_local_time_runs_once_after_the_gap(fixed):
    # 2026-03-08 02:30 does not exist in New York (02:00 -> 03:00).
    at = fixed.slot_instant(date(2026, 3, 8), "02:30", NY)
    assert at == utc("2026-03-08T07:30")  # 03:30 EDT
    assert at.astimezone(NY).strftime("%H:%M") == "03:30"


def test_repeated_local_time_runs_at_its_first_occurrence(fixed):
    # 2026-11-01 01:30 happens twice in New York (EDT, then EST).
    at = fixed.slot_instant(date(2026, 11, 1), "01:30", NY)
    assert at == utc("2026-11-01T05:30")
    later = utc("2026-11-01T06:45")  # the second 01:30 has passed too
    assert fixed.due_slots(["01:30"], NY, later) == [("2026-11-01", "01:30")]


def test_each_slot_of_a_dst_day_is_due_once_minute_by_minute(fixed):
    for day in ("2026-03-08", "2026-11-01"):
        start = datetime.fromisoformat(f"{day}T00:00").replace(tzinfo=NY)
        at = start.astimezone(UTC)
        seen: dict[tuple[str, str], datetime] = {}
        while at.astimezone(NY).date().isoformat() == day:
            for slot in fixed.due_slots(["00:30", "01:30", "02:30", "23:59"], NY, at):
                seen.setdefault(slot, at)
            at += timedelta(minutes=1)
        assert sorted(seen) == [
            (day, "00:30"),
            (day, "01:30"),
            (day, "02:30"),
            (day, "23:59"),
        ]


def test_missed_slots_run_the_same_local_day_only(fixed):
    times = ["09:00", "23:50"]
    gt = ZoneInfo("America/Guatemala")  # UTC-6: its day ends at 06:00 UTC
    back = utc("2026-06-19T06:20")  # 00:20 local on the 19th
    assert fixed.due_slots(times, gt, back) == []  # the 18th's 23:50 is gone
    assert fixed.due_slots(times, gt, utc("2026-06-19T05:55")) == [
        ("2026-06-18", "09:00"),
        ("2026-06-18", "23:50"),
    ]


def test_slots_before_the_schedule_was_set_are_not_due(fixed):
    gt = ZoneInfo("America/Guatemala")
    since = utc("2026-06-18T16:00")  # 10:00 local
    at = utc("2026-06-18T22:00")
    assert fixed.due_slots(["09:00", "15:00"], gt, at, since) == [
        ("2026-06-18", "15:00")
    ]


def test_next_slot_rolls_over_to_tomorrow(fixed):
    gt = ZoneInfo("America/Guatemala")
    assert fixed.next_slot(["09:00", "15:00"], gt, utc("2026-06-18T22:00")) == (
        "2026-06-19",
        "09:00",
        utc("2026-06-19T15:00"),
    )


def test_per_slot_amount(fixed):
    assert fixed.per_slot_fiat_minor(200_000, 2, 500_000) == 100_000
    assert fixed.per_slot_fiat_minor(200_000, 2, 50_050) == 50_050
    assert fixed.per_slot_fiat_minor(100_000, 3, 500_000) == 33_333  # rounded down
    assert fixed.per_slot_fiat_minor(100_000, 3, 0) == 0
    assert fixed.max_limit_minor(Decimal("2000"), "GTQ") == 200_000
    assert fixed.max_limit_minor(Decimal("1999.999"), "JPY") == 1999


def test_sats_are_floored_exactly(fixed):
    assert fixed.sats_for_fiat(100_000, "GTQ", Decimal(100_000)) == 1_000_000
    # 2000 GTQ at 772114 GTQ/BTC = 259 029.1... sats
    assert fixed.sats_for_fiat(200_000, "GTQ", Decimal(772114)) == 259_029
    assert fixed.sats_for_fiat(1, "GTQ", Decimal("1e12")) == 0


@settings(max_examples=200, deadline=None)
@given(
    fiat_minor=st.integers(min_value=1, max_value=10**12),
    price=st.decimals(
        min_value=Decimal(1), max_value=Decimal(10**9), places=2, allow_nan=False
    ),
)
def test_sats_never_buy_more_than_the_fiat(fixed, fiat_minor, price):
    sats = fixed.sats_for_fiat(fiat_minor, "GTQ", price)
    fiat = Decimal(fiat_minor) / 100
    assert Decimal(sats) * price <= fiat * 10**8
    assert Decimal(sats + 1) * price > fiat * 10**8

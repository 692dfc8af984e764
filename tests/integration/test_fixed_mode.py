"""Fixed mode in a real LNbits: schedules over HTTP, slots run by the
scheduler's tick under an injectable clock, LNbits' own exchange rate from a
local price endpoint configured as its provider, payments through FakeWallet."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import credit, wallet_balance
from fixed_support import Clock, PriceServer, forget_rates
from scenario import add_lp, add_machine

API = "/satmachineadmin/api/v1/dca"
GUATE = ZoneInfo("America/Guatemala")
PRICE = 100_000.0  # GTQ per BTC: 1 000 GTQ buys 1 000 000 sats


@pytest.fixture(scope="module")
def price_server():
    server = PriceServer()
    with server.as_lnbits_provider():
        yield server
    server.close()


@pytest.fixture
def prices(price_server):
    price_server.price = PRICE
    forget_rates()
    yield price_server
    price_server.price = PRICE
    forget_rates()


def local(day: str, hhmm: str, tz: ZoneInfo = GUATE) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=tz)


async def put_schedule(http, operator, machine_id=None, **body):
    payload = {"times": ["09:00", "15:00"], "timezone": "America/Guatemala", **body}
    if machine_id:
        payload["machine_id"] = machine_id
    response = await http.put(
        f"{API}/fixed-schedule", json=payload, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def fixed_lp(http, operator, machine, lp, deposit, limit="2000"):
    client = await add_lp(machine, lp, Decimal(deposit))
    body = {"dca_mode": "fixed"}
    if limit is not None:
        body["fixed_mode_daily_limit"] = limit
    response = await http.put(
        f"{API}/clients/{client.id}", json=body, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    return client


async def balance(http, operator, client_id) -> Decimal:
    response = await http.get(
        f"{API}/clients/{client_id}/balance", headers=operator.headers
    )
    assert response.status_code == 200, response.text
    return Decimal(response.json()["remaining_balance"])


async def fixed_legs(machine_id):
    from satmachineadmin import crud

    async with crud.connection() as c:
        return await crud._fetchall(
            c,
            "SELECT * FROM satmachineadmin.payments WHERE machine_id = :m "
            "AND slot IS NOT NULL ORDER BY created_at, id",
            {"m": machine_id},
            crud.DcaPayment,
        )


async def tick(clock: Clock, at: datetime) -> None:
    from satmachineadmin import fixed

    clock.at = at
    await fixed.tick(at)


async def log_entries(http, operator):
    response = await http.get(f"{API}/notifications/log", headers=operator.headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- schedules over HTTP -------------------------------------------------------


async def test_schedule_default_and_override_like_commission_splits(
    http, operator, other_operator
):
    machine = await add_machine(operator, operator.wallets[1])
    default = await put_schedule(
        http, operator, times=["15:00", "09:00"], max_daily_limit="1500"
    )
    assert default["times"] == ["09:00", "15:00"]  # sorted
    assert default["machine_id"] is None and default["max_daily_limit"] == 1500
    override = await put_schedule(
        http,
        operator,
        machine.id,
        times=["12:00"],
        timezone="Europe/Madrid",
        funding_wallet_id=operator.wallets[2].id,
    )
    assert override["machine_id"] == machine.id
    assert override["max_daily_limit"] == 2000  # the default maximum
    got = await http.get(
        f"{API}/fixed-schedule",
        params={"machine_id": machine.id},
        headers=operator.headers,
    )
    assert got.json()["times"] == ["12:00"]
    got = await http.get(f"{API}/fixed-schedule", headers=operator.headers)
    assert got.json()["times"] == ["09:00", "15:00"]

    # Another operator sees neither the machine nor the schedules.
    theirs = await http.get(
        f"{API}/fixed-schedule",
        params={"machine_id": machine.id},
        headers=other_operator.headers,
    )
    assert theirs.status_code == 404
    assert (
        await http.get(f"{API}/fixed-schedule", headers=other_operator.headers)
    ).json() is None

    deleted = await http.delete(
        f"{API}/fixed-schedule",
        params={"machine_id": machine.id},
        headers=operator.headers,
    )
    assert deleted.status_code == 204
    got = await http.get(
        f"{API}/fixed-schedule",
        params={"machine_id": machine.id},
        headers=operator.headers,
    )
    assert got.json() is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"times": ["9:00"]}, "times"),
        ({"times": ["24:00"]}, "times"),
        ({"times": ["09:00", "09:00"]}, "times"),
        ({"times": []}, "times"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"max_daily_limit": "-1"}, "max_daily_limit"),
    ],
)
async def test_schedule_refuses_bad_input(http, operator, body, field):
    payload = {"times": ["09:00"], "timezone": "America/Guatemala", **body}
    response = await http.put(
        f"{API}/fixed-schedule", json=payload, headers=operator.headers
    )
    assert response.status_code == 422, response.text
    assert field in response.text
    assert (
        await http.get(f"{API}/fixed-schedule", headers=operator.headers)
    ).json() is None


async def test_funding_wallet_must_be_the_operators(http, operator, lp):
    response = await http.put(
        f"{API}/fixed-schedule",
        json={
            "times": ["09:00"],
            "timezone": "UTC",
            "funding_wallet_id": lp.wallet.id,
        },
        headers=operator.headers,
    )
    assert response.status_code == 422
    assert "funding_wallet_id" in response.text


async def test_lp_daily_limit_never_above_the_maximum(http, operator, lp):
    machine = await add_machine(operator, operator.wallets[1])
    await put_schedule(http, operator, machine.id, max_daily_limit="1000")
    client = await add_lp(machine, lp, Decimal(100))
    too_high = await http.put(
        f"{API}/clients/{client.id}",
        json={"dca_mode": "fixed", "fixed_mode_daily_limit": "1000.01"},
        headers=operator.headers,
    )
    assert too_high.status_code == 422
    assert "fixed_mode_daily_limit" in too_high.text
    ok = await http.put(
        f"{API}/clients/{client.id}",
        json={"dca_mode": "fixed", "fixed_mode_daily_limit": "1000"},
        headers=operator.headers,
    )
    assert ok.status_code == 200
    # Lowering the maximum under an LP's limit is refused: lower the LP's first.
    lower = await http.put(
        f"{API}/fixed-schedule",
        json={
            "machine_id": machine.id,
            "times": ["09:00"],
            "timezone": "UTC",
            "max_daily_limit": "500",
        },
        headers=operator.headers,
    )
    assert lower.status_code == 422
    assert "max_daily_limit" in lower.text


# --- buying ----------------------------------------------------------------------


async def test_two_slots_with_a_2000_limit_buy_1000_each(http, operator, lp, prices):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    with Clock(local("2026-06-10", "08:00")).installed() as clock:
        await put_schedule(http, operator, machine.id)
        client = await fixed_lp(http, operator, machine, lp, "5000")
        before = await wallet_balance(lp.wallet.id)

        await tick(clock, local("2026-06-10", "08:59"))
        assert await fixed_legs(machine.id) == []

        await tick(clock, local("2026-06-10", "09:00"))
        [first] = await fixed_legs(machine.id)
        assert first.status == "completed" and first.leg_type == "dca"
        assert first.settlement_id is None
        assert first.slot == "2026-06-10T09:00@America/Guatemala"
        assert first.idempotency_key == f"fixed:{client.id}:2026-06-10:09:00"
        assert first.fiat_amount_minor == 100_000  # 1 000.00 GTQ
        assert first.amount_sats == 1_000_000  # floor(1000 / 100000 * 1e8)
        assert await wallet_balance(lp.wallet.id) == before + 1_000_000
        assert await balance(http, operator, client.id) == Decimal(4000)

        await tick(clock, local("2026-06-10", "14:00"))  # nothing new before 15:00
        await tick(clock, local("2026-06-10", "15:00"))
        await tick(clock, local("2026-06-10", "15:20"))
        legs = await fixed_legs(machine.id)
        assert [leg.slot[:16] for leg in legs] == [
            "2026-06-10T09:00",
            "2026-06-10T15:00",
        ]
        assert all(leg.status == "completed" for leg in legs)
        assert await balance(http, operator, client.id) == Decimal(3000)
        assert await wallet_balance(lp.wallet.id) == before + 2_000_000
        assert await wallet_balance(machine.wallet_id) == 3_000_000

        runs = await http.get(
            f"{API}/machines/{machine.id}/fixed-slots", headers=operator.headers
        )
        assert [
            (r["slot_time"], r["status"], r["lps_bought"]) for r in runs.json()
        ] == [
            ("15:00", "done", 1),
            ("09:00", "done", 1),
        ]


async def test_balance_running_out(http, operator, lp, make_user, prices):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    with Clock(local("2026-06-11", "08:00")).installed() as clock:
        await put_schedule(http, operator, machine.id)
        client = await fixed_lp(http, operator, machine, lp, "1500.50")
        await tick(clock, local("2026-06-11", "09:01"))
        await tick(clock, local("2026-06-11", "15:01"))
        await tick(clock, local("2026-06-12", "09:01"))
        legs = await fixed_legs(machine.id)
        assert [leg.fiat_amount_minor for leg in legs] == [100_000, 50_050]
        assert [leg.amount_sats for leg in legs] == [1_000_000, 500_500]
        assert await balance(http, operator, client.id) == Decimal(0)


async def test_rate_missing_skips_the_slot_and_tells_the_operator_once(
    http, operator, lp, prices
):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    with Clock(local("2026-06-13", "08:00")).installed() as clock:
        await put_schedule(http, operator, machine.id)
        await fixed_lp(http, operator, machine, lp, "5000")
        prices.price = None  # the provider answers 503: LNbits has no rate
        forget_rates()
        await tick(clock, local("2026-06-13", "09:00"))
        await tick(clock, local("2026-06-13", "09:01"))
        assert await fixed_legs(machine.id) == []
        runs = (
            await http.get(
                f"{API}/machines/{machine.id}/fixed-slots", headers=operator.headers
            )
        ).json()
        assert runs[0]["status"] == "incomplete"
        assert "no exchange rate for GTQ" in runs[0]["reason"]
        log = await log_entries(http, operator)
        assert [(e["kind"], e["problem_key"]) for e in log] == [
            ("started", f"fixed-slot-rate:{machine.id}")
        ]

        prices.price = PRICE  # the rate is back: the same slot runs, same day
        forget_rates()
        await tick(clock, local("2026-06-13", "09:30"))
        [leg] = await fixed_legs(machine.id)
        assert leg.status == "completed" and leg.slot.startswith("2026-06-13T09:00")
        log = await log_entries(http, operator)
        assert [e["kind"] for e in log] == ["cleared", "started"]


async def test_rate_too_old_is_refused(http, operator, lp, prices):
    """An instance caching prices for an hour: a price fetched 10 min ago is
    too old for a slot."""
    from lnbits.settings import settings
    from lnbits.utils.cache import cache

    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    saved = settings.lnbits_exchange_rate_cache_seconds
    settings.lnbits_exchange_rate_cache_seconds = 3600
    try:
        cache.set("btc-price-GTQ", PRICE, expiry=3600 - 600)
        with Clock(local("2026-06-14", "08:00")).installed() as clock:
            await put_schedule(http, operator, machine.id, times=["09:00"])
            await fixed_lp(http, operator, machine, lp, "5000")
            await tick(clock, local("2026-06-14", "09:00"))
        assert await fixed_legs(machine.id) == []
        runs = (
            await http.get(
                f"{API}/machines/{machine.id}/fixed-slots", headers=operator.headers
            )
        ).json()
        assert "s old" in runs[0]["reason"]
    finally:
        settings.lnbits_exchange_rate_cache_seconds = saved
        forget_rates()


async def test_wallet_short_then_topped_up(http, operator, make_user, prices):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 1_500_000)  # covers one LP's 1 000 000
    first_lp, second_lp = await make_user("lpa"), await make_user("lpb")
    with Clock(local("2026-06-15", "08:00")).installed() as clock:
        await put_schedule(http, operator, machine.id)
        first = await fixed_lp(http, operator, machine, first_lp, "5000")
        second = await fixed_lp(http, operator, machine, second_lp, "5000")

        preview = (
            await http.get(
                f"{API}/machines/{machine.id}/fixed-slots/preview",
                headers=operator.headers,
            )
        ).json()
        assert preview["slot"] == "2026-06-15T09:00"
        assert preview["lp_count"] == 2 and Decimal(str(preview["fiat"])) == 2000
        assert preview["estimated_sats"] == 2_000_000
        assert preview["wallet_sats"] == 1_500_000
        assert preview["short_by_sats"] == 500_000

        await tick(clock, local("2026-06-15", "09:00"))
        legs = {leg.client_id: leg for leg in await fixed_legs(machine.id)}
        assert legs[first.id].status == "completed"  # the oldest LP first
        assert legs[second.id].status == "skipped"
        assert legs[second.id].amount_sats == 0
        assert legs[second.id].reason.startswith("wallet short")
        assert await balance(http, operator, second.id) == Decimal(5000)
        await tick(clock, local("2026-06-15", "09:05"))  # still short: no new message
        log = await log_entries(http, operator)
        assert [(e["kind"], e["problem_key"]) for e in log] == [
            ("started", f"fixed-slot-funds:{machine.id}")
        ]

        await credit(machine.wallet_id, 1_000_000)
        await tick(clock, local("2026-06-15", "09:10"))
        legs = {leg.client_id: leg for leg in await fixed_legs(machine.id)}
        assert legs[second.id].status == "completed"
        assert legs[second.id].amount_sats == 1_000_000
        assert len(legs) == 2
        assert await balance(http, operator, second.id) == Decimal(4000)
        assert await wallet_balance(second_lp.wallet.id) == 1_000_000
        log = await log_entries(http, operator)
        assert [e["kind"] for e in log] == ["cleared", "started"]


async def test_manual_run_twice_buys_once(http, operator, lp, prices):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    with Clock(local("2026-06-16", "08:00")).installed() as clock:
        await put_schedule(http, operator, machine.id)
        client = await fixed_lp(http, operator, machine, lp, "5000")
        clock.at = local("2026-06-16", "10:00")
        url = f"{API}/machines/{machine.id}/fixed-slots/run"
        first = await http.post(url, json={"slot": "09:00"}, headers=operator.headers)
        assert first.status_code == 200, first.text
        second = await http.post(url, json={}, headers=operator.headers)  # current
        assert second.status_code == 200, second.text
        assert second.json()["run"]["slot_time"] == "09:00"
        await tick(clock, local("2026-06-16", "10:01"))  # the scheduler, too
        [leg] = await fixed_legs(machine.id)
        assert leg.status == "completed"
        assert await balance(http, operator, client.id) == Decimal(4000)

        named = await http.post(url, json={"slot": "10:30"}, headers=operator.headers)
        assert named.status_code == 422 and "slot" in named.text
    with Clock(local("2026-06-17", "08:00")).installed():
        none_due = await http.post(url, json={}, headers=operator.headers)
        assert none_due.status_code == 409


async def test_a_day_across_midnight_runs_missed_slots_the_same_day_only(
    http, operator, lp, prices
):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    with Clock(local("2026-06-18", "20:00")).installed() as clock:
        await put_schedule(http, operator, machine.id, times=["00:10", "23:50"])
        await fixed_lp(http, operator, machine, lp, "5000")
        await tick(clock, local("2026-06-18", "23:45"))
        # LNbits is down from 23:45 to 00:20: 23:50 is missed for good, 00:10
        # of the new day runs when it is back.
        await tick(clock, local("2026-06-19", "00:20"))
        await tick(clock, local("2026-06-19", "23:55"))
        slots = [leg.slot[:16] for leg in await fixed_legs(machine.id)]
        assert slots == ["2026-06-19T00:10", "2026-06-19T23:50"]


@pytest.mark.parametrize(
    ("day", "expected_utc"),
    [
        # Spring forward: 02:30 does not exist; it runs at 03:30 EDT.
        ("2026-03-08", ["06:30", "07:30", "13:00"]),
        # Fall back: 01:30 happens twice; it runs once, at the first.
        ("2026-11-01", ["05:30", "07:30", "14:00"]),
    ],
)
async def test_a_day_of_slots_across_a_dst_change(
    http, operator, lp, prices, day, expected_utc
):
    ny = ZoneInfo("America/New_York")
    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 5_000_000)
    start = local(day, "00:00", ny)
    with Clock(start).installed() as clock:
        await put_schedule(
            http,
            operator,
            machine.id,
            times=["01:30", "02:30", "09:00"],
            timezone="America/New_York",
            max_daily_limit="300",
        )
        await fixed_lp(http, operator, machine, lp, "5000", limit=None)
        ran_at: dict[str, str] = {}
        step = timedelta(minutes=15)
        at = start.astimezone(ZoneInfo("UTC"))
        while at < start.astimezone(ZoneInfo("UTC")) + timedelta(hours=24):
            await tick(clock, at)
            for leg in await fixed_legs(machine.id):
                ran_at.setdefault(leg.slot, at.strftime("%H:%M"))
            at += step
        legs = await fixed_legs(machine.id)
        assert len(legs) == 3 and all(leg.status == "completed" for leg in legs)
        assert all(leg.fiat_amount_minor == 10_000 for leg in legs)  # 300 / 3
        assert sorted(ran_at.values()) == expected_utc


async def test_settle_uses_lnbits_rate_when_none_is_given(http, operator, lp, prices):
    machine = await add_machine(operator, operator.wallets[1])
    await credit(operator.wallets[2].id, 1_000_000)
    client = await add_lp(machine, lp, Decimal(500))
    response = await http.post(
        f"{API}/clients/{client.id}/settle",
        json={"funding_wallet_id": operator.wallets[2].id, "amount_fiat": "250"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["amount_sats"] == 250_000 and Decimal(str(body["price"])) == 100_000
    prices.price = None
    forget_rates()
    refused = await http.post(
        f"{API}/clients/{client.id}/settle",
        json={"funding_wallet_id": operator.wallets[2].id},
        headers=operator.headers,
    )
    assert refused.status_code == 422 and "exchange_rate" in refused.text


async def test_two_workers_running_the_same_slot_buy_once(
    http, operator, make_user, prices
):
    """Two runs of one slot at once, past the in-process lock (as two workers
    would): each LP buys once, the wallet pays exactly once per LP."""
    import asyncio

    from satmachineadmin import crud_fixed, fixed

    machine = await add_machine(operator, operator.wallets[1])
    await credit(machine.wallet_id, 10_000_000)
    lps = [await make_user(f"lp{i}") for i in range(4)]
    with Clock(local("2026-06-20", "08:00")).installed():
        await put_schedule(http, operator, machine.id)
        clients = [await fixed_lp(http, operator, machine, lp, "5000") for lp in lps]
        schedule = await crud_fixed.get_effective_schedule(operator.id, machine.id)
        await asyncio.gather(
            fixed._run_slot(machine, schedule, "2026-06-20", "09:00"),
            fixed._run_slot(machine, schedule, "2026-06-20", "09:00"),
        )
        await fixed.resume_pending()
    legs = await fixed_legs(machine.id)
    assert sorted(leg.client_id for leg in legs) == sorted(c.id for c in clients)
    assert all(leg.status == "completed" for leg in legs), legs
    for lp in lps:
        assert await wallet_balance(lp.wallet.id) == 1_000_000
    assert await wallet_balance(machine.wallet_id) == 10_000_000 - 4 * 1_000_000

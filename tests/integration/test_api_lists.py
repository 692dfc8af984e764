"""Pagination and filters on lists of thousands of rows.

The rows are written straight through crud in a few transactions (thousands
of HTTP calls would only test HTTP). Every expectation is computed from the
rows written: pages of any size add up to exactly the filtered set, in the
documented order (newest first, ties by id, both descending), with no row twice."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from conftest import Actor
from test_api_support import call, leg_row, locs, make_npub, settlement_row

N_SETTLEMENTS = 3000
N_FOREIGN = 400
N_MACHINES = 1100
N_DEPOSITS = 2100

SETTLEMENT_STATUSES = ("processed", "errored", "partial", "refunded")  # none resumed
LEG_TYPES = ("super_fee", "operator_split", "dca", "settlement", "refund")
LEG_STATUSES = ("completed", "failed", "skipped", "voided")
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(i: int) -> datetime:
    """Two rows share each second, so the id breaks ties."""
    return BASE + timedelta(seconds=i // 2)


def newest_first(rows: list[Any]) -> list[str]:
    ordered = sorted(rows, key=lambda r: (r.created_at.timestamp(), r.id), reverse=True)
    return [r.id for r in ordered]


@dataclass
class Data:
    operator: Actor
    rival: Actor
    lp: Actor
    machines: list[Any] = field(default_factory=list)  # the operator's
    settlements: list[Any] = field(default_factory=list)
    legs: list[Any] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)  # the LP's positions
    deposits: list[Any] = field(default_factory=list)
    foreign_ids: set[str] = field(default_factory=set)


async def _insert_all(table: str, rows: list[Any]) -> None:
    from satmachineadmin import crud

    for start in range(0, len(rows), 500):
        async with crud.transaction() as conn:
            for row in rows[start : start + 500]:
                await crud._insert(conn, table, row, commit=False)


def _machine(operator: Actor, i: int):
    from satmachineadmin import crud
    from satmachineadmin.models import Machine

    # Inactive, with wallet ids LNbits does not know: the extension's
    # background recovery only looks at active machines.
    return Machine(
        id=crud.new_id(),
        operator_user_id=operator.id,
        npub=make_npub(),
        wallet_id=f"list-test-{uuid.uuid4().hex}",
        name=f"ATM {i}",
        currency="GTQ",
        is_active=False,
        created_at=at(i),
    )


def _settlements_and_legs(machines: list[Any], clients: list[Any], count: int):
    settlements, legs = [], []
    for i in range(count):
        machine = machines[i % len(machines)]
        s = settlement_row(
            machine,
            status=SETTLEMENT_STATUSES[i % 4],
            error="failed" if i % 4 == 1 else None,
            created_at=at(i),
            updated_at=at(i),
        )
        leg_type = LEG_TYPES[i % 5]
        client = (
            clients[i % len(clients)] if leg_type in ("dca", "settlement") else None
        )
        legs.append(
            leg_row(
                s,
                leg_type=leg_type,
                status=LEG_STATUSES[i % 4],
                client_id=client.id if client else None,
                source_wallet_id=machine.wallet_id,
                destination_wallet_id=client.wallet_id if client else "dest",
                created_at=at(i),
            )
        )
        settlements.append(s)
    return settlements, legs


@pytest.fixture(scope="module")
async def data(make_user) -> Data:
    from satmachineadmin import crud
    from satmachineadmin.models import DcaClient, DcaDeposit

    d = Data(
        operator=await make_user("lister"),
        rival=await make_user("rival"),
        lp=await make_user("lp"),
    )
    d.machines = [_machine(d.operator, i) for i in range(N_MACHINES)]
    await _insert_all("machines", d.machines)
    # the LP holds a position at every machine
    d.clients = [
        DcaClient(
            id=crud.new_id(),
            machine_id=m.id,
            operator_user_id=d.operator.id,
            user_id=d.lp.id,
            wallet_id=d.lp.wallet.id,
            created_at=at(i),
        )
        for i, m in enumerate(d.machines)
    ]
    await _insert_all("clients", d.clients)
    first = d.clients[0]
    d.deposits = [
        DcaDeposit(
            id=crud.new_id(),
            client_id=first.id if i % 3 else d.clients[i % N_MACHINES].id,
            machine_id=first.machine_id
            if i % 3
            else d.clients[i % N_MACHINES].machine_id,
            operator_user_id=d.operator.id,
            amount_minor=100 + i,
            currency="GTQ",
            status=("pending", "confirmed", "rejected")[i % 3],
            creator_user_id=d.operator.id,
            created_at=at(i),
        )
        for i in range(N_DEPOSITS)
    ]
    await _insert_all("deposits", d.deposits)
    d.settlements, d.legs = _settlements_and_legs(
        d.machines[:3], d.clients[:3], N_SETTLEMENTS
    )
    await _insert_all("settlements", d.settlements)
    await _insert_all("payments", d.legs)

    # another operator's rows, interleaved in time: never in the lists
    rival_machines = [_machine(d.rival, i) for i in range(2)]
    await _insert_all("machines", rival_machines)
    rival_client = DcaClient(
        id=crud.new_id(),
        machine_id=rival_machines[0].id,
        operator_user_id=d.rival.id,
        user_id=d.rival.id,
        wallet_id=d.rival.wallet.id,
    )
    await _insert_all("clients", [rival_client])
    settlements, legs = _settlements_and_legs(rival_machines, [rival_client], N_FOREIGN)
    await _insert_all("settlements", settlements)
    await _insert_all("payments", legs)
    d.foreign_ids = {
        *(m.id for m in rival_machines),
        rival_client.id,
        *(s.id for s in settlements),
        *(leg.id for leg in legs),
    }
    return d


async def walk(
    http, actor: Actor, path: str, page_size: int, **params: Any
) -> list[dict[str, Any]]:
    """Every row of a list, page by page, asserting each page is full until
    the last."""
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = await call(
            http, actor, "GET", path,
            params={**params, "limit": page_size, "offset": offset},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= page_size
        rows += page
        if len(page) < page_size:
            return rows
        offset += page_size


def ids_of(rows: list[dict[str, Any]], key: str = "id") -> list[str]:
    ids = [row[key] for row in rows]
    assert len(ids) == len(set(ids)), "a row appeared on two pages"
    return ids


def where(rows: list[Any], **conditions: Any) -> list[Any]:
    return [r for r in rows if all(getattr(r, k) == v for k, v in conditions.items())]


# --- the limit ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/settlements", "/payments", "/machines", "/clients", "/deposits"],
)  # fmt: skip
async def test_limit_defaults_to_100_and_is_capped_at_1000(http, data, path):
    response = await call(http, data.operator, "GET", path)
    assert len(response.json()) == 100
    response = await call(http, data.operator, "GET", path, params={"limit": 1000})
    assert response.status_code == 200
    assert len(response.json()) == 1000
    response = await call(http, data.operator, "GET", path, params={"limit": 1001})
    assert locs(response) == [["query", "limit"]]


@pytest.mark.parametrize("path", ["/lp/positions", "/lp/deposits"])
async def test_lp_lists_are_capped_too(http, data, path):
    response = await call(http, data.lp, "GET", path, params={"limit": 1000})
    assert len(response.json()) == 1000
    response = await call(http, data.lp, "GET", path, params={"limit": 5000})
    assert locs(response) == [["query", "limit"]]


# --- settlements ---------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1000, 701, 64])
async def test_settlement_pages_cover_every_row_once_in_order(http, data, page_size):
    rows = await walk(http, data.operator, "/settlements", page_size)
    assert ids_of(rows) == newest_first(data.settlements)


async def test_offset_picks_up_exactly_where_the_last_page_ended(http, data):
    expected = newest_first(data.settlements)
    for offset in (0, 1, 99, 100, 999, 1000, 2999, 3000, 5000):
        response = await call(
            http, data.operator, "GET", "/settlements",
            params={"limit": 10, "offset": offset},
        )  # fmt: skip
        assert [s["id"] for s in response.json()] == expected[offset : offset + 10]


@pytest.mark.parametrize(
    "filters",
    [
        {"status": "errored"},
        {"status": "refunded"},
        {"machine_id": 0},
        {"machine_id": 1, "status": "processed"},
        {"machine_id": 2, "status": "pending"},
    ],
)
async def test_settlement_filters_return_exactly_the_matching_rows(http, data, filters):
    params = dict(filters)
    if "machine_id" in params:
        params["machine_id"] = data.machines[params["machine_id"]].id
    rows = await walk(http, data.operator, "/settlements", 1000, **params)
    assert ids_of(rows) == newest_first(where(data.settlements, **params))
    exported = await call(
        http, data.operator, "GET", "/export/settlements.csv", params=params
    )
    exported_ids = [r["id"] for r in csv.DictReader(io.StringIO(exported.text))]
    assert exported_ids == newest_first(where(data.settlements, **params))


async def test_machine_settlements_route_pages_the_same_rows(http, data):
    machine = data.machines[1]
    rows = await walk(
        http,
        data.operator,
        f"/machines/{machine.id}/settlements",
        333,
        status="partial",
    )
    expected = where(data.settlements, machine_id=machine.id, status="partial")
    assert ids_of(rows) == newest_first(expected)


async def test_stuck_lists_the_errored_settlements(http, data):
    rows = await walk(http, data.operator, "/settlements/stuck", 400)
    assert ids_of(rows) == newest_first(where(data.settlements, status="errored"))


async def test_another_operators_rows_never_appear(http, data):
    seen: set[str] = set()
    for path in ("/settlements", "/payments", "/machines", "/clients"):
        seen |= set(ids_of(await walk(http, data.operator, path, 1000)))
    assert seen.isdisjoint(data.foreign_ids)
    rival = ids_of(await walk(http, data.rival, "/settlements", 1000))
    assert len(rival) == N_FOREIGN


# --- payment legs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"leg_type": "dca"},
        {"status": "failed"},
        {"leg_type": "operator_split", "status": "completed"},
        {"client_id": 1},
        {"client_id": 2, "status": "voided"},
        {"settlement_id": 17},
        {"settlement_id": 17, "leg_type": "dca"},
    ],
)
async def test_payment_filters_return_exactly_the_matching_rows(http, data, filters):
    params = dict(filters)
    if "client_id" in params:
        params["client_id"] = data.clients[params["client_id"]].id
    if "settlement_id" in params:
        params["settlement_id"] = data.settlements[params["settlement_id"]].id
    rows = await walk(http, data.operator, "/payments", 1000, **params)
    expected = newest_first(where(data.legs, **params))
    assert ids_of(rows) == expected
    exported = await call(
        http, data.operator, "GET", "/export/payments.csv", params=params
    )
    assert [r["id"] for r in csv.DictReader(io.StringIO(exported.text))] == expected


# --- machines, clients, deposits ----------------------------------------------------


async def test_machines_and_clients_page_through_thousands(http, data):
    machines = await walk(http, data.operator, "/machines", 1000)
    assert ids_of(machines) == newest_first(data.machines)
    clients = await walk(http, data.operator, "/clients", 999)
    assert ids_of(clients) == newest_first(data.clients)
    one = await walk(
        http, data.operator, "/clients", 10, machine_id=data.machines[5].id
    )
    assert ids_of(one) == [data.clients[5].id]


async def test_deposits_page_and_filter_by_client(http, data):
    every = await walk(http, data.operator, "/deposits", 1000)
    assert ids_of(every) == newest_first(data.deposits)
    first = data.clients[0].id
    rows = await walk(http, data.operator, "/deposits", 250, client_id=first)
    assert ids_of(rows) == newest_first(where(data.deposits, client_id=first))
    assert len(rows) > 1000


# --- the LP's lists ------------------------------------------------------------------


async def test_lp_positions_and_deposits_page_across_thousands(http, data):
    positions = await walk(http, data.lp, "/lp/positions", 1000)
    assert ids_of(positions, "client_id") == newest_first(data.clients)
    by_id = {p["client_id"]: p for p in positions}
    first = by_id[data.clients[0].id]
    confirmed = sum(
        d.amount_minor
        for d in where(data.deposits, client_id=data.clients[0].id, status="confirmed")
    )
    assert Decimal(str(first["total_deposits"])) == Decimal(confirmed) / 100
    deposits = await walk(http, data.lp, "/lp/deposits", 700)
    assert ids_of(deposits) == newest_first(data.deposits)


async def test_lp_payments_are_only_completed_payouts(http, data):
    rows = await walk(http, data.lp, "/lp/payments", 1000)
    expected = [
        leg
        for leg in data.legs
        if leg.client_id and leg.status == "completed"
        and leg.leg_type in ("dca", "settlement")
    ]  # fmt: skip
    assert ids_of(rows) == newest_first(expected)
    assert len(expected) > 100

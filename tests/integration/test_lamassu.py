"""The Lamassu source against a real PostgreSQL Lamassu database (a throwaway
one per run, read through a role that has only SELECT), inside a real LNbits:
each successful sale pays exactly once, whatever is polled how often."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import credit, wallet_balance
from lamassu_db import (
    HOST,
    PORT,
    SALES_OF_DEV_A,
    ago,
    create_lamassu_db,
    drop_lamassu_db,
    load_rows,
)
from scenario import FINAL, add_lp, assert_ledger_adds_up, set_splits
from waits import until

API = "/satmachineadmin/api/v1/dca"

# What each sale of dev-a is worth (LAMASSU.md's pricing).
EXPECTED = {  # name: (gross, net, commission)
    "ln": (266_800, 258_799, 8_001),
    "btc_zero_conf": (67_300, 64_699, 2_601),
    "fixed_fee": (134_700, 129_399, 5_301),
    "no_price": (40_000, 38_800, 1_200),
    "late": (133_400, 129_399, 4_001),
}


@pytest.fixture(scope="module")
async def lamassu():
    db = await create_lamassu_db()
    await load_rows(db)
    yield db
    await drop_lamassu_db(db)


@pytest.fixture
async def extension():
    import satmachineadmin

    class Control:
        stop = staticmethod(satmachineadmin.satmachineadmin_stop)
        start = staticmethod(satmachineadmin.satmachineadmin_start)

    yield Control
    if not satmachineadmin.scheduled_tasks:
        satmachineadmin.satmachineadmin_start()


async def create_machine(http, operator, wallet, source="lamassu", currency="GTQ"):
    response = await http.post(
        f"{API}/machines",
        json={
            "wallet_id": wallet.id,
            "name": f"{source} ATM",
            "currency": currency,
            "source": source,
        },
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source"] == source
    return body


def settings(db, device_id="dev-a", **overrides):
    body = {
        "host": HOST,
        "port": PORT,
        "database": db.name,
        "user": db.reader,
        "password": db.reader_password,
        "sslmode": "disable",
        "device_id": device_id,
        "poll_seconds": 3600,
    }
    body.update(overrides)
    return body


async def connect(http, operator, machine_id, body):
    """Set the connection, with the source's start a day back: these tests
    are about polling the rows they made a moment ago (the start itself is
    tested in test_lamassu_field.py)."""
    from satmachineadmin import crud_sources

    response = await http.put(
        f"{API}/machines/{machine_id}/lamassu", json=body, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    source = await crud_sources.get_lamassu_source(machine_id)
    assert source is not None
    if source.start_at > ago(days=1) - timedelta(hours=1):
        await crud_sources.restart_lamassu_source(machine_id, ago(days=1))
    return response.json()


def ok_test(body: dict) -> bool:
    return body["ok"] is True and body["error"] is None and body["step"] is None


async def poll(http, operator, machine_id) -> dict:
    response = await http.post(
        f"{API}/machines/{machine_id}/lamassu/poll", headers=operator.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def lamassu_settlements(operator, machine_id):
    from satmachineadmin import crud

    return await crud.list_settlements(operator.id, machine_id=machine_id, limit=1000)


async def wait_all_final(operator, machine_id, count, timeout=120):
    async def read():
        rows = await lamassu_settlements(operator, machine_id)
        return [(s.source_txid, s.status) for s in rows], rows

    _, rows = await until(
        read,
        lambda seen: len(seen[0]) == count and all(st in FINAL for _, st in seen[0]),
        what=f"{count} settlements of machine {machine_id} final",
        timeout=timeout,
    )
    return rows


@pytest.fixture
async def shop(http, operator, make_user, lamassu):
    """A Lamassu machine (dev-a) whose wallet the operator funded, one LP with
    9 000 GTQ, the whole commission to the operator's first wallet."""
    machine_wallet = operator.wallets[1]
    machine = await create_machine(http, operator, machine_wallet)
    await credit(machine_wallet.id, 2_000_000)
    await set_splits(operator, [(operator.wallets[0].id, "1")])
    lp = await make_user("lp")

    class Machine:  # what scenario.add_lp needs
        id = machine["id"]
        operator_user_id = operator.id
        currency = "GTQ"

    await add_lp(Machine, lp, Decimal(9000))
    return machine, machine_wallet, lp


async def test_each_sale_pays_once_across_polls_late_rows_and_a_restart(
    http, operator, lamassu, shop, extension
):
    machine, machine_wallet, lp = shop
    watched = [machine_wallet, lp.wallet, operator.wallets[0]]
    before = [await wallet_balance(w.id) for w in watched]

    body = await connect(http, operator, machine["id"], settings(lamassu))
    assert body["password_set"] is True and "password" not in body
    test = await http.post(
        f"{API}/machines/{machine['id']}/lamassu/test", headers=operator.headers
    )
    assert ok_test(test.json())

    first = await poll(http, operator, machine["id"])
    assert first["error"] is None
    rows = await wait_all_final(operator, machine["id"], len(SALES_OF_DEV_A))
    assert first["landed"] <= len(SALES_OF_DEV_A)  # the loop may have begun too
    by_txid = {s.source_txid: s for s in rows}
    assert set(by_txid) == {lamassu.ids[n] for n in SALES_OF_DEV_A}
    for name in SALES_OF_DEV_A:
        s = by_txid[lamassu.ids[name]]
        assert s.source == "lamassu" and s.status == "processed", s
        assert (s.gross_sats, s.net_sats, s.commission_sats) == EXPECTED[name]
        assert s.payment_hash == f"lamassu:{machine['id']}:{lamassu.ids[name]}"
        await assert_ledger_adds_up(s)
    assert by_txid[lamassu.ids["ln"]].exchange_rate == Decimal("772800")
    assert by_txid[lamassu.ids["ln"]].fiat_amount == Decimal("2000.00")

    again = await poll(http, operator, machine["id"])
    assert again == {"landed": 0, "error": None}

    # LNbits goes down; meanwhile the late row gets its dispense_confirmed,
    # written a minute later under the same id. (With the loops stopped, only
    # this poll can land it: the sources loop would otherwise race it.)
    extension.stop()
    await lamassu.confirm_dispense(lamassu.ids["late"])
    assert (await poll(http, operator, machine["id"]))["landed"] == 1
    extension.start()  # ... and comes back: the late sale is paid, once
    names = (*SALES_OF_DEV_A, "late")
    await wait_all_final(operator, machine["id"], len(names))

    extension.stop()  # LNbits restarts ...
    extension.start()
    assert (await poll(http, operator, machine["id"]))["landed"] == 0
    rows = await wait_all_final(operator, machine["id"], len(names))
    assert len({s.source_txid for s in rows}) == len(rows)

    after = [await wallet_balance(w.id) for w in watched]
    gross = sum(EXPECTED[n][0] for n in names)
    net = sum(EXPECTED[n][1] for n in names)
    commission = sum(EXPECTED[n][2] for n in names)
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        -gross,
        net,
        commission,
    ]

    status = (
        await http.get(
            f"{API}/machines/{machine['id']}/lamassu", headers=operator.headers
        )
    ).json()
    assert status["last_error"] is None and status["last_success_at"]
    assert status["landed_total"] == len(names)


async def test_second_device_lands_only_its_own_sale(
    http, operator, lamassu, make_user
):
    other = await make_user("op_b", extra_wallets=1)
    machine = await create_machine(http, other, other.wallets[1])
    await credit(other.wallets[1].id, 500_000)
    await connect(http, other, machine["id"], settings(lamassu, device_id="dev-b"))
    await poll(http, other, machine["id"])
    rows = await wait_all_final(other, machine["id"], 1)
    assert [s.source_txid for s in rows] == [lamassu.ids["dev_b"]]
    # The same device cannot feed a second machine: its sales would land twice.
    twin = await create_machine(http, other, other.wallets[0])
    response = await http.put(
        f"{API}/machines/{twin['id']}/lamassu",
        json=settings(lamassu, device_id="dev-b"),
        headers=other.headers,
    )
    assert response.status_code == 409, response.text


async def test_unreachable_source_loses_nothing_and_says_why(
    http, operator, lamassu, make_user
):
    from loguru import logger

    user = await make_user("op_c", extra_wallets=1)
    machine = await create_machine(http, user, user.wallets[1])
    await credit(user.wallets[1].id, 1_000_000)
    await lamassu.execute("INSERT INTO devices (device_id) VALUES ('dev-c')")
    first = await lamassu.add_cash_out(
        device_id="dev-c", crypto_atoms=266_800, fiat=2000
    )

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    responses: list[str] = []
    try:
        # Down: a closed port (the server stopped), then no such database.
        closed = _closed_port()
        body = settings(lamassu, device_id="dev-c", port=closed)
        responses.append(str(await connect(http, user, machine["id"], body)))
        down = await poll(http, user, machine["id"])
        responses.append(str(down))
        assert down["landed"] == 0 and "connection refused" in down["error"]
        test = await http.post(
            f"{API}/machines/{machine['id']}/lamassu/test", headers=user.headers
        )
        responses.append(test.text)
        assert test.json()["ok"] is False
        assert "connection refused" in test.json()["error"]
        status = await http.get(
            f"{API}/machines/{machine['id']}/lamassu", headers=user.headers
        )
        responses.append(status.text)
        assert "connection refused" in status.json()["last_error"]

        # Sold while the source was unreadable.
        second = await lamassu.add_cash_out(
            device_id="dev-c", crypto_atoms=133_400, fiat=1000
        )
        gone = settings(lamassu, device_id="dev-c", database="no_such_lamassu_db")
        responses.append(str(await connect(http, user, machine["id"], gone)))
        missing = await poll(http, user, machine["id"])
        responses.append(str(missing))
        assert "no database" in missing["error"]

        # The role loses CONNECT (an administrator's mistake), then gets it back.
        back = settings(lamassu, device_id="dev-c")
        await connect(http, user, machine["id"], back)
        await lamassu.execute(
            f"REVOKE CONNECT ON DATABASE {lamassu.name} FROM {lamassu.reader}"
        )
        try:
            denied = await poll(http, user, machine["id"])
        finally:
            await lamassu.execute(
                f"GRANT CONNECT ON DATABASE {lamassu.name} TO {lamassu.reader}"
            )
        responses.append(str(denied))
        assert denied["landed"] == 0 and "may not read" in denied["error"]

        # Back up (the password is kept when left out): both sales land once.
        back = settings(lamassu, device_id="dev-c")
        back.pop("password")
        restored = await connect(http, user, machine["id"], back)
        responses.append(str(restored))
        assert restored["password_set"] is True
        up = await poll(http, user, machine["id"])
        responses.append(str(up))
        assert up["error"] is None
        rows = await wait_all_final(user, machine["id"], 2)
        assert {s.source_txid for s in rows} == {first, second}
        listing = await http.get(f"{API}/machines", headers=user.headers)
        responses.append(listing.text)
    finally:
        logger.remove(sink)
    secret = lamassu.reader_password
    assert all(secret not in text for text in responses)
    assert lines and all(secret not in line for line in lines)
    assert any("connection refused" in line for line in lines)


async def test_connection_test_answers_in_words(http, operator, lamassu, make_user):
    user = await make_user("op_d", extra_wallets=1)
    machine = await create_machine(http, user, user.wallets[1])
    await lamassu.execute("INSERT INTO devices (device_id) VALUES ('dev-d')")

    async def check(**overrides) -> dict:
        overrides.setdefault("device_id", "dev-d")
        await connect(http, user, machine["id"], settings(lamassu, **overrides))
        response = await http.post(
            f"{API}/machines/{machine['id']}/lamassu/test", headers=user.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    assert ok_test(await check())
    assert "unknown" in (await check(device_id="dev-zzz"))["error"]
    assert "not read-only" in (await check(user=lamassu.writer))["error"]
    assert "no database" in (await check(database="nope_nope"))["error"]
    assert "connection refused" in (await check(port=_closed_port()))["error"]
    empty = await create_lamassu_db(with_tables=False)
    try:
        result = await check(database=empty.name, user=empty.reader)
        assert "no such table" in result["error"]
    finally:
        await drop_lamassu_db(empty)

    # Deleting the machine (no sales yet) frees its device for another one.
    await connect(http, user, machine["id"], settings(lamassu, device_id="dev-d"))
    deleted = await http.delete(f"{API}/machines/{machine['id']}", headers=user.headers)
    assert deleted.status_code == 204, deleted.text
    again = await create_machine(http, user, user.wallets[1])
    await connect(http, user, again["id"], settings(lamassu, device_id="dev-d"))


async def test_lamassu_settings_refuse_bad_input_and_other_operators(
    http, operator, other_operator, lamassu
):
    machine = await create_machine(http, operator, operator.wallets[2])
    url = f"{API}/machines/{machine['id']}/lamassu"
    for field, value in (
        ("port", 0),
        ("port", 70000),
        ("sslmode", "sometimes"),
        ("poll_seconds", 1),
        ("host", "evil host/x"),
        ("device_id", ""),
    ):
        response = await http.put(
            url, json=settings(lamassu, **{field: value}), headers=operator.headers
        )
        assert response.status_code == 422, (field, response.text)
        assert field in response.text
    response = await http.put(
        url, json=settings(lamassu), headers=other_operator.headers
    )
    assert response.status_code == 404
    for path in ("/test", "/poll"):
        response = await http.post(url + path, headers=other_operator.headers)
        assert response.status_code == 404
    # A bitSpire machine has no Lamassu source.
    bitspire = await http.post(
        f"{API}/machines",
        json={"wallet_id": operator.wallets[3].id, "name": "b", "currency": "GTQ"},
        headers=operator.headers,
    )
    assert bitspire.status_code == 422  # no npub for a bitSpire machine
    assert "npub" in bitspire.text


async def test_wallet_payments_into_a_lamassu_machine_never_land(
    http, operator, lamassu, make_user
):
    user = await make_user("op_e", extra_wallets=1)
    machine = await create_machine(http, user, user.wallets[1])
    await credit(user.wallets[0].id, 100_000)
    invoice = await http.post(
        "/api/v1/payments",
        json={"out": False, "amount": 50_000, "memo": "top-up"},
        headers={"X-Api-Key": user.wallets[1].inkey},
    )
    paid = await http.post(
        "/api/v1/payments",
        json={"out": True, "bolt11": invoice.json()["bolt11"]},
        headers={"X-Api-Key": user.wallets[0].adminkey},
    )
    assert paid.status_code == 201, paid.text
    await asyncio.sleep(0.5)
    assert await wallet_balance(user.wallets[1].id) == 50_000
    assert await lamassu_settlements(user, machine["id"]) == []


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Lamassu in the field (issue 18), against real parts: an OpenSSH server
started here (one for the module) forwarding to a real PostgreSQL holding
the Lamassu schema, inside the real in-process LNbits.

- SSH: the extension's own key, the host key shown then pinned, an unknown
  then a changed host key refused, a key not in authorized_keys refused, ssh
  missing; the whole path through the tunnel; sshd stopped mid-poll loses
  nothing.
- A machine's past: 500 past cash-outs land none; the import preview and
  the import (once, awaiting funds when the wallet is short); an ignored
  cash-out never paid; what the poller saw.
- Secrets: the password and the private key are not in the database in clear.
- A machine's source changed keeps its settlements and starts from the change.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

import pytest
from conftest import credit, wallet_balance
from lamassu_db import ago, create_lamassu_db, drop_lamassu_db
from scenario import FINAL, make_npub, set_splits
from sshd import Sshd, sshd_binary

API = "/satmachineadmin/api/v1/dca"

pytestmark = pytest.mark.skipif(
    sshd_binary() is None, reason="openssh-server is not installed"
)


@pytest.fixture(scope="module")
async def lamassu():
    db = await create_lamassu_db()
    yield db
    await drop_lamassu_db(db)


@pytest.fixture(scope="module")
def sshd():
    server = Sshd()
    server.start()
    yield server
    server.close()


async def new_device(lamassu, name: str) -> str:
    device = f"{name}-{os.urandom(4).hex()}"
    await lamassu.execute("INSERT INTO devices (device_id) VALUES ($1)", device)
    return device


async def lamassu_machine(http, actor, wallet) -> dict:
    response = await http.post(
        f"{API}/machines",
        json={
            "wallet_id": wallet.id,
            "name": "L",
            "currency": "GTQ",
            "source": "lamassu",
        },
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    machine = response.json()
    # The sources loop leaves it alone (its interval is an hour): only the
    # test's own polls touch it, so what each one lands is known.
    from satmachineadmin import poller

    poller._last_poll[machine["id"]] = time.monotonic()
    return machine


def settings(lamassu, device, sshd=None, **overrides) -> dict:
    body = {
        "host": "127.0.0.1",
        "port": 5432,
        "database": lamassu.name,
        "user": lamassu.reader,
        "password": lamassu.reader_password,
        "sslmode": "disable",
        "device_id": device,
        "poll_seconds": 1200,
    }
    if sshd is not None:
        body.update(ssh_host="127.0.0.1", ssh_port=sshd.port, ssh_user=sshd.user)
    body.update(overrides)
    return body


async def call(http, actor, method, path, expect=200, **kw):
    response = await http.request(method, f"{API}{path}", headers=actor.headers, **kw)
    assert response.status_code == expect, (path, response.status_code, response.text)
    return response.json() if response.content else None


async def wait_final(actor, machine_id, count, timeout=30):
    from satmachineadmin import crud

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await crud.list_settlements(actor.id, machine_id=machine_id, limit=1000)
        if len(rows) == count and all(s.status in FINAL for s in rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            seen = [(s.source_txid, s.status) for s in rows]
            raise AssertionError(f"wanted {count} final, last seen {seen}")
        await asyncio.sleep(0.05)


async def ssh_source(http, actor, lamassu, sshd, device, machine=None) -> dict:
    """A Lamassu machine reached through the module's sshd: key authorized,
    host key pinned (what an operator does once)."""
    machine = machine or await lamassu_machine(http, actor, actor.wallets[1])
    body = await call(
        http, actor, "PUT", f"/machines/{machine['id']}/lamassu",
        json=settings(lamassu, device, sshd),
    )  # fmt: skip
    sshd.authorize(body["ssh_authorized_keys_line"])
    test = await call(http, actor, "POST", f"/machines/{machine['id']}/lamassu/test")
    await call(
        http, actor, "POST", f"/machines/{machine['id']}/lamassu/pin-host-key",
        json={"fingerprint": test["host_key_fingerprint"]},
    )  # fmt: skip
    return machine


async def test_ssh_tunnel_pins_the_host_key_and_says_which_step_failed(
    http, make_user, lamassu, sshd, monkeypatch
):
    from satmachineadmin import crud_sources, ssh_tunnel

    op = await make_user("op_ssh", extra_wallets=1)
    machine = await lamassu_machine(http, op, op.wallets[1])
    url = f"/machines/{machine['id']}/lamassu"
    device = await new_device(lamassu, "ssh")
    body = await call(http, op, "PUT", url, json=settings(lamassu, device, sshd))
    assert body["ssh_public_key"].startswith("ssh-ed25519 ")
    assert body["ssh_authorized_keys_line"] == (
        'restrict,port-forwarding,permitopen="127.0.0.1:5432" ' + body["ssh_public_key"]
    )
    assert body["ssh_host_key_pinned"] is False and body["start_at"]
    assert "PRIVATE" not in str(body) and lamassu.reader_password not in str(body)
    assert (await call(http, op, "GET", url)) == body

    async def test() -> dict:
        return await call(http, op, "POST", url + "/test")

    # Unknown host key: shown, not trusted; the poller never opens a tunnel.
    first = await test()
    assert first["ok"] is False and first["step"] == "host_key_unknown", first
    assert first["host_key_fingerprint"] == sshd.fingerprint
    polled = await call(http, op, "POST", url + "/poll")
    assert "not pinned" in polled["error"] and polled["landed"] == 0
    assert machine["id"] not in ssh_tunnel.tunnel_pids()
    wrong = "SHA256:" + "A" * 43
    await call(
        http, op, "POST", url + "/pin-host-key", 409, json={"fingerprint": wrong}
    )
    await call(
        http, op, "POST", url + "/pin-host-key", 422, json={"fingerprint": "nope"}
    )
    pinned = await call(
        http, op, "POST", url + "/pin-host-key",
        json={"fingerprint": sshd.fingerprint},
    )  # fmt: skip
    assert pinned["ssh_host_key_pinned"] and (
        pinned["ssh_host_key_fingerprint"] == sshd.fingerprint
    )

    # Pinned, but the key is not in authorized_keys yet.
    refused = await test()
    assert refused["step"] == "key_refused", refused
    assert "authorized_keys" in refused["error"]
    sshd.authorize(body["ssh_authorized_keys_line"])
    assert (await test()) == {
        "ok": True, "error": None, "step": None,
        "host_key_fingerprint": sshd.fingerprint,
    }  # fmt: skip

    # The whole path: a sale made after the start lands through the tunnel.
    await credit(op.wallets[1].id, 500_000)
    await set_splits(op, [(op.wallets[0].id, "1")])
    sale = await lamassu.add_cash_out(device_id=device, crypto_atoms=266_800, fiat=2000)
    assert (await call(http, op, "POST", url + "/poll")) == {"landed": 1, "error": None}
    [settlement] = await wait_final(op, machine["id"], 1)
    assert settlement.source_txid == sale and settlement.gross_sats == 266_800
    assert machine["id"] in ssh_tunnel.tunnel_pids()

    # The database step through the tunnel: a wrong database user.
    source = await crud_sources.get_lamassu_source(machine["id"])
    assert source is not None
    no_db = await call(
        http, op, "PUT", url, json=settings(lamassu, device, sshd, database="nope")
    )
    assert no_db["ssh_host_key_pinned"]  # same server: the pin stays
    failed = await test()
    assert failed["step"] == "database" and "no database nope" in failed["error"]
    await call(http, op, "PUT", url, json=settings(lamassu, device, sshd))

    # The server gets another host key: refused, in words, until pinned again.
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    changed = await test()
    assert changed["step"] == "host_key_changed", changed
    assert "changed" in changed["error"]
    assert changed["host_key_fingerprint"] == sshd.fingerprint
    polled = await call(http, op, "POST", url + "/poll")
    assert polled["landed"] == 0 and "changed" in polled["error"], polled
    await call(
        http, op, "POST", url + "/pin-host-key",
        json={"fingerprint": changed["host_key_fingerprint"]},
    )  # fmt: skip
    assert (await test())["ok"] is True

    # No SSH server there; no ssh on the LNbits server at all.
    closed = await call(
        http, op, "PUT", url,
        json=settings(lamassu, device, sshd, ssh_port=ssh_tunnel.free_port()),
    )  # fmt: skip
    assert closed["ssh_host_key_pinned"] is False  # another server: pin again
    refused = await test()
    assert refused["step"] == "connect" and "connection refused" in refused["error"]
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = await test()
    assert missing["step"] == "ssh_missing" and "not installed" in missing["error"]


async def test_sshd_stopped_mid_poll_loses_nothing(
    http, make_user, lamassu, sshd, monkeypatch
):
    from satmachineadmin import lamassu as source_module

    op = await make_user("op_mid", extra_wallets=1)
    await credit(op.wallets[1].id, 2_000_000)
    await set_splits(op, [(op.wallets[0].id, "1")])
    device = await new_device(lamassu, "mid")
    machine = await ssh_source(http, op, lamassu, sshd, device)
    url = f"/machines/{machine['id']}/lamassu"
    sales = [
        await lamassu.add_cash_out(device_id=device, crypto_atoms=133_400, fiat=1000)
        for _ in range(4)
    ]
    monkeypatch.setattr(source_module, "PAGE", 1)  # one sale a page
    land_rows = source_module.land_rows
    pages: list[int] = []

    async def land_then_stop_sshd(machine_, rows, **kw):
        landed = await land_rows(machine_, rows, **kw)
        pages.append(len(rows))
        if len(pages) == 2:  # mid-poll: the server goes away
            sshd.stop()
        return landed

    monkeypatch.setattr(source_module, "land_rows", land_then_stop_sshd)
    try:
        cut = await call(http, op, "POST", url + "/poll")
        assert cut["landed"] == 2 and "SSH" in cut["error"], cut
        down = await call(http, op, "POST", url + "/poll")
        assert "connection refused" in down["error"] and down["landed"] == 0, down
        status = await call(http, op, "GET", url)
        assert "connection refused" in status["last_error"]
    finally:
        if sshd.process is None:
            sshd.start()
    up = await call(http, op, "POST", url + "/poll")
    assert up == {"landed": 2, "error": None}, up
    rows = await wait_final(op, machine["id"], 4)
    assert sorted(s.source_txid for s in rows) == sorted(sales)
    paid = 2_000_000 - await wallet_balance(op.wallets[1].id)
    assert paid == sum(s.commission_sats for s in rows) == 4 * 4_001


async def test_a_machines_past_lands_only_by_import_and_ignored_never(
    http, make_user, lamassu
):
    op = await make_user("op_past", extra_wallets=1)
    machine = await lamassu_machine(http, op, op.wallets[1])
    url = f"/machines/{machine['id']}/lamassu"
    device = await new_device(lamassu, "past")
    # 500 past cash-outs: one every 2 hours back from 1 hour ago (~42 days).
    await lamassu.execute(
        """INSERT INTO cash_out_txs (id, device_id, crypto_atoms, crypto_code,
           fiat, fiat_code, status, dispense, dispense_confirmed, created,
           commission_percentage, raw_ticker_price)
           SELECT gen_random_uuid(), $1, 133400, 'LN', 1000, 'GTQ', 'confirmed',
             true, true, now() - interval '1 hour' - n * interval '2 hours',
             0.03, 772800
           FROM generate_series(0, 499) AS n""",
        device,
    )
    not_dispensed = await lamassu.add_cash_out(
        device_id=device, crypto_atoms=133_400, fiat=1000, dispense_confirmed=False,
        created=ago(minutes=30),
    )  # fmt: skip
    await set_splits(op, [(op.wallets[0].id, "1")])
    await call(http, op, "PUT", url, json=settings(lamassu, device))
    assert (await call(http, op, "POST", url + "/poll")) == {"landed": 0, "error": None}

    seen = await call(
        http, op, "GET", url + "/cash-outs",
        params={"since": ago(days=60).isoformat(), "limit": 1000},
    )  # fmt: skip
    outcomes = [row["outcome"] for row in seen]
    assert outcomes.count("before_start") == 500 and len(seen) == 501
    # A period out of range is refused (until in year 1 made a 500).
    for bad in (
        {"until": "0001-01-02T00:00:00Z"},
        {"since": "0001-01-01T00:00:00", "until": "0001-01-03T00:00:00"},
        {"since": "9999-12-31T23:59:59"},
    ):
        await call(http, op, "GET", url + "/cash-outs", 422, params=bad)
    [odd] = [row for row in seen if row["outcome"] == "not_a_sale"]
    assert odd["id"] == not_dispensed and "not dispensed" in odd["reason"]

    # The last day holds 12 cash-outs; one was settled by hand.
    recent = sorted(
        (r for r in seen if r["outcome"] == "before_start"), key=lambda r: r["created"]
    )[-12:]
    ignored = recent[-1]["id"]
    mark = await call(
        http, op, "POST", f"{url}/cash-outs/{ignored}/ignore", 201,
        json={"reason": "paid in cash on Monday"},
    )  # fmt: skip
    assert (
        mark["author_user_id"] == op.id and mark["reason"] == "paid in cash on Monday"
    )
    await call(
        http, op, "POST", f"{url}/cash-outs/{ignored}/ignore", 409,
        json={"reason": "again"},
    )  # fmt: skip
    await call(
        http,
        op,
        "POST",
        f"{url}/cash-outs/not-a-uuid/ignore",
        422,
        json={"reason": "x"},
    )

    period = {"since": recent[0]["created"]}
    preview = await call(http, op, "POST", url + "/import", json=period)
    assert preview["confirmed"] is False and preview["landed"] is None
    assert preview["count"] == 11 and preview["ignored"] == 1
    assert preview["gross_sats"] == 11 * 133_400
    assert preview["fiat"] in ("11000", "11000.00000")
    assert sum(d["count"] for d in preview["days"]) == 11
    assert await wait_final(op, machine["id"], 0) == []  # a preview lands nothing

    for loose in ("yes", 1, "true"):  # only a JSON true lands money
        await call(
            http, op, "POST", url + "/import", 422, json={**period, "confirm": loose}
        )
    assert await wait_final(op, machine["id"], 0) == []

    # Imported once, with an empty machine wallet: awaiting funds, nothing paid.
    landed = await call(
        http, op, "POST", url + "/import", json={**period, "confirm": True}
    )
    assert landed["landed"] == 11
    again = await call(
        http, op, "POST", url + "/import", json={**period, "confirm": True}
    )
    assert again["landed"] == 0
    assert (await call(http, op, "POST", url + "/import", json=period))["count"] == 0
    from satmachineadmin import crud, poller

    deadline = asyncio.get_running_loop().time() + 20
    while True:
        rows = await crud.list_settlements(op.id, machine_id=machine["id"], limit=100)
        statuses = {s.status for s in rows}
        if len(rows) == 11 and statuses == {"awaiting_funds"}:
            break
        assert asyncio.get_running_loop().time() < deadline, statuses
        await asyncio.sleep(0.05)
    assert ignored not in {s.source_txid for s in rows}

    # Topped up: paid like any sale. The ignored one never.
    from satmachineadmin.tasks import queue_for_processing

    await credit(op.wallets[1].id, 1_000_000)
    await poller.release_funded(queue_for_processing)
    rows = await wait_final(op, machine["id"], 11)
    paid = 1_000_000 - await wallet_balance(op.wallets[1].id)
    assert (
        paid == sum(s.commission_sats for s in rows) == 11 * 4_001
    )  # no LP: net stays
    seen = await call(
        http, op, "GET", url + "/cash-outs",
        params={"since": recent[0]["created"], "outcome": "landed"},
    )  # fmt: skip
    assert len(seen) == 11 and all(r["settlement_id"] for r in seen)
    [still] = await call(
        http, op, "GET", url + "/cash-outs",
        params={"since": recent[0]["created"], "outcome": "ignored"},
    )  # fmt: skip
    assert still["id"] == ignored and still["reason"] == "paid in cash on Monday"
    assert still["ignored_by"] == op.id
    await call(
        http, op, "POST", f"{url}/cash-outs/{recent[0]['id']}/ignore", 409,
        json={"reason": "landed already"},
    )  # fmt: skip

    # A sale made since the start, ignored: never lands; un-ignored: lands.
    new = await lamassu.add_cash_out(device_id=device, crypto_atoms=133_400, fiat=1000)
    await call(
        http, op, "POST", f"{url}/cash-outs/{new}/ignore", 201, json={"reason": "test"}
    )
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 0
    await call(http, op, "DELETE", f"{url}/cash-outs/{new}/ignore", 204)
    await call(http, op, "DELETE", f"{url}/cash-outs/{new}/ignore", 404)
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 1
    await wait_final(op, machine["id"], 12)


async def test_an_unignored_sale_older_than_the_poll_window_lands(
    http, make_user, lamassu
):
    """The poll reads back a day before its cursor: a sale made since the
    start but days before the un-ignore is read again all the same."""
    from satmachineadmin import crud_sources

    op = await make_user("op_unig", extra_wallets=1)
    machine = await lamassu_machine(http, op, op.wallets[1])
    url = f"/machines/{machine['id']}/lamassu"
    device = await new_device(lamassu, "unig")
    await call(http, op, "PUT", url, json=settings(lamassu, device))
    source = await crud_sources.get_lamassu_source(machine["id"])
    assert source is not None
    source.start_at = ago(days=5)
    await crud_sources.save_lamassu_source(source)
    await credit(op.wallets[1].id, 500_000)
    await set_splits(op, [(op.wallets[0].id, "1")])
    old = await lamassu.add_cash_out(
        device_id=device, crypto_atoms=133_400, fiat=1000, created=ago(days=3)
    )
    await call(
        http, op, "POST", f"{url}/cash-outs/{old}/ignore", 201, json={"reason": "t"}
    )
    await lamassu.add_cash_out(device_id=device, crypto_atoms=133_400, fiat=1000)
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 1
    await call(http, op, "DELETE", f"{url}/cash-outs/{old}/ignore", 204)
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 1
    await wait_final(op, machine["id"], 2)


async def test_secrets_are_not_in_the_database_in_clear(
    http, make_user, lamassu, sshd, monkeypatch, tmp_path
):
    from loguru import logger
    from satmachineadmin import crud_sources, ssh_tunnel
    from satmachineadmin.secret_box import is_sealed, open_secret

    monkeypatch.setattr(ssh_tunnel, "TMP_ROOT", str(tmp_path))
    op = await make_user("op_sec", extra_wallets=1)
    device = await new_device(lamassu, "sec")
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    try:
        machine = await ssh_source(http, op, lamassu, sshd, device)
        polled = await call(http, op, "POST", f"/machines/{machine['id']}/lamassu/poll")
        assert polled["error"] is None, polled
    finally:
        logger.remove(sink)
    # The key was on disk (mode 600, folder 700) only until the tunnel was up.
    assert os.listdir(tmp_path) == []
    source = await crud_sources.get_lamassu_source(machine["id"])
    assert source is not None
    assert is_sealed(source.password) and is_sealed(source.ssh_private_key)
    assert open_secret(source.password) == lamassu.reader_password
    key = open_secret(source.ssh_private_key)
    assert key and "OPENSSH PRIVATE KEY" in key
    key_body = "".join(key.splitlines()[1:-1])[:60]
    assert (await call(http, op, "GET", f"/machines/{machine['id']}/lamassu"))[
        "password_set"
    ]
    if os.environ.get("SATMACHINE_TEST_POSTGRES"):
        from satmachineadmin import crud

        async with crud.connection() as c:
            rows = await crud._scalar_rows(
                c, "SELECT * FROM satmachineadmin.lamassu_sources", {}
            )
        dump = str(rows)
    else:
        from lnbits.settings import settings as lnbits_settings

        folder = lnbits_settings.lnbits_data_folder
        dump = "".join(
            open(os.path.join(folder, name), "rb").read().decode("latin-1")
            for name in os.listdir(folder)
            if "sqlite" in name
        )
        assert "lamassu_sources" in dump  # the right files were read
    assert lamassu.reader_password not in dump
    assert key_body not in dump
    logged = "\n".join(lines)
    assert "PRIVATE KEY" not in logged and key_body not in logged
    assert lamassu.reader_password not in logged


async def test_a_changed_source_keeps_its_settlements_and_starts_from_the_change(
    http, make_user, lamassu
):
    op = await make_user("op_chg", extra_wallets=1)
    await credit(op.wallets[1].id, 1_000_000)
    await set_splits(op, [(op.wallets[0].id, "1")])
    machine = await lamassu_machine(http, op, op.wallets[1])
    mid = machine["id"]
    url = f"/machines/{mid}/lamassu"
    device = await new_device(lamassu, "chg")
    await call(http, op, "PUT", url, json=settings(lamassu, device))
    first = await lamassu.add_cash_out(
        device_id=device, crypto_atoms=133_400, fiat=1000
    )
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 1
    await wait_final(op, mid, 1)

    npub = make_npub()
    await call(http, op, "PUT", f"/machines/{mid}", 422, json={"source": "bitspire"})
    changed = await call(
        http, op, "PUT", f"/machines/{mid}", json={"source": "bitspire", "npub": npub}
    )
    assert changed["source"] == "bitspire" and changed["npub"] == npub
    await call(http, op, "POST", url + "/poll", 409)  # no longer Lamassu
    sold_meanwhile = await lamassu.add_cash_out(
        device_id=device, crypto_atoms=133_400, fiat=1000, created=ago(seconds=1)
    )
    back = await call(http, op, "PUT", f"/machines/{mid}", json={"source": "lamassu"})
    assert back["source"] == "lamassu" and back["npub"] == f"lamassu:{mid}"
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 0
    rows = await wait_final(op, mid, 1)
    assert [s.source_txid for s in rows] == [first]  # kept; the gap never lands
    listing = await call(http, op, "GET", url + "/cash-outs")
    by_id = {r["id"]: r["outcome"] for r in listing}
    assert by_id == {first: "landed", sold_meanwhile: "before_start"}

    # The Lamassu device replaced: the new one starts now.
    other = await new_device(lamassu, "chg2")
    await lamassu.add_cash_out(device_id=other, crypto_atoms=133_400, fiat=1000,
                               created=ago(minutes=5))  # fmt: skip
    replaced = await call(http, op, "PUT", url, json=settings(lamassu, other))
    assert datetime.fromisoformat(replaced["start_at"]) > ago(minutes=1)
    assert (await call(http, op, "POST", url + "/poll"))["landed"] == 0
    await call(http, op, "PUT", f"/machines/{mid}", json={"source": "manual"})
    assert len(await wait_final(op, mid, 1)) == 1
    # Another operator sees none of it.
    rival = await make_user("rival_chg")
    for method, path in (
        ("GET", url),
        ("GET", url + "/cash-outs"),
        ("POST", url + "/test"),
        ("DELETE", f"{url}/cash-outs/{first}/ignore"),
    ):
        await call(http, rival, method, path, 404)
    await call(
        http,
        rival,
        "POST",
        url + "/import",
        404,
        json={"since": ago(days=1).isoformat()},
    )
    await call(http, rival, "PUT", f"/machines/{mid}", 404, json={"source": "lamassu"})


async def test_the_migration_seals_secrets_stored_in_plain_text(http, make_user):
    from satmachineadmin import crud
    from satmachineadmin.migrations import seal_plain_secrets
    from satmachineadmin.secret_box import is_sealed, open_secret

    op = await make_user("op_mig", extra_wallets=1)
    machine = await lamassu_machine(http, op, op.wallets[1])
    tag = os.urandom(4).hex()
    async with crud.connection() as c:
        await crud._execute(
            c,
            """INSERT INTO satmachineadmin.lamassu_sources (machine_id,
               operator_user_id, host, database_name, db_user, password,
               device_id) VALUES (:m, :op, 'h', 'lamassu', 'u', :pw, :d)""",
            {"m": machine["id"], "op": op.id, "pw": f"plain-{tag}", "d": tag},
        )
        await crud._execute(
            c,
            """INSERT INTO satmachineadmin.notification_settings
               (operator_user_id, webhook_url, webhook_secret)
               VALUES (:op, 'https://example.com/hook', :s)""",
            {"op": op.id, "s": f"whsec-{tag}"},
        )
        assert await seal_plain_secrets(c) >= 2
        assert await seal_plain_secrets(c) == 0  # sealed ones stay as they are
        rows = await crud._scalar_rows(
            c,
            """SELECT s.password AS pw, n.webhook_secret AS ws
               FROM satmachineadmin.lamassu_sources s,
                    satmachineadmin.notification_settings n
               WHERE s.machine_id = :m AND n.operator_user_id = :op""",
            {"m": machine["id"], "op": op.id},
        )
    [row] = rows
    assert is_sealed(row["pw"]) and is_sealed(row["ws"])
    assert open_secret(row["pw"]) == f"plain-{tag}"
    assert open_secret(row["ws"]) == f"whsec-{tag}"
    settings_ = await call(http, op, "GET", "/notifications")
    assert (
        settings_["has_webhook_secret"] is True and settings_["webhook_secret"] is None
    )

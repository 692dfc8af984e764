"""Autoforward in a real LNbits: DCA sats from a real sale, forwarded to a real
LNURL-pay endpoint on 127.0.0.1 whose invoices are made on another wallet of
the same LNbits (so LNbits pays them internally). Private LNURL targets are
allowed in these tests only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import credit, wallet_balance
from lnurl_server import LnurlServer
from scenario import add_lp, add_machine, dca_sale, make_sale, wait_for_settlement
from test_api_support import call


@pytest.fixture
def private_lnurl():
    from lnbits.settings import settings

    before = settings.lnbits_lnurl_allow_private_ips
    settings.lnbits_lnurl_allow_private_ips = True
    yield
    settings.lnbits_lnurl_allow_private_ips = before


@pytest.fixture
async def lnurl_server(http, private_lnurl):
    async def make_invoice(inkey: str, sats: int, memo: str) -> str:
        response = await http.post(
            "/api/v1/payments",
            json={"out": False, "amount": sats, "memo": memo},
            headers={"X-API-KEY": inkey},
        )
        assert response.status_code == 201, response.text
        return response.json()["bolt11"]

    async with LnurlServer(make_invoice) as server:
        yield server


@pytest.fixture
async def customer(make_user):
    user = await make_user("customer")
    await credit(user.wallet.id, 5_000_000)
    return user


async def dca_position(http, operator, lp, customer):
    """An LP position at a machine that sold once: its DCA leg is real sats
    in the LP's wallet. Returns (client, sats it received)."""
    from satmachineadmin import crud

    machine = await add_machine(operator, operator.wallets[1])
    client = await add_lp(machine, lp, Decimal(9000))
    before = await wallet_balance(lp.wallet.id)
    payment_hash = await make_sale(
        http, operator.wallets[1], customer.wallet, dca_sale(machine)
    )
    await wait_for_settlement(payment_hash, statuses={"processed"})
    received = await wallet_balance(lp.wallet.id) - before
    assert received == dca_sale(machine).net_sats
    stored = await crud.get_client(client.id)
    return stored, received


async def turn_on(http, lp, client, address: str, threshold: int = 1000):
    r = await call(
        http, lp, "PUT", f"/lp/positions/{client.id}",
        json={"autoforward_enabled": True, "autoforward_address": address,
              "autoforward_threshold_sats": threshold},
    )  # fmt: skip
    assert r.status_code == 200, r.text


async def forwards(client_id: str):
    from satmachineadmin import crud

    legs = await crud.list_payments(
        (await crud.get_client(client_id)).operator_user_id,
        leg_type="autoforward",
        client_id=client_id,
        limit=100,
    )
    return sorted(legs, key=lambda leg: leg.idempotency_key)


async def test_forwards_exactly_the_dca_sats_once(
    http, operator, make_user, customer, lnurl_server
):
    from satmachineadmin import autoforward

    lp, payee = await make_user("lp"), await make_user("payee")
    client, received = await dca_position(http, operator, lp, customer)
    await credit(lp.wallet.id, 7_000)  # the LP's own money: never forwarded
    lnurl_server.payees["payee"] = payee.wallet.inkey
    await turn_on(http, lp, client, lnurl_server.bech32("payee"))

    await autoforward.run_once()
    [leg] = await forwards(client.id)
    assert leg.status == "completed", leg
    assert leg.amount_sats == received
    assert leg.idempotency_key == f"autoforward:{client.id}:1"
    assert leg.source_wallet_id == lp.wallet.id
    assert await wallet_balance(payee.wallet.id) == received
    assert await wallet_balance(lp.wallet.id) == 7_000
    assert lnurl_server.requests == [received * 1000]

    await autoforward.run_once()  # nothing new came in: nothing sent
    assert len(await forwards(client.id)) == 1
    assert await wallet_balance(payee.wallet.id) == received

    dashboard = (await call(http, lp, "GET", "/lp/dashboard")).json()
    [position] = dashboard["positions"]
    assert position["autoforward"]["forwarded_sats"] == received
    assert position["autoforward"]["waiting_sats"] == 0
    assert position["autoforward"]["history"][0]["status"] == "completed"
    listed = await call(http, lp, "GET", "/lp/payments?leg_type=autoforward")
    assert [p["id"] for p in listed.json()] == [leg.id]


async def test_below_threshold_nothing_is_sent(
    http, operator, make_user, customer, lnurl_server
):
    from satmachineadmin import autoforward

    lp, payee = await make_user("lp"), await make_user("payee")
    client, received = await dca_position(http, operator, lp, customer)
    lnurl_server.payees["p2"] = payee.wallet.inkey
    await turn_on(http, lp, client, lnurl_server.lnurlp("p2"), threshold=received + 1)
    await autoforward.run_once()
    assert await forwards(client.id) == []
    assert lnurl_server.requests == []
    assert await wallet_balance(lp.wallet.id) == received
    dashboard = (await call(http, lp, "GET", "/lp/dashboard")).json()
    assert dashboard["positions"][0]["autoforward"]["waiting_sats"] == received


async def test_failures_keep_the_sats_back_off_and_tell_the_operator_once(
    http, operator, make_user, customer, lnurl_server, monkeypatch
):
    from satmachineadmin import autoforward, crud_lp, notifications
    from satmachineadmin.models import utc_now

    told: list[tuple[str, str]] = []
    # Only this operator's problems: the other background loops of the same
    # LNbits (the settlement watcher, ...) notify other tests' operators.

    async def started(op: str, key: str, title: str, body: str = "") -> None:
        if op == operator.id:
            told.append(("started", key))

    async def cleared(op: str, key: str, body: str = "") -> None:
        if op == operator.id:
            told.append(("cleared", key))

    monkeypatch.setattr(notifications, "problem_started", started)
    monkeypatch.setattr(notifications, "problem_cleared", cleared)
    lp, payee = await make_user("lp"), await make_user("payee")
    client, received = await dca_position(http, operator, lp, customer)
    lnurl_server.payees["p3"] = payee.wallet.inkey
    lnurl_server.fail = True
    await turn_on(http, lp, client, lnurl_server.lnurlp("p3"))

    later = utc_now()
    for attempt in range(1, 5):
        await autoforward.run_once(now=later)
        prefs = await crud_lp.get_preferences(client.id)
        assert prefs is not None and prefs.autoforward_failures == attempt
        assert "temporarily down" in (prefs.autoforward_last_error or "")
        wait = prefs.autoforward_next_try_at - utc_now()
        assert autoforward.backoff(attempt) - timedelta(seconds=5) < wait
        await autoforward.run_once(now=later)  # not due yet: not tried
        assert len(lnurl_server.requests) == attempt
        later = prefs.autoforward_next_try_at + timedelta(seconds=1)
    assert await wallet_balance(lp.wallet.id) == received
    assert await forwards(client.id) == []
    key = f"autoforward-failing:{client.id}"
    assert told == [("started", key)]

    lnurl_server.fail = False
    await autoforward.run_once(now=later)
    [leg] = await forwards(client.id)
    assert leg.status == "completed" and leg.amount_sats == received
    assert await wallet_balance(payee.wallet.id) == received
    assert told == [("started", key), ("cleared", key)]
    prefs = await crud_lp.get_preferences(client.id)
    assert prefs.autoforward_failures == 0 and prefs.autoforward_next_try_at is None


async def test_a_crash_after_paying_never_pays_twice(
    http, operator, make_user, customer, lnurl_server, monkeypatch
):
    """The process dies after LNbits paid the forward and before its outcome
    was written: the next run asks LNbits and records it, paying nothing."""
    from satmachineadmin import autoforward

    lp, payee = await make_user("lp"), await make_user("payee")
    client, received = await dca_position(http, operator, lp, customer)
    lnurl_server.payees["p4"] = payee.wallet.inkey
    await turn_on(http, lp, client, lnurl_server.lnurlp("p4"))

    real_record = autoforward._record

    async def crash(*args, **kwargs):
        raise RuntimeError("process died before recording")

    monkeypatch.setattr(autoforward, "_record", crash)
    await autoforward.run_once()
    [leg] = await forwards(client.id)
    assert leg.status == "pending" and leg.payment_hash
    assert await wallet_balance(payee.wallet.id) == received  # LNbits paid it

    monkeypatch.setattr(autoforward, "_record", real_record)
    await autoforward.run_once()
    await autoforward.run_once()
    [leg] = await forwards(client.id)
    assert leg.status == "completed"
    assert await wallet_balance(payee.wallet.id) == received
    assert await wallet_balance(lp.wallet.id) == 0
    assert len(lnurl_server.requests) == 1


async def test_forwards_follow_the_wallet_and_never_take_other_funds(
    http, operator, make_user, customer, lnurl_server
):
    """DCA sats in the old wallet are not the new wallet's to forward; a
    wallet holding less than its DCA sats forwards only what it holds."""
    from satmachineadmin import autoforward

    lp = await make_user("lp", extra_wallets=1)
    payee = await make_user("payee")
    client, received = await dca_position(http, operator, lp, customer)
    await credit(lp.wallets[1].id, 50_000)  # not DCA money
    lnurl_server.payees["p5"] = payee.wallet.inkey
    r = await call(
        http,
        lp,
        "PUT",
        f"/lp/positions/{client.id}",
        json={"wallet_id": lp.wallets[1].id},
    )
    assert r.status_code == 200, r.text
    await turn_on(http, lp, client, lnurl_server.lnurlp("p5"))
    await autoforward.run_once()
    assert await forwards(client.id) == []
    assert await wallet_balance(lp.wallets[1].id) == 50_000

    # back to the first wallet, which the LP partly spent meanwhile
    r = await call(
        http, lp, "PUT", f"/lp/positions/{client.id}", json={"wallet_id": lp.wallet.id}
    )
    assert r.status_code == 200, r.text
    spent = await http.post(
        "/api/v1/payments",
        json={"out": False, "amount": 1000, "memo": "coffee"},
        headers={"X-API-KEY": payee.wallets[0].inkey},
    )
    await http.post(
        "/api/v1/payments",
        json={"out": True, "bolt11": spent.json()["bolt11"]},
        headers={"X-API-KEY": lp.wallet.adminkey},
    )
    await autoforward.run_once()
    [leg] = await forwards(client.id)
    assert leg.status == "completed" and leg.amount_sats == received - 1000
    assert await wallet_balance(lp.wallet.id) == 0
    assert await wallet_balance(payee.wallet.id) == received


async def test_a_forward_lnbits_left_half_done_is_finished_once(
    http, operator, make_user, customer, lnurl_server, monkeypatch, quiet_tasks
):
    """A forward to an address on this LNbits is an internal transfer, which
    LNbits writes in two commits. The process died between them (the LP's
    wallet debited, the payee's invoice still pending): the next run finishes
    it forward and records the repair. LNbits' pending check then rewrites
    the invoice failed from a stale copy: the sweep finishes it again, once."""
    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from satmachineadmin import autoforward, payer
    from satmachineadmin.models import utc_now

    lp, payee = await make_user("lp"), await make_user("payee")
    client, received = await dca_position(http, operator, lp, customer)
    lnurl_server.payees["p5"] = payee.wallet.inkey
    await turn_on(http, lp, client, lnurl_server.lnurlp("p5"))
    quiet_tasks()

    async def crash(*args, **kwargs):
        raise RuntimeError("process died before recording")

    real_record = autoforward._record
    monkeypatch.setattr(autoforward, "_record", crash)
    await autoforward.run_once()
    [leg] = await forwards(client.id)
    invoice = await get_standalone_payment(leg.payment_hash, incoming=True)
    assert invoice is not None and invoice.success
    invoice.status = PaymentState.PENDING  # LNbits' second commit never happened
    await update_payment(invoice)
    assert await wallet_balance(lp.wallet.id) == 0
    assert await wallet_balance(payee.wallet.id) == 0

    monkeypatch.setattr(autoforward, "_record", real_record)
    await autoforward.run_once()
    [leg] = await forwards(client.id)
    assert leg.status == "completed"
    assert leg.repaired_at is not None and "marked paid" in leg.repair_note
    assert await wallet_balance(payee.wallet.id) == received
    assert await wallet_balance(lp.wallet.id) == 0

    invoice = await get_standalone_payment(leg.payment_hash, incoming=True)
    invoice.status = PaymentState.FAILED  # the pending check's stale write
    await update_payment(invoice)
    assert await wallet_balance(payee.wallet.id) == 0
    since = utc_now() - timedelta(minutes=1)
    assert await payer.sweep_half_done(since) == 1
    assert await wallet_balance(payee.wallet.id) == received
    assert await payer.sweep_half_done(since) == 0
    assert await wallet_balance(lp.wallet.id) == 0
    assert len(lnurl_server.requests) == 1

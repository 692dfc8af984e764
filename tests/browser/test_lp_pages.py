"""The LP's side of the page in a real browser, on a live LNbits.

An operator invites an LP by username (and makes and revokes a code-only
invite); the LP opens the invite link, sees the machine, picks the wallet
that receives the sats and accepts. After a confirmed deposit and two ATM
sales, the LP's dashboard shows the numbers the ledger holds (its payouts,
its wallet balance). The LP then moves the position to another wallet and
turns autoforward on (a bad address and a too small threshold are refused
with the API's reason); the next sale pays into the new wallet; the operator
sees the LP's preferences read-only. Screenshots: the invite dialog, the
accept dialog, the LP dashboard, the preferences dialog.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from test_pages import (
    EXT_PAGE,
    FEE_PCT,
    NET,
    RATE,
    SALE_FIAT,
    browser_session,
    make_npub,
    sats,
    text,
)

from bench.simulator import Sale, run

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips these tests, saying why
    expect = None

REFUSED = "the server responded with a status of 422"


def sell(lnbits: Any, operator: Any, customer: Any, sale: Sale, count: int) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(base_url=lnbits.base, timeout=30) as http:
            await run(
                http,
                machine_inkey=operator.wallet("ATM wallet").inkey,
                customer_adminkey=customer.wallets[0].adminkey,
                sale=sale,
                count=count,
                per_second=2,
            )

    # Playwright's sync API owns this thread's event loop: sell from another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result(timeout=60)


def wait_for_payouts(lnbits: Any, lp: Any, count: int) -> list[dict[str, Any]]:
    """The LP's completed payouts, once there are ``count`` of them."""
    payouts: list[dict[str, Any]] = []
    for _ in range(120):
        payouts = lnbits.api(lp, "GET", "/lp/payments")
        if len(payouts) >= count:
            break
        time.sleep(0.25)
    assert len(payouts) == count, payouts
    assert {p["status"] for p in payouts} == {"completed"}
    return payouts


def wallet_sats(lnbits: Any, person: Any, wallet_id: str) -> int:
    lnbits.http.cookies.clear()
    body = lnbits.http.get("/api/v1/auth", headers=person.headers).json()
    wallet = next(w for w in body["wallets"] if w["id"] == wallet_id)
    return int(wallet["balance_msat"]) // 1000


def test_lp_invite_dashboard_and_preferences(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    lnbits.superuser()  # the first install enables the extension
    operator = lnbits.register("operator", wallets=("ATM wallet",))
    lp = lnbits.register("lp", wallets=("Savings", "Spending"))
    customer = lnbits.register("customer")
    lnbits.credit(customer.wallets[0].id, 1_000_000)
    npub = make_npub()
    machine = lnbits.api(
        operator,
        "POST",
        "/machines",
        json={
            "npub": npub,
            "wallet_id": operator.wallet("ATM wallet").id,
            "name": "Zone 2 ATM",
            "currency": "GTQ",
        },
    )

    # --- the operator invites the LP by username, and revokes a spare code ----
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.tab("LPs & deposits")
        page.get_by_text("No liquidity providers yet").wait_for()

        s.test_id("invite-lp").click()
        s.test_id("invite-username").fill("nobody_by_this_name")
        s.test_id("invite-save").click()
        page.get_by_text(
            "Could not create the invite: username: no LNbits user has this username"
        ).wait_for()
        s.test_id("invite-username").fill(lp.username)
        s.shot(screenshots, "invite-create")
        s.test_id("invite-save").click()
        created = s.test_id("invite-created")
        created.wait_for()
        code = s.test_id("invite-code").input_value()
        url = s.test_id("invite-url").input_value()
        assert len(code) >= 16, code
        assert url.endswith(f"{EXT_PAGE}?invite={code}"), url
        created.get_by_text(f"For {lp.username} at Zone 2 ATM").wait_for()
        s.shot(screenshots, "invite-created")
        s.test_id("invite-done").click()
        created.wait_for(state="hidden")

        # A second invite, code only: listed, then revoked.
        s.test_id("invite-lp").click()
        s.test_id("invite-save").click()
        spare = s.test_id("invite-code").input_value()
        s.test_id("invite-done").click()
        invites = s.test_id("invites-table").locator("tbody tr")
        expect(invites).to_have_count(2)
        invites.filter(has_text=lp.username).wait_for()
        spare_row = invites.filter(has_text=spare)
        spare_row.get_by_text("anyone with the code").wait_for()
        spare_row.locator('[data-test="revoke-invite"]').click()
        s.confirm()
        page.get_by_text("Invite revoked").wait_for()
        expect(invites).to_have_count(1)
        assert [i["code"] for i in lnbits.api(operator, "GET", "/invites")] == [code]
        assert [e for e in s.errors if REFUSED not in e] == [], s.errors

    # --- the LP opens the link, picks a wallet and accepts --------------------
    savings = lp.wallet("Savings")
    spending = lp.wallet("Spending")
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(lp)
        # The revoked code, typed by hand: refused with the API's reason.
        s.test_id("header-accept").click()
        s.test_id("accept-code").fill(spare)
        s.test_id("accept-save").click()
        s.test_id("accept-form").get_by_text("Invite not found").wait_for()
        expect(s.test_id("accept-machine")).to_have_count(0)
        page.keyboard.press("Escape")
        s.test_id("accept-form").wait_for(state="hidden")

        page.goto(url)
        s.test_id("accept-machine").get_by_text("Zone 2 ATM").wait_for()
        assert text(s.test_id("accept-currency")) == "GTQ"
        s.choose(s.test_id("accept-wallet"), "Savings")
        s.shot(screenshots, "invite-accept")
        s.test_id("accept-save").click()
        page.get_by_text("You are now an LP at Zone 2 ATM").wait_for()
        card = s.test_id("position-card")
        card.get_by_text("Zone 2 ATM").wait_for()
        card.get_by_text("paid into Savings").wait_for()
        assert "invite=" not in page.url  # a reload does not offer it again
        not_found = "the server responded with a status of 404"
        assert [e for e in s.errors if not_found not in e] == [], s.errors

    # The position exists, LP-managed, paid into Savings; the invite is used.
    (client,) = lnbits.api(operator, "GET", "/clients")
    assert (client["user_id"], client["wallet_id"]) == (lp.id, savings.id)
    assert client["machine_id"] == machine["id"]
    assert lnbits.api(operator, "GET", "/invites") == []
    prefs = lnbits.api(operator, "GET", f"/clients/{client['id']}/preferences")
    assert prefs["lp_managed"] is True

    # --- a confirmed deposit of 2 000 GTQ and two sales of 500 ---------------
    deposit = lnbits.api(
        operator,
        "POST",
        "/deposits",
        json={"client_id": client["id"], "amount": "2000"},
    )
    lnbits.api(
        operator,
        "PUT",
        f"/deposits/{deposit['id']}/status",
        json={"status": "confirmed"},
    )
    sale = Sale(SALE_FIAT, RATE, FEE_PCT, "GTQ", npub)
    sell(lnbits, operator, customer, sale, 2)
    payouts = wait_for_payouts(lnbits, lp, 2)

    # The ledger: the payout legs and what LNbits credited the wallet.
    ledger_sats = sum(p["amount_sats"] for p in payouts)
    ledger_fiat = sum(Decimal(str(p["fiat_amount"])) for p in payouts)
    assert ledger_sats == 2 * NET
    assert wallet_sats(lnbits, lp, savings.id) == ledger_sats
    operator_legs = lnbits.api(
        operator, "GET", "/payments", params={"client_id": client["id"]}
    )
    assert sorted(p["amount_sats"] for p in operator_legs) == sorted(
        p["amount_sats"] for p in payouts
    )
    average = ledger_fiat * 100_000_000 / ledger_sats

    # --- the LP's dashboard shows the ledger's numbers ------------------------
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(lp)
        card = s.test_id("position-card")
        card.wait_for()
        assert text(card.locator('[data-test="position-sats"]')) == sats(ledger_sats)
        assert text(s.test_id("total-sats")) == sats(ledger_sats)
        assert text(card.locator('[data-test="position-purchases"]')) == "2"
        assert text(s.test_id("total-purchases")) == "2"
        assert text(card.locator('[data-test="position-remaining"]')) == (
            "GTQ 1,000.00"
        )
        totals = s.test_id("total-GTQ")
        assert text(totals.locator('[data-test="total-deposited"]')) == "GTQ 2,000.00"
        assert text(totals.locator('[data-test="total-balance"]')) == "GTQ 1,000.00"
        assert text(card.locator('[data-test="position-pending"]')) == "GTQ 0.00"
        shown = text(card.locator('[data-test="position-sats"] + div'))
        assert shown.startswith("average GTQ ") and shown.endswith(" / BTC"), shown
        shown_average = Decimal(
            shown[len("average GTQ ") : -len(" / BTC")].replace(",", "")
        )
        assert abs(shown_average - average) <= Decimal("0.01"), (shown, average)
        card.get_by_text(f"last {sats(NET)} for GTQ 500.00").wait_for()
        card.get_by_text("Autoforward off").wait_for()

        s.test_id("payout-chart").wait_for()
        s.shot(screenshots, "lp-dashboard", full_page=True)

        # The cumulative chart at every range; the history, filtered and CSV.
        s.test_id("payout-chart").wait_for()
        for label in ("7D", "90D", "1Y", "All", "30D"):
            with page.expect_response(lambda r: "/lp/payments/series" in r.url) as r:
                s.test_id("chart-range").get_by_role("button", name=label).click()
            series = r.value.json()
            assert series["points"][-1]["cumulative_sats"] == ledger_sats
            expect(s.test_id("payout-chart")).to_be_visible()
        history = s.test_id("lp-payments-table").locator("tbody tr")
        expect(history.filter(has_text=sats(NET))).to_have_count(2)
        s.choose(s.test_id("history-type"), "Auto-forward")
        s.test_id("lp-payments-table").get_by_text(
            "No payouts match these filters."
        ).wait_for()
        with page.expect_download() as download:
            s.test_id("lp-export").click()
        assert "leg_type=autoforward" in download.value.url
        page.locator(".q-field", has=s.test_id("history-type")).locator(
            ".q-field__focusable-action"
        ).click()  # clear the filter
        expect(history.filter(has_text=sats(NET))).to_have_count(2)
        # Dates: from tomorrow, nothing; from today to today, both.
        today = date.today()
        s.test_id("history-since").fill((today + timedelta(days=1)).isoformat())
        s.test_id("lp-payments-table").get_by_text(
            "No payouts match these filters."
        ).wait_for()
        s.test_id("history-since").fill(today.isoformat())
        s.test_id("history-until").fill(today.isoformat())
        expect(history.filter(has_text=sats(NET))).to_have_count(2)
        with page.expect_download() as download:
            s.test_id("lp-export").click()
        lines = Path(download.value.path()).read_text().splitlines()
        assert lines[0].startswith("id,created_at,")
        assert len(lines) == 1 + 2

        # --- the LP moves the position to Spending and turns autoforward on ---
        card.locator('[data-test="position-prefs"]').click()
        form = s.test_id("prefs-form")
        form.wait_for()
        s.choose(s.test_id("prefs-wallet"), "Spending")
        # Fixed mode above the operator's maximum (2 000 GTQ): refused.
        form.get_by_text("Fixed: daily limit").click()
        form.get_by_text("At most GTQ 2,000.00, the operator's maximum").wait_for()
        s.test_id("prefs-limit").fill("2500")
        s.test_id("prefs-save").click()
        page.get_by_text(
            "Could not save your preferences: fixed_mode_daily_limit: must be at "
            "most 2000 GTQ"
        ).wait_for()
        form.get_by_text("Flow: share of every sale").click()
        s.test_id("prefs-autoforward").click()
        s.test_id("prefs-address").fill("not an address")
        s.test_id("prefs-threshold").fill("1000000")
        s.test_id("prefs-save").click()
        page.get_by_text(
            "Could not save your preferences: autoforward_address: must be a "
            "Lightning address"
        ).wait_for()
        s.test_id("prefs-address").fill("alice@example.com")
        s.test_id("prefs-threshold").fill("500")
        s.test_id("prefs-save").click()
        page.get_by_text("autoforward_threshold_sats: must be at least 1000").wait_for()
        s.test_id("prefs-threshold").fill("1000000")
        s.shot(screenshots, "lp-preferences")
        s.test_id("prefs-save").click()
        page.get_by_text("Saved your preferences").wait_for()
        form.wait_for(state="hidden")
        card.get_by_text("paid into Spending").wait_for()
        card.get_by_text("Forwards to alice@example.com from 1,000,000 sats").wait_for()
        assert [e for e in s.errors if REFUSED not in e] == [], s.errors

    mine = lnbits.api(lp, "GET", f"/lp/positions/{client['id']}")
    assert mine["wallet_id"] == spending.id
    assert (mine["autoforward_enabled"], mine["autoforward_address"]) == (
        True,
        "alice@example.com",
    )
    assert mine["autoforward_threshold_sats"] == 1_000_000

    # The next sale pays into Spending; Savings keeps what it had.
    sell(lnbits, operator, customer, sale, 1)
    payouts = wait_for_payouts(lnbits, lp, 3)
    assert wallet_sats(lnbits, lp, spending.id) == NET
    assert wallet_sats(lnbits, lp, savings.id) == ledger_sats

    # --- the operator sees the LP's preferences, read-only -------------------
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.tab("LPs & deposits")
        lps = s.test_id("lps-table")
        lps.locator('[data-test="lp-managed"]').wait_for()
        lps.get_by_text(sats(3 * NET)).wait_for()
        s.test_id("edit-lp").click()
        s.test_id("lp-managed-banner").wait_for()
        expect(s.test_id("lp-wallet-id")).to_have_value(spending.id)
        expect(s.test_id("lp-wallet-id")).not_to_be_editable()
        expect(s.test_id("lp-autoforward")).to_have_value(
            "alice@example.com from 1,000,000 sats"
        )
        s.test_id("lp-name").fill("Alice")
        s.shot(screenshots, "lp-managed-operator")
        s.test_id("lp-save").click()
        page.get_by_text("Saved the LP").wait_for()
        lps.get_by_text("Alice").wait_for()
        assert s.errors == [], s.errors
    (client,) = lnbits.api(operator, "GET", "/clients")
    assert (client["username"], client["wallet_id"]) == ("Alice", spending.id)

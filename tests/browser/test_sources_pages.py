"""Sale sources on the page, in a real browser on a live LNbits: an operator
adds a manual machine and records a sale by hand (the empty wallet makes it
wait: the table shows what the machine owes), then a Lamassu machine whose
connection is set, tested and polled from its dialog. The password typed in
never comes back to the page. No console errors."""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from test_pages import browser_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from lamassu_db import HOST, PORT, ago, create_lamassu_db, drop_lamassu_db

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips these tests, saying why
    expect = None


def _npub() -> str:
    import os

    from bech32 import bech32_encode, convertbits

    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


NPUB = _npub()


def run_async(coroutine: Any) -> Any:
    """Playwright's sync API holds this thread's event loop: use another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def add_machine(s: Any, name: str, source_label: str, wallet: str) -> None:
    page = s.page
    s.tab("Machines")  # the Overview is the first tab
    s.test_id("add-machine").click()
    s.choose(s.test_id("machine-source"), source_label)
    expect(s.test_id("machine-npub")).to_have_count(0)  # no npub but bitSpire
    s.test_id("machine-name").fill(name)
    currency = s.test_id("machine-currency")
    currency.click()
    currency.fill("GTQ")
    page.locator(".q-menu .q-item").filter(has_text="GTQ").first.click()
    s.choose(s.test_id("machine-wallet"), wallet)
    s.test_id("machine-save").click()
    s.test_id("machines-table").get_by_text(name).wait_for()


def test_manual_and_lamassu_sources_from_the_console(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    lnbits.superuser()  # the first install, before anyone registers
    operator = lnbits.register("operator", wallets=("Manual ATM", "Lamassu ATM"))
    # The whole commission goes to the operator's first wallet: paid from the
    # machine wallet, which is empty.
    lnbits.api(
        operator,
        "PUT",
        "/commission-splits",
        json={"legs": [{"wallet_id": operator.wallets[0].id, "pct": "1"}]},
    )
    lamassu = run_async(create_lamassu_db())
    try:
        with browser_session(browser, lnbits.base) as s:
            page = s.page
            s.login(operator)

            # --- a manual machine and a sale recorded by hand ------------------
            add_machine(s, "Shop till", "Manual", "Manual ATM")
            row = s.test_id("machines-table").locator("tr").filter(has_text="Shop till")
            row.locator('[data-test="open-manual"]').click()
            s.test_id("manual-reference").fill("receipt-0001")
            s.test_id("manual-fiat").fill("2000")
            s.test_id("manual-rate").fill("772800")
            s.test_id("manual-commission").fill("8001")
            s.test_id("manual-note").fill("paid in cash at the counter")
            s.test_id("manual-save").click()
            page.get_by_text("Recorded receipt-0001").wait_for()
            # The wallet is empty: the sale waits, and the page says so.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = lnbits.api(operator, "GET", "/settlements")
                if rows and rows[0]["status"] == "awaiting_funds":
                    break
                time.sleep(0.2)
            assert rows[0]["status"] == "awaiting_funds", rows
            s.tab("Settlements")
            page.get_by_text("awaiting funds").first.wait_for(timeout=20_000)
            s.tab("Machines")
            expect(row.locator('[data-test="machine-owes"]')).to_contain_text(
                "8,001", timeout=20_000
            )

            # --- a Lamassu machine: set, test, poll ----------------------------
            add_machine(s, "Antigua", "Lamassu", "Lamassu ATM")
            row = s.test_id("machines-table").locator("tr").filter(has_text="Antigua")
            row.locator('[data-test="open-lamassu"]').click()
            s.test_id("lamassu-host").fill(HOST)
            s.test_id("lamassu-port").fill(str(PORT))
            s.test_id("lamassu-database").fill(lamassu.name)
            s.test_id("lamassu-user").fill(lamassu.reader)
            s.test_id("lamassu-password").fill(lamassu.reader_password)
            s.choose(s.test_id("lamassu-sslmode"), "disable")
            s.test_id("lamassu-device").fill("dev-a")
            s.test_id("lamassu-save").click()
            page.get_by_text("Lamassu connection saved").wait_for()
            page.get_by_text("A password is set").wait_for()
            expect(s.test_id("lamassu-password")).to_have_value("")
            s.test_id("lamassu-test").click()
            expect(s.test_id("lamassu-test-result")).to_contain_text("Connection works")
            s.test_id("lamassu-poll").click()
            page.get_by_text("new sale(s) landed").wait_for()
            expect(s.test_id("lamassu-status")).to_contain_text("Last success")
            s.shot(screenshots, "lamassu")
            assert lamassu.reader_password not in page.content()

            # --- issue 18: the cash-outs it saw; the past imported on purpose --
            expect(s.test_id("lamassu-start")).to_contain_text("since")
            run_async(
                lamassu.add_cash_out(
                    crypto_atoms=266_800, fiat="2000", created=ago(hours=2)
                )
            )
            s.test_id("lamassu-cash-outs").click()
            dialog = s.test_id("cash-outs-dialog")
            expect(dialog.locator('[data-test="cash-out-before_start"]')).to_have_count(
                1
            )
            expect(s.test_id("cash-outs-status")).to_contain_text("Source starts")
            s.test_id("import-since").fill((ago(hours=3)).strftime("%Y-%m-%dT%H:%M"))
            s.test_id("import-preview").click()
            expect(s.test_id("import-preview-result")).to_contain_text(
                "1 sale(s) would land"
            )
            s.shot(screenshots, "lamassu-cash-outs")
            s.test_id("import-confirm").click()
            page.get_by_text("past sale(s) imported").wait_for()
            expect(dialog.locator('[data-test="cash-out-landed"]')).to_have_count(1)
            dialog.get_by_role("button", name="Close").click()
            expect(dialog).to_have_count(0)  # closed: Escape now reaches the next
            page.keyboard.press("Escape")  # the Lamassu dialog
            expect(s.test_id("lamassu-form")).to_have_count(0)

            # --- issue 18: the manual machine becomes a bitSpire one ---------
            row = s.test_id("machines-table").locator("tr").filter(has_text="Shop till")
            row.locator("button").filter(has_text="edit").click()
            s.choose(s.test_id("machine-source"), "bitSpire")
            s.test_id("machine-npub").fill(NPUB)
            s.test_id("machine-save").click()
            page.get_by_text("Saved Shop till").wait_for()
            [shop] = [
                m
                for m in lnbits.api(operator, "GET", "/machines")
                if m["name"] == "Shop till"
            ]
            assert shop["source"] == "bitspire" and shop["npub"] == NPUB
            kept = lnbits.api(operator, "GET", f"/machines/{shop['id']}/settlements")
            assert [r["source"] for r in kept] == ["manual"]  # its sale stays
            assert s.errors == [], s.errors
    finally:
        run_async(drop_lamassu_db(lamassu))

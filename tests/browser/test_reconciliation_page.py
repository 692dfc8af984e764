"""The reconciliation section of the page, on a live LNbits: the operator
reconciles a machine whose wallet holds only a top-up (the books close), then
money leaves the machine wallet outside the pipeline and the page names the
difference."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from test_pages import browser_session, make_npub

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips these tests, saying why
    expect = None


def test_operator_reconciles_and_sees_a_difference_explained(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    lnbits.superuser()  # the first install, if this module runs first
    operator = lnbits.register("recon", wallets=("ATM wallet",))
    atm = operator.wallet("ATM wallet")
    lnbits.api(
        operator,
        "POST",
        "/machines",
        json={
            "npub": make_npub(),
            "wallet_id": atm.id,
            "name": "Harbour ATM",
            "currency": "GTQ",
        },
    )
    lnbits.credit(atm.id, 5_000)  # a top-up: never a sale

    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.tab("Settlements")
        section = s.test_id("reconciliation")
        section.get_by_role("button", name="Reconcile").click()
        result = s.test_id("reconciliation-result")
        expect(result).to_contain_text("The books close")
        expect(section).to_contain_text("Harbour ATM")
        expect(section).to_contain_text("Top-ups and other incoming")
        expect(section).to_contain_text("5,000 sats")
        expect(section.get_by_role("link", name="CSV")).to_have_attribute(
            "href", "/satmachineadmin/api/v1/dca/export/reconciliation.csv"
        )

        # 1 234 sats leave the machine wallet, paid by hand: no leg.
        other = lnbits.register("stranger")
        lnbits.http.cookies.clear()
        invoice = lnbits.http.post(
            "/api/v1/payments",
            json={"out": False, "amount": 1234, "memo": "cash"},
            headers={"X-Api-Key": other.wallets[0].inkey},
        ).json()
        paid = lnbits.http.post(
            "/api/v1/payments",
            json={"out": True, "bolt11": invoice["bolt11"]},
            headers={"X-Api-Key": atm.adminkey},
        )
        assert paid.is_success, paid.text

        section.get_by_role("button", name="Reconcile").click()
        expect(result).to_contain_text("1 difference(s) found")
        differences = s.test_id("reconciliation-differences")
        expect(differences).to_contain_text("payment_not_a_leg")
        expect(differences).to_contain_text("no leg of the ledger")
        expect(differences).to_contain_text(invoice["payment_hash"])
        expect(section).to_contain_text("-1,234 sats")  # LNbits - ledger
        section.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        s.shot(screenshots, "reconciliation")

        # Yesterday's books, closed today: the wallet as of yesterday's end,
        # before the payment out (and the top-up), balances.
        yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date()
        section.get_by_label("To (YYYY-MM-DD)").fill(yesterday.isoformat())
        section.get_by_role("button", name="Reconcile").click()
        expect(result).to_contain_text("The books close")
        expect(s.test_id("reconciliation-as-of").first).to_contain_text("as of")
        expect(section.get_by_role("link", name="CSV")).to_have_attribute(
            "href",
            "/satmachineadmin/api/v1/dca/export/reconciliation.csv"
            f"?until={yesterday.isoformat()}",
        )
        assert s.errors == [], s.errors

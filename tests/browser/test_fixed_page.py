"""The "Fixed mode & alerts" tab in a real browser: the operator sets a
schedule, sees the machine's next-slot preview, sets a webhook and sees its
secret once. No console error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_pages import browser_session, make_npub, text

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips these tests, saying why
    expect = None


def test_operator_sets_a_fixed_schedule_and_a_webhook(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    lnbits.superuser()  # first install, if no other test did it
    operator = lnbits.register("fixedop", wallets=("ATM wallet",))
    lnbits.credit(operator.wallet("ATM wallet").id, 50_000)
    machine = lnbits.api(
        operator,
        "POST",
        "/machines",
        json={
            "npub": make_npub(),
            "wallet_id": operator.wallet("ATM wallet").id,
            "name": "Mall ATM",
            "currency": "GTQ",
        },
    )
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.tab("Fixed mode & alerts")
        s.choose(s.test_id("fixed-scope"), "Schedule of Mall ATM")
        s.test_id("fixed-times").fill("15:00, 09:00")
        s.test_id("fixed-timezone").fill("America/Guatemala")
        s.test_id("fixed-max").fill("1500")
        s.test_id("fixed-save").click()
        page.get_by_text("Schedule saved").wait_for()
        saved = lnbits.api(
            operator, "GET", "/fixed-schedule", params={"machine_id": machine["id"]}
        )
        assert saved["times"] == ["09:00", "15:00"]
        assert saved["max_daily_limit"] == 1500

        previews = s.test_id("fixed-previews")
        row = previews.locator("tr").filter(has_text="Mall ATM")
        expect(row).to_contain_text("America/Guatemala")
        assert "50,000" in text(row)  # what the machine wallet holds

        s.test_id("fixed-timezone").fill("Mars/Base")
        s.test_id("fixed-save").click()
        page.get_by_text("timezone").first.wait_for()

        s.test_id("notify-webhook").fill("https://hooks.example.com/atm")
        s.test_id("notify-save").click()
        banner = s.test_id("notify-secret")
        banner.wait_for()
        shown = [w for w in text(banner).split() if len(w) == 64]
        assert len(shown) == 1, text(banner)
        got = lnbits.api(operator, "GET", "/notifications")
        assert got["webhook_secret"] is None and got["has_webhook_secret"]
        s.shot(screenshots, "fixed-mode")
        refused = "the server responded with a status of 422"
        assert [e for e in s.errors if refused not in e] == [], s.errors

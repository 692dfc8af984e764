"""The extension's page in a real browser, on a live LNbits.

The super user sets the platform fee; an operator logs in through LNbits'
login page, adds a machine, registers an LP, records and confirms a deposit
and sets a 50/30/20 commission split, all by clicking and typing; the ATM
simulator sells; the operator then finds the settlement and its legs on the
page, and the LP finds the payout in their positions. No page may log a
console error. Screenshots of the main views are saved (see conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from bech32 import bech32_encode, convertbits
from PIL import Image

from bench.simulator import Sale, run, sell

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips these tests, saying why
    expect = None

EXT_PAGE = "/satmachineadmin/"
TIMEOUT_MS = 60_000

# Two sales of 500 GTQ at 772 114 GTQ/BTC with a 3 % commission; the LP
# deposited 2 000 GTQ and so receives all of each sale's principal.
SALE_FIAT = Decimal(500)
RATE = Decimal(772114)
FEE_PCT = Decimal("0.03")
NET = 64757  # round(500e8 / 772114)
COMMISSION = 1943  # round(64757 * 0.03)
PLATFORM = 194  # round(1943 * 10 %)
OPERATOR = COMMISSION - PLATFORM  # 1749, split 50/30/20 -> 874 / 524 / 351
SALES = 2
LEFT = "GTQ 1,000.00"  # 2 000 - 2 x 500
SPLIT = {"Ops": ("50", 874), "Partner": ("30", 524), "Reserve": ("20", 351)}


def make_npub() -> str:
    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


def sats(n: int) -> str:
    return f"{n:,} sats"


def text(locator: Any) -> str:
    """An element's text, with Intl's no-break spaces as plain spaces."""
    return " ".join(locator.inner_text().replace("\xa0", " ").split())


class Session:
    """One person's browser tab, collecting console errors."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.set_default_timeout(TIMEOUT_MS)
        page.on(
            "console",
            lambda msg: msg.type == "error" and self.errors.append(msg.text),
        )
        page.on(
            "pageerror",
            lambda exc: self.errors.append(f"pageerror: {exc}\n{exc.stack}"),
        )

    def login(self, person: Any) -> None:
        """Through LNbits' own login form."""
        page = self.page
        page.goto(self.base + "/")
        page.get_by_label("Username or Email *").fill(person.username)
        page.get_by_label("Password *").fill(person.password)
        page.get_by_role("button", name="Login").click()
        page.wait_for_url(re.compile(r"/wallet"))
        page.goto(self.base + EXT_PAGE)
        # LNbits greets a new browser with a disclaimer to acknowledge.
        page.get_by_role("button", name="I understand").click()
        page.get_by_text("Satoshi Machine Admin").first.wait_for()

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def choose(self, select: Any, option: str) -> None:
        """Open a q-select and click one of its options."""
        select.click()
        self.page.locator(".q-menu .q-item").filter(has_text=option).first.click()

    def confirm(self) -> None:
        self.page.locator(".q-dialog").get_by_role("button", name="OK").click()

    def test_id(self, name: str) -> Any:
        """Quasar puts a q-input's or q-select's attributes on its input."""
        return self.page.locator(f'[data-test="{name}"]')

    def shot(self, folder: Path, name: str, full_page: bool = False) -> None:
        """A screenshot once requests, notifications and transitions are done
        (``full_page``: the whole page from its top, not only the window)."""
        page = self.page
        if full_page:
            page.evaluate("window.scrollTo(0, 0)")
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.mouse.move(1400, 940)  # no hover highlight
        expect(page.locator(".q-notification")).to_have_count(0)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(500)
        # 256 colours keep the PNGs small enough for the repository.
        raw = folder / f"{name}.png.tmp"
        page.screenshot(path=str(raw), type="png", full_page=full_page)
        with Image.open(raw) as image:
            small = image.convert("RGB").quantize(
                colors=256, method=Image.Quantize.FASTOCTREE
            )
            small.save(folder / f"{name}.png", optimize=True)
        raw.unlink()


@contextmanager
def browser_session(browser: Any, base: str) -> Iterator[Session]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 960}, locale="en-US"
    )
    # LNbits throws confetti at every incoming payment: turn that preference
    # off, as its settings allow, so the screenshots show the page.
    context.add_init_script("localStorage.setItem('lnbits.reactions', 'none')")
    try:
        yield Session(context.new_page(), base)
    finally:
        context.close()


def test_operator_sells_and_lp_sees_payout(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    superuser = lnbits.superuser()
    operator = lnbits.register(
        "operator", wallets=("ATM wallet", "Ops", "Partner", "Reserve")
    )
    lp = lnbits.register("lp")
    customer = lnbits.register("customer")
    lnbits.credit(customer.wallets[0].id, 1_000_000)
    npub = make_npub()

    # --- the super user sets a 10 % platform fee ------------------------------
    with browser_session(browser, lnbits.base) as s:
        s.login(superuser)
        s.tab("Platform")
        s.test_id("platform-percent").fill("10")
        s.choose(s.test_id("platform-wallet"), superuser.wallets[0].name)
        s.test_id("platform-save").click()
        s.page.get_by_text("Saved the platform fee").wait_for()
        s.page.get_by_text("10 % of the commission").wait_for()
        s.shot(screenshots, "platform")
        assert s.errors == [], s.errors

    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.test_id("first-run").wait_for()  # no machine yet: the guide
        s.tab("Machines")

        # --- a machine --------------------------------------------------------
        page.get_by_text("No machines yet").wait_for()
        s.test_id("add-machine").click()
        s.test_id("machine-npub").fill(npub)
        s.test_id("machine-name").fill("Zone 1 ATM")
        currency = s.test_id("machine-currency")  # the select's input
        currency.click()
        currency.fill("GTQ")
        page.locator(".q-menu .q-item").filter(has_text="GTQ").first.click()
        s.choose(s.test_id("machine-wallet"), "ATM wallet")
        s.test_id("machine-save").click()
        machines = s.test_id("machines-table")
        machines.get_by_text("Zone 1 ATM").wait_for()
        machines.get_by_text("No sales yet").wait_for()

        # --- an LP with a confirmed deposit -----------------------------------
        s.tab("LPs & deposits")
        page.get_by_text("No liquidity providers yet").wait_for()
        s.test_id("add-lp").click()
        s.test_id("lp-user-id").fill(lp.id)
        s.test_id("lp-wallet-id").fill(lp.wallets[0].id)
        s.test_id("lp-name").fill("Alice")
        s.test_id("lp-save").click()
        lps = s.test_id("lps-table")
        lps.get_by_text("Alice").wait_for()
        s.test_id("record-deposit").first.click()
        s.test_id("deposit-amount").fill("2000")
        s.test_id("deposit-save").click()
        deposits = s.test_id("deposits-table")
        deposits.get_by_text("pending").wait_for()
        s.test_id("confirm-deposit").first.click()
        s.confirm()
        deposits.get_by_text("confirmed", exact=True).wait_for()
        lps.get_by_text("GTQ 2,000.00").wait_for()

        # --- the 50/30/20 split: refused until it adds up to 100 % ------------
        s.tab("Splits")
        page.get_by_text("No split yet").wait_for()
        for index, (wallet, (percent, _)) in enumerate(SPLIT.items()):
            s.test_id("split-add").click()
            s.choose(s.test_id(f"split-wallet-{index}"), wallet)
            s.test_id(f"split-label-{index}").fill(wallet)
            s.test_id(f"split-percent-{index}").fill(percent)
            if index == 1:  # 50 + 30: not yet
                assert text(s.test_id("split-total")).endswith("80 %")
                expect(s.test_id("split-save")).to_be_disabled()
                page.get_by_text("20 % left to assign.").wait_for()
        assert text(s.test_id("split-total")).endswith("100 %")
        s.shot(screenshots, "splits")
        s.test_id("split-save").click()
        page.get_by_text("Saved the commission split").wait_for()
        expect(s.test_id("split-save")).to_be_disabled()  # nothing left to save

        # --- the ATM sells twice --------------------------------------------
        sale = Sale(SALE_FIAT, RATE, FEE_PCT, "GTQ", npub)
        assert (sale.net_sats, sale.fee_sats) == (NET, COMMISSION)

        async def sell_twice() -> None:
            async with httpx.AsyncClient(base_url=lnbits.base, timeout=30) as http:
                await run(
                    http,
                    machine_inkey=operator.wallet("ATM wallet").inkey,
                    customer_adminkey=customer.wallets[0].adminkey,
                    sale=sale,
                    count=SALES,
                    per_second=1,
                )

        # Playwright's sync API owns this thread's event loop: sell from another.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, sell_twice()).result(timeout=60)

        # --- the settlement and its legs on the page -------------------------
        s.tab("Settlements")
        table = s.test_id("settlements-table")
        rows = table.locator("tbody tr").filter(has_text="processed")
        for _ in range(40):
            if rows.count() == SALES:
                break
            page.wait_for_timeout(500)
            s.test_id("settlements-refresh").click()
        assert rows.count() == SALES
        row = rows.first
        with page.expect_download() as download:
            # (the tab's reconciliation section has a CSV link of its own)
            s.test_id("settlements-csv").click()
        csv_lines = Path(download.value.path()).read_text().splitlines()
        assert download.value.suggested_filename == "settlements.csv"
        assert csv_lines[0].startswith("id,created_at,")
        assert len(csv_lines) == 1 + SALES
        row.get_by_text(sats(NET + COMMISSION)).wait_for()
        row.get_by_text(sats(NET), exact=True).wait_for()
        row.get_by_text(sats(COMMISSION)).wait_for()
        row.get_by_text("GTQ 500.00").wait_for()
        row.click()
        detail = s.test_id("settlement-detail")
        legs = s.test_id("legs-table")
        legs.get_by_text("DCA payout").wait_for()
        expected = [("Platform fee", PLATFORM)]
        expected += [(label, amount) for label, (_, amount) in SPLIT.items()]
        expected += [("LP Alice", NET)]
        for what, amount in expected:
            leg = legs.locator("tbody tr").filter(has_text=what).first
            leg.get_by_text(sats(amount), exact=True).wait_for()
            leg.get_by_text("completed").wait_for()
        legs.get_by_text("GTQ 500.00").wait_for()
        detail.get_by_text(f"legs add up to {sats(NET + COMMISSION)}").wait_for()

        s.test_id("detail-add-note").click()
        s.test_id("note-text").fill("Counted the cassette.")
        s.test_id("note-save").click()
        s.test_id("detail-notes").get_by_text("Counted the cassette.").wait_for()
        s.shot(screenshots, "settlement-detail")
        page.keyboard.press("Escape")
        detail.wait_for(state="hidden")

        # --- the machine shows its balance and last settlement -----------------
        s.tab("Machines")
        machines.get_by_text("processed").wait_for()
        left_in_machine = 0  # every sat was paid out
        machines.get_by_text(sats(left_in_machine), exact=True).wait_for()
        s.shot(screenshots, "machines")

        s.tab("LPs & deposits")
        lps.get_by_text(LEFT).wait_for()
        lps.get_by_text(sats(SALES * NET)).wait_for()
        s.shot(screenshots, "lps")

        s.tab("Payments")
        legs_rows = s.test_id("payments-table").locator("tbody tr")
        expect(legs_rows.filter(has_text="DCA payout")).to_have_count(SALES)
        expect(legs_rows).to_have_count(SALES * 5)  # fee, 3 splits, DCA
        s.shot(screenshots, "payments")
        assert s.errors == [], s.errors

    # --- the LP sees the payout ------------------------------------------------
    with browser_session(browser, lnbits.base) as s:
        s.login(lp)
        positions = s.test_id("positions")
        positions.wait_for()  # an LP without machines lands on their positions
        card = s.test_id("position-card")
        card.get_by_text("Zone 1 ATM").wait_for()
        assert text(s.test_id("position-sats")) == sats(SALES * NET)
        assert text(s.test_id("position-remaining")) == LEFT
        s.test_id("payout-chart").wait_for()
        payouts = s.test_id("lp-payments-table").locator("tbody tr")
        expect(payouts.filter(has_text=sats(NET))).to_have_count(SALES)
        s.shot(screenshots, "lp-positions")
        assert s.errors == [], s.errors


def test_operator_reads_errors_and_stuck_settlements(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    """API errors reach the operator in words; a sale whose numbers do not add
    up shows in "Needs attention" with its reason."""
    operator = lnbits.register("operator", wallets=("ATM wallet", "Spare"))
    customer = lnbits.register("customer")
    lnbits.credit(customer.wallets[0].id, 100_000)
    npub = make_npub()
    machine = lnbits.api(
        operator,
        "POST",
        "/machines",
        json={
            "npub": npub,
            "wallet_id": operator.wallet("ATM wallet").id,
            "name": "Airport ATM",
            "currency": "GTQ",
        },
    )
    # 9 000 + 500 is not the 10 000 paid: it lands errored and pays nothing.
    extra = Sale(SALE_FIAT, RATE, FEE_PCT, "GTQ", npub).extra("bad-sum")
    extra.update(net_sats=9000, fee_sats=500)

    async def sell_bad() -> None:
        async with httpx.AsyncClient(base_url=lnbits.base, timeout=30) as http:
            await sell(
                http,
                machine_inkey=operator.wallet("ATM wallet").inkey,
                customer_adminkey=customer.wallets[0].adminkey,
                gross_sats=10_000,
                extra=extra,
            )

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, sell_bad()).result(timeout=60)
    for _ in range(60):
        stuck = lnbits.api(operator, "GET", "/settlements/stuck")
        if stuck:
            break
        time.sleep(0.25)
    assert [s["machine_id"] for s in stuck] == [machine["id"]], stuck
    reason = stuck[0]["error"]
    assert reason

    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.tab("Machines")

        # A second machine with the same npub: the API's reason, in words.
        s.test_id("add-machine").click()
        s.test_id("machine-npub").fill(npub)
        s.test_id("machine-name").fill("Copy")
        s.test_id("machine-save").click()
        page.get_by_text(
            "Could not save the machine: npub: a machine with this npub is "
            "already registered"
        ).wait_for()
        page.keyboard.press("Escape")

        s.tab("Settlements")
        attention = s.test_id("attention")
        attention.get_by_text(reason).wait_for()
        attention.get_by_text("errored", exact=True).click()
        detail = s.test_id("settlement-detail")
        detail.get_by_text(reason).wait_for()
        expect(detail.get_by_role("button", name="Retry")).to_be_enabled()
        expect(detail.get_by_role("button", name="Partial dispense")).to_be_enabled()
        page.keyboard.press("Escape")
        detail.wait_for(state="hidden")
        s.shot(screenshots, "needs-attention")

        # Chromium reports the refused request (409) itself; nothing else.
        refused = "the server responded with a status of 409"
        assert [e for e in s.errors if refused not in e] == [], s.errors


# --- overview and machine health -------------------------------------------------


def keypair() -> tuple[bytes, str]:
    from coincurve import PublicKeyXOnly

    secret = os.urandom(32)
    data = convertbits(PublicKeyXOnly.from_secret(secret).format(), 8, 5)
    assert data is not None
    return secret, bech32_encode("npub", data)


def signed_beacon(secret: bytes, content: dict) -> dict:
    """A kind-30078 beacon, signed as the machine's firmware signs it."""
    import hashlib
    import json

    from coincurve import PrivateKey, PublicKeyXOnly

    event: dict = {
        "pubkey": PublicKeyXOnly.from_secret(secret).format().hex(),
        "created_at": int(time.time()),
        "kind": 30078,
        "tags": [["d", "bitspire-telemetry"]],
        "content": json.dumps(content),
    }
    serialized = json.dumps(
        [
            0,
            event["pubkey"],
            event["created_at"],
            30078,
            event["tags"],
            event["content"],
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    event["id"] = hashlib.sha256(serialized.encode()).hexdigest()
    event["sig"] = PrivateKey(secret).sign_schnorr(bytes.fromhex(event["id"])).hex()
    return event


def test_overview_and_machine_health(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    """The overview (the first tab) adds up the day's sales with their
    commission and what the LPs are owed, and charts them per machine; the
    Machines tab shows which machine is online, when each last reported and
    its cassettes, a low one marked."""
    lnbits.superuser()  # the first install, if this test runs alone
    operator = lnbits.register("operator", wallets=("Kiosk", "Plaza", "Ops"))
    customer = lnbits.register("customer")
    lp = lnbits.register("lp")
    lnbits.credit(customer.wallets[0].id, 1_000_000)
    machines = {}
    secrets_ = {}
    for name in ("Kiosk", "Plaza"):
        secret, npub = keypair()
        secrets_[name] = secret
        machines[name] = lnbits.api(
            operator,
            "POST",
            "/machines",
            json={
                "npub": npub,
                "wallet_id": operator.wallet(name).id,
                "name": f"{name} ATM",
                "currency": "GTQ",
            },
        )
    lnbits.api(
        operator,
        "PUT",
        "/commission-splits",
        json={"legs": [{"wallet_id": operator.wallet("Ops").id, "pct": "1"}]},
    )
    lnbits.position(operator, machines["Kiosk"], lp, "3000")
    sale_count = {"Kiosk": 2, "Plaza": 1}

    async def sell_all() -> None:
        async with httpx.AsyncClient(base_url=lnbits.base, timeout=30) as http:
            for name, count in sale_count.items():
                sale = Sale(SALE_FIAT, RATE, FEE_PCT, "GTQ", machines[name]["npub"])
                await run(
                    http,
                    machine_inkey=operator.wallet(name).inkey,
                    customer_adminkey=customer.wallets[0].adminkey,
                    sale=sale,
                    count=count,
                )

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, sell_all()).result(timeout=120)
    for _ in range(480):
        done = lnbits.api(
            operator, "GET", "/settlements", params={"status": "processed"}
        )
        if len(done) == 3:
            break
        time.sleep(0.25)
    assert len(done) == 3, done
    beacon = {
        "firmware_version": "1.4.2",
        "cassettes": [
            {"position": 1, "denomination": 50, "count": 310},
            {"position": 2, "denomination": 100, "count": 12},
        ],
    }
    posted = lnbits.http.post(
        "/satmachineadmin/api/v1/dca/telemetry",
        json=signed_beacon(secrets_["Kiosk"], beacon),
    )
    assert posted.status_code == 200, posted.text
    gross = 3 * (NET + COMMISSION)

    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        today = s.test_id("sales-today")
        expect(today.locator('[data-test="sales-count"]')).to_contain_text("3 sales")
        expect(today.locator('[data-test="sales-gross"]')).to_have_text(sats(gross))
        expect(today).to_contain_text("GTQ 1,500.00")
        expect(s.test_id("overview-liabilities")).to_contain_text("GTQ 2,000.00")
        expect(s.test_id("overview-attention")).to_contain_text("0 errored")
        s.test_id("sales-chart").wait_for()
        expect(page.get_by_text("1 of 2 machines online")).to_be_visible()
        s.shot(screenshots, "overview")

        s.choose(s.test_id("overview-days"), "7 days")
        expect(page.get_by_text("Last 7 days").first).to_be_visible()

        # Relays and the offline threshold: saved, and the relay's state shown
        # (nothing listens on port 9: it stays "not connected").
        s.test_id("relays-input").fill("ws://127.0.0.1:9")
        s.test_id("offline-minutes").fill("15")
        s.test_id("telemetry-save").click()
        status = s.test_id("relay-status")
        expect(status).to_contain_text("ws://127.0.0.1:9")
        expect(status).to_contain_text("not connected")
        saved = lnbits.api(operator, "GET", "/relays")
        assert saved["relays"] == ["ws://127.0.0.1:9"]
        assert saved["offline_after_minutes"] == 15

        s.tab("Machines")
        table = s.test_id("machines-table")
        kiosk = table.locator("tbody tr").filter(has_text="Kiosk ATM")
        plaza = table.locator("tbody tr").filter(has_text="Plaza ATM")
        expect(kiosk.locator('[data-test="machine-online"]')).to_have_text("online")
        expect(plaza.locator('[data-test="machine-online"]')).to_have_text("offline")
        expect(plaza.locator('[data-test="machine-last-seen"]')).to_have_text(
            "never reported"
        )
        cassettes = kiosk.locator('[data-test="machine-cassettes"] .q-chip')
        expect(cassettes).to_have_count(2)
        expect(cassettes.nth(0)).to_contain_text("50 \u00d7 310")
        expect(cassettes.nth(1)).to_contain_text("100 \u00d7 12")
        expect(cassettes.nth(1)).to_have_class(re.compile("bg-negative"))
        expect(cassettes.nth(0)).not_to_have_class(re.compile("bg-negative"))
        s.shot(screenshots, "machine-health")
        assert s.errors == [], s.errors

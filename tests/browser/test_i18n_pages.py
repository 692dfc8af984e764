"""The page in English and in Spanish, for both audiences, on one live LNbits.

An operator with a machine, an LP and a sale, and an LP who owns no machine,
each open the page in LNbits' language (English, then Spanish, as LNbits'
own language selector stores it). The LP-only user opens on "My positions"
with the operator's tabs out of the way; a new operator meets the first-run
guide. In Spanish no English message of the extension is left on any view
(every tab, the settlement dialog, a Lamassu machine's SSH settings with a
failed connection test, its cash-outs); no page logs a console error. Dates
and numbers follow the language.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from test_pages import (
    EXT_PAGE,
    FEE_PCT,
    NET,
    RATE,
    SALE_FIAT,
    Session,
    browser_session,
)

from bench.simulator import Sale, run

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips these tests, saying why
    expect = None

# The operator's tabs, in Spanish.
OPERATOR_TABS = ("Resumen", "Cajeros", "Proveedores y depósitos", "Repartos",
                 "Liquidaciones", "Pagos", "Modo fijo y alertas")  # fmt: skip

# The English messages that are not also Spanish, as the page has them: the
# static parts of each (named values split out), two letters or more.
LEFTOVER_ENGLISH_JS = """() => {
  const en = window.localisation.en.satmachineadmin
  const es = window.localisation.es.satmachineadmin
  const flat = (o, p = '') => Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' ? flat(v, p + k + '.') : [[p + k, v]])
  const spanish = new Map(flat(es))
  const parts = []
  for (const [key, text] of flat(en)) {
    if (spanish.get(key) === text) continue
    for (const part of text.split(/\\{[^}]*\\}/)) {
      const clean = part.replace(/[^A-Za-z' ]+/g, ' ').trim()
      if (clean.length >= 4 && /[a-z]{2}/.test(clean)) parts.push(clean)
    }
  }
  const spanishText = new Set(flat(es).map(([, v]) => v))
  return [...new Set(parts)].filter(p => ![...spanishText].some(s => s.includes(p)))
}"""

# Quasar's own table words (LNbits loads no Quasar language pack).
QUASAR_ENGLISH = ["Records per page", "No data available"]

VISIBLE_TEXT_JS = """() => [...document.querySelectorAll(
  '.satmachineadmin, .q-dialog, .q-menu')].map(e => e.innerText).join('\\n')"""


def set_up(lnbits: Any) -> tuple[Any, Any, Any]:
    """An operator with a machine, an LP with a confirmed deposit and one
    sale paid out, and an inactive Lamassu machine reached over SSH (nothing
    listens there: its test fails, its cash-outs cannot be read; inactive, it
    is never polled, so no problem is raised); the LP owns no machine; a new
    operator with nothing."""
    lnbits.superuser()
    operator = lnbits.register("opera", wallets=("Cajero", "Caja", "Lamassu"))
    lp = lnbits.register("lpsolo")
    newcomer = lnbits.register("nuevo")
    customer = lnbits.register("cliente")
    lnbits.credit(customer.wallets[0].id, 200_000)
    machine = lnbits.machine(operator, "Cajero", "Panajachel")
    lnbits.api(
        operator,
        "PUT",
        "/commission-splits",
        json={"legs": [{"wallet_id": operator.wallet("Caja").id, "pct": "1"}]},
    )
    lnbits.position(operator, machine, lp, "2000")
    antigua = lnbits.api(
        operator,
        "POST",
        "/machines",
        json={
            "source": "lamassu",
            "wallet_id": operator.wallet("Lamassu").id,
            "name": "Antigua",
            "currency": "GTQ",
        },
    )
    lnbits.api(operator, "PUT", f"/machines/{antigua['id']}", json={"is_active": False})
    lnbits.api(
        operator,
        "PUT",
        f"/machines/{antigua['id']}/lamassu",
        json={
            "database": "lamassu",
            "user": "lector",
            "password": "secreto",
            "sslmode": "disable",
            "device_id": "dev-antigua",
            "ssh_host": "127.0.0.1",
            "ssh_port": 1,  # refused: no SSH server listens there
            "ssh_user": "lamassu",
        },
    )

    async def sell() -> None:
        async with httpx.AsyncClient(base_url=lnbits.base, timeout=30) as http:
            await run(
                http,
                machine_inkey=operator.wallet("Cajero").inkey,
                customer_adminkey=customer.wallets[0].adminkey,
                sale=Sale(SALE_FIAT, RATE, FEE_PCT, "GTQ", machine["npub"]),
                count=1,
            )

    with ThreadPoolExecutor(1) as pool:  # Playwright owns this thread's loop
        pool.submit(asyncio.run, sell()).result(timeout=60)
    deadline = time.monotonic() + 30
    done: list[Any] = []
    while time.monotonic() < deadline and not done:
        done = lnbits.api(
            operator, "GET", "/settlements", params={"status": "processed"}
        )
        time.sleep(0.2)
    assert len(done) == 1, lnbits.api(operator, "GET", "/settlements")
    return operator, lp, newcomer


def in_language(s: Session, lang: str) -> None:
    """Choose the language as LNbits' language selector does, and reload."""
    s.page.evaluate("lang => { Quasar.LocalStorage.set('lnbits.lang', lang) }", lang)
    s.page.goto(s.base + EXT_PAGE)
    s.page.wait_for_function(
        "lang => window.i18n && window.i18n.global.locale === lang", arg=lang
    )
    s.page.locator(".satmachineadmin").wait_for()


def english_left(s: Session, leftovers: list[str]) -> list[str]:
    """Each English message part seen on the page, with what surrounds it."""
    seen = " ".join(s.page.evaluate(VISIBLE_TEXT_JS).split())
    found = []
    for part in leftovers:
        m = re.search(r"(?<![A-Za-z_])" + re.escape(part) + r"(?![A-Za-z_])", seen)
        if m:
            found.append(f"{part!r} in ...{seen[m.start() - 40 : m.end() + 40]}...")
    return found


def wait_quiet(s: Session) -> None:
    """Requests done and no skeleton or spinner on the page."""
    s.page.wait_for_load_state("networkidle")
    s.page.locator('.satmachineadmin [data-test="loading"]').first.wait_for(
        state="detached"
    )


def test_both_audiences_in_english_and_spanish(
    lnbits: Any, browser: Any, screenshots: Path
) -> None:
    operator, lp, newcomer = set_up(lnbits)

    # --- the LP who owns no machine --------------------------------------------
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(lp)
        page.get_by_role("tab", name="My positions").wait_for()
        expect(page.locator(".q-tab--active")).to_contain_text("My positions")
        assert page.get_by_role("tab", name="Machines").count() == 0
        s.test_id("show-operator").wait_for()  # the operator's tabs, on request
        # The cumulative chart: steps over every day of the 30 days, points on
        # the range's ends and the day that had payouts.
        chart = page.wait_for_function("""() => {
          const c = window.Chart && Chart.getChart(
            document.querySelector('[data-test="payout-chart"]'))
          if (!c) return null
          const d = c.data.datasets[0]
          return {days: c.data.labels.length, stepped: d.stepped,
                  total: d.data, marked: d.pointRadius}
        }""").json_value()
        assert (chart["days"], chart["stepped"]) == (30, "after"), chart
        # (today's sale; one day earlier if UTC midnight passed in between)
        assert chart["total"][-1] == NET and set(chart["total"]) == {0, NET}, chart
        marked = [i for i, radius in enumerate(chart["marked"]) if radius]
        assert marked[0] == 0 and marked[-1] == 29 and len(marked) <= 3, chart
        s.shot(screenshots, "lp-first-view")

        in_language(s, "es")
        page.get_by_role("tab", name="Mis posiciones").wait_for()
        page.get_by_text("Sats acumulados en el tiempo").wait_for()
        wait_quiet(s)
        leftovers = page.evaluate(LEFTOVER_ENGLISH_JS) + QUASAR_ENGLISH
        assert len(leftovers) > 300, leftovers  # the scan has something to find
        assert english_left(s, leftovers) == []
        body = page.locator(".satmachineadmin").inner_text()
        assert "2000,00" in body.replace("\xa0", "").replace(".", "") or (
            "2.000,00" in body
        ), body  # GTQ in Spanish: a decimal comma
        s.shot(screenshots, "lp-es")

        s.test_id("show-operator").click()
        page.get_by_role("tab", name="Cajeros").wait_for()
        s.test_id("first-run").wait_for()  # no machine of their own
        assert english_left(s, leftovers) == []
        in_language(s, "en")
        assert s.errors == [], s.errors

    # --- a new operator: the first-run guide -------------------------------------
    with browser_session(browser, lnbits.base) as s:
        s.login(newcomer)
        guide = s.test_id("first-run")
        guide.get_by_text("Welcome: four steps to your first settlement").wait_for()
        s.test_id("first-run-add-machine").click()
        s.test_id("machine-npub").wait_for()  # the add-machine dialog
        s.page.keyboard.press("Escape")
        assert s.errors == [], s.errors

    # --- the operator, every tab, English then Spanish ----------------------------
    with browser_session(browser, lnbits.base) as s:
        page = s.page
        s.login(operator)
        s.test_id("overview").wait_for()
        page.get_by_role("tab", name="Settlements").wait_for()
        in_language(s, "es")
        s.test_id("overview").wait_for()
        leftovers = page.evaluate(LEFTOVER_ENGLISH_JS) + QUASAR_ENGLISH
        found: dict[str, list[str]] = {}
        for tab in OPERATOR_TABS:
            page.get_by_role("tab", name=tab, exact=True).click()
            wait_quiet(s)
            left = english_left(s, leftovers)
            if left:
                found[tab] = left
        page.get_by_role("tab", name="Liquidaciones", exact=True).click()
        page.locator('[data-test="settlements-table"] tbody tr').first.click()
        page.locator(".q-dialog").get_by_text("Pagos").first.wait_for()
        wait_quiet(s)
        left = english_left(s, leftovers)
        if left:
            found["settlement dialog"] = left
        page.keyboard.press("Escape")
        # A Lamassu machine's settings (SSH, the failed test), then its cash-outs.
        page.get_by_role("tab", name="Cajeros", exact=True).click()
        row = s.test_id("machines-table").locator("tr").filter(has_text="Antigua")
        row.locator('[data-test="open-lamassu"]').click()
        s.test_id("lamassu-authorized-keys").wait_for()
        s.test_id("lamassu-test").click()
        expect(s.test_id("lamassu-test-result")).to_contain_text(
            "No se llegó al servidor SSH: "
        )
        wait_quiet(s)
        left = english_left(s, leftovers)
        if left:
            found["Lamassu dialog"] = left
        s.shot(screenshots, "lamassu-es")
        s.test_id("lamassu-cash-outs").click()
        s.test_id("cash-outs-error").wait_for()  # the host key is not pinned
        wait_quiet(s)
        left = english_left(s, leftovers)
        if left:
            found["cash-outs dialog"] = left
        assert found == {}, found
        s.shot(screenshots, "operator-es")
        # (the browser logs the cash-outs' answer, 409: the source is unreadable)
        assert [e for e in s.errors if "status of 409" not in e] == [], s.errors

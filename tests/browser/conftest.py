"""Browser tests: a live LNbits (started here, in a child process) driven by
headless Chromium through Playwright.

They need Debian's ``chromium`` (``/usr/bin/chromium``, or the path in
``SATMACHINE_CHROMIUM``) and the ``playwright`` Python package; the browser
that ``playwright install`` would download is not used. Without either, every
test here is skipped with the reason.

    SATMACHINE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/browser

runs them and refreshes the screenshots shown in the README.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHROMIUM = os.environ.get("SATMACHINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 60_000  # Playwright's waits and expect() in every test


def missing_requirement() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install playwright)"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    reason = missing_requirement()
    if reason is None:
        return
    if os.environ.get("CI") == "true":  # .ci/run installs them: never skip there
        raise pytest.UsageError(f"browser tests cannot run in CI: {reason}")
    skip = pytest.mark.skip(reason=f"browser tests skipped: {reason}")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


# --- the live LNbits ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"LNbits exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            )
        try:
            response = httpx.get(f"{base}/api/v1/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.3)
            continue
        # Before the first install every request redirects to /first_install.
        if response.status_code in (200, 307):
            return
        time.sleep(0.3)
    raise RuntimeError(f"LNbits did not answer within {STARTUP_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def live_lnbits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a fresh LNbits serving this checkout (FakeWallet)."""
    if missing_requirement():
        pytest.skip(missing_requirement() or "")
    port = _free_port()
    log = tmp_path_factory.mktemp("lnbits") / "lnbits.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own launcher
            [sys.executable, str(HERE / "launcher.py"), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- users through the real API ---------------------------------------------


@dataclass
class Wallet:
    id: str
    name: str
    adminkey: str
    inkey: str


@dataclass
class Person:
    id: str
    username: str
    password: str
    token: str
    wallets: list[Wallet] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def wallet(self, name: str) -> Wallet:
        return next(w for w in self.wallets if w.name == name)


class Lnbits:
    """Sets up users and money over HTTP, as an admin would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=30)
        self._superuser: Person | None = None

    def _person(self, username: str, password: str, token: str) -> Person:
        self.http.cookies.clear()
        body = self.http.get(
            "/api/v1/auth", headers={"Authorization": f"Bearer {token}"}
        ).json()
        wallets = [
            Wallet(w["id"], w["name"], w["adminkey"], w["inkey"])
            for w in body["wallets"]
        ]
        return Person(body["id"], username, password, token, wallets)

    def superuser(self) -> Person:
        """The super user: created by the first install, logged in after."""
        if self._superuser is None:
            self._superuser = self._first_install()
        return self._superuser

    def _first_install(self) -> Person:
        password = "super-secret-pw"
        response = self.http.put(
            "/api/v1/auth/first_install",
            json={
                "username": "super",
                "password": password,
                "password_repeat": password,
            },
        )
        assert response.status_code == 200, response.text
        person = self._person("super", password, response.json()["access_token"])
        enabled = self.http.put(
            "/api/v1/extension/satmachineadmin/enable", headers=person.headers
        )
        assert enabled.status_code == 200, enabled.text
        return person

    def register(self, prefix: str, wallets: tuple[str, ...] = ()) -> Person:
        username = f"{prefix}_{uuid.uuid4().hex[:6]}"
        password = "correct-horse-battery"
        response = self.http.post(
            "/api/v1/auth/register",
            json={
                "username": username,
                "password": password,
                "password_repeat": password,
            },
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        for name in wallets:
            created = self.http.post(
                "/api/v1/wallet",
                json={"name": name},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 200, created.text
        return self._person(username, password, token)

    def credit(self, wallet_id: str, sats: int) -> None:
        """An admin credit by the super user (not a sale)."""
        response = self.http.put(
            "/users/api/v1/balance",
            json={"id": wallet_id, "amount": sats},
            headers=self.superuser().headers,
        )
        assert response.status_code == 200, response.text

    def machine(self, operator: Person, wallet: str, name: str) -> dict[str, Any]:
        """A bitSpire machine (GTQ) selling into the operator's ``wallet``."""
        from bech32 import bech32_encode, convertbits

        npub = bech32_encode("npub", convertbits(os.urandom(32), 8, 5) or [])
        return self.api(
            operator,
            "POST",
            "/machines",
            json={
                "npub": npub,
                "wallet_id": operator.wallet(wallet).id,
                "name": name,
                "currency": "GTQ",
            },
        )

    def position(
        self, operator: Person, machine: dict[str, Any], lp: Person, amount: str
    ) -> dict[str, Any]:
        """``lp`` at ``machine`` with a confirmed deposit of ``amount`` GTQ."""
        client = self.api(
            operator,
            "POST",
            "/clients",
            json={
                "machine_id": machine["id"],
                "user_id": lp.id,
                "wallet_id": lp.wallets[0].id,
            },
        )
        deposit = self.api(
            operator,
            "POST",
            "/deposits",
            json={"client_id": client["id"], "amount": amount, "currency": "GTQ"},
        )
        self.api(
            operator,
            "PUT",
            f"/deposits/{deposit['id']}/status",
            json={"status": "confirmed"},
        )
        return client

    def api(self, person: Person, method: str, path: str, **kwargs: Any) -> Any:
        """Call the extension's API as ``person``; the JSON answer."""
        self.http.cookies.clear()
        response = self.http.request(
            method,
            f"/satmachineadmin/api/v1/dca{path}",
            headers=person.headers,
            **kwargs,
        )
        assert response.is_success, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="session")
def lnbits(live_lnbits: str) -> Iterator[Lnbits]:
    client = Lnbits(live_lnbits)
    yield client
    client.http.close()


@pytest.fixture(scope="session")
def browser(live_lnbits: str) -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    # A loaded machine is slow, not wrong: every wait of a page has a minute.
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save their screenshots: the folder named by
    ``SATMACHINE_SCREENSHOTS`` (relative to the repository, e.g.
    ``docs/screenshots`` to refresh the README's), else a temporary one, so
    that a plain test run leaves the checkout as it was."""
    named = os.environ.get("SATMACHINE_SCREENSHOTS")
    folder = REPO / named if named else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

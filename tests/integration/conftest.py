"""Fixtures: one real LNbits (FakeWallet) for the whole session, with this
checkout loaded as the extension, and one fixture per role."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness

harness.configure()

import httpx  # noqa: E402


@dataclass
class Wallet:
    id: str
    adminkey: str
    inkey: str


@dataclass
class Actor:
    """A logged-in LNbits user."""

    id: str
    username: str
    token: str
    wallets: list[Wallet] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def wallet(self) -> Wallet:
        return self.wallets[0]


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    harness.teardown()
    # A database connection that a cancelled task held (a test stops the
    # extension mid-payout on purpose) is never given back to SQLAlchemy's
    # pool, and its aiosqlite worker thread, not a daemon, would keep this
    # process waiting at exit forever after the summary was printed.
    if _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])


@pytest.fixture(scope="session")
async def app() -> AsyncIterator[object]:
    os.chdir(harness.lnbits_site_packages())
    from lnbits.app import create_app

    application = create_app()
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def http(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]

    # Stateless on purpose: a login cookie kept from one call would make the
    # next "anonymous" call someone's. Every call says who it is.
    async def forget_cookies(response: httpx.Response) -> None:
        client.cookies.clear()

    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://lnbits.test",
        timeout=60,
        event_hooks={"response": [forget_cookies]},
    ) as client:
        yield client


async def _load_actor(http: httpx.AsyncClient, token: str) -> Actor:
    response = await http.get(
        "/api/v1/auth", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    wallets = [
        Wallet(id=w["id"], adminkey=w["adminkey"], inkey=w["inkey"])
        for w in body["wallets"]
    ]
    return Actor(
        id=body["id"], username=body.get("username") or "", token=token, wallets=wallets
    )


@pytest.fixture(scope="session")
async def superuser(http: httpx.AsyncClient) -> Actor:
    """The LNbits super user, set up through the real first-install flow."""
    password = "super-secret-pw"
    response = await http.put(
        "/api/v1/auth/first_install",
        json={"username": "super", "password": password, "password_repeat": password},
    )
    if response.status_code != 200:  # a second session on the same database
        response = await http.post(
            "/api/v1/auth", json={"username": "super", "password": password}
        )
    assert response.status_code == 200, response.text
    actor = await _load_actor(http, response.json()["access_token"])
    enabled = await http.put(
        f"/api/v1/extension/{harness.EXT_ID}/enable", headers=actor.headers
    )
    assert enabled.status_code == 200, enabled.text
    return actor


MakeUser = Callable[..., Awaitable[Actor]]


@pytest.fixture(scope="session")
async def make_user(http: httpx.AsyncClient, superuser: Actor) -> MakeUser:
    """Registers a new LNbits user (with its default wallet)."""

    async def make(prefix: str = "user", extra_wallets: int = 0) -> Actor:
        username = f"{prefix}_{uuid.uuid4().hex[:8]}"
        password = "correct-horse-battery"
        response = await http.post(
            "/api/v1/auth/register",
            json={
                "username": username,
                "password": password,
                "password_repeat": password,
            },
        )
        assert response.status_code == 200, response.text
        actor = await _load_actor(http, response.json()["access_token"])
        for i in range(extra_wallets):
            created = await http.post(
                "/api/v1/wallet", json={"name": f"w{i}"}, headers=actor.headers
            )
            assert created.status_code == 200, created.text
            w = created.json()
            actor.wallets.append(Wallet(w["id"], w["adminkey"], w["inkey"]))
        return actor

    return make


@pytest.fixture
async def operator(make_user: MakeUser) -> Actor:
    return await make_user("operator", extra_wallets=3)


@pytest.fixture
async def other_operator(make_user: MakeUser) -> Actor:
    return await make_user("rival", extra_wallets=1)  # usernames: 20 chars at most


@pytest.fixture
async def lp(make_user: MakeUser) -> Actor:
    return await make_user("lp")


@pytest.fixture
async def quiet_tasks() -> AsyncIterator[object]:
    """Call it to stop the extension's loops (workers, recovery, funding,
    watcher, autoforward), so that only what the test runs touches the
    ledger; they are started again after the test."""
    import satmachineadmin

    yield satmachineadmin.satmachineadmin_stop
    if not satmachineadmin.scheduled_tasks:
        satmachineadmin.satmachineadmin_start()


async def wallet_balance(wallet_id: str) -> int:
    """A wallet's balance in sats, as LNbits computes it."""
    from lnbits.core.crud import get_wallet

    wallet = await get_wallet(wallet_id)
    assert wallet is not None
    return wallet.balance_msat // 1000


async def credit(wallet_id: str, sats: int) -> None:
    """An admin credit: real LNbits money, and not a sale."""
    from lnbits.core.crud import get_wallet
    from lnbits.core.services import update_wallet_balance

    wallet = await get_wallet(wallet_id)
    assert wallet is not None
    await update_wallet_balance(wallet, sats)

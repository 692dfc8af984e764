"""A real LNbits process, with this checkout as the extension, that tests can
kill with SIGKILL and start again on the same data.

    from lnbits_process import LnbitsProcess

    with LnbitsProcess() as node:          # SQLite, or a fresh PostgreSQL
        node.start()                       # database when SATMACHINE_TEST_POSTGRES
        su = node.superuser()              # is set (postgres://user@host:port)
        op = node.register("operator", extra_wallets=2)
        node.credit(op.wallet.id, 100_000)
        node.kill()                        # SIGKILL to the whole process group
        node.start()                       # same data folder, same database
        assert node.balance(op.wallet) == 100_000

It starts LNbits the way ``make run`` does (uvicorn serving
``lnbits.__main__:app`` in a child process, working directory at the
site-packages folder holding ``lnbits/``), with the offline settings of the
in-process tests (``tests/harness.py``): FakeWallet, no network look-ups, the
extension enabled for new users. The port is picked free once (bind port 0)
and kept across restarts, so clients keep their URL. ``close()`` (or leaving
the ``with`` block) stops the process, removes the data folder and drops the
database. Standard library plus httpx and asyncpg (both LNbits dependencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
EXT_ID = "satmachineadmin"
API = f"/{EXT_ID}/api/v1/dca"
STARTUP_TIMEOUT_S = 120.0


@dataclass
class Wallet:
    id: str
    adminkey: str
    inkey: str


@dataclass
class Actor:
    """A logged-in LNbits user and its wallets (the first is its default)."""

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_packages() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lnbits")
    assert spec and spec.origin, "lnbits is not installed in this Python"
    return Path(spec.origin).resolve().parent.parent


def _pg(server: str, sql: str, database: str = "postgres") -> None:
    import asyncpg  # an LNbits dependency

    async def run() -> None:
        conn = await asyncpg.connect(f"{server.rstrip('/')}/{database}")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


class LnbitsProcess:
    """One LNbits instance on disk (data folder, database) that can be started,
    SIGKILLed and started again any number of times."""

    def __init__(
        self,
        *,
        postgres: str | None = None,
        env: dict[str, str] | None = None,
        log_name: str = "lnbits",
    ) -> None:
        self.postgres = postgres or os.environ.get("SATMACHINE_TEST_POSTGRES")
        self.root = Path(tempfile.mkdtemp(prefix="satmachineadmin-proc-"))
        (self.root / "data").mkdir()
        (self.root / "extensions").mkdir()
        (self.root / "extensions" / EXT_ID).symlink_to(REPO, target_is_directory=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / f"{log_name}.log"
        self.database: str | None = None
        if self.postgres:
            self.database = f"satmachineadmin_proc_{uuid.uuid4().hex[:10]}"
            _pg(self.postgres, f'CREATE DATABASE "{self.database}"')
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self._superuser: Actor | None = None
        self._password = "correct-horse-battery"

    # --- lifecycle -------------------------------------------------------

    @property
    def db_name(self) -> str:
        return "PostgreSQL" if self.postgres else "SQLite"

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LNBITS_") and k not in ("PORT", "HOST")
        }
        env.update(
            {
                "LNBITS_DATA_FOLDER": str(self.root / "data"),
                "LNBITS_EXTENSIONS_PATH": str(self.root),
                "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
                "LNBITS_ADMIN_UI": "true",
                "LNBITS_EXTENSIONS_MANIFESTS": "[]",
                "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
                "LNBITS_EXTENSIONS_DEFAULT_INSTALL": "[]",
                "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
                "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
                "LNBITS_USER_DEFAULT_EXTENSIONS": f'["{EXT_ID}"]',
                "LNBITS_RESERVE_FEE_MIN": "0",
                "LNBITS_RESERVE_FEE_PERCENT": "0",
                "LNBITS_RATE_LIMIT_NO": "1000000",
                "AUTH_HTTPS_ONLY": "false",
                "DEBUG": "false",
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                # The loops that act after a restart look every second, so
                # a test sees recovery without waiting out production periods
                # (a dead worker's lease still runs its full 20 s).
                "SATMACHINEADMIN_LOOP_RESUME": "1",
                "SATMACHINEADMIN_LOOP_FIXED": "1",
                "SATMACHINEADMIN_LOOP_FUNDING": "2",
            }
        )
        if self.database and self.postgres:
            env["LNBITS_DATABASE_URL"] = f"{self.postgres.rstrip('/')}/{self.database}"
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> float:
        """Start LNbits and wait until it answers; returns the seconds it took.
        The first start also creates the super user (first install)."""
        assert not self.alive(), "already running"
        began = time.monotonic()
        log = self.log_path.open("ab")
        log.write(f"\n=== start {self.starts + 1} ===\n".encode())
        log.flush()
        self.process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "uvicorn",
                "lnbits.__main__:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=site_packages(),
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes it all
        )
        log.close()
        self.starts += 1
        self._wait_until_up(began + timeout)
        return time.monotonic() - began

    def _wait_until_up(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"LNbits exited ({self.process.returncode}); "
                    f"log:\n{self.log_tail()}"
                )
            try:
                r = self.client.get("/api/v1/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if r.status_code == 200:
                return
            if r.status_code in (302, 303, 307) and r.headers.get(
                "location", ""
            ).endswith("/first_install"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"LNbits did not answer in time; log:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1
        self.process = None

    def kill_lnbits_only(self) -> None:
        """SIGKILL the LNbits process alone, not its process group: what its
        children do then is theirs (e.g. an ssh tunnel must die with it)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1
        self.process = None

    def stop(self) -> None:
        """A graceful stop (SIGTERM), SIGKILL after 20 s."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def close(self) -> None:
        try:
            self.kill()
        finally:
            self.client.close()
            if self.postgres and self.database:
                with contextlib.suppress(Exception):
                    _pg(
                        self.postgres,
                        f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)',
                    )
            if not os.environ.get("SATMACHINE_KEEP_PROCESS_DATA"):
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LnbitsProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""

    # --- HTTP ------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        actor: Actor | None = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        expect: int | tuple[int, ...] | None = 200,
        timeout: float = 60,
    ) -> httpx.Response:
        """One call; ``actor`` sends its bearer token, ``key`` an X-API-KEY.
        Asserts the status unless ``expect`` is None."""
        headers = {}
        if actor is not None:
            headers.update(actor.headers)
        if key is not None:
            headers["X-Api-Key"] = key
        self.client.cookies.clear()  # every call says who it is
        r = self.client.request(
            method, path, json=json, headers=headers, params=params, timeout=timeout
        )
        wanted = (expect,) if isinstance(expect, int) else expect
        if wanted is not None:
            assert r.status_code in wanted, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def api(self, method: str, path: str, actor: Actor, **kw: Any) -> Any:
        """A call to this extension's API (``/satmachineadmin/api/v1/dca``)."""
        return self.request(method, API + path, actor=actor, **kw).json()

    def _actor(self, token: str) -> Actor:
        body = self.request("GET", "/api/v1/auth", actor=Actor("", "", token)).json()
        return Actor(
            id=body["id"],
            username=body.get("username") or "",
            token=token,
            wallets=[
                Wallet(w["id"], w["adminkey"], w["inkey"]) for w in body["wallets"]
            ],
        )

    def superuser(self) -> Actor:
        """The super user: created by first install on the first call, logged in
        again afterwards (tokens survive restarts, the secret is on disk)."""
        if self._superuser is None:
            r = self.request(
                "PUT",
                "/api/v1/auth/first_install",
                json={
                    "username": "super",
                    "password": self._password,
                    "password_repeat": self._password,
                },
                expect=None,
            )
            if r.status_code != 200:
                r = self.request(
                    "POST",
                    "/api/v1/auth",
                    json={"username": "super", "password": self._password},
                )
            actor = self._actor(r.json()["access_token"])
            self.request("PUT", f"/api/v1/extension/{EXT_ID}/enable", actor=actor)
            self._superuser = actor
        return self._superuser

    def register(self, prefix: str = "user", extra_wallets: int = 0) -> Actor:
        username = f"{prefix[:10]}_{uuid.uuid4().hex[:8]}"
        r = self.request(
            "POST",
            "/api/v1/auth/register",
            json={
                "username": username,
                "password": self._password,
                "password_repeat": self._password,
            },
        )
        actor = self._actor(r.json()["access_token"])
        for i in range(extra_wallets):
            actor.wallets.append(self.create_wallet(actor, f"w{i}"))
        return actor

    def login(self, username: str) -> Actor:
        r = self.request(
            "POST",
            "/api/v1/auth",
            json={"username": username, "password": self._password},
        )
        return self._actor(r.json()["access_token"])

    def create_wallet(self, actor: Actor, name: str) -> Wallet:
        w = self.request("POST", "/api/v1/wallet", json={"name": name}, actor=actor)
        body = w.json()
        return Wallet(body["id"], body["adminkey"], body["inkey"])

    def analyze(self) -> bool:
        """Refresh PostgreSQL's planner statistics of the LNbits database
        (what autovacuum does on its own in production; this machine's
        server runs with autovacuum off). False on SQLite: nothing done."""
        if not (self.database and self.postgres):
            return False
        _pg(self.postgres, "ANALYZE", database=self.database)
        return True

    def credit(self, wallet_id: str, sats: int) -> None:
        """An admin credit (super user): real LNbits money, never a sale."""
        self.request(
            "PUT",
            "/users/api/v1/balance",
            json={"id": wallet_id, "amount": sats},
            actor=self.superuser(),
        )

    def balance(self, wallet: Wallet) -> int:
        """A wallet's balance in sats, as LNbits computes it."""
        r = self.request("GET", "/api/v1/wallet", key=wallet.inkey)
        return int(r.json()["balance"]) // 1000

    def payments(self, wallet: Wallet, limit: int = 10_000) -> list[dict]:
        """A wallet's payments (LNbits' own list: pending, failed and done)."""
        return self.request(
            "GET", "/api/v1/payments", key=wallet.inkey, params={"limit": limit}
        ).json()

    def create_invoice(
        self, wallet: Wallet, sats: int, memo: str = "", extra: dict | None = None
    ) -> dict:
        return self.request(
            "POST",
            "/api/v1/payments",
            key=wallet.inkey,
            json={"out": False, "amount": sats, "memo": memo, "extra": extra},
            expect=(200, 201),
        ).json()

    def pay_invoice(self, wallet: Wallet, bolt11: str) -> dict:
        return self.request(
            "POST",
            "/api/v1/payments",
            key=wallet.adminkey,
            json={"out": True, "bolt11": bolt11},
            expect=(200, 201),
        ).json()

"""Runs the extension inside a real LNbits, in-process.

Everything here must happen before anything imports ``lnbits``: LNbits reads
its settings, and picks SQLite or PostgreSQL, at first import. ``configure()``
sets the environment (throwaway data folder, this checkout linked in as the
extension, FakeWallet, no network) and, when ``SATMACHINE_TEST_POSTGRES`` names
a server (``postgres://user@host:port``), creates a fresh database for the run;
``teardown()`` drops it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXT_ID = "satmachineadmin"

_state: dict[str, str] = {}


def _create_database(server_url: str) -> str:
    import asyncpg  # lnbits depends on it

    name = f"satmachineadmin_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url.rstrip("/") + "/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    _state["pg_server"] = server_url
    _state["pg_database"] = name
    return f"{server_url.rstrip('/')}/{name}"


def _drop_database() -> None:
    import asyncpg

    server, name = _state.get("pg_server"), _state.get("pg_database")
    if not (server and name):
        return

    async def drop() -> None:
        conn = await asyncpg.connect(server.rstrip("/") + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def configure() -> dict[str, str]:
    """Prepare the environment LNbits will read. Idempotent."""
    if _state.get("tmp"):
        return _state
    tmp = Path(tempfile.mkdtemp(prefix="satmachineadmin-test-"))
    (tmp / "data").mkdir()
    (tmp / "extensions").mkdir()
    (tmp / "extensions" / EXT_ID).symlink_to(REPO, target_is_directory=True)
    _state["tmp"] = str(tmp)

    env = {
        "LNBITS_DATA_FOLDER": str(tmp / "data"),
        "LNBITS_EXTENSIONS_PATH": str(tmp),
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_ADMIN_UI": "true",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_USER_DEFAULT_EXTENSIONS": f'["{EXT_ID}"]',
        "LNBITS_EXTENSIONS_DEFAULT_INSTALL": "[]",
        "LNBITS_RESERVE_FEE_MIN": "0",
        "LNBITS_RESERVE_FEE_PERCENT": "0",
        "AUTH_HTTPS_ONLY": "false",
        "DEBUG": "false",
        "LNBITS_RATE_LIMIT_NO": "100000",
        "HOST": "127.0.0.1",
    }
    server = os.environ.get("SATMACHINE_TEST_POSTGRES")
    if server:
        env["LNBITS_DATABASE_URL"] = _create_database(server)
    else:
        os.environ.pop("LNBITS_DATABASE_URL", None)
    os.environ.update(env)
    return _state


def lnbits_site_packages() -> Path:
    """LNbits mounts its static files relative to the working directory."""
    import importlib.util

    spec = importlib.util.find_spec("lnbits")
    assert spec and spec.origin
    return Path(spec.origin).parent.parent


def teardown() -> None:
    _drop_database()
    tmp = _state.pop("tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)

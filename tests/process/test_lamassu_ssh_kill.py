"""No ssh process outlives the LNbits that started it, even SIGKILLed.

LNbits runs as a subprocess (``lnbits_process``) with a Lamassu machine
reached through a real OpenSSH server started here (forwarding to a real
PostgreSQL holding the Lamassu schema). Once its tunnel is up, the LNbits
process alone is SIGKILLed (not its process group: the ssh child must go by
itself, tied to its parent's death); then LNbits starts again on the same
data and reconnects through a new tunnel. Every sale lands once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from lnbits_process import LnbitsProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from lamassu_db import create_lamassu_db, drop_lamassu_db
from sshd import Sshd, descendants, sshd_binary

pytestmark = pytest.mark.skipif(
    sshd_binary() is None or not sys.platform.startswith("linux"),
    reason="needs openssh-server on Linux",
)


def ssh_tunnels_of(pid: int) -> list[int]:
    found = []
    for child in descendants(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"ssh") and b"-N" in cmd:
            found.append(child)
    return found


def state(pid: int) -> str | None:
    """The process's state letter; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def wait_for(predicate, timeout: float, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what()}")
        time.sleep(0.1)


def test_sigkilled_lnbits_leaves_no_ssh_and_reconnects(node: LnbitsProcess):
    sshd = Sshd()
    sshd.start()
    db = asyncio.run(create_lamassu_db())
    try:
        node.superuser()  # first install, the extension enabled
        operator = node.register("operator", extra_wallets=1)
        node.credit(operator.wallets[1].id, 500_000)
        machine = node.api(
            "POST", "/machines", operator, expect=201,
            json={"wallet_id": operator.wallets[1].id, "name": "SSH ATM",
                  "currency": "GTQ", "source": "lamassu"},
        )  # fmt: skip
        url = f"/machines/{machine['id']}/lamassu"
        body = node.api(
            "PUT", url, operator,
            json={"database": db.name, "user": db.reader,
                  "password": db.reader_password, "sslmode": "disable",
                  "device_id": "dev-a", "poll_seconds": 3600,
                  "ssh_host": "127.0.0.1", "ssh_port": sshd.port,
                  "ssh_user": sshd.user},
        )  # fmt: skip
        sshd.authorize(body["ssh_authorized_keys_line"])
        shown = node.api("POST", url + "/test", operator)
        assert shown["step"] == "host_key_unknown", shown
        node.api(
            "POST", url + "/pin-host-key", operator,
            json={"fingerprint": shown["host_key_fingerprint"]},
        )  # fmt: skip
        first = asyncio.run(db.add_cash_out(crypto_atoms=266_800, fiat="2000"))
        assert node.api("POST", url + "/poll", operator)["error"] is None

        assert node.process is not None
        lnbits_pid = node.process.pid
        [ssh_pid] = wait_for(
            lambda: ssh_tunnels_of(lnbits_pid), 10, lambda: "no ssh tunnel child"
        )
        node.kill_lnbits_only()
        wait_for(
            lambda: state(ssh_pid) in (None, "Z"),  # gone (or dead, not reaped)
            10,
            lambda: f"ssh {ssh_pid} still {state(ssh_pid)} after LNbits died",
        )

        node.start()
        second = asyncio.run(db.add_cash_out(crypto_atoms=133_400, fiat="1000"))
        polled = node.api("POST", url + "/poll", operator)
        assert polled["error"] is None, polled
        assert node.process is not None
        assert ssh_tunnels_of(node.process.pid), "no new tunnel after the restart"

        def landed():
            rows = node.api("GET", f"/machines/{machine['id']}/settlements", operator)
            done = {r["source_txid"] for r in rows if r["status"] == "processed"}
            return len(rows) == 2 and done == {first, second}

        wait_for(landed, 30, lambda: node.api(
            "GET", f"/machines/{machine['id']}/settlements", operator))  # fmt: skip
    finally:
        sshd.close()
        asyncio.run(drop_lamassu_db(db))

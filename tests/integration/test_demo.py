"""``make demo`` on a fresh folder: LNbits starts, the demo fleet is set up,
the simulator sells, and the first settlement is processed; then it stops."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
from lamassu_db import HOST, PORT
from nostr_relay import free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "demo-test-password"
API = "/satmachineadmin/api/v1/dca"


def _postgres_answers() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
    except OSError:
        return False
    return True


# The demo shows a Lamassu machine when a local PostgreSQL answers.
LAMASSU = {"lamassu"} if _postgres_answers() else set()


def _login(client: httpx.Client, username: str) -> dict[str, str]:
    token = client.post(
        "/api/v1/auth", json={"username": username, "password": PASSWORD}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _wait(read, client, path, headers, log, until=bool, seconds: float = 180):
    """``read()`` again until ``until(value)``; the last value, or a failure
    that says what was seen."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            seen = client.get(path, headers=headers).text[:2000]
            raise AssertionError(
                f"{path} never got there; last read: {str(value)[:2000]}; "
                f"the route answers: {seen}\n{_tail(log)}"
            )
        time.sleep(0.5)


def _demo_env() -> dict[str, str]:
    """The shell's environment without the test run's LNbits settings (the
    demo is its own LNbits on its own SQLite folder)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LNBITS_", "SATMACHINE_TEST_")) and k != "PORT"
    }
    env["SATMACHINE_DEMO_PASSWORD"] = PASSWORD
    return env


def _tail(log: Path) -> str:
    return "".join(log.read_text(errors="replace").splitlines(True)[-40:])


def _wait_for_line(process: subprocess.Popen[bytes], text: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise AssertionError("demo exited:\n" + _tail(log))
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within 180 s:\n" + _tail(log))


def test_demo_comes_alive_on_a_fresh_folder():
    folder = Path(tempfile.mkdtemp(prefix="satmachine-demo-"))
    data = folder / "demo"
    log = folder / "demo.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            str(REPO / "scripts" / "demo.py"),
            "--data",
            str(data),
            "--port",
            str(port),
            "--interval",
            "1",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=_demo_env(),
        start_new_session=True,
    )
    try:
        _wait_for_line(process, "DEMO READY", log)
        banner = log.read_text()
        assert f"demo_operator / {PASSWORD}" in banner
        assert f"demo_lp1, demo_lp2, demo_lp3 / {PASSWORD}" in banner
        assert "Super user:  admin / " in banner

        with httpx.Client(base_url=base, timeout=30) as client:
            token = client.post(
                "/api/v1/auth",
                json={"username": "demo_operator", "password": PASSWORD},
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 120
            processed: list = []
            while time.monotonic() < deadline and not processed:
                processed = client.get(
                    "/satmachineadmin/api/v1/dca/settlements?status=processed",
                    headers=headers,
                ).json()
                time.sleep(0.5)
            assert processed, _tail(log)
            settlement = processed[0]
            legs = client.get(
                f"/satmachineadmin/api/v1/dca/payments?settlement_id={settlement['id']}",
                headers=headers,
            ).json()
            kinds = {leg["leg_type"] for leg in legs}
            assert {"super_fee", "operator_split", "dca"} <= kinds, legs
            assert sum(leg["amount_sats"] for leg in legs) == settlement["gross_sats"]
            splits = sorted(
                leg["amount_sats"]
                for leg in legs
                if leg["leg_type"] == "operator_split"
            )
            assert len(splits) == 3 and sum(splits) == settlement["operator_fee_sats"]

            machines = client.get(
                "/satmachineadmin/api/v1/dca/machines", headers=headers
            ).json()
            # two bitSpire machines, a manual one, and a Lamassu one with
            # PostgreSQL
            assert len(machines) == 3 + len(LAMASSU)
            assert any(m["online"] for m in machines)  # beacons arrived
            overview = client.get(
                "/satmachineadmin/api/v1/dca/overview", headers=headers
            ).json()
            assert overview["sales"]["today"]["count"] >= 1

            lp_token = client.post(
                "/api/v1/auth", json={"username": "demo_lp1", "password": PASSWORD}
            ).json()["access_token"]
            positions = client.get(
                "/satmachineadmin/api/v1/dca/lp/positions",
                headers={"Authorization": f"Bearer {lp_token}"},
            )
            assert positions.status_code == 200, positions.text
            assert len(positions.json()) == 1

            # Every mode: the manual and (with PostgreSQL) the Lamassu machine
            # have processed sales, beside the bitSpire ones.
            every = f"{API}/settlements?limit=1000"
            sources = _wait(
                lambda: sorted(
                    {
                        (s["source"], s["status"])
                        for s in client.get(every, headers=headers).json()
                    }
                ),
                client,
                every,
                headers,
                log,
                until=lambda seen: (
                    {source for source, status in seen if status == "processed"}
                    >= ({"bitspire", "manual"} | LAMASSU)
                ),
            )
            assert sources
            # The fixed-mode LP bought at LNbits' rate (the demo's price feed),
            # and sees what its sats are worth now.
            lp4 = _login(client, "demo_lp4")
            dashboard = _wait(
                lambda: client.get(f"{API}/lp/dashboard", headers=lp4).json(),
                client,
                f"{API}/lp/dashboard",
                lp4,
                log,
                until=lambda d: (
                    d["totals"]["purchases_count"] >= 1
                    and d["totals"]["by_currency"][0]["current_value"] is not None
                ),
            )
            fixed = dashboard["totals"]["by_currency"][0]
            assert Decimal(str(fixed["fiat_spent"])) == Decimal(10)  # 480 / 48
            assert fixed["gain"] is not None
            # demo_lp1 forwards its sats to its Savings wallet.
            lp1 = _login(client, "demo_lp1")
            _wait(
                lambda: client.get(f"{API}/lp/dashboard", headers=lp1).json(),
                client,
                f"{API}/lp/dashboard",
                lp1,
                log,
                until=lambda d: d["totals"]["forwarded_sats"] > 0,
            )
        text = log.read_text(errors="replace")
        assert "Error calculating fiat amount" not in text, _tail(log)
        assert ("Lamassu:     Xela (Lamassu)" in text) == bool(LAMASSU), _tail(log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert process.returncode == 0, _tail(log)
    shutil.rmtree(folder, ignore_errors=True)

"""``make demo`` on a fresh folder: LNbits starts, the demo fleet is set up,
the simulator sells, and the first settlement is processed; then it stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from nostr_relay import free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "demo-test-password"


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
            assert len(machines) == 2
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

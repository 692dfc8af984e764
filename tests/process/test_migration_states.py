"""The migration chain from every state LNbits may have recorded (issue 19):
a fresh install, this chain's own earlier states (2 and 7), and
satmachineadmin v1 at version 2 in its schema ``satoshimachine`` and in the
older ``satmachineadmin`` (before v1's fdc2a17), and at version 1 (v1's first
two days). They run one after the other in one process over one data folder
(SQLite) or
database (PostgreSQL when SATMACHINE_TEST_POSTGRES is set), every extension
table dropped between them, with LNbits' ``run_migration``;
``migration_states.py`` does the work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from lnbits_process import _pg

HERE = Path(__file__).resolve().parent
PG = os.environ.get("SATMACHINE_TEST_POSTGRES")


STATES = (
    "fresh",
    "ours:2",
    "ours:7",
    "v1:satoshimachine:2",
    "v1:satmachineadmin:2",
    "v1:satmachineadmin:1",
    "v1bad:satoshimachine:2",
)


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    """Every state, one after the other in one process (LNbits imported and its
    core migrated once; the extension's tables dropped between states)."""
    root = Path(tempfile.mkdtemp(prefix="satmachineadmin-state-"))
    (root / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNBITS_")}
    env.update(
        {
            "LNBITS_DATA_FOLDER": str(root / "data"),
            "LNBITS_EXTENSIONS_PATH": str(root),
            "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
            "LNBITS_ADMIN_UI": "true",
        }
    )
    database = None
    if PG:
        database = f"satmachineadmin_state_{uuid.uuid4().hex[:10]}"
        _pg(PG, f'CREATE DATABASE "{database}"')
        env["LNBITS_DATABASE_URL"] = f"{PG.rstrip('/')}/{database}"
    try:
        done = subprocess.run(  # noqa: S603
            [sys.executable, str(HERE / "migration_states.py"), *STATES],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        found = [
            json.loads(line[len("STATE_RESULT ") :])
            for line in done.stdout.splitlines()
            if line.startswith("STATE_RESULT ")
        ]
        assert done.returncode == 0 and len(found) == len(STATES), (
            f"exit {done.returncode}, {len(found)} of {len(STATES)} states\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
        return {r["state"]: r for r in found}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if database and PG:
            _pg(PG, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


LAST = 9


@pytest.mark.parametrize("state", ["fresh", "ours:2", "ours:7"])
def test_chain_runs_from_its_own_states_and_keeps_their_rows(
    state: str, results: dict[str, dict]
) -> None:
    out = results[state]
    assert out["version"] == LAST, out
    assert out["report"]["status"] == "no_v1", out["report"]
    if state != "fresh":
        assert out["kept"] == [{"name": "kept", "client": "c1"}]


@pytest.mark.parametrize(
    "state", ["v1:satoshimachine:2", "v1:satmachineadmin:2", "v1:satmachineadmin:1"]
)
def test_chain_runs_over_v1_and_carries_its_data(
    state: str, results: dict[str, dict]
) -> None:
    out = results[state]
    assert out["version"] == LAST, out
    report = out["report"]
    assert report["status"] == "carried", report
    assert report["error"] is None and report["left_out"] == []
    # v1's clients are the positions, under their v1 ids, at one Lamassu
    # machine bound to v1's source wallet, run by the super user.
    ids = out["fixture"]["clients"]
    assert sorted(p["id"] for p in out["positions"]) == sorted(ids)
    assert [
        (p["dca_mode"], p["fixed_mode_daily_limit_minor"]) for p in out["positions"]
    ] == [
        ("flow", None),
        ("fixed", 30_000),
    ]
    [machine] = out["machines"]
    assert machine["wallet_id"] == "w" * 32 and machine["source"] == "lamassu"
    assert machine["operator_user_id"] == "5" * 32
    # Balances as v1 showed them: 1000 - 66 and 500 - 33 (whole quetzales).
    assert report["v1"]["balances"] == {ids[0]: 934, ids[1]: 467}
    assert report["carried"]["balances"] == {ids[0]: "934.00", ids[1]: "467.00"}
    assert sorted((leg["status"], leg["fiat_amount_minor"]) for leg in out["legs"]) == [
        ("completed", 3_300),
        ("completed", 6_600),
    ]
    assert report["carried"]["settlements"] == {"rows": 1, "gross_sats": 13_400}
    # v1's plain-text secrets are sealed where v1 kept them.
    [secrets] = out["v1_secrets"]
    assert secrets["password"].startswith("sbx1:")
    assert secrets["ssh_private_key"].startswith("sbx1:")


def test_a_v1_row_that_cannot_be_carried_changes_nothing_and_is_named(
    results: dict[str, dict],
) -> None:
    out = results["v1bad:satoshimachine:2"]
    bad = out["fixture"]["deposits"][-1]
    assert f"dca_deposits row {bad}" in out["raised"], out
    assert out["version"] == LAST - 1  # m009 runs again at the next start
    report = out["report"]
    assert report["status"] == "failed"
    assert report["error"] == {
        "table": "dca_deposits",
        "id": bad,
        "why": "amount -5 is negative",
    }
    assert report["v1"]["dca_deposits"]["rows"] == 4
    assert out["positions"] == [] and out["machines"] == [] and out["legs"] == []
    [secrets] = out["v1_secrets"]
    assert secrets["password"] == "v1-plain-password"  # rolled back too

"""In place over satmachineadmin v1 (issue 19), on a real LNbits process
(SQLite, or PostgreSQL with SATMACHINE_TEST_POSTGRES):

1. LNbits runs without this extension; the super user and two LPs sign up.
2. With LNbits stopped, ``v1_fixture.py`` writes what v1 leaves behind (its
   m001/m002 DDL, its config route, the rows its manual poll wrote for two
   cash-outs of a real Lamassu database, clients as its client extension
   writes them, LNbits' ``dbversions.satmachineadmin = 2``).
3. ``make upgrade-report`` reads that data read-only.
4. This checkout takes v1's folder and LNbits starts: the machine, positions,
   balances and deposits are v1's; a poll of the same Lamassu database lands
   only the cash-out v1 never processed (not the two it did, not one older
   than its newest); nothing v1 paid is paid again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from lnbits_process import API, EXT_ID, REPO, LnbitsProcess
from test_release_install import first_install, install, make_release

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from lamassu_db import create_lamassu_db, drop_lamassu_db  # noqa: E402


def ago(**kwargs: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**kwargs)


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(  # noqa: S603
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.parametrize("via", ["folder", "extension-manager"])
def test_upgrade_over_v1_keeps_positions_and_balances_and_pays_nothing_twice(
    via: str, served: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``folder``: this checkout put in v1's folder, LNbits restarted (the
    issue's report). ``extension-manager``: LNbits restarted without v1's code,
    then the release installed from a manifest on 127.0.0.1 (the README's
    way): the migrations run from v1's version inside the install."""
    lamassu = asyncio.run(create_lamassu_db())
    try:
        _upgrade_over_v1(tmp_path_factory.mktemp("v1"), lamassu, via, served)
    finally:
        asyncio.run(drop_lamassu_db(lamassu))


def _cash_outs(lamassu) -> dict[str, str]:
    async def add() -> dict[str, str]:
        ids = {}
        for name, created in (
            ("old", ago(days=3)),  # before v1's newest: never lands
            ("a", ago(hours=3)),  # v1 processed (transaction row + payments)
            ("b", ago(hours=2)),  # v1 processed (payments only)
        ):
            ids[name] = await lamassu.add_cash_out(
                crypto_atoms=266_800,
                fiat="2000",
                created=created,
                confirmed_at=created + timedelta(minutes=1),
            )
        return ids

    return asyncio.run(add())


def _spec(lamassu, su, lp1, lp2, commission, tx: dict[str, str]) -> dict:
    def at(minutes_ago: float) -> str:
        return ago(minutes=minutes_ago - 1).isoformat()

    return {
        "schema": "satoshimachine",
        "version": 2,
        "config": {
            "host": "127.0.0.1",
            "port": 5432,
            "database_name": lamassu.name,
            "username": lamassu.reader,
            "password": lamassu.reader_password,
            "source_wallet_id": su.wallet.id,
            "commission_wallet_id": commission.id,
        },
        "clients": [
            {"user_id": lp1.id, "wallet_id": lp1.wallet.id, "username": "lp_one"},
            {
                "user_id": lp2.id,
                "wallet_id": lp2.wallet.id,
                "username": "lp_two",
                "dca_mode": "fixed",
                "fixed_mode_daily_limit": 250,
            },
        ],
        "deposits": [
            {
                "client": 0,
                "amount": 9000,
                "confirmed": True,
                "notes": "cash deposit, 9 000 GTQ",
            },
            {"client": 0, "amount": 150},
            {"client": 1, "amount": 1000, "confirmed": True},
        ],
        "cash_outs": [
            {
                "id": tx["a"],
                "fiat_amount": 2000,
                "crypto_amount": 266_800,
                "commission_percentage": 0.03,
                "effective_commission": 0.03,
                "commission_amount_sats": 7_771,
                "base_amount_sats": 259_029,
                "exchange_rate": 129.5145,
                "device_id": "dev-a",
                "transaction_time": at(180),
                "payments": [
                    {
                        "client": 0,
                        "sats": 233_126,
                        "fiat": 1800,
                        "exchange_rate": 129.5,
                    },
                    {"client": 1, "sats": 25_903, "fiat": 200, "exchange_rate": 129.5},
                ],
            },
            {
                "id": tx["b"],
                "stored": False,
                "fiat_amount": 2000,
                "crypto_amount": 266_800,
                "commission_percentage": 0.03,
                "effective_commission": 0.03,
                "commission_amount_sats": 7_771,
                "base_amount_sats": 259_029,
                "exchange_rate": 129.5145,
                "device_id": "dev-a",
                "transaction_time": at(120),
                "payments": [
                    {"client": 0, "sats": 12_951, "fiat": 100, "exchange_rate": 129.5},
                    {
                        "client": 1,
                        "sats": 1_295,
                        "fiat": 10,
                        "exchange_rate": 129.5,
                        "status": "failed",
                    },
                ],
            },
        ],
    }


def _upgrade_over_v1(
    tmp_path: Path,
    lamassu,
    via: str,
    served: tuple[str, Path],
) -> None:
    tx = _cash_outs(lamassu)
    base_url, folder = served
    manifest_url = f"{base_url}/manifest.json"
    env = {}
    if via == "extension-manager":
        make_release(base_url, folder, "2.0.0")
        (folder / "builder.json").write_text('{"extensions": []}')
        env = {
            "LNBITS_EXTENSIONS_MANIFESTS": json.dumps([manifest_url]),
            "LNBITS_EXTENSIONS_BUILDER_MANIFEST_URL": f"{base_url}/builder.json",
        }
    with LnbitsProcess(log_name="upgrade-v1", env=env) as node:
        link = node.root / "extensions" / EXT_ID
        link.unlink()  # v1 is "installed": its rows come from the fixture
        node.start()
        su = first_install(node)
        commission = node.create_wallet(su, "commission")
        lp1, lp2 = node.register("lp_one"), node.register("lp_two")
        node.stop()

        spec = _spec(lamassu, su, lp1, lp2, commission, tx)
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        env = node.environment()
        out = run([str(HERE / "v1_fixture.py"), str(tmp_path / "spec.json")], env)
        v1 = json.loads(out.split("V1_FIXTURE ", 1)[1])
        c1, c2 = v1["clients"]

        # Before: the read-only report, from the data folder or the database.
        where = (
            ["--database-url", env["LNBITS_DATABASE_URL"]]
            if node.postgres
            else ["--data", env["LNBITS_DATA_FOLDER"]]
        )
        before = json.loads(
            run([str(REPO / "scripts" / "upgrade_report.py"), *where, "--json"], env)
        )
        assert before["status"] == "would_carry", before
        assert before["recorded_version"] == 2
        assert before["v1"]["balances"] == {c1: 9000 - 1800 - 100, c2: 1000 - 200}
        assert before["v1"]["processed_cash_outs"] == 2
        assert before["upgrade_already_ran"] is None

        # This extension takes v1's place.
        if via == "folder":
            link.symlink_to(REPO, target_is_directory=True)
            node.start()
        else:  # v1's folder is gone: LNbits starts, then installs the release
            node.start()
            su = node.login("super")
            [entry] = json.loads((folder / "manifest.json").read_text())["extensions"]
            install(node, su, manifest_url, entry)
            assert json.loads((link / "config.json").read_text())["version"] == "2.0.0"
        su = node.superuser()  # logs in, enables the extension

        [machine] = node.api("GET", "/machines", su)
        assert machine["source"] == "lamassu" and machine["wallet_id"] == su.wallet.id
        assert machine["currency"] == "GTQ"
        lam = node.api("GET", f"/machines/{machine['id']}/lamassu", su)
        assert (lam["host"], lam["database"], lam["user"]) == (
            "127.0.0.1",
            lamassu.name,
            lamassu.reader,
        )
        assert lam["password_set"] and lam["device_id"] == "dev-a"
        splits = node.api(
            "GET", "/commission-splits", su, params={"machine_id": machine["id"]}
        )
        assert [(s["wallet_id"], Decimal(str(s["pct"]))) for s in splits] == [
            (commission.id, Decimal(1))
        ]

        clients = {c["id"]: c for c in node.api("GET", "/clients", su)}
        assert set(clients) == {c1, c2}
        assert (clients[c1]["user_id"], clients[c1]["wallet_id"]) == (
            lp1.id,
            lp1.wallet.id,
        )
        assert clients[c1]["dca_mode"] == "flow" and clients[c1]["status"] == "active"
        assert clients[c2]["dca_mode"] == "fixed"
        assert clients[c2]["fixed_mode_daily_limit_minor"] == 25_000
        for client_id, whole in ((c1, 7100), (c2, 800)):
            balance = node.api("GET", f"/clients/{client_id}/balance", su)
            assert Decimal(str(balance["remaining_balance"])) == whole, balance

        deposits = {d["id"]: d for d in node.api("GET", "/deposits", su)}
        assert set(deposits) == set(v1["deposits"])
        d1, d2, d3 = (deposits[i] for i in v1["deposits"])
        assert (Decimal(str(d1["amount"])), d1["status"]) == (9000, "confirmed")
        assert d1["notes"] == "cash deposit, 9 000 GTQ" and d1["confirmed_at"]
        assert (Decimal(str(d2["amount"])), d2["status"]) == (150, "pending")
        assert (Decimal(str(d3["amount"])), d3["status"]) == (1000, "confirmed")

        report = node.api("GET", "/upgrade/v1-report", su)
        after = json.loads(
            run([str(REPO / "scripts" / "upgrade_report.py"), *where, "--json"], env)
        )
        assert after["upgrade_already_ran"] == "carried"
        assert report["status"] == "carried" and report["error"] is None
        assert report["v1"] == before["v1"]  # the same counts and sums
        assert report["carried"]["balances"] == {c1: "7100.00", c2: "800.00"}
        node.request("GET", API + "/upgrade/v1-report", actor=lp1, expect=403)

        # The same Lamassu database, with a cash-out v1 never saw: a poll lands
        # only that one (the poller also ran at start: a and b stayed landed
        # once, the old one stayed out).
        tx["new"] = asyncio.run(
            lamassu.add_cash_out(
                crypto_atoms=266_800, fiat="2000", created=ago(seconds=5)
            )
        )
        node.api("POST", f"/machines/{machine['id']}/lamassu/poll", su)
        settlements = node.api(
            "GET", "/settlements", su, params={"machine_id": machine["id"]}
        )
        by_txid = {s["source_txid"]: s for s in settlements}
        assert len(settlements) == len(by_txid) == 3, settlements
        assert set(by_txid) == {tx["a"], tx["b"], tx["new"]}
        assert by_txid[tx["a"]]["status"] == by_txid[tx["b"]]["status"] == "processed"
        assert by_txid[tx["a"]]["gross_sats"] == 266_800
        assert by_txid[tx["new"]]["status"] != "processed"  # the wallet is empty

        # v1's payments are history, never paid again: the LPs got nothing.
        legs = node.api("GET", "/payments", su, params={"leg_type": "dca"})
        v1_legs = {p["id"]: p for p in legs if p["idempotency_key"].startswith("v1:")}
        assert set(v1_legs) == set(v1["payments"])
        assert sorted(p["status"] for p in v1_legs.values()) == [
            "completed",
            "completed",
            "completed",
            "voided",
        ]
        assert node.balance(lp1.wallet) == node.balance(lp2.wallet) == 0

        # The carried history reads everywhere it shows: the LP's own view
        # (v1's payments and deposits), the operator's overview and books.
        lp1 = node.login(lp1.username)
        positions = node.api("GET", "/lp/positions", lp1)
        assert [p["client_id"] for p in positions] == [c1]
        mine = node.api("GET", "/lp/payments", lp1, params={"client_id": c1})
        carried = [p for p in mine if p["id"] in v1["payments"]]
        assert sum(p["amount_sats"] for p in carried) == 233_126 + 12_951
        node.api("GET", "/lp/dashboard", lp1)
        node.api("GET", "/overview", su)
        books = node.api(
            "GET", "/reconciliation", su, params={"machine_id": machine["id"]}
        )
        assert books["machines"][0]["machine_id"] == machine["id"], books

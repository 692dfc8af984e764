"""Install like an operator (issue 19): ``make release`` builds the zip and
the manifest, a local HTTP server on 127.0.0.1 serves them, and a real LNbits
(SQLite, or PostgreSQL with SATMACHINE_TEST_POSTGRES) installs the release
through its own extension manager (``POST /api/v1/extension``: it reads the
manifest, downloads the archive, checks its sha256, unpacks, migrates and
starts it), then upgrades it to a newer build with the data kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lnbits_process import API, EXT_ID, REPO, Actor, LnbitsProcess


def make_release(base_url: str, dist: Path, version: str) -> None:
    subprocess.run(  # noqa: S603
        [  # noqa: S607
            "make",
            "-s",
            "-C",
            str(REPO),
            "release",
            f"RELEASE_BASE_URL={base_url}",
            f"DIST={dist}",
            f"RELEASE_VERSION={version}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


# A migration only the newer build has: the platform fee it sets shows that it
# ran in the running LNbits, without a restart.
PROBE_MIGRATION = """

async def m998_release_probe(db):
    await db.execute("DELETE FROM satmachineadmin.super_config")
    await db.execute(
        "INSERT INTO satmachineadmin.super_config (id, super_fee_pct) "
        "VALUES ('singleton', '0.125')"
    )
"""


def newer_build(base_url: str, dist: Path, version: str, work: Path) -> None:
    """A build of this checkout with one more migration (PROBE_MIGRATION)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import release

    source = work / "src"
    for rel in release.runtime_files(REPO):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, source / rel)
    with (source / "migrations.py").open("a") as f:
        f.write(PROBE_MIGRATION)
    release.main(
        [
            *("--source", str(source), "--out", str(dist)),
            *("--version", version, "--base-url", base_url),
        ]
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll ``check`` until it returns a truthy value; fail saying what was
    last seen."""
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        seen = check()
        if seen:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s; last seen {seen!r}")


def first_install(node: LnbitsProcess) -> Actor:
    """The super user of an LNbits that has not got the extension yet."""
    r = node.request(
        "PUT",
        "/api/v1/auth/first_install",
        json={
            "username": "super",
            "password": node._password,
            "password_repeat": node._password,
        },
    )
    return node._actor(r.json()["access_token"])


def install(node: LnbitsProcess, su: Actor, manifest_url: str, entry: dict) -> dict:
    return node.request(
        "POST",
        "/api/v1/extension",
        actor=su,
        json={
            "ext_id": EXT_ID,
            "archive": entry["archive"],
            "source_repo": manifest_url,
            "version": entry["version"],
        },
        timeout=180,
    ).json()


def test_extension_manager_installs_the_release_and_upgrades_it_keeping_data(
    served: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_path = tmp_path_factory.mktemp("build")
    base_url, folder = served
    make_release(base_url, folder, "2.0.0")
    newer_build(base_url, folder, "2.0.1", tmp_path)
    (folder / "builder.json").write_text('{"extensions": []}')
    manifest_url = f"{base_url}/manifest.json"
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = {e["version"]: e for e in manifest["extensions"]}
    assert set(entries) == {"2.0.0", "2.0.1"}
    assert entries["2.0.0"]["archive"] == f"{base_url}/satmachineadmin-2.0.0.zip"
    assert entries["2.0.0"]["min_lnbits_version"] == "1.6.0"
    assert len(entries["2.0.0"]["hash"]) == 64

    with LnbitsProcess(
        env={
            "LNBITS_EXTENSIONS_MANIFESTS": json.dumps([manifest_url]),
            "LNBITS_EXTENSIONS_BUILDER_MANIFEST_URL": f"{base_url}/builder.json",
        },
        log_name="release",
    ) as node:
        # No checkout linked in: only the extension manager puts it there.
        ext_dir = node.root / "extensions" / EXT_ID
        ext_dir.unlink()
        node.start()
        su = first_install(node)

        installed = install(node, su, manifest_url, entries["2.0.0"])
        assert installed["code"] == EXT_ID, installed
        assert not ext_dir.is_symlink()
        config = json.loads((ext_dir / "config.json").read_text())
        assert config["version"] == "2.0.0"
        assert not (ext_dir / "tests").exists() and not (ext_dir / "Makefile").exists()

        node.request("PUT", f"/api/v1/extension/{EXT_ID}/enable", actor=su)
        machine = node.api(
            "POST",
            "/machines",
            su,
            json={
                "wallet_id": su.wallet.id,
                "name": "kept across the upgrade",
                "currency": "GTQ",
                "source": "manual",
            },
            expect=201,
        )
        report = node.api("GET", "/upgrade/v1-report", su)
        assert report["status"] == "no_v1"

        install(node, su, manifest_url, entries["2.0.1"])
        config = json.loads((ext_dir / "config.json").read_text())
        assert config["version"] == "2.0.1"
        # The newer build's migration ran in the running LNbits (it imports the
        # migrations afresh: the extension's code never imports them).
        wait_for(
            "the newer build's migration (platform fee 0.125)",
            lambda: (
                Decimal(str(node.api("GET", "/super-config", su)["super_fee_pct"]))
                == Decimal("0.125")
            ),
        )
        listed = node.api("GET", "/machines", su)
        assert [m["id"] for m in listed] == [machine["id"]]

        # And after a restart, from the unpacked release alone.
        node.stop()
        node.start()
        listed = node.request("GET", API + "/machines", actor=su).json()
        assert [m["name"] for m in listed] == ["kept across the upgrade"]

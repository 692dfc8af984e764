"""Runs the test suite as shards, a few at a time, on SQLite and PostgreSQL.

    python tests/shards.py                       # SQLite and PostgreSQL
    python tests/shards.py --db sqlite           # what `make test` runs
    python tests/shards.py --jobs 4 --only pg-recovery

Why shards: every pytest process runs one LNbits (in-process, or children it
starts) over a fresh data folder or database. LNbits' cost per call grows with
what its database holds (on SQLite a balance lookup reads every wallet), so
one long session gets slower test after test; and many tests mostly wait (a
process test for LNbits to restart, a browser test for a page), so running a
few shards side by side keeps the two cores busy.

Each shard is a list of test files on one database. Every ``test_*.py`` under
``tests/`` belongs to a shard: a file no shard names runs in that database's
``rest`` shard, so a new test file is never left out. Tests that touch no
database (``tests/unit``) run once. Each shard's output is printed whole when
it ends, with its wall time and its slowest tests; a shard that outlives
``--shard-timeout`` is killed and fails, saying so.

The last line is ``N passed, N failed`` over all shards; the exit status is 0
only when every shard passed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")


@dataclass
class Shard:
    name: str
    db: str  # "sqlite" or "postgres"
    paths: list[str]  # relative to tests/
    weight: float  # rough minutes on a quiet machine: the longest start first
    log: Path | None = None
    returncode: int | None = None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False


# Per database: (name, files, weight). The API matrix creates a user and a
# world per cell, so it runs apart from the flows it would slow down.
PER_DB: list[tuple[str, list[str], float]] = [
    ("authz", ["integration/test_api_authz.py"], 4.0),
    ("fuzz", ["integration/test_api_fuzz.py"], 2.5),
    (
        "api",
        [
            "integration/test_api_input.py",
            "integration/test_api_lists.py",
            "integration/test_api_routes.py",
            "integration/test_api_settlements.py",
            "integration/test_api_deposits.py",
            "integration/test_lp_self.py",
            "integration/test_smoke.py",
            "integration/test_sources_parse.py",
        ],
        3.5,
    ),
    (
        "recovery",
        [
            "integration/test_recovery.py",
            "integration/test_payout_recovery.py",
            "integration/test_pipeline.py",
            "integration/test_notifications.py",
            "integration/test_upgrade_v1_plan.py",
        ],
        2.5,
    ),
    (
        "money",
        [
            "integration/test_reconciliation.py",
            "integration/test_manual_funding.py",
            "integration/test_fixed_mode.py",
            "integration/test_fixed_slot_math.py",
            "integration/test_lamassu.py",
            "integration/test_autoforward.py",
            "integration/test_overview_health.py",
            "integration/test_telemetry.py",
            "integration/test_demo.py",
        ],
        4.5,
    ),
    ("fleet", ["process/test_fleet_simulation.py"], 4.5),
    ("lamassu", ["integration/test_lamassu_field.py"], 1.5),
    ("kill-ssh", ["process/test_lamassu_ssh_kill.py"], 1.0),
    (
        "upgrade",
        [
            "process/test_migration_states.py",
            "process/test_upgrade_v1.py",
            "process/test_release_install.py",
        ],
        2.0,
    ),
    # Process tests mostly wait (for a restart, a lease, a slot's minute):
    # apart, they overlap the shards that compute.
    ("kill-payouts", ["process/test_process_death.py"], 3.0),
    ("kill-forward", ["process/test_autoforward_kill.py"], 1.5),
    ("kill-slots", ["process/test_fixed_slots_kill.py"], 3.2),
]
# Once, whatever the database: pure code, and the pages (on SQLite).
ONCE: list[tuple[str, list[str], float]] = [
    ("unit", ["unit"], 1.0),
    ("browser", ["browser"], 6.0),
]
PREFIX = {"sqlite": "sq", "postgres": "pg"}


def all_test_files() -> set[str]:
    """Every test module (a support module named test_* with no test in it,
    such as integration/test_api_support.py, is not one)."""
    return {
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("test_*.py")
        if "__pycache__" not in p.parts and "def test_" in p.read_text()
    }


def covered(paths: list[str], files: set[str]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        out |= {f for f in files if f == path or f.startswith(path.rstrip("/") + "/")}
    return out


def plan(dbs: list[str]) -> list[Shard]:
    # One folder a shard: each folder's conftest.py is imported as the module
    # `conftest`, and two in one pytest process shadow each other.
    for name, paths, _ in PER_DB + ONCE:
        folders = {p.split("/")[0] for p in paths}
        assert len(folders) == 1, f"shard {name} mixes folders {sorted(folders)}"
    files = all_test_files()
    shards: list[Shard] = []
    for db in dbs:
        named: set[str] = set()
        for name, paths, weight in PER_DB:
            present = [p for p in paths if covered([p], files)]
            named |= covered(paths, files)
            if present:
                shards.append(Shard(f"{PREFIX[db]}-{name}", db, present, weight))
        once_paths = [p for _, paths, _ in ONCE for p in paths]
        rest = sorted(files - named - covered(once_paths, files))
        if rest:
            shards.append(Shard(f"{PREFIX[db]}-rest", db, rest, 1.0))
    once_db = "sqlite" if "sqlite" in dbs else dbs[0]
    for name, paths, weight in ONCE:
        if covered(paths, files):
            shards.append(Shard(name, once_db, paths, weight))
    return sorted(shards, key=lambda s: -s.weight)


SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def parse_counts(text: str) -> dict[str, int]:
    for line in reversed(text.strip().splitlines()):
        if re.search(r"\b(passed|failed|error|no tests ran)\b", line) and (
            " in " in line
        ):
            counts: dict[str, int] = {}
            for number, word in SUMMARY.findall(line):
                key = "errors" if word.startswith("error") else word
                counts[key] = counts.get(key, 0) + int(number)
            return counts
    return {}


_running: dict[int, subprocess.Popen[bytes]] = {}  # pid -> shard's pytest
_stopping = threading.Event()


def _stop(signum: int, frame: object) -> None:
    """Stopped (Ctrl-C, SIGTERM): no shard starts, and every running one is
    killed with its process group (its LNbits, sshd, browser), not orphaned."""
    _stopping.set()
    for process in list(_running.values()):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit(128 + signum)


def run_shard(shard: Shard, logs: Path, timeout: float, extra: list[str]) -> None:
    env = dict(os.environ)
    env.pop("SATMACHINE_TEST_POSTGRES", None)
    if shard.db == "postgres":
        env["SATMACHINE_TEST_POSTGRES"] = PG_URL
    env["SATMACHINE_SHARD"] = shard.name
    shard.log = logs / f"{shard.name}.log"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *[f"tests/{p}" for p in shard.paths],
        "-q",
        "--durations=30",
        "--durations-min=1",
        *extra,
    ]
    started = time.monotonic()
    with shard.log.open("wb") as out:
        out.write(f"$ {' '.join(command)}  [{shard.db}]\n".encode())
        out.flush()
        process = subprocess.Popen(  # noqa: S603 - our own test command
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killed as one
        )
        _running[process.pid] = process
        try:
            shard.returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            shard.timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            shard.returncode = process.wait()
        finally:
            _running.pop(process.pid, None)
    shard.seconds = time.monotonic() - started
    shard.counts = parse_counts(shard.log.read_text(errors="replace"))
    if shard.timed_out:
        with shard.log.open("a") as out:
            out.write(
                f"\nshard {shard.name} killed: still running after {timeout:.0f} s\n"
            )


def report(shard: Shard) -> None:
    assert shard.log is not None
    ok = shard.returncode == 0 and not shard.timed_out
    print("=" * 78)
    print(
        f"== shard {shard.name} ({shard.db}): {'OK' if ok else 'FAILED'} "
        f"in {shard.seconds:.0f} s  {shard.counts}"
    )
    print("=" * 78)
    print(shard.log.read_text(errors="replace"), flush=True)


def summarize(shards: list[Shard], wall: float) -> int:
    """The table of shards, slowest first, and the closing count line."""
    totals: dict[str, int] = {}
    print("=" * 78)
    print(f"== shards ({wall:.0f} s wall in all)")
    for s in sorted(shards, key=lambda s: -s.seconds):
        ok = s.returncode == 0 and not s.timed_out
        state = "ok    " if ok else "FAILED"
        print(f"   {s.name:14} {state} {s.seconds:6.0f} s  {s.counts}")
        for key, value in s.counts.items():
            totals[key] = totals.get(key, 0) + value
    failed_shards = [s.name for s in shards if s.returncode != 0 or s.timed_out]
    if failed_shards:
        print(f"== failed shards: {', '.join(failed_shards)}")
    failed = totals.get("failed", 0) + totals.get("errors", 0)
    if failed_shards and not failed:
        failed = len(failed_shards)  # a shard that died before its summary
    line = f"{totals.get('passed', 0)} passed, {failed} failed"
    if totals.get("skipped"):
        line += f", {totals['skipped']} skipped"
    print(line, flush=True)
    return 1 if failed_shards else 0


def run_all(shards: list[Shard], jobs: int, timeout: float, extra: list[str]) -> None:
    logs = Path(tempfile.mkdtemp(prefix="satmachineadmin-shards-"))
    print(f"{len(shards)} shards, {jobs} at a time; logs in {logs}", flush=True)
    pending = list(shards)
    lock = threading.Lock()
    printed = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending or _stopping.is_set():
                    return
                shard = pending.pop(0)
            with printed:
                print(f"-- start {shard.name}", flush=True)
            run_shard(shard, logs, timeout, extra)
            with printed:
                report(shard)

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", 4)))
    parser.add_argument("--only", default="", help="comma-separated shard names")
    parser.add_argument("--shard-timeout", type=float, default=1200.0)
    parser.add_argument("--list", action="store_true", help="show the shards")
    args, extra = parser.parse_known_args(argv)

    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = [d for d in dbs if d not in PREFIX]
    if unknown or not dbs:
        parser.error(f"--db takes sqlite and/or postgres, not {unknown or dbs}")
    shards = plan(dbs)
    if args.only:
        wanted = set(args.only.split(","))
        shards = [s for s in shards if s.name in wanted]
        if not shards:
            parser.error(f"no shard named {sorted(wanted)}")
    if args.list:
        for s in shards:
            print(f"{s.name:14} {s.db:9} {' '.join(s.paths)}")
        return 0

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    run_all(shards, args.jobs, args.shard_timeout, extra)
    return summarize(shards, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())

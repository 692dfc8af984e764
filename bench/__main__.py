"""The benchmarks: ``make bench`` (= ``.venv/bin/python -m bench`` from the
repository root).

Runs every phase (overhead, burst, listings, lp_dashboard) on SQLite and on
PostgreSQL, each in a process of its own with a fresh LNbits and a fresh
database, then writes ``bench/results/latest.json`` and ``docs/BENCHMARKS.md``. Options:

    --quick                    small N and counts (a smoke run, under 2 minutes)
    --only overhead,burst,...  some phases only (recovery: start-up recovery
                               cost at 10 and 100 000 settlements; lamassu:
                               the Lamassu source's first and steady polls;
                               fixed: a fixed-mode slot against bare transfers;
                               lp_dashboard: the LP dashboard's requests at
                               20 000 payouts)
    --backend sqlite|postgres  one backend only
    --pg-url URL               PostgreSQL server (default $PG_URL or
                               postgres://postgres@127.0.0.1:5432); a database
                               is created for each phase and dropped after
    --profile                  also profile (pyinstrument, step timers) into
                               bench/results/profiles/

Only a complete full run (no --quick, --only or --backend) replaces
latest.json and BENCHMARKS.md; other runs print their summary and write
bench/results/partial.json.tmp (git-ignored). The exit status is 1 when a
phase failed, not when a target is missed (see ``--strict``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from . import report

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "BENCHMARKS.md"
PHASES = (
    "overhead",
    "burst",
    "listings",
    "recovery",
    "lamassu",
    "fixed",
    "lp_dashboard",
)
BACKENDS = ("sqlite", "postgres")
TIMEOUT_S = {True: 600, False: 2400}  # per worker process; a shared machine is slow


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _postgres_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - lnbits depends on it
        return str(exc)

    async def probe() -> None:
        conn = await asyncpg.connect(url.rstrip("/") + "/postgres", timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None


def _drop_database(url: str, name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url.rstrip("/") + "/postgres", timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def _pump(proc: subprocess.Popen, log: TextIO, label: str) -> None:
    """Copy the worker's stderr to its log; show its progress lines."""
    assert proc.stderr is not None
    for line in proc.stderr:
        log.write(line)
        if line.startswith("[") or "Error" in line or "Traceback" in line:
            print(f"    {label} {line.rstrip()}", file=sys.stderr, flush=True)


def _run_worker(
    backend: str, phase: str, args: argparse.Namespace, workdir: Path
) -> dict[str, dict]:
    """Run one worker process (``phase`` may list several); {phase: figures}."""
    out = workdir / f"{backend}-{phase.replace(',', '-')}.json"
    log_path = out.with_suffix(".log")
    cmd = [
        sys.executable,
        "-m",
        "bench.worker",
        "--backend",
        backend,
        "--phase",
        phase,
        "--out",
        str(out),
        "--pg-url",
        args.pg_url,
    ]
    if args.quick:
        cmd.append("--quick")
    if args.profile:
        cmd += ["--profile-dir", str(RESULTS / "profiles")]
    _log(f"{backend} {phase}: starting")
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, cwd=REPO, stdout=log, stderr=subprocess.PIPE, text=True, env=env
        )
        pump = threading.Thread(target=_pump, args=(proc, log, f"{backend} {phase}"))
        pump.start()
        try:
            proc.wait(timeout=TIMEOUT_S[args.quick])
        except subprocess.TimeoutExpired:
            _log(f"{backend} {phase}: timed out after {TIMEOUT_S[args.quick]} s")
            proc.kill()
            proc.wait()
        pump.join()
    seconds = time.perf_counter() - started
    db_file = out.with_suffix(".db")
    phases = phase.split(",")
    if out.exists():
        results = json.loads(out.read_text())
    else:
        error = f"worker died or timed out (exit {proc.returncode}); log: {log_path}"
        results = {
            p: {"backend": backend, "phase": p, "ok": False, "error": error}
            for p in phases
        }
        if db_file.exists() and db_file.read_text():
            _drop_database(args.pg_url, db_file.read_text())
    for result in results.values():
        result["wall_seconds"] = round(seconds / len(phases), 1)
        if not result.get("ok"):
            print(result.get("error", ""), file=sys.stderr)
    ok = all(r.get("ok") for r in results.values())
    _log(f"{backend} {phase}: {'ok' if ok else 'FAILED'} ({seconds:.0f} s)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(PHASES))
    parser.add_argument("--backend", choices=BACKENDS, default=None)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--strict", action="store_true", help="exit 2 when a target is missed"
    )
    args = parser.parse_args()
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    backends = [args.backend] if args.backend else list(BACKENDS)
    complete = not args.quick and set(phases) == set(PHASES) and len(backends) == 2

    command = shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
    if os.environ.get("MAKELEVEL") and len(sys.argv) == 1:
        command = "make bench"
    meta = report.machine_meta(command)
    results: dict = {"meta": meta, "quick": args.quick, "backends": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="satmachine-bench-") as tmp:
        for backend in backends:
            skipped = None
            if backend == "postgres":
                skipped = _postgres_reachable(args.pg_url)
            if skipped:
                _log(f"postgres: skipped ({skipped})")
                results["backends"][backend] = {"skipped": skipped}
                continue
            # --quick: all phases in one process per backend (fewer start-ups);
            # a full run gives each phase a process, database and memory of its own.
            groups = [",".join(phases)] if args.quick else phases
            results["backends"][backend] = {}
            for group in groups:
                results["backends"][backend].update(
                    _run_worker(backend, group, args, Path(tmp))
                )
    meta["total_seconds"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = report.loadavg()
    results["targets"] = report.evaluate(results)

    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    if complete:
        (RESULTS / "latest.json").write_text(text + "\n")
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(report.render(results))
        _log(f"wrote {RESULTS / 'latest.json'} and {DOC}")
    else:
        (RESULTS / "partial.json.tmp").write_text(text + "\n")
        _log(f"partial run: wrote {RESULTS / 'partial.json.tmp'} (docs untouched)")
    print(report.summary(results))
    failed = [
        f"{b} {p}"
        for b, phases_ in results["backends"].items()
        for p, r in phases_.items()
        if isinstance(r, dict) and r.get("ok") is False
    ]
    if failed:
        _log(f"failed: {', '.join(failed)}")
        sys.exit(1)
    if args.strict and any(t["met"] is False for t in results["targets"]):
        sys.exit(2)


if __name__ == "__main__":
    main()

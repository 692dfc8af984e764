"""One benchmark phase on one backend, in a process of its own (LNbits picks
its database at first import, and a fresh process gives each phase a fresh
database and its own memory figures). Started by ``python -m bench``:

    python -m bench.worker --backend sqlite --phase overhead --out FILE [--quick]

``--phase`` takes a comma-separated list to run several phases in one process
(``--quick`` does, to save start-ups). FILE gets ``{phase: figures}``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from . import env

PHASES = (
    "overhead",
    "burst",
    "listings",
    "recovery",
    "lamassu",
    "fixed",
    "lp_dashboard",
)


async def _run(args: argparse.Namespace) -> dict:
    from loguru import logger

    profile_dir = Path(args.profile_dir) / args.backend if args.profile_dir else None
    env.dump_tasks_on_sigusr1()
    started = time.perf_counter()
    async with env.running_lnbits() as lnbits:
        # LNbits logs every payment at INFO: keep WARNING and above only, for a
        # readable output (the same for the pipeline and the bare transfers).
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        startup_s = time.perf_counter() - started
        memory_after_startup = round(env.rss_mib(), 1)
        figures: dict = {}
        for phase in args.phase.split(","):
            module = importlib.import_module(f"bench.{phase}")
            figures[phase] = await module.run(
                lnbits, quick=args.quick, profile_dir=profile_dir
            )
            figures[phase]["startup_s"] = round(startup_s, 2)
            figures[phase]["rss_after_startup_mib"] = memory_after_startup
            figures[phase]["phases_in_process"] = args.phase.split(",")
    return figures


def _commit() -> str:
    """The code this process loaded: HEAD, and whether the tree had changes
    (other developers may commit while a long run goes on)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
            cwd=env.REPO,
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (
        " + uncommitted changes" if dirty else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--phase", required=True, help="comma-separated phases")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--profile-dir", default=None)
    args = parser.parse_args()

    out = Path(args.out)
    state = env.configure(args.backend, args.pg_url)
    # Tell the parent which database to drop if this process dies uncleanly.
    out.with_suffix(".db").write_text(state.get("pg_database", ""))
    if set(args.phase.split(",")) - set(PHASES):
        parser.error(f"phases are {', '.join(PHASES)}")
    commit = _commit()
    result: dict = {}
    try:
        for phase, figures in asyncio.run(_run(args)).items():
            result[phase] = {"backend": args.backend, "phase": phase, "ok": True}
            result[phase]["git_commit"] = commit
            result[phase].update(figures)
    except BaseException as exc:
        error = "".join(traceback.format_exception(exc))
        print(error, file=sys.stderr)
        for phase in args.phase.split(","):
            result.setdefault(phase, {"backend": args.backend, "phase": phase})
            if not result[phase].get("ok"):
                result[phase].update({"ok": False, "error": error})
    finally:
        env.teardown()
    out.write_text(json.dumps(result, indent=2, default=str))
    sys.exit(0 if all(r.get("ok") for r in result.values()) else 1)


if __name__ == "__main__":
    main()

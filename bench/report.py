"""The machine's description, the targets, and ``docs/BENCHMARKS.md``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FINDINGS = REPO / "bench" / "FINDINGS.md"

OVERHEAD_MAX_RATIO = 1.3
FIXED_MAX_RATIO = 1.15
BURST_P99_MS = 250.0
LISTING_P95_MS = 50.0
LISTING_SIZE = "100000"
QUEUE_MAX_DEPTH = 5
LP_DASHBOARD_P95_MS = 500.0


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(  # noqa: S603
            cmd, capture_output=True, text=True, check=False, cwd=REPO, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _meminfo_gib() -> float:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine_meta(command: str) -> dict[str, Any]:
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "status", "--porcelain"]))
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "uname": _run(["uname", "-a"]),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _meminfo_gib(),
        "python": sys.version.split()[0],
        "lnbits": _version("lnbits"),
        "sqlalchemy": _version("SQLAlchemy"),
        "aiosqlite": _version("aiosqlite"),
        "asyncpg": _version("asyncpg"),
        "postgres_server": _run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"]
        ),
        "loadavg_start": loadavg(),
    }


# --- targets -------------------------------------------------------------------


RECOVERY_MAX_RATIO = 2.0


def _phase(results: dict, backend: str, phase: str) -> dict | None:
    figures = results["backends"].get(backend, {}).get(phase)
    return figures if figures and figures.get("ok") else None


def _target(target: str, backend: str, figure: Any, met: bool) -> dict[str, Any]:
    return {"target": target, "backend": backend, "figure": figure, "met": met}


def _overhead_targets(backend: str, overhead: dict) -> list[dict[str, Any]]:
    return [
        _target(
            f"overhead ratio at N={n} <= {OVERHEAD_MAX_RATIO}",
            backend,
            row["ratio"],
            row["ratio"] <= OVERHEAD_MAX_RATIO,
        )
        for n, row in overhead["by_n"].items()
    ]


def _fixed_targets(backend: str, fixed: dict) -> list[dict[str, Any]]:
    return [
        _target(
            f"fixed-mode slot of {n} LPs vs {n} bare transfers <= {FIXED_MAX_RATIO}",
            backend,
            row["ratio"],
            row["ratio"] <= FIXED_MAX_RATIO,
        )
        for n, row in fixed["by_n"].items()
    ]


def _burst_targets(backend: str, burst: dict) -> list[dict[str, Any]]:
    p99 = burst["paid_to_landed_ms"].get("p99")
    during = burst["plain_payments_during_burst"]
    depth = burst["queue_depth"]
    deepest = max(
        depth.get("lnbits_internal_invoice_queue", {}).get("max", 0),
        depth.get("ext_satmachineadmin_invoice_listener", {}).get("max", 0),
    )
    return [
        _target(
            f"burst paid-to-landed p99 < {BURST_P99_MS:.0f} ms"
            + ("" if backend == "sqlite" else " (target set for SQLite)"),
            backend,
            p99,
            p99 is not None
            and p99 < BURST_P99_MS
            and burst["landed"] == burst["sales"],
        ),
        _target(
            "LNbits' payments keep flowing during the burst "
            f"(all delivered; shared queue and our listener's queue "
            f"<= {QUEUE_MAX_DEPTH} deep)",
            backend,
            f"{during['payments']} paid, "
            f"{during['not_delivered']} undelivered, max depth {deepest}",
            during["payments"] > 0
            and during["not_delivered"] == 0
            and deepest <= QUEUE_MAX_DEPTH,
        ),
    ]


def _listing_targets(backend: str, listings: dict) -> list[dict[str, Any]]:
    if LISTING_SIZE not in listings["by_size"]:
        return []
    return [
        _target(
            f"listing p95 < {LISTING_P95_MS:.0f} ms at 100 000: {name}",
            backend,
            row["http_ms"]["p95"],
            row["http_ms"]["p95"] < LISTING_P95_MS,
        )
        for name, row in listings["by_size"][LISTING_SIZE]["listings"].items()
    ]


def _recovery_targets(backend: str, recovery: dict) -> list[dict[str, Any]]:
    ratio = recovery["checkpoint_ratio_large_vs_small"]
    return [
        _target(
            "start-up recovery at 100 000 settlements <= 2 x at 10 (checkpoint)",
            backend,
            ratio,
            ratio <= RECOVERY_MAX_RATIO,
        )
    ]


def _lp_dashboard_targets(backend: str, lp: dict) -> list[dict[str, Any]]:
    p95 = lp["dashboard_requests_ms"]["p95"]
    return [
        _target(
            f"LP dashboard requests p95 < {LP_DASHBOARD_P95_MS:.0f} ms at "
            f"{lp['payouts_of_the_lp']:,} payouts",
            backend,
            p95,
            p95 < LP_DASHBOARD_P95_MS,
        )
    ]


TARGETS = {
    "overhead": _overhead_targets,
    "fixed": _fixed_targets,
    "burst": _burst_targets,
    "listings": _listing_targets,
    "recovery": _recovery_targets,
    "lp_dashboard": _lp_dashboard_targets,
}


def evaluate(results: dict) -> list[dict[str, Any]]:
    """Each target, per backend where it applies: the figure and met or not."""
    targets: list[dict[str, Any]] = []
    for backend in results["backends"]:
        for phase, make in TARGETS.items():
            figures = _phase(results, backend, phase)
            if figures:
                targets += make(backend, figures)
    return targets


def _recovery_table(results: dict) -> list[str]:
    backends = [b for b in _backends(results) if _phase(results, b, "recovery")]
    if not backends:
        return ["(not run)"]
    rows = [
        "| backend | settlements | checkpoint ms | full scan ms |",
        "|---|---:|---:|---:|",
    ]
    for b in backends:
        for size, row in _phase(results, b, "recovery")["sizes"].items():
            rows.append(
                f"| {b} | {int(size):,} | {_fmt(row['checkpoint_ms'])} | "
                f"{_fmt(row.get('full_scan_ms'))} |"
            )
    fleets = [(b, _phase(results, b, "recovery").get("fleet")) for b in backends]
    if any(fleet for _, fleet in fleets):
        rows += [
            "",
            "A fleet: the last day's sales of many machines, read by recovery in"
            " one pass, against one pass per machine (what it did before):",
            "",
            "| backend | machines | payments in the day | one pass ms |"
            " a pass per machine ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for b, fleet in fleets:
            if fleet:
                rows.append(
                    f"| {b} | {fleet['machines']} | "
                    f"{fleet['payments_in_window']:,} | "
                    f"{_fmt(fleet['one_pass_ms'])} | "
                    f"{_fmt(fleet['pass_per_machine_ms'])} |"
                )
    return rows


# --- text ----------------------------------------------------------------------


def _ok(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[met]


def summary(results: dict) -> str:
    lines = ["", "Targets:"]
    for t in results["targets"]:
        lines.append(
            f"  [{'ok  ' if t['met'] else 'MISS'}] {t['backend']:8} "
            f"{t['target']}: {t['figure']}"
        )
    for backend, phases in results["backends"].items():
        for phase, figures in phases.items():
            if isinstance(figures, dict) and figures.get("ok") is False:
                lines.append(f"  [FAIL] {backend} {phase}")
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _backends(results: dict) -> list[str]:
    return [b for b, v in results["backends"].items() if "skipped" not in v]


def _overhead_table(results: dict) -> list[str]:
    backends = [b for b in _backends(results) if _phase(results, b, "overhead")]
    if not backends:
        return ["(not run)"]
    head = "| N LPs | legs |"
    rule = "|---:|---:|"
    for b in backends:
        head += f" {b}: pipeline ms | bare ms | ratio | CPU ratio | trials |"
        rule += "---:|---:|---:|---:|---:|"
    rows = [head, rule]
    first = _phase(results, backends[0], "overhead")
    assert first is not None
    for n in first["by_n"]:
        row = f"| {_fmt(int(n))} | {_fmt(int(n) + 3)} |"
        for b in backends:
            figures = _phase(results, b, "overhead")
            r = figures["by_n"].get(n) if figures else None
            if r is None:
                row += " - | - | - | - | - |"
                continue
            mark = "" if r["ratio"] <= OVERHEAD_MAX_RATIO else " ✗"
            row += (
                f" {_fmt(r['pipeline_ms'])} | {_fmt(r['bare_ms'])} | "
                f"**{r['ratio']:.2f}**{mark} | {_fmt(r.get('cpu_ratio'), 2)} | "
                f"{len(r['trials'])} |"
            )
        rows.append(row)
    rows.append("")
    rows.append("Per leg (median trial / legs), ms:")
    rows.append("")
    head = "| N LPs |" + "".join(f" {b} pipeline | {b} bare |" for b in backends)
    rows += [head, "|---:|" + "---:|---:|" * len(backends)]
    for n in first["by_n"]:
        row = f"| {_fmt(int(n))} |"
        for b in backends:
            figures = _phase(results, b, "overhead")
            r = figures["by_n"].get(n) if figures else None
            row += (
                f" {_fmt(r['pipeline_ms_per_leg'])} | {_fmt(r['bare_ms_per_leg'])} |"
                if r
                else " - | - |"
            )
        rows.append(row)
    return rows


def _ms(summary_: dict, keys: tuple[str, ...] = ("p50", "p95", "p99", "max")) -> str:
    if not summary_ or not summary_.get("n"):
        return "-"
    return " / ".join(_fmt(summary_[k]) for k in keys)


def _burst_table(results: dict) -> list[str]:
    backends = [b for b in _backends(results) if _phase(results, b, "burst")]
    if not backends:
        return ["(not run)"]
    rows = ["| | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]

    def line(label: str, fn: Any) -> None:
        values = []
        for b in backends:
            figures = _phase(results, b, "burst")
            values.append(fn(figures) if figures else "-")
        rows.append(f"| {label} | " + " | ".join(values) + " |")

    line(
        "sales (paid legs each)", lambda f: f"{f['sales']} ({f['paid_legs_per_sale']})"
    )
    line(
        "burst duration, sales/s",
        lambda f: f"{_fmt(f['burst_seconds'])} s, {_fmt(f['sales_per_second'])}/s",
    )
    line(
        "**paid → landed** ms p50 / p95 / p99 / max",
        lambda f: f"**{_ms(f['paid_to_landed_ms'])}** ({f['landed']} landed)",
    )
    line(
        "paid → processed (all legs paid) ms p50 / p95 / p99 / max",
        lambda f: f"{_ms(f['paid_to_processed_ms'])} ({f['processed']} processed)",
    )
    line(
        "all sales processed after (from the first sale)",
        lambda f: (
            f"{_fmt(f['all_processed_after_s'])} s"
            if f["all_processed_after_s"] is not None
            else f"not within {_fmt(f['waited_s'])} s "
            f"({f['processed']}/{f['sales']} processed)"
        ),
    )
    line(
        "processing throughput (sales fully paid out per second)",
        lambda f: _fmt(f["processing_sales_per_second"], 2),
    )
    line(
        "plain payments, quiet: create+pay ms p50 / p95 / p99 / max",
        lambda f: _ms(f["plain_payments_quiet"]["create_and_pay_ms"]),
    )
    line(
        "plain payments, during burst: create+pay ms p50 / p95 / p99 / max",
        lambda f: (
            _ms(f["plain_payments_during_burst"]["create_and_pay_ms"])
            + f" ({f['plain_payments_during_burst']['payments']} paid)"
        ),
    )
    line(
        "plain payments, quiet: paid → other listener ms p50 / p99 / max",
        lambda f: _ms(
            f["plain_payments_quiet"]["paid_to_probe_listener_ms"],
            ("p50", "p99", "max"),
        ),
    )
    line(
        "plain payments, during burst: paid → other listener ms p50 / p99 / max",
        lambda f: (
            _ms(
                f["plain_payments_during_burst"]["paid_to_probe_listener_ms"],
                ("p50", "p99", "max"),
            )
            + f" ({f['plain_payments_during_burst']['not_delivered']} undelivered)"
        ),
    )
    for queue in (
        "lnbits_internal_invoice_queue",
        "ext_satmachineadmin_invoice_listener",
        "satmachineadmin_landing_queue",
        "satmachineadmin_processing_queue",
        "core_invoice_listener",
    ):
        line(
            f"max depth: `{queue}`",
            lambda f, q=queue: _fmt(f["queue_depth"].get(q, {}).get("max")),
        )
    return rows


def _listings_tables(results: dict) -> list[str]:
    backends = [b for b in _backends(results) if _phase(results, b, "listings")]
    if not backends:
        return ["(not run)"]
    out: list[str] = []
    first = _phase(results, backends[0], "listings")
    assert first is not None
    for size, block in first["by_size"].items():
        own = block["operator_settlements"]
        out.append(
            f"**{int(size):,} settlements** ({3 * int(size):,} legs; "
            f"{own:,} of them the operator's). HTTP p50 / p95 ms "
            "(crud alone p50 / p95), rows returned:"
        )
        out.append("")
        out.append("| listing | " + " | ".join(backends) + " | rows |")
        out.append("|---|" + "---:|" * len(backends) + "---:|")
        for name in block["listings"]:
            cells = []
            rows_returned = "-"
            for b in backends:
                figures = _phase(results, b, "listings")
                r = figures["by_size"].get(size, {}).get("listings", {}).get(name)
                if r is None:  # the deep offset differs by backend: match by prefix
                    r = (
                        _match(figures["by_size"].get(size, {}), name)
                        if figures
                        else None
                    )
                if r is None:
                    cells.append("-")
                    continue
                rows_returned = str(r["rows_returned"])
                p95 = r["http_ms"]["p95"]
                mark = " ✗" if size == LISTING_SIZE and p95 >= LISTING_P95_MS else ""
                cells.append(
                    f"{_fmt(r['http_ms']['p50'])} / **{_fmt(p95)}**{mark} "
                    f"({_fmt(r['crud_ms']['p50'])} / {_fmt(r['crud_ms']['p95'])})"
                )
            out.append(f"| `{name}` | " + " | ".join(cells) + f" | {rows_returned} |")
        out.append("")
        inserts = []
        for b in backends:
            figures = _phase(results, b, "listings")
            if figures and size in figures["by_size"]:
                inserts.append(f"{b} {figures['by_size'][size]['insert_seconds']} s")
        out.append(f"Bulk insert up to this size (setup): {', '.join(inserts)}.")
        out.append("")
    return out


def _match(block: dict, name: str) -> dict | None:
    stem = name.split(" offset=")[0]
    for other, row in block.get("listings", {}).items():
        if " offset=" in name and other.startswith(stem + " offset="):
            return row
    return None


def _memory_table(results: dict) -> list[str]:
    rows = [
        "| backend | phase | RSS after LNbits start-up | peak RSS during the phase "
        "| process peak (getrusage) |",
        "|---|---|---:|---:|---:|",
    ]
    for backend in _backends(results):
        for phase in ("burst", "listings", "overhead"):
            figures = _phase(results, backend, phase)
            if not figures:
                continue
            if phase == "listings":
                for size, block in figures["by_size"].items():
                    m = block["memory"]
                    rows.append(
                        f"| {backend} | listings at {int(size):,} (queries) | "
                        f"{_fmt(figures['rss_after_startup_mib'])} MiB | "
                        f"{_fmt(m['rss_peak_mib'])} MiB | "
                        f"{_fmt(m['process_max_rss_mib'])} MiB |"
                    )
                continue
            m = figures["memory"]
            start = _fmt(figures["rss_after_startup_mib"])
            rows.append(
                f"| {backend} | {phase} | {start} MiB | {_fmt(m['rss_peak_mib'])} MiB "
                f"| {_fmt(m['process_max_rss_mib'])} MiB |"
            )
    return rows


def render(results: dict) -> str:
    meta = results["meta"]
    load_start, load_end = meta["loadavg_start"], meta.get("loadavg_end", [])
    busy = (load_start and load_start[0] > 0.5) or (load_end and load_end[0] > 0.5)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/__main__.py`) from "
        "`bench/results/latest.json`; the last section is `bench/FINDINGS.md`. "
        "Do not edit by hand: re-run `make bench`.",
        "",
        "Speed and memory are measured here, never in timed tests. One command "
        "runs everything on SQLite and on PostgreSQL, each phase in a fresh "
        "LNbits process (FakeWallet, in-process, driven through an httpx ASGI "
        "client) with a fresh database.",
        "",
        "```",
        "make bench                                  # everything: 15-25 min",
        ".venv/bin/python -m bench --quick           # smoke run, < 2 min",
        ".venv/bin/python -m bench --only listings --backend postgres",
        ".venv/bin/python -m bench --profile         # + pyinstrument profiles",
        "```",
        "",
        "## The run",
        "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`",
        f"- Commit: `{meta['git_commit']}`",
        f"- Machine: `{meta['uname']}`",
        f"- CPUs: {meta['cpus']} x {meta['cpu_model']}; RAM {meta['ram_gib']} GiB",
        f"- Python {meta['python']}, LNbits {meta['lnbits']}, SQLAlchemy "
        f"{meta['sqlalchemy']}, aiosqlite {meta['aiosqlite']}, asyncpg "
        f"{meta['asyncpg']}, PostgreSQL server {meta['postgres_server'] or '?'}",
        f"- Load average (1, 5, 15 min) at start {load_start}, at end {load_end}; "
        f"total {meta.get('total_seconds', '?')} s",
    ]
    if busy:
        lines.append(
            "- **The machine was shared**: other developers' test suites were "
            "running during this run (see the load average), so the absolute "
            "figures are noisy and pessimistic. Ratios measured within one "
            "process in the same minutes are the more robust figures."
        )
    for backend, value in results["backends"].items():
        if "skipped" in value:
            lines.append(f"- {backend}: skipped ({value['skipped']})")
    loaded = {
        f"{b} {p}": f.get("git_commit")
        for b, phases in results["backends"].items()
        for p, f in phases.items()
        if isinstance(f, dict) and f.get("git_commit")
    }
    if len(set(loaded.values())) > 1 or meta.get("code_note"):
        lines.append(
            "- **The code changed during the run** (other developers committed); "
            "each phase measured the code its process loaded: "
            + "; ".join(f"{k}: `{v}`" for k, v in loaded.items())
            + (f". {meta['code_note']}" if meta.get("code_note") else "")
        )
    lines += [
        "",
        "## Targets",
        "",
        "| target | backend | figure | |",
        "|---|---|---|---|",
    ]
    for t in results["targets"]:
        figure = _fmt(t["figure"], 2)
        lines.append(f"| {t['target']} | {t['backend']} | {figure} | {_ok(t['met'])} |")
    lines += [
        "",
        "## 1. Pipeline overhead",
        "",
        "Time for `distribution.process_settlement` to pay one settlement with N "
        "LPs (N DCA legs + the platform fee + 2 operator split legs), divided by "
        "the time LNbits takes for the same number of bare internal transfers "
        "(`create_invoice` on the destination + `pay_invoice` from the same "
        "machine wallet, same amounts) in the same process, same trial. Median "
        "of the trials. The CPU ratio is the same with this process's CPU time "
        "(all threads, so SQLite's work too; not the PostgreSQL server's): less "
        "disturbed by other work on the machine.",
        "",
        *_overhead_table(results),
        "",
        "## 2. Burst",
        "",
        "`bench.simulator.run` pays the sales one after another, as fast as it "
        "can, through the HTTP API (ASGI client); the listener, the landing and "
        "processing workers and LNbits' own tasks all run as in production. "
        "*Paid* is the instant LNbits settled the invoice and queued its "
        "notification; *landed* the instant the settlement row was committed. "
        "Plain payments (two other users' wallets, every 50 ms) run throughout, "
        "and a probe invoice listener stands for any other extension.",
        "",
        *_burst_table(results),
        "",
        "## 3. Listings",
        "",
        "GET through the ASGI client as the operator (Bearer token), limit 100: "
        "what the page asks. `crud` alone is the same query through "
        "`crud.list_settlements` / `crud.list_payments`, without HTTP, "
        "authentication and JSON. The rows are bulk-inserted just before (70 % "
        "the operator's, spread over two years); PostgreSQL gets an `ANALYZE` "
        "after the load, as autovacuum would soon do, but no `VACUUM` "
        "(`BENCH_PG_VACUUM=1` adds one), so its visibility map is still unset: "
        "the state right after a bulk load.",
        "",
        *_listings_tables(results),
        "## 4. Memory",
        "",
        "Resident set size of the LNbits process (the benchmark runs in it), "
        "sampled every 20 ms from `/proc/self/status`; the process peak from "
        "`getrusage` includes start-up and the setup of the phase.",
        "",
        *_memory_table(results),
        "",
        "## 5. Start-up recovery",
        "",
        "`tasks.reconcile(None)` + `tasks.resume()` with one machine wallet "
        "holding N past sales (bulk-inserted, dated more than a day ago). "
        "`checkpoint`: a normal start (scans from the per-machine checkpoint "
        "less a 24 h overlap); `full scan`: the first start without a "
        "checkpoint (what every start did before). Best of 3 / one run, ms.",
        "",
        *_recovery_table(results),
        "",
    ]
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)

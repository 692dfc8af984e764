"""Listings at scale: settlement and payment-leg listings, with filters, at
10 000 and then 100 000 settlements on the instance (3 legs each).

The rows are written straight into the extension's tables in batches (setup,
not measured): 70 % belong to the operator whose listings are timed (10
machines), the rest to three other operators (2 machines each). Created times
are spread over two years, one sale every ~10 minutes per the whole instance;
96 % processed, 2 % errored, 1 % partial, 1 % refunded; an errored
settlement's DCA leg failed. Each listing is a GET through the ASGI client as
the operator (Bearer token), so the figure includes LNbits' authentication
and the JSON response; the same query through ``crud`` alone is timed too.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from . import env
from .env import Lnbits
from .setup import CURRENCY, add_machine

FULL_SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
FULL_REQUESTS, QUICK_REQUESTS = 100, 20
FULL_CRUD_CALLS, QUICK_CRUD_CALLS = 50, 10
WARMUP = 5
BATCH = 2_000
OWN_SHARE = 0.7
API = "/satmachineadmin/api/v1/dca"
STATUSES = ["processed"] * 96 + ["errored"] * 2 + ["partial", "refunded"]


class Fleet:
    def __init__(self, operator_id: str, others: list[str]) -> None:
        self.operator_id = operator_id
        self.machines: dict[str, list[Any]] = {}
        self.clients: dict[str, str] = {}  # machine id -> an LP position id
        self.others = others
        self.inserted = 0
        self.rng = random.Random(21)
        self.epoch = datetime.now(timezone.utc) - timedelta(days=730)


async def _build_fleet(operator_id: str, others: list[str]) -> Fleet:
    from satmachineadmin import crud
    from satmachineadmin.models import DcaClient

    fleet = Fleet(operator_id, others)
    for owner, count in [(operator_id, 10)] + [(o, 2) for o in others]:
        fleet.machines[owner] = []
        for i in range(count):
            machine = await add_machine(owner, os.urandom(16).hex(), f"ATM {i}")
            fleet.machines[owner].append(machine)
            client = await crud.create_client(
                DcaClient(
                    id=crud.new_id(),
                    machine_id=machine.id,
                    operator_user_id=owner,
                    user_id=os.urandom(16).hex(),
                    wallet_id=os.urandom(16).hex(),
                )
            )
            fleet.clients[machine.id] = client.id
    return fleet


def _templates(conn: Any) -> tuple[dict, dict, str, str]:
    """Backend-ready row templates and INSERT statements, from the models."""
    from lnbits.db import insert_query, model_to_dict
    from satmachineadmin import crud
    from satmachineadmin.models import DcaPayment, DcaSettlement

    settlement = DcaSettlement(
        id="x",
        machine_id="m",
        operator_user_id="o",
        payment_hash="h",
        gross_sats=26_680,
        net_sats=25_903,
        commission_sats=777,
        platform_fee_sats=233,
        operator_fee_sats=544,
        super_fee_pct=Decimal("0.3"),
        fee_pct=Decimal("0.03"),
        exchange_rate=Decimal(772114),
        fiat_amount_minor=20_000,
        currency=CURRENCY,
        bills='[{"denomination": 100, "count": 2}]',
        cassettes="[]",
        status="processed",
    )
    leg = DcaPayment(
        id="x",
        idempotency_key="k",
        settlement_id="x",
        machine_id="m",
        operator_user_id="o",
        leg_type="dca",
        status="completed",
        amount_sats=25_903,
        source_wallet_id=os.urandom(16).hex(),
        destination_wallet_id=os.urandom(16).hex(),
        memo="DCA 200.00 GTQ @ 772,114 GTQ/BTC",
        payment_request="lnbc" + "x" * 300,
        payment_hash="h",
        attempts=1,
    )
    return (
        crud._params(conn, model_to_dict(settlement)),
        crud._params(conn, model_to_dict(leg)),
        insert_query(f"{crud.S}.settlements", settlement),
        insert_query(f"{crud.S}.payments", leg),
    )


def _rows(
    fleet: Fleet, conn: Any, templates: tuple[dict, dict, str, str], count: int
) -> tuple[list[dict], list[dict]]:
    from satmachineadmin import crud

    s_template, p_template, _, _ = templates
    rng = fleet.rng
    settlements, legs = [], []
    for _ in range(count):
        owner = (
            fleet.operator_id if rng.random() < OWN_SHARE else rng.choice(fleet.others)
        )
        machine = rng.choice(fleet.machines[owner])
        created = fleet.epoch + timedelta(
            seconds=fleet.inserted * 600 + rng.uniform(0, 590)
        )
        fleet.inserted += 1
        status = rng.choice(STATUSES)
        sid = os.urandom(16).hex()
        stamp = crud._param(conn, created)
        settlements.append(
            {
                **s_template,
                "id": sid,
                "machine_id": machine.id,
                "operator_user_id": owner,
                "payment_hash": os.urandom(32).hex(),
                "txid": sid[:12],
                "status": status,
                "error": "dca leg failed: bench" if status == "errored" else None,
                "paid_at": stamp,
                "created_at": stamp,
                "updated_at": stamp,
                "processed_at": None if status == "errored" else stamp,
            }
        )
        for leg_type, sats in (
            ("super_fee", 233),
            ("operator_split", 544),
            ("dca", 25_903),
        ):
            failed = status == "errored" and leg_type == "dca"
            legs.append(
                {
                    **p_template,
                    "id": os.urandom(16).hex(),
                    "idempotency_key": f"{sid}:0:{leg_type}:x",
                    "settlement_id": sid,
                    "machine_id": machine.id,
                    "operator_user_id": owner,
                    "client_id": fleet.clients[machine.id]
                    if leg_type == "dca"
                    else None,
                    "leg_type": leg_type,
                    "status": "failed" if failed else "completed",
                    "error": "bench failure" if failed else None,
                    "amount_sats": sats,
                    "fiat_amount_minor": 20_000 if leg_type == "dca" else None,
                    "payment_hash": os.urandom(32).hex(),
                    "created_at": stamp,
                    "updated_at": stamp,
                    "completed_at": None if failed else stamp,
                }
            )
    return settlements, legs


async def _insert(fleet: Fleet, count: int) -> float:
    from satmachineadmin import crud
    from sqlalchemy import text

    start = time.perf_counter()
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        async with crud.transaction() as conn:
            templates = _templates(conn)
            settlements, legs = _rows(fleet, conn, templates, size)
            await conn.conn.execute(text(conn.rewrite_query(templates[2])), settlements)
            await conn.conn.execute(text(conn.rewrite_query(templates[3])), legs)
        done += size
    async with crud.connection() as conn:
        backend = conn.type
        if backend != "SQLITE":  # PostgreSQL's autovacuum would, soon enough
            await crud._execute(conn, "ANALYZE")
    if backend != "SQLITE" and os.environ.get("BENCH_PG_VACUUM"):
        await _vacuum()
    return time.perf_counter() - start


async def _vacuum() -> None:
    """VACUUM ANALYZE (outside any transaction): sets the visibility map as
    autovacuum eventually does, so index-only scans skip the heap. Off by
    default: the figures are those right after a bulk load."""
    import asyncpg
    from lnbits.settings import settings

    conn = await asyncpg.connect(settings.lnbits_database_url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _variants(fleet: Fleet, own_rows: int) -> dict[str, tuple[str, dict]]:
    machine = fleet.machines[fleet.operator_id][3]
    deep = (own_rows // 2) // 100 * 100
    return {
        "settlements": ("/settlements", {"limit": 100}),
        "settlements status=errored": (
            "/settlements",
            {"status": "errored", "limit": 100},
        ),
        "settlements status=processed": (
            "/settlements",
            {"status": "processed", "limit": 100},
        ),
        "settlements machine_id": (
            "/settlements",
            {"machine_id": machine.id, "limit": 100},
        ),
        f"settlements offset={deep}": ("/settlements", {"limit": 100, "offset": deep}),
        "payments leg_type=dca": ("/payments", {"leg_type": "dca", "limit": 100}),
        "payments leg_type=dca status=failed": (
            "/payments",
            {"leg_type": "dca", "status": "failed", "limit": 100},
        ),
        f"payments leg_type=dca offset={deep}": (
            "/payments",
            {"leg_type": "dca", "limit": 100, "offset": deep},
        ),
    }


async def _crud_call(operator_id: str, path: str, params: dict) -> int:
    from satmachineadmin import crud

    if path == "/settlements":
        rows = await crud.list_settlements(
            operator_id,
            params.get("status"),
            params.get("machine_id"),
            params["limit"],
            params.get("offset", 0),
        )
    else:
        rows = await crud.list_payments(
            operator_id,
            leg_type=params.get("leg_type"),
            status=params.get("status"),
            limit=params["limit"],
            offset=params.get("offset", 0),
        )
    return len(rows)


async def _measure(
    lnbits: Lnbits, headers: dict, fleet: Fleet, own_rows: int, quick: bool
) -> dict[str, Any]:
    requests = QUICK_REQUESTS if quick else FULL_REQUESTS
    crud_calls = QUICK_CRUD_CALLS if quick else FULL_CRUD_CALLS
    figures = {}
    for name, (path, params) in _variants(fleet, own_rows).items():
        http_s, rows = [], 0
        for i in range(WARMUP + requests):
            start = time.perf_counter()
            response = await lnbits.http.get(API + path, params=params, headers=headers)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            rows = len(response.json())
            if i >= WARMUP:
                http_s.append(elapsed)
        crud_s = []
        for i in range(WARMUP + crud_calls):
            start = time.perf_counter()
            await _crud_call(fleet.operator_id, path, params)
            if i >= WARMUP:
                crud_s.append(time.perf_counter() - start)
        figures[name] = {
            "rows_returned": rows,
            "http_ms": env.summary_ms(http_s),
            "crud_ms": env.summary_ms(crud_s),
        }
        env.log(f"listings: {name}: {figures[name]['http_ms']}")
    return figures


async def _count_own(operator_id: str) -> int:
    from satmachineadmin import crud

    async with crud.connection() as conn:
        rows = await crud._scalar_rows(
            conn,
            f"SELECT COUNT(*) AS n FROM {crud.S}.settlements "  # noqa: S608
            "WHERE operator_user_id = :o",
            {"o": operator_id},
        )
    return int(rows[0]["n"])


async def run(lnbits: Lnbits, *, quick: bool, profile_dir: Any = None) -> dict:
    operator = await env.register_user(lnbits.http, "operator")
    others = [a.id for a in await env.bare_users(3)]
    fleet = await _build_fleet(operator.id, others)
    out: dict[str, Any] = {"by_size": {}}
    for size in QUICK_SIZES if quick else FULL_SIZES:
        sampler = env.MemorySampler().start()
        insert_s = await _insert(fleet, size - fleet.inserted)
        insert_memory = sampler.stop()
        own = await _count_own(operator.id)
        env.log(
            f"listings: {size} settlements ({own} the operator's) in {insert_s:.1f} s"
        )
        sampler = env.MemorySampler().start()
        figures = await _measure(lnbits, operator.headers, fleet, own, quick)
        out["by_size"][str(size)] = {
            "settlements": size,
            "legs": 3 * size,
            "operator_settlements": own,
            "insert_seconds": round(insert_s, 1),
            "insert_memory": insert_memory,
            "memory": sampler.stop(),
            "listings": figures,
        }
    if profile_dir is not None:
        out["profile"] = await _profile(lnbits, operator.headers, profile_dir)
        own = await _count_own(operator.id)
        out["profile"]["plans_file"] = await _plans(fleet, own, profile_dir)
    return out


async def _plans(fleet: Fleet, own_rows: int, profile_dir: Any) -> str:
    """The database's plan for each listing's query, as crud sends it."""
    from satmachineadmin import crud

    fetchall = crud._fetchall
    lines = []
    for name, (path, params) in _variants(fleet, own_rows).items():
        seen: list[tuple[str, dict]] = []

        async def recording(conn: Any, sql: str, values: Any, model: Any) -> Any:
            seen.append((sql, values))  # noqa: B023 - used at once
            return await fetchall(conn, sql, values, model)

        crud._fetchall = recording  # type: ignore[assignment]
        try:
            await _crud_call(fleet.operator_id, path, params)
        finally:
            crud._fetchall = fetchall  # type: ignore[assignment]
        sql, values = seen[0]
        async with crud.connection() as conn:
            explain = (
                "EXPLAIN QUERY PLAN "
                if conn.type == "SQLITE"
                else "EXPLAIN (ANALYZE, BUFFERS) "
            )
            rows = await crud._scalar_rows(conn, explain + sql, values)
        lines += [f"== {name}", " ".join(sql.split())]
        lines += [" | ".join(str(v) for v in row.values()) for row in rows]
        lines.append("")
    path = profile_dir / "listings-plans.txt"
    path.write_text("\n".join(lines))
    return str(path)


async def _profile(lnbits: Lnbits, headers: dict, profile_dir: Any) -> dict:
    """pyinstrument over 50 requests of the plain settlement listing, and where
    one request's time goes, step by step (the same 100 rows each time)."""
    from .profiling import pyinstrument_to

    path = profile_dir / "listings-pyinstrument.txt"
    with pyinstrument_to(path, interval=0.0005):
        for _ in range(50):
            response = await lnbits.http.get(
                API + "/settlements", params={"limit": 100}, headers=headers
            )
            response.raise_for_status()
    return {
        "requests": 50,
        "file": str(path),
        "steps_ms": await _serialization_steps(lnbits, headers),
    }


async def _serialization_steps(lnbits: Lnbits, headers: dict) -> dict[str, Any]:
    """Median ms of each step of GET /settlements?limit=100, timed apart."""
    import gzip
    import inspect
    import json
    import statistics

    from fastapi.encoders import jsonable_encoder
    from fastapi.routing import _prepare_response_content, serialize_response
    from lnbits.db import dict_to_model
    from satmachineadmin import crud
    from satmachineadmin.models import DcaSettlement

    route = next(
        r
        for r in lnbits.app.routes
        if getattr(r, "path", "") == API + "/settlements"
        and "GET" in getattr(r, "methods", ())
    )
    field = route.secure_cloned_response_field
    response = await lnbits.http.get(
        API + "/settlements", params={"limit": 100}, headers=headers
    )
    operator_id = response.json()[0]["operator_user_id"]
    rows = await crud.list_settlements(operator_id, limit=100)
    raw = await _raw_rows(operator_id)
    prepared = _prepare_response_content(
        rows, exclude_unset=False, exclude_defaults=False, exclude_none=False
    )
    body = json.dumps(
        jsonable_encoder(rows), ensure_ascii=False, separators=(",", ":")
    ).encode()
    get = lnbits.http.get
    steps: dict[str, Any] = {
        "GET /settlements?limit=100 (HTTP, 100 rows)": lambda: get(
            API + "/settlements", params={"limit": 100}, headers=headers
        ),
        "GET with a filter that matches nothing (HTTP, 0 rows)": lambda: get(
            API + "/settlements",
            params={"limit": 100, "machine_id": "none"},
            headers=headers,
        ),
        "crud.list_settlements (SQL + dict_to_model, 100 rows)": lambda: (
            crud.list_settlements(operator_id, limit=100)
        ),
        "FastAPI serialize_response (100 rows)": lambda: serialize_response(
            field=field, response_content=rows
        ),
        "  of which _prepare_response_content (model -> dict)": lambda: (
            _prepare_response_content(
                rows, exclude_unset=False, exclude_defaults=False, exclude_none=False
            )
        ),
        "  of which field.validate (dict -> model again)": lambda: field.validate(
            prepared, {}, loc=("response",)
        ),
        "  of which jsonable_encoder": lambda: jsonable_encoder(rows),
        "jsonable_encoder + json.dumps of the rows (no re-validation)": lambda: (
            json.dumps(jsonable_encoder(rows))
        ),
        f"gzip of the {len(body) // 1024} KiB JSON body (level 9, as LNbits)": (
            lambda: gzip.compress(body, 9)
        ),
        "fast JSON: json.dumps(row.dict()) with FastAPI's encoders": lambda: _fast_json(
            rows
        ),
        "rows -> models: LNbits dict_to_model (construct + __init__)": lambda: [
            dict_to_model(dict(r), DcaSettlement) for r in raw
        ],
        "rows -> models: convert + one validation (Model(**row))": lambda: [
            _row_to_model(r, DcaSettlement) for r in raw
        ],
    }
    fastapi_json = json.dumps(
        await serialize_response(field=field, response_content=rows), sort_keys=True
    )
    out: dict[str, Any] = {
        "jsonable_encoder alone gives the same JSON as FastAPI": fastapi_json
        == json.dumps(jsonable_encoder(rows), sort_keys=True),
        "fast JSON gives the same JSON as FastAPI": fastapi_json
        == json.dumps(json.loads(_fast_json(rows)), sort_keys=True),
        "Model(**row) gives the same models as dict_to_model": [
            _row_to_model(r, DcaSettlement).dict() for r in raw
        ]
        == [dict_to_model(dict(r), DcaSettlement).dict() for r in raw],
    }
    for name, step in steps.items():
        times = []
        for _ in range(30):
            start = time.perf_counter()
            result = step()
            if inspect.isawaitable(result):
                await result
            times.append((time.perf_counter() - start) * 1000)
        out[name] = round(statistics.median(times), 2)
    return out


def _fast_json(rows: list[Any]) -> str:
    """The JSON FastAPI sends for these models, without jsonable_encoder's
    walk: ``.dict()`` and json.dumps with FastAPI's own encoders (Decimal as
    int or float, datetime as ISO 8601)."""
    import json

    from fastapi.encoders import ENCODERS_BY_TYPE

    def default(value: Any) -> Any:
        return ENCODERS_BY_TYPE[type(value)](value)

    return json.dumps(
        [row.dict() for row in rows],
        default=default,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    )


async def _raw_rows(operator_id: str) -> list[dict]:
    from satmachineadmin import crud

    async with crud.connection() as conn:
        return await crud._scalar_rows(
            conn,
            f"""SELECT * FROM {crud.S}.settlements WHERE operator_user_id = :op
                ORDER BY created_at DESC, id LIMIT 100""",  # noqa: S608
            {"op": operator_id},
        )


def _row_to_model(row: dict, model: Any) -> Any:
    """What dict_to_model does for flat rows, validating once."""
    from datetime import datetime

    from lnbits.db import DB_TYPE, SQLITE

    values = {}
    for key, value in row.items():
        field = model.__fields__.get(key)
        if value is None or field is None:
            continue
        if field.type_ is datetime:
            if DB_TYPE == SQLITE:
                value = datetime.fromtimestamp(value, timezone.utc)
            else:
                value = value.replace(tzinfo=timezone.utc)
        elif field.type_ is bool:
            value = bool(value)
        values[key] = value
    return model(**values)

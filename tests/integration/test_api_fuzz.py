"""Property-based fuzzing of the API from its own OpenAPI schema.

Schemathesis generates requests for every operation under
/satmachineadmin/api/v1/dca (valid ones and, in negative mode, ones that break
the schema) and each is sent, authenticated as an operator, to the running
app. No request may get a 5xx (schemathesis' ``not_a_server_error`` check).

Schemathesis' own runners call the app from another event loop, where LNbits'
locks and queues do not work; so Hypothesis runs in a worker thread and every
request is sent on the test's event loop through the session's httpx client.
Random ids rarely exist, so each generated id is swapped, at Hypothesis'
choice, for a real one of the operator's: the deep paths run too.

SATMACHINE_FUZZ_EXAMPLES sets the examples per operation and mode (default
15); SATMACHINE_FUZZ_SEED picks another reproducible run (default: fixed).
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import Actor
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from test_api_support import API, World, build_world, make_npub

EXAMPLES = int(os.environ.get("SATMACHINE_FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("SATMACHINE_FUZZ_SEED", "20260101"))
BASE_URL = "http://lnbits.test"

# Names under which the API takes ids, and which real ids to offer for each.
ID_FIELDS = (
    "machine_id", "client_id", "deposit_id", "settlement_id", "wallet_id",
    "funding_wallet_id", "super_fee_wallet_id", "user_id",
)  # fmt: skip
# LNbits' own ways to authenticate: the fuzzer always sends a bearer token.
AUTH_PARAMETERS = ("usr", "cookie_access_token")


def real_ids(world: World) -> dict[str, list[str]]:
    wallets = [*(w.id for w in world.operator.wallets), world.free_wallet_id]
    return {
        "machine_id": [world.machine.id, world.spare_machine.id],
        "client_id": [world.client.id, world.spare_client.id],
        "deposit_id": [world.pending_deposit.id, world.confirmed_deposit.id],
        "settlement_id": [world.settlement.id],
        "wallet_id": [*wallets, world.lp.wallet.id],
        "funding_wallet_id": wallets,
        "super_fee_wallet_id": wallets,
        "user_id": [world.lp.id, world.operator.id],
    }


def _decimal_text(places: int, max_value: int) -> st.SearchStrategy[str]:
    return st.decimals(
        min_value=-1, max_value=max_value, places=places, allow_nan=False
    ).map(str)


# Plausible values, so that generated requests get past validation too.
AMOUNT = st.integers(0, 4).flatmap(lambda p: _decimal_text(p, 10**7))
FRACTION = st.integers(0, 14).flatmap(lambda p: _decimal_text(p, 1))
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "npub": st.builds(make_npub),
    "currency": st.sampled_from(["GTQ", "gtq", "USD", "JPY", "KWD", "XYZ"]),
    "amount": AMOUNT,
    "amount_fiat": AMOUNT,
    "fixed_mode_daily_limit": AMOUNT,
    "exchange_rate": AMOUNT,
    "pct": FRACTION,
    "super_fee_pct": FRACTION,
    "fallback_commission_pct": FRACTION,
    "dispensed_fraction": FRACTION,
    "dispensed_sats": st.integers(-10, 2000),
    "status": st.sampled_from(["confirmed", "rejected", "pending", "errored"]),
    "leg_type": st.sampled_from(["dca", "operator_split", "settlement"]),
}


def _steer(container: Any, ids: dict[str, list[str]], draw: Callable) -> None:
    if not isinstance(container, dict):
        return
    for name in list(container):
        if name in ids and draw(st.booleans()):
            container[name] = draw(st.sampled_from(ids[name]))
        elif name in VALUES and draw(st.booleans()):
            container[name] = draw(VALUES[name])


def steer(case: Any, ids: dict[str, list[str]], draw: Callable) -> None:
    """Swap, at Hypothesis' choice, generated ids for real ones and generated
    values for plausible ones."""
    _steer(case.path_parameters, ids, draw)
    _steer(case.query, ids, draw)
    body = case.body
    _steer(body, ids, draw)
    legs = body.get("legs") if isinstance(body, dict) else None
    if isinstance(legs, list):
        if draw(st.booleans()):  # rules whose pct sum to 1
            wallets = draw(st.lists(st.sampled_from(ids["wallet_id"]), min_size=1))
            share = 1 / Decimal(len(wallets))
            legs = [{"wallet_id": w, "pct": str(share), "label": "x"} for w in wallets]
            legs[-1]["pct"] = str(1 - share * (len(wallets) - 1))
            body["legs"] = legs
        for leg in legs:
            _steer(leg, ids, draw)


def as_httpx(case: Any, actor: Actor) -> dict[str, Any]:
    """Schemathesis' request (requests-style keyword arguments) for httpx."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    headers = {
        k: v
        for k, v in kwargs.get("headers", {}).items()
        if k.lower() not in ("authorization", "cookie", "connection")
    }
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": {**headers, **actor.headers},
        "params": kwargs.get("params"),
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        request["content"] = data if isinstance(data, (bytes, str)) else str(data)
    return request


def operations(app: Any) -> list[Any]:
    spec = copy.deepcopy(app.openapi())
    paths = {p: v for p, v in spec["paths"].items() if p.startswith(API)}
    for path in paths.values():
        for operation in path.values():
            operation["parameters"] = [
                p
                for p in operation.get("parameters", [])
                if p["name"] not in AUTH_PARAMETERS
            ]
    schema = schemathesis.openapi.from_dict({**spec, "paths": paths})
    return [result.ok() for result in schema.get_all_operations()]


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    send: Callable[[Any], httpx.Response],
    ids: dict[str, list[str]],
    failures: list[str],
) -> int:
    """Run Hypothesis over one operation (in a worker thread). Returns the
    number of requests sent."""
    sent = 0

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the app has state
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def check(case: Any, data: st.DataObject) -> None:
        nonlocal sent
        steer(case, ids, data.draw)
        response = send(case)
        sent += 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception as exc:
            failures.append(
                f"{operation.label} [{mode.value}] -> {response.status_code}: "
                f"{case.as_curl_command()}\n{response.text[:300]}\n{exc}"
            )

    try:
        check()
    except Unsatisfiable:
        pass  # e.g. negative mode for an operation with nothing to negate
    return sent


@pytest.fixture(scope="module")
async def fuzz_world(make_user) -> World:
    operator = await make_user("fuzzer", extra_wallets=2)
    lp = await make_user("fuzz_lp")
    return await build_world(operator, lp, funded=True)


async def test_no_generated_request_gets_a_server_error(app, http, fuzz_world):
    from satmachineadmin import crud

    loop = asyncio.get_running_loop()
    config_before = await crud.get_super_config()
    ids = real_ids(fuzz_world)

    statuses: Counter[tuple[str, int]] = Counter()

    def send(case: Any) -> httpx.Response:
        request = http.request(**as_httpx(case, fuzz_world.operator))
        response = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=120)
        statuses[(case.operation.label, response.status_code)] += 1
        return response

    ops = operations(app)
    assert len(ops) >= 35, [op.label for op in ops]
    failures: list[str] = []
    sent = 0
    for operation in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += await asyncio.to_thread(
                fuzz_operation, operation, mode, send, ids, failures
            )
    print(
        "\n".join(
            f"{n:4} {code} {label}" for (label, code), n in sorted(statuses.items())
        )
    )
    assert failures == [], "\n\n".join(failures)
    assert sent >= len(ops) * EXAMPLES  # the fuzzer really ran
    # an operator cannot change the platform fee, whatever it sends
    after = await crud.get_super_config()
    assert after.dict(exclude={"updated_at"}) == config_before.dict(
        exclude={"updated_at"}
    )

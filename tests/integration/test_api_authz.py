"""Authorization matrix: every route against five callers.

Callers: the owner (an operator with a fresh world of resources), another
operator, an LP (who holds positions at the owner's machines), the LNbits
super user (no operator powers over others' resources) and an anonymous
caller. Every cell asserts the status code; for everyone but the owner it
also asserts that the body leaks none of the owner's data and that the
owner's resources read back unchanged afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from conftest import Actor
from test_api_support import API, World, build_world, make_npub, secrets, snapshot

Fn = Callable[[World, dict[str, Actor]], Any]

OWNER, OTHER, LP, SUPER, ANON = "owner", "other", "lp", "super", "anon"
CALLERS = (OWNER, OTHER, LP, SUPER, ANON)
TXID = "6f1c2a44-9d1e-4c1b-8a51-3b0b2c8e7f10"  # a Lamassu cash-out id
NEWCOMER = "newcomer"  # not a caller: the user the owner registers as a new LP


@dataclass
class Route:
    method: str
    path: Fn
    template: str  # for the test id
    body: Fn | None = None
    owner: int = 200
    other: int = 404
    lp: int | None = None  # default: as `other`
    super_: int | None = None  # default: as `other`
    owner_sees: Fn | None = None  # a string the owner's answer must contain
    lp_sees: Fn | None = None  # a string the LP's answer must contain
    lp_route: bool = False  # the LP's own view: it may see its positions
    anon: int = 401  # a route without login says otherwise

    def expected(self, caller: str) -> int:
        if caller == ANON:
            return self.anon
        if caller == OWNER:
            return self.owner
        if caller == LP and self.lp is not None:
            return self.lp
        if caller == SUPER and self.super_ is not None:
            return self.super_
        return self.other


def r(method: str, template: str, path: Fn, **kwargs: Any) -> Route:
    return Route(method, path, template, **kwargs)


ALL_OK = {"other": 200}

ROUTES = [
    # machines
    r("POST", "/machines", lambda w, a: "/machines", owner=201, other=422,
      body=lambda w, a: {"npub": make_npub(), "wallet_id": w.free_wallet_id,
                         "name": "new ATM", "currency": "GTQ"}),
    r("GET", "/machines", lambda w, a: "/machines", **ALL_OK,
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/machines/{id}", lambda w, a: f"/machines/{w.machine.id}",
      owner_sees=lambda w, a: w.machine.npub),
    r("PUT", "/machines/{id}", lambda w, a: f"/machines/{w.machine.id}",
      body=lambda w, a: {"name": "renamed", "is_active": False}),
    r("DELETE", "/machines/{id} (no history)",
      lambda w, a: f"/machines/{w.spare_machine.id}", owner=204),
    r("DELETE", "/machines/{id} (has settlements)",
      lambda w, a: f"/machines/{w.machine.id}", owner=409),
    r("GET", "/machines/{id}/settlements",
      lambda w, a: f"/machines/{w.machine.id}/settlements",
      owner_sees=lambda w, a: w.settlement.id),
    # LP positions
    r("POST", "/clients", lambda w, a: "/clients", owner=201,
      body=lambda w, a: {"machine_id": w.machine.id, "user_id": a[NEWCOMER].id,
                         "wallet_id": a[NEWCOMER].wallet.id}),
    r("GET", "/clients", lambda w, a: "/clients", **ALL_OK,
      owner_sees=lambda w, a: w.client.id),
    r("GET", "/clients?machine_id=", lambda w, a: f"/clients?machine_id={w.machine.id}",
      **ALL_OK, owner_sees=lambda w, a: w.client.id),
    r("GET", "/clients/{id}", lambda w, a: f"/clients/{w.client.id}",
      owner_sees=lambda w, a: w.client.id),
    r("PUT", "/clients/{id}", lambda w, a: f"/clients/{w.client.id}",
      body=lambda w, a: {"username": "renamed", "dca_mode": "fixed"}),
    r("DELETE", "/clients/{id} (no history)",
      lambda w, a: f"/clients/{w.spare_client.id}", owner=204),
    r("DELETE", "/clients/{id} (confirmed deposit)",
      lambda w, a: f"/clients/{w.client.id}", owner=409),
    r("GET", "/clients/{id}/balance", lambda w, a: f"/clients/{w.client.id}/balance",
      owner_sees=lambda w, a: "remaining_balance"),
    r("POST", "/clients/{id}/settle", lambda w, a: f"/clients/{w.client.id}/settle",
      body=lambda w, a: {"funding_wallet_id": w.funding_wallet_id,
                         "exchange_rate": "772114"},
      owner_sees=lambda w, a: '"leg_type":"settlement"'),
    # deposits
    r("POST", "/deposits", lambda w, a: "/deposits", owner=201,
      body=lambda w, a: {"client_id": w.client.id, "amount": "12.34"}),
    r("GET", "/deposits", lambda w, a: "/deposits", **ALL_OK,
      owner_sees=lambda w, a: w.pending_deposit.id),
    r("GET", "/deposits?client_id=",
      lambda w, a: f"/deposits?client_id={w.client.id}", **ALL_OK,
      owner_sees=lambda w, a: w.confirmed_deposit.id),
    r("GET", "/deposits/{id}", lambda w, a: f"/deposits/{w.pending_deposit.id}",
      owner_sees=lambda w, a: w.pending_deposit.id),
    r("PUT", "/deposits/{id}", lambda w, a: f"/deposits/{w.pending_deposit.id}",
      body=lambda w, a: {"amount": "30", "notes": "recounted"}),
    r("PUT", "/deposits/{id} (confirmed)",
      lambda w, a: f"/deposits/{w.confirmed_deposit.id}", owner=409,
      body=lambda w, a: {"amount": "30"}),
    r("PUT", "/deposits/{id}/status",
      lambda w, a: f"/deposits/{w.pending_deposit.id}/status",
      body=lambda w, a: {"status": "confirmed"}),
    r("PUT", "/deposits/{id}/status (confirmed)",
      lambda w, a: f"/deposits/{w.confirmed_deposit.id}/status", owner=409,
      body=lambda w, a: {"status": "rejected"}),
    r("DELETE", "/deposits/{id}", lambda w, a: f"/deposits/{w.pending_deposit.id}",
      owner=204),
    r("DELETE", "/deposits/{id} (confirmed)",
      lambda w, a: f"/deposits/{w.confirmed_deposit.id}", owner=409),
    # commission splits
    r("GET", "/commission-splits", lambda w, a: "/commission-splits", **ALL_OK,
      owner_sees=lambda w, a: w.split_wallet_id),
    r("GET", "/commission-splits?machine_id=",
      lambda w, a: f"/commission-splits?machine_id={w.machine.id}",
      owner_sees=lambda w, a: w.free_wallet_id),
    r("GET", "/commission-splits?machine_id=&effective=true",
      lambda w, a: f"/commission-splits?machine_id={w.machine.id}&effective=true",
      owner_sees=lambda w, a: w.free_wallet_id),
    r("PUT", "/commission-splits (machine)", lambda w, a: "/commission-splits",
      body=lambda w, a: {"machine_id": w.machine.id, "legs": [
          {"wallet_id": w.split_wallet_id, "pct": "1", "label": "all"}]}),
    r("PUT", "/commission-splits (default)", lambda w, a: "/commission-splits",
      **ALL_OK,
      body=lambda w, a: {"legs": [
          {"wallet_id": a[OTHER].wallet.id, "pct": "0.5", "label": "x"},
          {"wallet_id": a[LP].wallet.id, "pct": "0.5", "label": "y"}]}),
    r("DELETE", "/commission-splits?machine_id=",
      lambda w, a: f"/commission-splits?machine_id={w.machine.id}", owner=204),
    r("DELETE", "/commission-splits (default)", lambda w, a: "/commission-splits",
      owner=204, other=204),
    # settlements
    r("GET", "/settlements", lambda w, a: "/settlements", **ALL_OK,
      owner_sees=lambda w, a: w.settlement.id),
    r("GET", "/settlements?status=&machine_id=",
      lambda w, a: f"/settlements?status=errored&machine_id={w.machine.id}",
      **ALL_OK, owner_sees=lambda w, a: w.settlement.id),
    r("GET", "/settlements/stuck", lambda w, a: "/settlements/stuck", **ALL_OK,
      owner_sees=lambda w, a: w.settlement.id),
    r("GET", "/settlements/{id}", lambda w, a: f"/settlements/{w.settlement.id}",
      owner_sees=lambda w, a: w.legs[0].id),
    r("POST", "/settlements/{id}/retry",
      lambda w, a: f"/settlements/{w.settlement.id}/retry",
      owner_sees=lambda w, a: '"status":"processed"'),
    r("POST", "/settlements/{id}/partial-dispense",
      lambda w, a: f"/settlements/{w.settlement.id}/partial-dispense",
      body=lambda w, a: {"dispensed_fraction": "0.5", "notes": "half"},
      owner_sees=lambda w, a: "partial dispense"),
    r("POST", "/settlements/{id}/notes",
      lambda w, a: f"/settlements/{w.settlement.id}/notes",
      body=lambda w, a: {"note": "drawer recounted"},
      owner_sees=lambda w, a: "drawer recounted"),
    # payment legs
    r("GET", "/payments", lambda w, a: "/payments", **ALL_OK,
      owner_sees=lambda w, a: w.legs[0].id),
    r("GET", "/payments?settlement_id=",
      lambda w, a: f"/payments?settlement_id={w.settlement.id}&leg_type=dca",
      **ALL_OK, owner_sees=lambda w, a: w.legs[1].id),
    # exports
    r("GET", "/export/settlements.csv", lambda w, a: "/export/settlements.csv",
      **ALL_OK, owner_sees=lambda w, a: w.settlement.payment_hash),
    r("GET", "/export/settlements.csv?machine_id=",
      lambda w, a: f"/export/settlements.csv?machine_id={w.machine.id}", **ALL_OK,
      owner_sees=lambda w, a: w.settlement.id),
    r("GET", "/export/payments.csv", lambda w, a: "/export/payments.csv", **ALL_OK,
      owner_sees=lambda w, a: w.legs[0].id),
    r("GET", "/export/payments.csv?settlement_id=",
      lambda w, a: f"/export/payments.csv?settlement_id={w.settlement.id}",
      **ALL_OK, owner_sees=lambda w, a: w.legs[1].id),
    # reconciliation (another operator's machine: 404)
    r("GET", "/reconciliation", lambda w, a: "/reconciliation", **ALL_OK,
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/reconciliation?machine_id=",
      lambda w, a: f"/reconciliation?machine_id={w.machine.id}",
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/export/reconciliation.csv", lambda w, a: "/export/reconciliation.csv",
      **ALL_OK, owner_sees=lambda w, a: w.machine.id),
    r("GET", "/export/reconciliation.csv?machine_id=",
      lambda w, a: f"/export/reconciliation.csv?machine_id={w.machine.id}",
      owner_sees=lambda w, a: w.machine.id),
    # platform
    r("GET", "/super-config", lambda w, a: "/super-config", **ALL_OK),
    r("PUT", "/super-config", lambda w, a: "/super-config", owner=403, other=403,
      super_=200,
      body=lambda w, a: {"super_fee_pct": "0.25",
                         "super_fee_wallet_id": a[SUPER].wallet.id}),
    r("GET", "/upgrade/v1-report", lambda w, a: "/upgrade/v1-report", owner=403,
      other=403, super_=200),
    # fixed mode
    r("GET", "/fixed-schedule", lambda w, a: "/fixed-schedule", **ALL_OK),
    r("GET", "/fixed-schedule?machine_id=",
      lambda w, a: f"/fixed-schedule?machine_id={w.machine.id}"),
    r("PUT", "/fixed-schedule (machine)", lambda w, a: "/fixed-schedule",
      body=lambda w, a: {"machine_id": w.machine.id, "times": ["09:00"],
                         "timezone": "UTC"},
      owner_sees=lambda w, a: w.machine.id),
    r("PUT", "/fixed-schedule (default)", lambda w, a: "/fixed-schedule", **ALL_OK,
      body=lambda w, a: {"times": ["09:00", "15:00"], "timezone": "UTC"}),
    r("DELETE", "/fixed-schedule?machine_id=",
      lambda w, a: f"/fixed-schedule?machine_id={w.machine.id}", owner=204),
    r("DELETE", "/fixed-schedule (default)", lambda w, a: "/fixed-schedule",
      owner=204, other=204),
    r("POST", "/machines/{id}/fixed-slots/run (no schedule)",
      lambda w, a: f"/machines/{w.machine.id}/fixed-slots/run", owner=409,
      body=lambda w, a: {"slot": "09:00"}),
    r("GET", "/machines/{id}/fixed-slots/preview",
      lambda w, a: f"/machines/{w.machine.id}/fixed-slots/preview",
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/machines/{id}/fixed-slots",
      lambda w, a: f"/machines/{w.machine.id}/fixed-slots"),
    # notifications
    r("GET", "/notifications", lambda w, a: "/notifications", **ALL_OK),
    r("PUT", "/notifications", lambda w, a: "/notifications", **ALL_OK,
      body=lambda w, a: {"stuck_after_minutes": 40}),
    r("GET", "/notifications/log", lambda w, a: "/notifications/log", **ALL_OK),
    r("GET", "/notifications/problems", lambda w, a: "/notifications/problems",
      **ALL_OK),
    # sale sources (the world's machine is a bitSpire one: no Lamassu source)
    r("GET", "/machines/{id}/lamassu",
      lambda w, a: f"/machines/{w.machine.id}/lamassu", owner=404),
    r("PUT", "/machines/{id}/lamassu",
      lambda w, a: f"/machines/{w.machine.id}/lamassu", owner=409,
      body=lambda w, a: {"host": "127.0.0.1", "port": 5432, "database": "lamassu",
                         "user": "reader", "password": "pw", "device_id": "d1"}),
    r("POST", "/machines/{id}/lamassu/test",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/test", owner=409),
    r("POST", "/machines/{id}/lamassu/poll",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/poll", owner=409),
    r("POST", "/machines/{id}/lamassu/pin-host-key",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/pin-host-key", owner=409,
      body=lambda w, a: {"fingerprint": "SHA256:" + "A" * 43}),
    r("GET", "/machines/{id}/lamassu/cash-outs",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/cash-outs", owner=409),
    r("POST", "/machines/{id}/lamassu/cash-outs/{txid}/ignore",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/cash-outs/{TXID}/ignore",
      owner=409, body=lambda w, a: {"reason": "settled by hand"}),
    r("DELETE", "/machines/{id}/lamassu/cash-outs/{txid}/ignore",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/cash-outs/{TXID}/ignore",
      owner=409),
    r("POST", "/machines/{id}/lamassu/import",
      lambda w, a: f"/machines/{w.machine.id}/lamassu/import", owner=409,
      body=lambda w, a: {"since": "2026-01-01T00:00:00Z"}),
    r("POST", "/settlements/manual", lambda w, a: "/settlements/manual", owner=201,
      body=lambda w, a: {"machine_id": w.machine.id, "reference": "r-1",
                         "fiat_amount": "100", "exchange_rate": "772114",
                         "fee_pct": "0.03", "occurred_at": "2026-01-01T00:00:00Z",
                         "note": "by hand"},
      owner_sees=lambda w, a: '"source":"manual"'),
    r("GET", "/funding", lambda w, a: "/funding", **ALL_OK,
      owner_sees=lambda w, a: w.machine.id),
    # the LP's own view
    r("GET", "/lp/positions", lambda w, a: "/lp/positions", **ALL_OK, lp_route=True,
      lp_sees=lambda w, a: w.client.id),
    r("GET", "/lp/payments", lambda w, a: "/lp/payments", **ALL_OK, lp_route=True),
    r("GET", "/lp/deposits", lambda w, a: "/lp/deposits", **ALL_OK, lp_route=True,
      lp_sees=lambda w, a: w.confirmed_deposit.id),
    # telemetry, health, overview
    r("POST", "/telemetry", lambda w, a: "/telemetry", owner=403, other=403,
      anon=403, body=lambda w, a: _stranger_beacon()),  # a login grants nothing
    r("GET", "/machines/{id}/telemetry",
      lambda w, a: f"/machines/{w.machine.id}/telemetry",
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/health/machines", lambda w, a: "/health/machines", **ALL_OK,
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/relays", lambda w, a: "/relays", **ALL_OK),
    r("PUT", "/relays", lambda w, a: "/relays", **ALL_OK,
      body=lambda w, a: {"relays": [], "offline_after_minutes": 10}),
    r("GET", "/overview", lambda w, a: "/overview", **ALL_OK,
      owner_sees=lambda w, a: w.machine.id),
    r("GET", "/health", lambda w, a: "/health", **ALL_OK,
      owner_sees=lambda w, a: '"scope":"operator"'),
    # invites and the LP's self-service (issue 14)
    r("POST", "/invites", lambda w, a: "/invites", owner=201,
      body=lambda w, a: {"machine_id": w.machine.id},
      owner_sees=lambda w, a: '"code"'),
    r("GET", "/invites", lambda w, a: "/invites", **ALL_OK,
      owner_sees=lambda w, a: w.invite.code),
    r("DELETE", "/invites/{id}", lambda w, a: f"/invites/{w.invite.id}", owner=204),
    r("GET", "/clients/{id}/preferences",
      lambda w, a: f"/clients/{w.client.id}/preferences",
      owner_sees=lambda w, a: '"lp_managed":false'),
    r("GET", "/lp/invites/{code}", lambda w, a: f"/lp/invites/{w.invite.code}",
      owner=404, lp=200, lp_route=True, lp_sees=lambda w, a: w.machine.name),
    r("POST", "/lp/invites/{code}/accept (already has a position)",
      lambda w, a: f"/lp/invites/{w.invite.code}/accept", owner=404, lp=409,
      lp_route=True, body=lambda w, a: {"wallet_id": a[LP].wallet.id}),
    r("GET", "/lp/positions/{id}", lambda w, a: f"/lp/positions/{w.client.id}",
      owner=404, lp=200, lp_route=True, lp_sees=lambda w, a: w.client.id),
    r("PUT", "/lp/positions/{id} (a wallet not the LP's)",
      lambda w, a: f"/lp/positions/{w.client.id}", owner=404, lp=422,
      lp_route=True, body=lambda w, a: {"wallet_id": a[OTHER].wallet.id}),
    r("GET", "/lp/dashboard", lambda w, a: "/lp/dashboard", **ALL_OK, lp_route=True,
      lp_sees=lambda w, a: w.client.id),
    r("GET", "/lp/payments/series", lambda w, a: "/lp/payments/series?range=all",
      **ALL_OK, lp_route=True),
    r("GET", "/lp/export/payments.csv", lambda w, a: "/lp/export/payments.csv",
      **ALL_OK, lp_route=True),
]  # fmt: skip


def _stranger_beacon() -> dict:
    """A correctly signed beacon from a key that is no machine's."""
    import os

    from satmachineadmin.telemetry import sign_event

    return sign_event(os.urandom(32), 30078, "{}")


def test_the_matrix_covers_every_route(app):
    """Every route of the API appears in the table above."""
    declared = {
        (method, route.path.removeprefix(API))
        for route in app.routes
        if getattr(route, "path", "").startswith(API)
        for method in getattr(route, "methods", ())
    }
    covered = {(row.method, row.template.split(" ")[0].split("?")[0]) for row in ROUTES}
    normalised = {
        (m, p.replace("{machine_id}", "{id}").replace("{client_id}", "{id}")
         .replace("{deposit_id}", "{id}").replace("{settlement_id}", "{id}")
         .replace("{invite_id}", "{id}"))
        for m, p in declared
    }  # fmt: skip
    assert normalised - covered == set()
    assert len(normalised) >= 35


@pytest.fixture(scope="module")
async def actors(make_user, superuser) -> dict[str, Actor]:
    return {
        OWNER: await make_user("owner", extra_wallets=1),
        OTHER: await make_user("other_op", extra_wallets=1),
        LP: await make_user("lp"),
        SUPER: superuser,
        NEWCOMER: await make_user("newcomer"),
    }


def _lp_visible(world: World) -> set[str]:
    """What an LP may see of its own positions at the owner's machines."""
    return {
        world.operator.id,
        world.machine.id,
        world.machine.name,
        world.spare_machine.id,
        world.spare_machine.name,
        world.client.id,
        world.spare_client.id,
        world.pending_deposit.id,
        world.confirmed_deposit.id,
        world.invite.code,
    }


_shared_worlds: dict[str, World] = {}
FUNDED = ("/clients/{id}/settle", "/settlements/{id}/retry",
          "/settlements/{id}/partial-dispense")  # fmt: skip


async def _world(route: Route, actors: dict[str, Actor]) -> World:
    """A fresh world for a write; reads share one per route (a read that
    changed anything would fail the unchanged check of the next caller)."""
    if route.method != "GET":
        funded = route.template in FUNDED
        return await build_world(actors[OWNER], actors[LP], funded=funded)
    if route.template not in _shared_worlds:
        _shared_worlds[route.template] = await build_world(
            actors[OWNER], actors[LP], funded=False
        )
    return _shared_worlds[route.template]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "route", ROUTES, ids=lambda row: f"{row.method} {row.template}"
)
async def test_authorization_matrix(http, actors, route: Route, caller: str):
    from satmachineadmin import crud

    world = await _world(route, actors)
    config_before = await crud.get_super_config()
    before = await snapshot(world)
    headers = {} if caller == ANON else actors[caller].headers
    body = route.body(world, actors) if route.body else None
    response = await http.request(
        route.method, API + route.path(world, actors), json=body, headers=headers
    )

    expected = route.expected(caller)
    assert response.status_code == expected, response.text
    text = response.text
    if caller == OWNER:
        if expected < 300:
            if route.owner_sees is not None:
                assert route.owner_sees(world, actors) in text
            return
        assert await snapshot(world) == before  # a refused write changes nothing
        return

    if caller == LP and route.lp_sees is not None:
        assert route.lp_sees(world, actors) in text
    forbidden = set(secrets(world))
    if caller == LP and route.lp_route:
        forbidden -= _lp_visible(world)
    leaked = [value for value in forbidden if value in text]
    assert leaked == [], f"{caller} saw the owner's {leaked}"

    after = await snapshot(world)
    if caller == SUPER and route.method == "PUT" and route.template == "/super-config":
        assert after.pop("super_config")["super_fee_pct"] == Decimal("0.25")
        before.pop("super_config")
        await crud.set_super_config(
            config_before.super_fee_pct, config_before.super_fee_wallet_id
        )
    assert after == before

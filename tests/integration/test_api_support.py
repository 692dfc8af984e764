"""Shared building blocks for the API tests (no tests here).

``build_world`` gives an operator a complete, fresh set of resources through
the extension's crud (fast, no HTTP): two machines, two LP positions,
deposits, an errored settlement with legs, split rules and funded wallets.
``snapshot`` reads all of it back, so a test can show that a refused request
changed nothing; ``secrets`` lists the strings that must never reach anyone
else.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
from bech32 import bech32_encode, convertbits
from conftest import Actor, credit, wallet_balance

API = "/satmachineadmin/api/v1/dca"


# --- calling the API -------------------------------------------------------------


async def call(
    http: httpx.AsyncClient, actor: Actor | None, method: str, path: str, **kw: Any
) -> httpx.Response:
    headers = actor.headers if actor else {}
    return await http.request(method, API + path, headers=headers, **kw)


def locs(response: httpx.Response) -> list[list[Any]]:
    """The `loc` of every validation error in a 422."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list), detail
    return [e["loc"] for e in detail]


def field_error(response: httpx.Response, field: str) -> None:
    """A 422 that names ``field``, as a pydantic loc or a domain message."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert detail.startswith(f"{field}:"), detail
    else:
        assert any(field in [str(p) for p in e["loc"]] for e in detail), detail


async def new_machine(
    http: httpx.AsyncClient, op: Actor, wallet: int = 1, **fields: Any
) -> dict[str, Any]:
    body = {
        "npub": make_npub(),
        "wallet_id": op.wallets[wallet].id,
        "name": "Lobby ATM",
        "currency": "GTQ",
        **fields,
    }
    response = await call(http, op, "POST", "/machines", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def new_client(
    http: httpx.AsyncClient, op: Actor, machine: dict, lp: Actor, **fields: Any
) -> dict[str, Any]:
    body = {
        "machine_id": machine["id"],
        "user_id": lp.id,
        "wallet_id": lp.wallet.id,
        **fields,
    }
    response = await call(http, op, "POST", "/clients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def new_deposit(
    http: httpx.AsyncClient, op: Actor, client: dict, amount: str = "100.00"
) -> dict[str, Any]:
    body = {"client_id": client["id"], "amount": amount}
    response = await call(http, op, "POST", "/deposits", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- rows made directly through crud ----------------------------------------------


def make_npub() -> str:
    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


async def new_wallet(actor: Actor, name: str = "extra") -> str:
    from lnbits.core.crud import create_wallet

    wallet = await create_wallet(user_id=actor.id, wallet_name=name)
    return wallet.id


async def add_machine(operator: Actor, *, currency: str = "GTQ", name: str = ""):
    from satmachineadmin import crud
    from satmachineadmin.models import Machine

    wallet_id = await new_wallet(operator, "machine")
    return await crud.create_machine(
        Machine(
            id=crud.new_id(),
            operator_user_id=operator.id,
            npub=make_npub(),
            wallet_id=wallet_id,
            name=name or f"ATM-{uuid.uuid4().hex[:12]}",
            currency=currency,
        )
    )


async def add_client(machine, lp: Actor, wallet_id: str | None = None):
    from satmachineadmin import crud
    from satmachineadmin.models import DcaClient

    return await crud.create_client(
        DcaClient(
            id=crud.new_id(),
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            user_id=lp.id,
            wallet_id=wallet_id or lp.wallet.id,
            username=f"lp-{uuid.uuid4().hex[:8]}",
        )
    )


async def add_deposit(client, machine, amount: str, status: str = "pending"):
    from satmachineadmin import crud
    from satmachineadmin.calculations import to_minor_units
    from satmachineadmin.models import DcaDeposit

    return await crud.create_deposit(
        DcaDeposit(
            id=crud.new_id(),
            client_id=client.id,
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            amount_minor=to_minor_units(Decimal(amount), machine.currency),
            currency=machine.currency,
            status=status,
            creator_user_id=machine.operator_user_id,
            confirmed_at=datetime.now(timezone.utc) if status == "confirmed" else None,
        )
    )


def settlement_row(machine, **overrides: Any):
    """A settlement row as the pipeline would land it (not yet distributed).
    Defaults to `errored`: the background workers never pick those up."""
    from satmachineadmin import crud
    from satmachineadmin.models import DcaSettlement

    values: dict[str, Any] = {
        "id": crud.new_id(),
        "machine_id": machine.id,
        "operator_user_id": machine.operator_user_id,
        "payment_hash": uuid.uuid4().hex + uuid.uuid4().hex,
        "txid": f"tx-{uuid.uuid4().hex[:10]}",
        "gross_sats": 1000,
        "net_sats": 900,
        "commission_sats": 100,
        "platform_fee_sats": 0,
        "operator_fee_sats": 100,
        "super_fee_pct": Decimal(0),
        "fee_pct": Decimal("0.1111"),
        "exchange_rate": Decimal("772114"),
        "fiat_amount_minor": 695,
        "currency": machine.currency,
        "status": "errored",
        "error": "operator_split leg of 100 sats failed: test",
    }
    values.update(overrides)
    return DcaSettlement(**values)


def leg_row(settlement, **overrides: Any):
    from satmachineadmin import crud
    from satmachineadmin.models import DcaPayment

    values: dict[str, Any] = {
        "id": crud.new_id(),
        "idempotency_key": f"test:{uuid.uuid4().hex}",
        "settlement_id": settlement.id,
        "machine_id": settlement.machine_id,
        "operator_user_id": settlement.operator_user_id,
        "leg_type": "operator_split",
        "status": "failed",
        "amount_sats": 100,
        "source_wallet_id": "machine-wallet",
        "destination_wallet_id": None,
        "error": "test failure",
    }
    values.update(overrides)
    return DcaPayment(**values)


async def insert_settlement(settlement, legs=()) -> None:
    from satmachineadmin import crud

    created, landed = await crud.create_settlement_idempotent(settlement)
    assert landed, created
    if legs:
        async with crud.transaction() as conn:
            await crud.insert_legs(list(legs), conn)


async def add_invite(machine, lp: Actor | None = None):
    from satmachineadmin import crud, crud_lp, lp_self
    from satmachineadmin.models import Invite, utc_now

    return await crud_lp.create_invite(
        Invite(
            id=crud.new_id(),
            code=lp_self.new_invite_code(),
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            username=lp.username if lp else None,
            user_id=lp.id if lp else None,
            expires_at=utc_now() + lp_self.INVITE_TTL,
        )
    )


@dataclass
class World:
    """One operator's resources, all fresh."""

    operator: Actor
    lp: Actor
    machine: Any  # has a settlement: delete is refused
    spare_machine: Any  # no history: can be deleted
    client: Any  # LP at `machine`, with a confirmed deposit
    spare_client: Any  # LP at `spare_machine`, no history
    pending_deposit: Any
    confirmed_deposit: Any
    settlement: Any  # errored, one failed leg, nothing paid
    legs: list[Any]
    invite: Any  # to `machine`, bound to the LP (who already has a position)
    free_wallet_id: str  # the operator's, fresh, bound to no machine
    funding_wallet_id: str  # the operator's second wallet
    split_wallet_id: str  # the operator's first wallet

    @property
    def wallet_ids(self) -> list[str]:
        return [
            self.machine.wallet_id,
            self.spare_machine.wallet_id,
            self.free_wallet_id,
            self.funding_wallet_id,
            self.split_wallet_id,
        ]


async def build_world(operator: Actor, lp: Actor, *, funded: bool = True) -> World:
    """``funded``: credit the machine and funding wallets (payouts need it)."""
    from satmachineadmin import crud
    from satmachineadmin.models import CommissionSplitLeg

    machine = await add_machine(operator)
    spare_machine = await add_machine(operator)
    client = await add_client(machine, lp)
    spare_client = await add_client(spare_machine, lp)
    pending = await add_deposit(client, machine, "25.50")
    confirmed = await add_deposit(client, machine, "10.00", status="confirmed")
    split_wallet = operator.wallets[0].id
    free_wallet = await new_wallet(operator, "free")
    funding_wallet = (
        operator.wallets[1].id if len(operator.wallets) > 1 else split_wallet
    )
    if funded:
        await credit(machine.wallet_id, 5_000)
        await credit(funding_wallet, 50_000)

    settlement = settlement_row(machine)
    legs = [
        leg_row(
            settlement,
            source_wallet_id=machine.wallet_id,
            destination_wallet_id=split_wallet,
        ),
        leg_row(
            settlement,
            leg_type="dca",
            status="skipped",
            amount_sats=900,
            source_wallet_id=machine.wallet_id,
            reason="no active flow-mode LP with a balance at this machine",
            error=None,
        ),
    ]
    await insert_settlement(settlement, legs)
    await crud.replace_commission_splits(
        operator.id, None, [CommissionSplitLeg(wallet_id=split_wallet, pct=Decimal(1))]
    )
    await crud.replace_commission_splits(
        operator.id,
        machine.id,
        [
            CommissionSplitLeg(wallet_id=split_wallet, pct=Decimal("0.6"), label="a"),
            CommissionSplitLeg(wallet_id=free_wallet, pct=Decimal("0.4"), label="b"),
        ],
    )
    invite = await add_invite(machine, lp)
    return World(
        invite=invite,
        operator=operator,
        lp=lp,
        machine=machine,
        spare_machine=spare_machine,
        client=client,
        spare_client=spare_client,
        pending_deposit=pending,
        confirmed_deposit=confirmed,
        settlement=settlement,
        legs=legs,
        free_wallet_id=free_wallet,
        funding_wallet_id=funding_wallet,
        split_wallet_id=split_wallet,
    )


def _dump(model: Any) -> Any:
    if model is None:
        return None
    if isinstance(model, list):
        return [_dump(m) for m in model]
    return model.dict()


async def snapshot(world: World) -> dict[str, Any]:
    """Everything of the world's operator that a request could change."""
    from satmachineadmin import crud

    op = world.operator.id
    state: dict[str, Any] = {}
    for m in (world.machine, world.spare_machine):
        state[f"machine:{m.id}"] = _dump(await crud.get_machine(m.id))
        state[f"clients:{m.id}"] = _dump(await crud.list_clients(op, m.id, 1000))
        state[f"settlements:{m.id}"] = _dump(
            await crud.list_settlements(op, None, m.id, 1000)
        )
        state[f"splits:{m.id}"] = _dump(await crud.get_commission_splits(op, m.id))
    state["splits:default"] = _dump(await crud.get_commission_splits(op, None))
    state["free wallet bound"] = _dump(
        await crud.get_machine_by_wallet(world.free_wallet_id)
    )
    for c in (world.client, world.spare_client):
        state[f"client:{c.id}"] = _dump(await crud.get_client(c.id))
        state[f"deposits:{c.id}"] = _dump(await crud.list_deposits(op, c.id, 1000))
        state[f"payments:{c.id}"] = _dump(
            await crud.list_payments(op, client_id=c.id, limit=1000)
        )
        balances = await crud.get_client_balances([c.id])
        state[f"balance:{c.id}"] = _dump(balances.get(c.id))
    state["settlement"] = _dump(await crud.get_settlement(world.settlement.id))
    state["legs"] = _dump(await crud.get_legs(world.settlement.id))
    for wallet_id in world.wallet_ids:
        state[f"wallet:{wallet_id}"] = await wallet_balance(wallet_id)
    state["super_config"] = (await crud.get_super_config()).dict(exclude={"updated_at"})
    from satmachineadmin import crud_lp

    state["invite"] = _dump(await crud_lp.get_invite(world.invite.id))
    for c in (world.client, world.spare_client):
        state[f"preferences:{c.id}"] = _dump(await crud_lp.get_preferences(c.id))
    return state


def secrets(world: World) -> list[str]:
    """Strings of the world's operator that nobody else may see."""
    values = [
        world.operator.id,
        world.machine.id,
        world.machine.npub,
        world.machine.name,
        world.spare_machine.id,
        world.spare_machine.npub,
        world.spare_machine.name,
        world.client.id,
        world.spare_client.id,
        world.pending_deposit.id,
        world.confirmed_deposit.id,
        world.settlement.id,
        world.settlement.payment_hash,
        *(leg.id for leg in world.legs),
        *world.wallet_ids,
        world.invite.id,
        world.invite.code,
    ]
    return [v for v in values if v]

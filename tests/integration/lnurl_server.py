"""A real LNURL-pay endpoint on 127.0.0.1 for autoforward tests.

It answers LUD-06: ``GET /lnurlp/<name>`` gives the pay request, its callback
``GET /cb/<name>?amount=<msat>`` returns a bolt11 invoice created on a payee
wallet of the LNbits under test, through that LNbits' own API (an invoice key
and a function that sends the request: the in-process ASGI client, or plain
HTTP to a subprocess LNbits). ``fail`` makes the callback answer an LNURL
error, as a broken endpoint would.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import uvicorn
from bech32 import bech32_encode, convertbits
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# (inkey, sats, memo) -> bolt11
MakeInvoice = Callable[[str, int, str], Awaitable[str]]


@dataclass
class LnurlServer:
    make_invoice: MakeInvoice
    payees: dict[str, str] = field(default_factory=dict)  # name -> invoice key
    fail: bool = False
    requests: list[int] = field(default_factory=list)  # msat asked per callback
    # Called with each invoice handed out (a test may kill LNbits from here).
    on_invoice: Callable[[str], None] | None = None
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task | None = None

    def lnurlp(self, name: str) -> str:
        """The LUD-17 link of a payee (``lnurlp://127.0.0.1:<port>/...``)."""
        return f"lnurlp://127.0.0.1:{self.port}/lnurlp/{name}"

    def bech32(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.port}/lnurlp/{name}".encode()
        data = convertbits(url, 8, 5, True)
        assert data is not None
        return bech32_encode("lnurl", data).upper()

    async def _pay_request(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in self.payees:
            return JSONResponse({"status": "ERROR", "reason": "unknown"}, 404)
        return JSONResponse(
            {
                "tag": "payRequest",
                "callback": f"http://127.0.0.1:{self.port}/cb/{name}",
                "minSendable": 1000,
                "maxSendable": 100_000_000_000,
                "metadata": json.dumps([["text/plain", f"pay {name}"]]),
                "commentAllowed": 100,
            }
        )

    async def _callback(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        msat = int(request.query_params["amount"])
        self.requests.append(msat)
        if self.fail or name not in self.payees:
            return JSONResponse({"status": "ERROR", "reason": "temporarily down"})
        bolt11 = await self.make_invoice(self.payees[name], msat // 1000, f"to {name}")
        if self.on_invoice is not None:
            self.on_invoice(bolt11)
        return JSONResponse({"pr": bolt11, "routes": []})

    async def __aenter__(self) -> LnurlServer:
        app = Starlette(
            routes=[
                Route("/lnurlp/{name}", self._pay_request),
                Route("/cb/{name}", self._callback),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


class ThreadedLnurlServer:
    """An ``LnurlServer`` on an event loop of its own, in a thread: for tests
    that block (a subprocess LNbits driven with a synchronous client)."""

    def __init__(self, server: LnurlServer) -> None:
        self.server = server
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with self.server:
                self._ready.set()
                await self._stop.wait()

        asyncio.run(main())

    def __enter__(self) -> LnurlServer:
        self._thread.start()
        assert self._ready.wait(30), "the LNURL server did not start"
        return self.server

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

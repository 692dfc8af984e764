"""The demo's own small HTTP server on 127.0.0.1, in a thread beside LNbits:

* a price feed, ``GET /price/BTC/<CURRENCY>`` -> ``{"price": "..."}``, that
  LNbits reads as one of its exchange-rate providers (``api_url`` with
  ``{FROM}``/``{TO}``, JSON path ``$.price``): fixed-mode slots buy at it and
  LPs see the current value of their sats. The price drifts a little around
  the demo's rate, a few percent above what the ATMs sold at;
* an LNURL-pay endpoint (LUD-06, as ``tests/integration/lnurl_server.py``):
  ``GET /lnurlp/<name>`` and its callback, which asks LNbits for an invoice on
  a demo wallet: where an LP's autoforward sends its sats.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import uvicorn
from bech32 import bech32_encode, convertbits
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class DemoSide:
    lnbits: str  # LNbits' base URL (the callback creates invoices there)
    rates: dict[str, Decimal]  # currency -> fiat per BTC around which it drifts
    payees: dict[str, str] = field(default_factory=dict)  # name -> invoice key
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    # --- the price feed -------------------------------------------------------

    def price(self, currency: str) -> Decimal | None:
        base = self.rates.get(currency.upper())
        if base is None:
            return None
        # +3 % on average, +-1 % over ten minutes: value and gain move.
        drift = Decimal(str(round(1.03 + 0.01 * math.sin(time.time() / 95), 5)))
        return (base * drift).quantize(Decimal("0.01"))

    async def _price(self, request: Request) -> JSONResponse:
        price = self.price(request.path_params["to"])
        if request.path_params["frm"].upper() != "BTC" or price is None:
            return JSONResponse({"error": "unknown pair"}, 404)
        return JSONResponse({"price": str(price)})

    # --- LNURL-pay --------------------------------------------------------------

    def lnurl(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.port}/lnurlp/{name}".encode()
        return bech32_encode("lnurl", convertbits(url, 8, 5, True) or []).upper()

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
                "metadata": json.dumps([["text/plain", f"demo savings of {name}"]]),
                "commentAllowed": 100,
            }
        )

    async def _callback(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in self.payees:
            return JSONResponse({"status": "ERROR", "reason": "unknown"})
        sats = int(request.query_params["amount"]) // 1000
        async with httpx.AsyncClient(base_url=self.lnbits, timeout=10) as client:
            answer = await client.post(
                "/api/v1/payments",
                json={"out": False, "amount": sats, "memo": f"autoforward to {name}"},
                headers={"X-API-KEY": self.payees[name]},
            )
        if answer.status_code >= 400:
            return JSONResponse({"status": "ERROR", "reason": answer.text[:200]})
        return JSONResponse({"pr": answer.json()["bolt11"], "routes": []})

    # --- the server -----------------------------------------------------------

    def provider(self) -> dict[str, object]:
        """The entry of LNbits' ``lnbits_exchange_rate_providers``."""
        return {
            "name": "satmachineadmin demo feed",
            "api_url": f"http://127.0.0.1:{self.port}/price/{{FROM}}/{{TO}}",
            "path": "$.price",
            "exclude_to": [],
            "ticker_conversion": [],
        }

    def start(self) -> DemoSide:
        app = Starlette(
            routes=[
                Route("/price/{frm}/{to}", self._price),
                Route("/lnurlp/{name}", self._pay_request),
                Route("/cb/{name}", self._callback),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()),  # type: ignore[union-attr]
            name="demo-side",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the demo's price feed did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

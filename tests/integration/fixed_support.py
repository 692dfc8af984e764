"""Test support for fixed mode and notifications: a local BTC price endpoint
configured as LNbits' exchange-rate provider, a local webhook receiver, and
an injectable clock."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self, handler_cls: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class PriceServer(_Server):
    """GET /btc/<CUR> -> {"price": <price>}, or 503 when ``price`` is None."""

    def __init__(self) -> None:
        self.price: float | None = 100_000.0
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner: PriceServer = self.server.owner  # type: ignore[attr-defined]
                owner.requests += 1
                if owner.price is None:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps({"price": owner.price}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)

    @contextmanager
    def as_lnbits_provider(self):
        """LNbits' own settings: this endpoint is its only rate provider."""
        from lnbits.settings import ExchangeRateProvider, settings
        from lnbits.utils.cache import cache

        saved = settings.lnbits_exchange_rate_providers
        settings.lnbits_exchange_rate_providers = [
            ExchangeRateProvider(
                name="local-test",
                api_url=f"http://127.0.0.1:{self.port}/btc/{{TO}}",
                path="$.price",
            )
        ]
        forget_rates()
        try:
            yield self
        finally:
            settings.lnbits_exchange_rate_providers = saved
            forget_rates()
            cache.pop("btc-price-GTQ")


def forget_rates() -> None:
    """Drop LNbits' cached prices, as their expiry would."""
    from lnbits.utils.cache import cache

    for currency in ("GTQ", "USD", "EUR"):
        cache.pop(f"btc-price-{currency}")


class WebhookServer(_Server):
    """Records POSTs; answers ``statuses`` in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner: WebhookServer = self.server.owner  # type: ignore[attr-defined]
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                owner.received.append((dict(self.headers.items()), body))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


class Clock:
    """The scheduler's injectable clock."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    @contextmanager
    def installed(self):
        from satmachineadmin import fixed

        saved = fixed.clock
        fixed.clock = self
        try:
            yield self
        finally:
            fixed.clock = saved

"""Process-death tests: LNbits runs as a real subprocess (``lnbits_process``)
that the tests SIGKILL and start again. Nothing here imports LNbits."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lnbits_process import LnbitsProcess


@pytest.fixture
def node() -> Iterator[LnbitsProcess]:
    """A fresh LNbits process (SQLite, or PostgreSQL when
    SATMACHINE_TEST_POSTGRES is set), started; closed and removed after."""
    with LnbitsProcess() as process:
        process.start()
        yield process


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder served over HTTP on 127.0.0.1: (base URL, folder)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()

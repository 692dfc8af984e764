"""A real Nostr relay for the tests: the ``nostr-relay`` package from PyPI,
started in a child process on a free port with a throwaway config and
database.

``nostr-relay`` needs pydantic 2 and SQLAlchemy 2, which LNbits 1.6 cannot
share a virtualenv with, so it lives in its own virtualenv:
``make relay-venv`` (``.run/nostr-relay-venv``), or the executable named by
``SATMACHINE_NOSTR_RELAY``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_EXECUTABLE = REPO / ".run" / "nostr-relay-venv" / "bin" / "nostr-relay"

CONFIG = """\
DEBUG: false
relay_name: satmachineadmin test relay
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db}
  num_concurrent_reqs: 4
  num_concurrent_adds: 1
  validators: {validators}
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: false
message_timeout: 1800
subscription_limit: 32
max_limit: 6000
oldest_event: 31536000
"""


def executable() -> Path:
    return Path(os.environ.get("SATMACHINE_NOSTR_RELAY", DEFAULT_EXECUTABLE))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """``validate=False`` stores whatever it is sent, signed or not, so the
    extension's own checks are what refuses a tampered event."""

    def __init__(self, port: int | None = None, validate: bool = False) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="satmachine-relay-"))
        self.config = self.dir / "config.yaml"
        validators = (
            "[nostr_relay.validators.is_signed, nostr_relay.validators.is_recent]"
            if validate
            else "[]"
        )
        self.config.write_text(
            CONFIG.format(
                db=self.dir / "relay.sqlite3", port=self.port, validators=validators
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        log = open(self.dir / "relay.log", "ab")
        self.process = subprocess.Popen(  # noqa: S603
            [str(executable()), "-c", str(self.config), "serve", "--use-uvicorn"],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "nostr-relay exited: " + (self.dir / "relay.log").read_text()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("nostr-relay did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def publish(url: str, event: dict) -> list:
    """Send an event to the relay and return its OK answer."""
    import json

    import websockets

    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps(["EVENT", event]))
        return json.loads(await ws.recv())

"""A real OpenSSH server for the tests (Debian's openssh-server): started from
a config file of its own on 127.0.0.1 with a throwaway host key, in its own
session so that stopping it ends every connection it serves."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def sshd_binary() -> str | None:
    found = shutil.which("sshd") or "/usr/sbin/sshd"
    return found if os.path.exists(found) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fingerprint_of(public_key_file: Path) -> str:
    """``ssh-keygen -lf``'s SHA256 fingerprint of a public key file."""
    out = subprocess.run(  # noqa: S603
        ["ssh-keygen", "-lf", str(public_key_file)],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


def parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parens
            found[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def descendants(pid: int) -> list[int]:
    table = parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [p for p, parent in table.items() if parent in frontier]
        found += children
        frontier = children
    return found


class Sshd:
    def __init__(self) -> None:
        binary = sshd_binary()
        assert binary, "sshd is not installed (apt-get install openssh-server)"
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="satmachineadmin-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text("")
        self.log = self.root / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.new_host_key()
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    @property
    def host_key(self) -> Path:
        return self.root / f"host_ed25519_{self.generation}"

    def new_host_key(self) -> None:
        """A fresh host key (as if the server were reinstalled); takes effect
        at the next start."""
        self.generation = getattr(self, "generation", 0) + 1
        subprocess.run(  # noqa: S603
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)],  # noqa: S607
            check=True,
        )
        config = f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
AuthorizedKeysFile {self.authorized_keys}
PidFile {self.root}/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel VERBOSE
"""
        (self.root / "sshd_config").write_text(config)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(Path(f"{self.host_key}.pub"))

    def authorize(self, line: str) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(line.strip() + "\n")

    def start(self, timeout: float = 10) -> None:
        assert self.process is None, "already running"
        log = self.log.open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [self.binary, "-D", "-e", "-f", str(self.root / "sshd_config")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"sshd exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sshd did not listen in time: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL the listener and every session it serves (each session
        process makes a session of its own: found by parent, not group)."""
        if self.process is None:
            return
        for pid in [*descendants(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

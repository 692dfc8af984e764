"""SSH to a Lamassu server: the extension's own key pair, the server's host
key (read, fingerprinted, pinned), and one tunnel per source.

Only the system OpenSSH client, run as asyncio subprocesses (never blocking
the event loop), and nothing of the user's own SSH setup (``-F /dev/null``,
no agent, a known-hosts file of our own holding only the pinned key):

- ``generate_key_pair``: ``ssh-keygen -t ed25519 -N ''`` in a private folder
  that is removed at once; the private key is then stored sealed.
- ``scan_host_key``: ``ssh-keyscan`` reads the server's key; its SHA256
  fingerprint is what ``ssh-keygen -lf`` prints (computed here the same way).
- ``open_tunnel``: ``ssh -N -L 127.0.0.1:<free port>:<db host>:<db port>``
  with ``StrictHostKeyChecking=yes``, ``ExitOnForwardFailure`` and keepalives.
  The key and known-hosts files exist (mode 600, folder 700) only until the
  tunnel is up. On Linux the ssh child asks to be killed with its parent
  (``PR_SET_PDEATHSIG``), so it never outlives a SIGKILLed LNbits. A tunnel
  is reused while its process lives and its settings are the same; a dead
  one is opened again at the next use. ``close_all`` runs at the extension's
  stop.

Errors are ``SshError`` with a ``step`` (what failed, for the connection
test) and words that carry no secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

CONNECT_TIMEOUT_S = 10
TUNNEL_READY_TIMEOUT_S = 20
KEYSCAN_TIMEOUT_S = 10
# Host key types in the order a pin prefers them.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "rsa-sha2-512", "ssh-rsa")  # fmt: skip
PR_SET_PDEATHSIG = 1
# Where the short-lived key folders go (None: the system's temporary folder).
TMP_ROOT: str | None = None


class SshError(Exception):
    """A step of reaching the server failed. ``step`` names it:
    ``ssh_missing``, ``connect``, ``host_key_unknown``, ``host_key_changed``,
    ``key_refused``, ``tunnel``."""

    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class SshTarget:
    """Everything a tunnel depends on (a change means a new tunnel)."""

    host: str
    port: int
    user: str
    private_key: str  # plain OpenSSH text: only ever in memory and a 600 file
    host_key: str  # "ssh-ed25519 AAAA..." the pinned key
    db_host: str
    db_port: int

    def __repr__(self) -> str:  # never print the key
        return f"SshTarget({self.user}@{self.host}:{self.port})"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SshError(
            "ssh_missing",
            f"{name} is not installed on the LNbits server: install {package}",
        )
    return path


def authorized_keys_line(public_key: str, db_host: str, db_port: int) -> str:
    """The line the operator adds on the Lamassu server: the key may only
    forward to the database port."""
    target = f"[{db_host}]" if ":" in db_host else db_host
    return (
        f'restrict,port-forwarding,permitopen="{target}:{db_port}" {public_key.strip()}'
    )


def fingerprint(key_line: str) -> str:
    """``SHA256:...`` of an OpenSSH public key line ("type base64 [comment]"),
    as ``ssh-keygen -lf`` prints it."""
    parts = key_line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key")
    blob = base64.b64decode(parts[1], validate=True)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


async def _run(
    *args: str, timeout: float, stdin: bytes | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE
        if stdin is not None
        else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_die_with_parent(),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return (
        process.returncode or 0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )


async def generate_key_pair() -> tuple[str, str]:
    """A new Ed25519 key pair: (private key text, public key line)."""
    keygen = _binary("ssh-keygen", "openssh-client")
    folder = Path(tempfile.mkdtemp(prefix="satmachineadmin-key-", dir=TMP_ROOT))
    try:
        path = folder / "id_ed25519"
        code, _, err = await _run(
            keygen, "-q", "-t", "ed25519", "-N", "", "-C", "satmachineadmin",
            "-f", str(path), timeout=30,
        )  # fmt: skip
        if code != 0:
            raise SshError("ssh_missing", f"ssh-keygen failed: {err.strip()[:200]}")
        return path.read_text(), (folder / "id_ed25519.pub").read_text().strip()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def reach(host: str, port: int) -> None:
    """A TCP connection to the SSH server, or SshError(connect) in words."""
    where = f"{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
        )
    except ConnectionRefusedError:
        raise SshError(
            "connect", f"connection refused: no SSH server listens on {where}"
        ) from None
    except (asyncio.TimeoutError, TimeoutError):
        raise SshError("connect", f"no answer from the SSH server {where}") from None
    except socket.gaierror:
        raise SshError("connect", f"unknown host name {host}") from None
    except OSError as exc:
        raise SshError(
            "connect", f"cannot reach {where}: {exc.strerror or 'network error'}"
        ) from None
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def scan_host_key(host: str, port: int) -> tuple[str, str]:
    """The server's host key ("type base64") and its SHA256 fingerprint; an
    Ed25519 key when the server has one."""
    keyscan = _binary("ssh-keyscan", "openssh-client")
    await reach(host, port)
    try:
        _, out, _ = await _run(
            keyscan, "-T", str(KEYSCAN_TIMEOUT_S), "-p", str(port), host,
            timeout=KEYSCAN_TIMEOUT_S + 5,
        )  # fmt: skip
    except (asyncio.TimeoutError, TimeoutError):
        raise SshError(
            "connect", f"{host}:{port} sent no SSH host key in time"
        ) from None
    keys: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("#") or len(parts) < 3:
            continue
        keys.setdefault(parts[1], parts[2])
    for kind in (*KEY_TYPES, *sorted(keys)):
        if kind in keys:
            key = f"{kind} {keys[kind]}"
            return key, fingerprint(key)
    raise SshError("connect", f"{host}:{port} does not answer as an SSH server")


def same_key(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a.split()[:2] == b.split()[:2]


# --- the tunnels ---------------------------------------------------------------


def _die_with_parent():  # type: ignore[no-untyped-def]
    """A preexec_fn: on Linux, the child is SIGKILLed when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # noqa: S110 - not Linux after all: nothing to ask
            pass
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tunnel:
    target: SshTarget
    process: asyncio.subprocess.Process
    local_port: int
    opened_at: float
    stderr: deque[str]
    drain: asyncio.Task[None]

    def alive(self) -> bool:
        return self.process.returncode is None


_tunnels: dict[str, Tunnel] = {}
_locks: dict[str, asyncio.Lock] = {}


def _classify(stderr: str, target: SshTarget) -> SshError:
    text = stderr.lower()
    where = f"{target.host}:{target.port}"
    if "host key verification failed" in text or "identification has changed" in text:
        return SshError(
            "host_key_changed",
            f"the host key of {where} changed: it is not the pinned key. Pin the "
            "new key only if you know why it changed",
        )
    if "permission denied" in text:
        return SshError(
            "key_refused",
            f"the SSH server refused the key for user {target.user}: add the "
            "authorized_keys line to that user's ~/.ssh/authorized_keys",
        )
    if "connection refused" in text:
        return SshError(
            "connect", f"connection refused: no SSH server listens on {where}"
        )
    if "could not resolve" in text:
        return SshError("connect", f"unknown host name {target.host}")
    if "timed out" in text:
        return SshError("connect", f"no answer from the SSH server {where}")
    if "forward" in text or "listen" in text or "address already in use" in text:
        return SshError("tunnel", "the SSH server refused the port forward")
    last = [line for line in stderr.splitlines() if line.strip()]
    detail = last[-1].strip()[:200] if last else "no message"
    return SshError("tunnel", f"ssh to {where} failed: {detail}")


async def _start(target: SshTarget, alias: str) -> Tunnel:
    ssh = _binary("ssh", "openssh-client")
    folder = Path(tempfile.mkdtemp(prefix="satmachineadmin-ssh-", dir=TMP_ROOT))
    try:
        key_path = folder / "id"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(target.private_key.rstrip("\n") + "\n")
        known = folder / "known_hosts"
        known.write_text(f"{alias} {' '.join(target.host_key.split()[:2])}\n")
        port = free_port()
        db_host = f"[{target.db_host}]" if ":" in target.db_host else target.db_host
        args = [
            ssh, "-N", "-F", "/dev/null",
            "-i", str(key_path),
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "BatchMode=yes",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"HostKeyAlias={alias}",
            "-o", "CheckHostIP=no",
            "-o", "UpdateHostKeys=no",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-p", str(target.port),
            "-l", target.user,
            "-L", f"127.0.0.1:{port}:{db_host}:{target.db_port}",
            "--", target.host,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent(),
        )
        lines: deque[str] = deque(maxlen=20)
        drain = asyncio.create_task(_drain(process, lines))
        tunnel = Tunnel(target, process, port, time.monotonic(), lines, drain)
        deadline = time.monotonic() + TUNNEL_READY_TIMEOUT_S
        while True:
            if process.returncode is not None or await _listening(port, process):
                break
            if time.monotonic() > deadline:
                await _stop(tunnel)
                raise SshError(
                    "tunnel", f"the SSH tunnel to {target.host} did not come up in time"
                )
            await asyncio.sleep(0.05)
        if process.returncode is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(drain, 5)
            raise _classify("\n".join(lines), target)
        return tunnel
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # ssh has read them by now


async def _drain(process: asyncio.subprocess.Process, lines: deque[str]) -> None:
    """Keep ssh's last words (its pipe must never fill up)."""
    assert process.stderr is not None  # noqa: S101
    while True:
        line = await process.stderr.readline()
        if not line:
            return
        lines.append(line.decode(errors="replace").rstrip())


async def _listening(port: int, process: asyncio.subprocess.Process) -> bool:
    """The local end accepts connections (ssh binds it once logged in)."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 1
        )
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    # ssh dies on a forward failure: a connection to a port it never bound
    # could be someone else's.
    await asyncio.sleep(0)
    return process.returncode is None


async def _stop(tunnel: Tunnel) -> None:
    if tunnel.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            tunnel.process.terminate()
        try:
            await asyncio.wait_for(tunnel.process.wait(), 5)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                tunnel.process.kill()
            await tunnel.process.wait()


async def local_port(key: str, target: SshTarget) -> int:
    """The local port of the source's tunnel: reused while alive and the
    same, else (re)opened. Raises SshError."""
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        tunnel = _tunnels.get(key)
        if tunnel is not None and tunnel.alive() and tunnel.target == target:
            return tunnel.local_port
        if tunnel is not None:
            _tunnels.pop(key, None)
            if tunnel.alive():
                await _stop(tunnel)
            else:
                logger.info(f"satmachineadmin: SSH tunnel {key} was closed: reopening")
        try:
            fresh = await _start(target, f"satmachineadmin-{key}")
        except SshError as exc:  # a port taken between pick and bind: once more
            if exc.step != "tunnel":
                raise
            fresh = await _start(target, f"satmachineadmin-{key}")
        _tunnels[key] = fresh
        return fresh.local_port


async def close(key: str) -> None:
    tunnel = _tunnels.pop(key, None)
    if tunnel is not None:
        await _stop(tunnel)


async def close_all() -> None:
    for key in list(_tunnels):
        await close(key)


def close_all_now() -> None:
    """For a synchronous stop: terminate every ssh child at once."""
    for key in list(_tunnels):
        tunnel = _tunnels.pop(key)
        if tunnel.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                tunnel.process.kill()


def alive(key: str) -> bool:
    """The source's tunnel is open (its ssh process lives)."""
    tunnel = _tunnels.get(key)
    return tunnel is not None and tunnel.alive()


def tunnel_pids() -> dict[str, int]:
    """The live ssh processes by source key (for tests and the status)."""
    return {k: t.process.pid for k, t in _tunnels.items() if t.alive()}

"""Run a local LNbits with this checkout loaded as the satmachineadmin extension.

Used by ``make run``. It:

* creates ``.run/`` (git-ignored) with ``data/`` and ``extensions/satmachineadmin``,
  a symlink to this checkout;
* sets the LNbits environment: SQLite, FakeWallet, no network look-ups, the
  extension enabled for new users (the same offline settings as the tests);
* starts LNbits the way its own ``lnbits`` command does (uvicorn in a child
  process, restarted when the admin UI asks for a restart);
* on the first start, creates the super user ``admin`` through
  ``PUT /api/v1/auth/first_install`` and enables the extension for it;
* prints the URL and the login, on every start.

Ctrl-C stops it. Python 3.10+, standard library plus LNbits' own dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXT_ID = "satmachineadmin"
RUN_DIR = REPO / ".run"
DEFAULT_DATA = RUN_DIR / "data"
DEFAULT_PORT = 5000
ADMIN_USERNAME = "admin"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


class StopRequestedError(Exception):
    """Raised in the parent process on Ctrl-C (SIGINT) or SIGTERM."""


@dataclass
class Login:
    password: str | None
    note: str


# --------------------------------------------------------------------------- setup


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run LNbits locally with this checkout as the "
        f"'{EXT_ID}' extension (SQLite, FakeWallet)."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="LNbits data folder (default: $LNBITS_DATA_FOLDER or .run/data). "
        "The admin password is saved beside the default one as "
        ".run/admin-password.txt, or inside DIR as admin-password.txt.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on (default: $PORT or {DEFAULT_PORT})",
    )
    return parser.parse_args(argv)


def resolve_data_dir(arg: Path | None) -> Path:
    if arg is not None:
        return arg.expanduser().resolve()
    env = os.environ.get("LNBITS_DATA_FOLDER")
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_DATA


def resolve_port(arg: int | None) -> int:
    if arg is not None:
        return arg
    env = os.environ.get("PORT")
    if env:
        try:
            return int(env)
        except ValueError:
            sys.exit(f"PORT={env!r} is not a port number")
    return DEFAULT_PORT


def password_file(data_dir: Path) -> Path:
    if data_dir == DEFAULT_DATA:
        return RUN_DIR / "admin-password.txt"
    return data_dir / "admin-password.txt"


def prepare_folders(data_dir: Path) -> None:
    """.run/data and .run/extensions/satmachineadmin -> this checkout."""
    data_dir.mkdir(parents=True, exist_ok=True)
    extensions = RUN_DIR / "extensions"
    extensions.mkdir(parents=True, exist_ok=True)
    link = extensions / EXT_ID
    if link.is_symlink():
        if link.resolve() == REPO:
            return
        link.unlink()  # the checkout moved: point it here again
    elif link.exists():
        sys.exit(f"{link} exists and is not a symlink; move it away and retry")
    link.symlink_to(REPO, target_is_directory=True)


def configure_environment(data_dir: Path, port: int) -> None:
    """What LNbits reads at import. Variables already set in the shell win,
    except the data folder, the extensions path and the port, which the
    command line decides."""
    os.environ["LNBITS_DATA_FOLDER"] = str(data_dir)
    os.environ["LNBITS_EXTENSIONS_PATH"] = str(RUN_DIR)
    os.environ["PORT"] = str(port)
    defaults = {
        "HOST": "127.0.0.1",
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_ADMIN_UI": "true",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_EXTENSIONS_DEFAULT_INSTALL": "[]",
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_USER_DEFAULT_EXTENSIONS": f'["{EXT_ID}"]',
        "LNBITS_RESERVE_FEE_MIN": "0",
        "LNBITS_RESERVE_FEE_PERCENT": "0",
        "AUTH_HTTPS_ONLY": "false",
        "DEBUG": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def lnbits_site_packages() -> Path:
    """LNbits mounts lnbits/static relative to the working directory."""
    spec = importlib.util.find_spec("lnbits")
    if spec is None or spec.origin is None:
        sys.exit("lnbits is not installed in this Python; run `make venv` first")
    return Path(spec.origin).resolve().parent.parent


# --------------------------------------------------------------------------- http


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def request(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON or text); HTTP errors are returned, not raised."""
    if not url.startswith("http://"):
        raise ValueError(f"refusing to open {url}")
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with _opener.open(req, timeout=timeout) as response:
            status, raw, hdrs = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, hdrs = error.code, error.read(), dict(error.headers)
    text = raw.decode(errors="replace")
    try:
        return status, hdrs, json.loads(text)
    except ValueError:
        return status, hdrs, text


def detail(payload: Any) -> str:
    if isinstance(payload, dict) and "detail" in payload:
        return str(payload["detail"])
    return str(payload)[:300]


# --------------------------------------------------------------------------- lnbits


def server_config(host: str, port: int, forwarded_allow_ips: str) -> dict[str, Any]:
    """The uvicorn.Config arguments of lnbits/server.py (plain data, so the
    child process can be spawned as well as forked)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "auto"
    return {
        "app": "lnbits.__main__:app",
        "loop": loop,
        "port": port,
        "host": host,
        "forwarded_allow_ips": forwarded_allow_ips,
        "ws_ping_timeout": 60.0,
        "ws_max_queue": 128,
    }


def serve(config: dict[str, Any]) -> None:
    """Child process: one uvicorn server, as lnbits/server.py runs it."""
    import uvicorn

    # Not the parent's handlers (inherited through fork): uvicorn restores
    # and re-raises whatever it found once it has shut down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = uvicorn.Server(config=uvicorn.Config(**config))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


def wait_until_up(base: str, process: BaseProcess) -> bool:
    """True once LNbits answers /api/v1/health with 200; False for a first
    install (every request redirects to /first_install)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(
                f"LNbits exited (code {process.exitcode}) before answering; "
                "see its log above (is the port already in use?)"
            )
        try:
            status, headers, _ = request("GET", f"{base}/api/v1/health", timeout=2)
        except OSError:
            time.sleep(0.5)
            continue
        if status == 200:
            return True
        location = headers.get("location") or headers.get("Location") or ""
        if status in (302, 303, 307) and location.endswith("/first_install"):
            return False
        time.sleep(0.5)
    raise RuntimeError(f"LNbits did not answer within {STARTUP_TIMEOUT_S:.0f} s")


def first_install(base: str, pw_file: Path) -> Login:
    password = os.environ.get("SATMACHINE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    # Saved first: a stop right after the server accepts it must not lose it.
    pw_file.parent.mkdir(parents=True, exist_ok=True)
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    status, _, payload = request(
        "PUT",
        f"{base}/api/v1/auth/first_install",
        {
            "username": ADMIN_USERNAME,
            "password": password,
            "password_repeat": password,
        },
    )
    if status != 200 or not isinstance(payload, dict):
        raise RuntimeError(f"first install failed ({status}): {detail(payload)}")
    enable_extension(base, str(payload["access_token"]))
    return Login(password, f"saved in {display(pw_file)}")


def known_password(pw_file: Path) -> tuple[str | None, str]:
    env = os.environ.get("SATMACHINE_ADMIN_PASSWORD")
    if env:
        return env, "from SATMACHINE_ADMIN_PASSWORD"
    if pw_file.is_file():
        return pw_file.read_text().strip(), f"saved in {display(pw_file)}"
    return None, f"unknown: {display(pw_file)} is missing"


def later_start(base: str, pw_file: Path) -> Login:
    """Check the login still works and that the extension is enabled."""
    password, note = known_password(pw_file)
    if password is None:
        return Login(None, note)
    status, _, payload = request(
        "POST",
        f"{base}/api/v1/auth",
        {"username": ADMIN_USERNAME, "password": password},
    )
    if status != 200 or not isinstance(payload, dict):
        return Login(password, f"{note}; WARNING: login failed: {detail(payload)}")
    enable_extension(base, str(payload["access_token"]))
    return Login(password, note)


def enable_extension(base: str, token: str) -> None:
    status, _, payload = request(
        "PUT", f"{base}/api/v1/extension/{EXT_ID}/enable", token=token
    )
    if status != 200:
        print(
            f"WARNING: could not enable {EXT_ID} for {ADMIN_USERNAME} "
            f"({status}): {detail(payload)}",
            flush=True,
        )


def display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def banner(base: str, login: Login, data_dir: Path, database: str) -> None:
    password = login.password if login.password is not None else "(unknown)"
    lines = [
        f"LNbits is running with the {EXT_ID} extension",
        "",
        f"  URL:        {base}",
        f"  Username:   {ADMIN_USERNAME}",
        f"  Password:   {password}   ({login.note})",
        f"  Extension:  {base}/{EXT_ID}/",
        f"  Data:       {display(data_dir)} ({database}, "
        f"{os.environ.get('LNBITS_BACKEND_WALLET_CLASS')})",
        "",
        "  Press Ctrl-C to stop.",
    ]
    rule = "=" * 72
    print("\n".join(["", rule, *lines, rule, ""]), flush=True)


# --------------------------------------------------------------------------- main


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequestedError


def stop_child(process: BaseProcess) -> None:
    if process.is_alive():
        process.terminate()  # SIGTERM: uvicorn shuts down gracefully
        process.join(STOP_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    data_dir = resolve_data_dir(args.data)
    port = resolve_port(args.port)
    prepare_folders(data_dir)
    configure_environment(data_dir, port)
    os.chdir(lnbits_site_packages())

    # Only now may lnbits be imported: it reads its settings at import.
    from lnbits.server import server_restart
    from lnbits.settings import settings

    Path(settings.lnbits_data_folder, "logs").mkdir(parents=True, exist_ok=True)
    Path(settings.lnbits_extensions_path, "extensions").mkdir(
        parents=True, exist_ok=True
    )
    settings.wasm_extensions_dir.mkdir(parents=True, exist_ok=True)
    host, port = settings.host, settings.port  # from HOST and PORT above
    config = server_config(host, port, settings.forwarded_allow_ips)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    base = f"http://{url_host}:{port}"
    database = "PostgreSQL" if settings.lnbits_database_url else "SQLite"
    pw_file = password_file(data_dir)

    # Explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    process: BaseProcess | None = None
    try:
        while True:
            process = mp.Process(target=serve, args=(config,), name="lnbits")
            process.start()
            if wait_until_up(base, process):
                login = later_start(base, pw_file)
            else:
                login = first_install(base, pw_file)
            banner(base, login, data_dir, database)
            while process.is_alive():
                if server_restart.wait(timeout=1):
                    break
            if not server_restart.is_set():
                code = process.exitcode
                if code in (0, -signal.SIGINT, -signal.SIGTERM):
                    return 0  # stopped by a signal sent to it directly
                print(f"LNbits exited (code {code}).", flush=True)
                return 1
            server_restart.clear()  # the admin UI asked for a restart
            print("Restarting LNbits...", flush=True)
            stop_child(process)
    except (KeyboardInterrupt, StopRequestedError):
        print("\nStopping LNbits...", flush=True)
        return 0
    except RuntimeError as error:
        print(f"ERROR: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        if process is not None:
            stop_child(process)
            print("LNbits stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

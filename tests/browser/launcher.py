"""Runs a live LNbits with this checkout as the extension, for the browser tests.

    python tests/browser/launcher.py PORT

The same environment as the in-process tests (``tests/harness.py``: a throwaway
data folder, FakeWallet, no network, the extension enabled for new users; a
fresh PostgreSQL database when ``SATMACHINE_TEST_POSTGRES`` is set), served by
uvicorn on 127.0.0.1:PORT. SIGTERM or Ctrl-C stops it and removes the data.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/
import harness


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: launcher.py PORT", file=sys.stderr)
        return 2
    port = int(argv[0])
    harness.configure()
    os.environ["PORT"] = str(port)
    os.chdir(harness.lnbits_site_packages())  # LNbits mounts lnbits/static from here
    # A background job may start with SIGINT ignored: let Ctrl-C stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import uvicorn

    try:
        uvicorn.run(
            "lnbits.__main__:app", host="127.0.0.1", port=port, log_level="warning"
        )
    except KeyboardInterrupt:
        pass
    finally:
        harness.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

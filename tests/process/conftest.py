"""Process-death tests: LNbits runs as a real subprocess (``lnbits_process``)
that the tests SIGKILL and start again. Nothing here imports LNbits."""

from __future__ import annotations

import sys
from collections.abc import Iterator
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

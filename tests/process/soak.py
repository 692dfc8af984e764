"""The long seeded soak for the note: ``make soak`` (SQLite, then PostgreSQL
when SATMACHINE_TEST_POSTGRES is set), or

    .venv/bin/python tests/process/soak.py --seed 7 --rounds 10 --per-round 6

Pays ``rounds`` x ``per-round`` bitSpire sales to a machine with 12 LPs and a
50/30/20 split, SIGKILLs LNbits 0 to 2.5 s after each round, starts it again,
waits for every settlement (the resume time after each kill), and at the
end checks the invariants of ``tests/process/test_process_death.py`` and
prints the figures (resume times after each kill included) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lnbits_process import LnbitsProcess
from test_process_death import run_with_kills


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=6)
    args = parser.parse_args()
    with LnbitsProcess(log_name="soak") as node:
        node.start()
        summary = run_with_kills(
            node,
            seed=args.seed,
            rounds=args.rounds,
            per_round=args.per_round,
            settle_each_round=True,
        )
    print(json.dumps({"database": node.db_name, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

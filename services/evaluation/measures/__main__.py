"""python -m services.evaluation.measures rebuild [--scratch SUFFIX]: the measures from the event history.

Without --scratch: stop the evaluation process first (its consumer group must not run meanwhile); the fact
rows, counters and processed ids of every tenant are emptied, the dispatch, evaluation, alliance and org
topics are replayed from their start (kept for ever: retention.ms=-1), and the group evaluation-measures is
moved to where the replay ended, so the restarted process goes on from there. The frozen boards are the write
side's and stay as they are (a changed quarter is corrected by the next freeze timer, never rewritten).
With --scratch SUFFIX: the same replay into empty copies of the tables in hl_<tenant>SUFFIX, beside the live
ones, to compare (tests/integration/test_evaluation_measures.py does, byte for byte).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from services.common.settings import get_settings
from services.evaluation.measures import consumer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.evaluation.measures", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rebuild = sub.add_parser("rebuild", help="rebuild the measures from the services' event topics")
    rebuild.add_argument("--scratch", default="", help="replay into hl_<tenant>SUFFIX instead of the live tables")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    bootstrap = get_settings().kafka_bootstrap
    started = time.monotonic()
    try:
        if args.scratch:
            consumer.prepare_scratch(args.scratch)
        else:
            consumer.truncate_live()
        records, ends = consumer.replay(bootstrap, suffix=args.scratch)
        if not args.scratch:
            consumer.rewind_group(bootstrap, ends)
    except Exception as exc:  # a clear line, not a stack trace
        print(f"error: the rebuild stopped: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"[measures] {records:,} records replayed in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

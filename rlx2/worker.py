"""One run in its own process: what the executors start (``python -m rlx2.worker``).

Exit codes tell the executor what happened: 0 finished (or already finished), 3 the run
diverged (recorded in ``failure.json``; retrying would diverge again), 4 another process
holds the run's lock; anything else is a crash, which the executor retries (the run then
resumes from its last checkpoint). On Linux the worker dies with its parent, so killing
a suite runner never leaves orphan runs behind.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import traceback

EXIT_DIVERGED, EXIT_LOCKED = 3, 4


def attempt_outcome(code: int | None) -> str:
    """What a worker's exit status says of its attempt: done, diverged, locked (another runner holds the run) or
    crashed (anything else, None included: no status at all)."""
    return {0: "done", EXIT_DIVERGED: "diverged", EXIT_LOCKED: "locked"}.get(code, "crashed")


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent goes (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() != parent:  # the parent died before we asked
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlx2.worker")
    parser.add_argument("--config", required=True, help="the run's RunConfig as JSON")
    parser.add_argument("--results", required=True)
    parser.add_argument("--module", action="append", default=[])
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)

    from rlx2.config import RunConfig
    from rlx2.methods import load_module
    from rlx2.records import RunLocked
    from rlx2.train import RunAlreadyFinished, RunDiverged, train

    for module in args.module:
        load_module(module)
    cfg = RunConfig.from_dict(json.loads(args.config))
    try:
        train(cfg, args.results, progress=False)
    except RunAlreadyFinished:
        return 0
    except RunDiverged as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except RunLocked as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_LOCKED
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

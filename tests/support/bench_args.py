"""What the benchmarks' tests share: a benchmark's parsed arguments, and the child processes a run left."""
from __future__ import annotations

import argparse
import os


def bench_args(module, *argv: str, json: bool = True) -> argparse.Namespace:
    """``module``'s options parsed as ``appliance bench NAME`` would (``--json`` is added for every
    benchmark by the command, so here too)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    module.add_arguments(parser)
    return parser.parse_args((["--json"] if json else []) + list(argv))


def live_children() -> list[int]:
    """The pids of this process's children that are not zombies (a benchmark must reap what it starts)."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.append(int(entry))
    return found

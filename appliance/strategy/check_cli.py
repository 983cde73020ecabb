"""``appliance strategy check SPEC [--params FILE] [--layout F]``: load a strategy and its parameters and
check them against the layout's symbols, as ``appliance up --strategy`` and the strategy process do,
without starting anything (nothing is traded, no segment is made)."""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="strategy_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="load a strategy and validate its parameters without trading",
                           description=__doc__.splitlines()[0])
    check.add_argument("spec", metavar="SPEC", help="module.path:ClassName or path/to/file.py:ClassName")
    check.add_argument("--params", metavar="FILE", help="its parameters (YAML); without: its Parameters defaults")
    check.add_argument("--layout", default="shm_layout.yaml",
                       help="the layout whose symbols and strategy process it is checked against "
                            "(default ./shm_layout.yaml)")


def run(args: argparse.Namespace) -> int:
    from appliance.runtime.layout import LayoutError, load_layout

    from .config import StrategyConfigError
    from .selection import select_strategy
    try:
        layout = load_layout(args.layout)
        _params, loaded = select_strategy(layout, args.spec, args.params, options=("SPEC", "--params"))
    except (LayoutError, StrategyConfigError) as exc:
        print(f"appliance strategy check: {exc}", file=sys.stderr)
        return 2
    print(f"ok: {loaded.source}, parameters {loaded.parameters_source}: {loaded.parameters!r}")
    return 0

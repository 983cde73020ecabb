"""``appliance oms-standby``: the hot standby OMS of a layout's ``oms`` process (``standby.py``).

    appliance oms-standby [--layout shm_layout.yaml] [--process oms] [--status-every S]

Connects to the primary's ``params.replication.primary`` address, keeps the standby journal
(``params.replication.standby_journal``) byte-identical to the primary's and the order state it
makes; logs the state a takeover would log in with every ``--status-every`` seconds and on exit.
Runs until SIGINT or SIGTERM. Exit status 2 for a bad command line or layout.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default="shm_layout.yaml", help="the layout (default shm_layout.yaml)")
    parser.add_argument("--process", default="oms", help="the OMS's process name in the layout (default oms)")
    parser.add_argument("--status-every", type=float, default=5.0, metavar="S",
                        help="log the standby's state this often (seconds, default 5)")


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import time

    from appliance.command_io.arguments import UsageError
    from appliance.oms.config import OmsConfigError, parse_oms_params
    from appliance.oms.standby import StandbyReplica
    from appliance.runtime.layout import LayoutError, load_layout

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        layout = load_layout(args.layout)
    except (OSError, LayoutError) as exc:
        raise UsageError(str(exc)) from None
    if args.process not in layout.processes:
        raise UsageError(f"{args.layout}: no process named {args.process!r}")
    try:
        config = parse_oms_params(layout.processes[args.process].params, layout.path,
                                  f"processes.{args.process}.params")
    except OmsConfigError as exc:
        raise UsageError(f"{layout.path}: {exc.key_path}: {exc.reason}") from None
    if not config.replication.enabled:
        raise UsageError(f"{layout.path}: processes.{args.process}.params.replication.mode is off: no primary streams")
    stopping = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(1))
    try:
        standby = StandbyReplica(config, list(layout.symbols), layout)
    except (LayoutError, RuntimeError) as exc:      # shm: rings missing from the layout, or a second standby
        raise UsageError(str(exc)) from None
    log = logging.getLogger("appliance.oms.standby")
    log.info("standby of %s, journal %s", f"{config.replication.primary_host}:{config.replication.primary_port}"
             if config.replication.transport == "tcp" else "the layout's replication rings (shm)", standby.path)
    next_status = 0.0
    try:
        while not stopping:
            standby.poll(0.05)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + args.status_every
                log.info("standby state: %s", standby.state())
    finally:
        log.info("standby state at exit: %s", standby.state())
        standby.close()
    return 0

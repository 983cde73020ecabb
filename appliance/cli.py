"""The ``appliance`` command: one entry point, one module per subcommand.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``
and keeps its heavy imports inside ``run``, so building the parser stays cheap.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from appliance.command_io.arguments import UsageError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("appliance.sim.up", "start the whole appliance (supervisor and every process; --sim adds the simulated exchange)"),
    "down": ("appliance.supervisor.commands:down", "stop the appliance: cancel orders, log out, remove the segments"),
    "status": ("appliance.supervisor.commands:status", "processes, the gate and why, the clock, positions and P&L"),
    "kill": ("appliance.supervisor.commands:kill", "the kill switch: halt trading and cancel every open order (latched; --symbol S for one)"),
    "resume": ("appliance.supervisor.commands:resume", "reset the kill switch (needs --operator NAME; --symbol S for one)"),
    "reduce": ("appliance.supervisor.commands:reduce", "risk REDUCING: only orders that shrink a position pass (needs --operator NAME)"),
    "activate": ("appliance.supervisor.commands:activate", "risk ACTIVE again after reduce (needs --operator NAME)"),
    "close-gate": ("appliance.supervisor.commands:close_gate", "hold the trading gate closed: no new order leaves (needs --operator NAME)"),
    "open-gate": ("appliance.supervisor.commands:open_gate", "lift the operator's hold on the gate (needs --operator NAME)"),
    "failover": ("appliance.supervisor.commands:failover", "switch the OMS to its hot standby on this box (needs --operator NAME)"),
    "reload-limits": ("appliance.supervisor.commands:reload_limits", "check the risk limits file and have risk reload it"),
    "strategy": ("appliance.strategy.check_cli", "check a strategy and its parameters without trading (strategy check SPEC)"),
    "layout": ("appliance.runtime.layout_cli", "validate shm_layout.yaml and show computed offsets"),
    "bench": ("appliance.bench.cli", "run a benchmark against its peers (table, or --json)"),
    "backtest": ("appliance.backtest.cli", "a recorded ITCH day through a strategy, risk and the replay venue (report, --json)"),
    "itch": ("appliance.ops.itch_cli", "decode or summarise an ITCH 5.0 BinaryFILE day file"),
    "top": ("appliance.ops.shmtop", "live view of a running appliance's rings, processes and counters"),
    "exporter": ("appliance.ops.exporter", "Prometheus scrape endpoint over the shared-memory counters"),
    "exchange": ("appliance.exchange.cli", "run the simulated exchange (ITCH/MoldUDP64 feed, OUCH/SoupBinTCP entry), or drive it"),
    "audit": ("appliance.ops.audit_cli", "export the audit trail (CSV or JSON lines): the OMS journal, or the firm's record in NATS (--nats)"),
    "oms-standby": ("appliance.oms.standby_cli", "the hot standby OMS: the primary's journal replicated, its order state kept (issue 18)"),
    "risk-hub": ("appliance.riskhub.cli", "the firm-wide risk hub over NATS: run it, or status, kill, reduce, activate"),
    "preflight": ("appliance.ops.preflight", "check this machine is ready for the layout (CPUs, hugepages, clock)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module_name, _, attribute = module_name.partition(":")
        module = importlib.import_module(module_name)
        if attribute:
            module = getattr(module, attribute)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"appliance {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

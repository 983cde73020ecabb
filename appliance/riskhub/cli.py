"""``appliance risk-hub``: run the firm-wide risk hub, or talk to the running one.

    appliance risk-hub [run] --config hub.yaml          the hub, until SIGINT/SIGTERM
    appliance risk-hub status --config hub.yaml [--json]
    appliance risk-hub kill|reduce|activate --config hub.yaml --operator NAME [--reason TEXT]

The commands go to the running hub over NATS (``firm.hub.<name>.control``), which publishes the
firm command on ``firm.commands`` for every appliance. Exit status: 0 done, 1 the hub did not
answer or refused, 2 a bad command line or configuration file.
"""
from __future__ import annotations

import argparse
import sys

ACTIONS = ("run", "status", "kill", "reduce", "activate")
REQUEST_TIMEOUT_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="run", choices=ACTIONS, help="run the hub (default) or ask it")
    parser.add_argument("--config", required=True, help="the hub's configuration file (YAML)")
    parser.add_argument("--operator", default="", help="who asks (kill, reduce, activate: required, recorded)")
    parser.add_argument("--reason", default="", help="why (sent with the command, logged by every appliance)")
    parser.add_argument("--json", action="store_true", help="status: one JSON object")


def run(args: argparse.Namespace) -> int:
    from appliance.command_io.arguments import UsageError
    from .config import RiskHubConfigError, check_secret_files, load_hub_config
    try:
        config = load_hub_config(args.config)
        check_secret_files(config)
    except RiskHubConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action == "run":
        return _run_hub(config)
    if args.action != "status" and not args.operator.strip():
        raise UsageError(f"{args.action} needs --operator NAME (it is recorded by every appliance)")
    return _ask(config, args)


def _run_hub(config) -> int:
    import asyncio
    import logging
    import signal
    from appliance.dropcopy.publisher import run_loop
    from .hub import RiskHub
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hub = RiskHub(config)

    async def main():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, hub.stop)
        await hub.run()
    run_loop(main())
    return 0


def _ask(config, args) -> int:
    import asyncio
    import json

    from appliance.dropcopy.publisher import connect_nats

    async def ask():
        nc = await connect_nats(config, "risk-hub-cli")
        try:
            request = {"command": args.action, "operator": args.operator, "reason": args.reason}
            return json.loads((await nc.request(config.control_subject, json.dumps(request).encode(),
                                                timeout=REQUEST_TIMEOUT_S)).data)
        finally:
            await nc.close()
    try:
        answer = asyncio.run(ask())
    except Exception as exc:       # NATS unreachable, no hub answering (timeout / no responders), bad answer
        print(f"error: no risk hub {config.name!r} answering on {config.url} ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1
    if not isinstance(answer, dict) or not answer.get("ok"):
        print(f"error: {answer.get('error', 'refused') if isinstance(answer, dict) else answer}", file=sys.stderr)
        return 1
    if args.action == "status":
        print(json.dumps(answer["status"], indent=1) if args.json else render(answer["status"]))
        return 0
    sent = answer["command"]
    print(f"FIRM {sent['command']} sent by hub {sent['hub']} (id {sent['id']}, operator {sent['operator']}): "
          f"{sent['reason']}")
    return 0


def render(s: dict) -> str:
    lines = [f"hub {s['hub']}: {'connected' if s['connected'] else 'NATS DOWN'}, "
             f"{'caught up' if s['caught_up'] else 'replaying'}; {s['applied']} events from "
             f"{len(s['appliances'])} appliances, {s['garbage']} dropped; {s['orders_per_s']} orders/s",
             f"P&L {s['pnl']:+,.2f} (realized {s['realized_pnl']:+,.2f}, marked {s['unrealized_pnl']:+,.2f}), "
             f"drawdown {s['drawdown']:,.2f}; gross {s['gross_exposure']:,.2f}, net {s['net_exposure']:+,.2f}",
             "", f"{'symbol':<8}{'position':>10}{'mark':>12}{'P&L':>14}  by appliance"]
    for symbol, v in sorted(s["symbols"].items()):
        by = " ".join(f"{a}{p:+d}" for a, p in sorted(v["by_appliance"].items()))
        lines.append(f"{symbol:<8}{v['position']:>+10d}{v['mark']:>12.2f}"
                     f"{v['realized_pnl'] + v['unrealized_pnl']:>+14,.2f}  {by}")
    for b in s["breaches"]:
        lines.append(f"BREACH {b['reason']}{' ' + b['symbol'] if b['symbol'] else ''}: {b['detail']}")
    return "\n".join(lines)

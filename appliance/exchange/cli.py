"""``appliance exchange``: run the simulated exchange, drive it (``ctl``), or print its default config.

    appliance exchange                          # embedded default: 5 symbols, background flow, ports printed
    appliance exchange --config my.yaml --records ./day
    appliance exchange ctl halt AAPL            # against the running exchange's control socket
    appliance exchange default-config > my.yaml
    appliance exchange --replay run/sim-X/exchange/itch.bin --speed 10   # a recorded day on the feed

Options given on the command line override the file; every value is checked like the file's.
With ``--replay`` the feed carries the recorded day (``replay.py``) and the firms' orders are matched
against it by the backtest's venue model; the exchange ends when the recorded day does.
"""
from __future__ import annotations

import argparse
import json
import sys

from appliance.command_io.arguments import UsageError, bounded
from appliance.command_io.json_lines import control_socket_in


def default_control_socket(base: str = ".") -> str:
    """``run/control/exchange.sock`` under ``base`` (the current directory), beside the supervisor's
    (``appliance up --sim`` puts it there; ``control_socket_in``)."""
    return control_socket_in(base, "exchange")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_speed(text: str) -> float | str:
    """``--speed``: a positive number of event seconds per wall second, or ``max``."""
    if text == "max":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.001 <= value <= 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not max or a speed 0.001..1000000")
    return value


parse_answer_lead = bounded(float, 0, 1000, " ms")         # --answer-lead MS (``up --sim --replay`` passes it on)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="exchange YAML (default: the embedded default)")
    parser.add_argument("--order-port", type=bounded(int, 0, 65535), help="SoupBinTCP port (0 = any free)")
    parser.add_argument("--rerequest-port", type=bounded(int, 0, 65535), help="MoldUDP64 re-request port (0 = any)")
    parser.add_argument("--source-port", type=bounded(int, 0, 65535),
                        help="the port market data is sent from; feeds accept only it (0 = any free)")
    parser.add_argument("--snapshot-port", type=bounded(int, 0, 65535), help="GLIMPSE snapshot port (0 = any)")
    parser.add_argument("--feed", type=_host_port, action="append", metavar="HOST:PORT",
                        help="send the feed to this subscriber (repeatable; replaces the configured list)")
    parser.add_argument("--records", metavar="DIR", help="write itch.bin, ouch-<firm>.log and report.json here")
    parser.add_argument("--control", metavar="PATH", help="control socket (default ./run/control/exchange.sock)")
    parser.add_argument("--duration", type=bounded(float, 0.001, 86400.0, " s"), metavar="SECONDS",
                        help="end the trading day after this long (default: run until SIGTERM or ctl end)")
    parser.add_argument("--background-rate", type=bounded(float, 0, 200_000, " operations/s"), metavar="RATE")
    parser.add_argument("--seed", type=bounded(int, 0, 2**63), help="seed of the background flow")
    parser.add_argument("--linger", type=bounded(float, 0, 60, " s"), default=1.0,
                        help="seconds to keep answering re-requests after the close (default 1)")
    parser.add_argument("--replay", metavar="DAYFILE",
                        help="publish this recorded ITCH day (BinaryFILE) instead of a live one and match orders "
                             "against it with the backtest's venue model")
    parser.add_argument("--speed", type=parse_speed, metavar="X|max",
                        help="replay: event seconds per wall second (default 1), or max: as fast as it goes")
    parser.add_argument("--replay-hold", action="store_true",
                        help="replay: wait for the control command start (appliance exchange ctl start)")
    parser.add_argument("--answer-lead", type=parse_answer_lead, metavar="MS",
                        help="replay: the market data of an instant waits this long behind the firms' answers it "
                             "caused (fills reach the strategy first, as in the backtest; default 0)")
    parser.add_argument("--queue-model", metavar="NAME",
                        help="replay: our orders' queue position model (default risk-averse; see appliance backtest)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    ctl = sub.add_parser("ctl", help="send a command to a running exchange",
                         description="Send one command to a running exchange's control socket and print the answer.",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=_ctl_epilog())
    ctl.add_argument("--socket", default=None, help="control socket (default ./run/control/exchange.sock)")
    ctl.add_argument("--operator", default="", help="who asks (logged by the exchange with your uid and pid)")
    ctl.add_argument("--timeout", type=bounded(float, 0.01, 600, " s"), default=5.0)
    ctl.add_argument("words", nargs="+", metavar="COMMAND [ARG ...]")
    sub.add_parser("default-config", help="print the embedded default configuration (YAML)")


def _ctl_epilog() -> str:
    from .control import __doc__ as doc
    return "commands:\n" + doc.split("Commands (", 1)[1].split("\n", 1)[1]


def run(args: argparse.Namespace) -> int:
    if args.action == "default-config":
        from .config import DEFAULT_CONFIG_YAML
        sys.stdout.write(DEFAULT_CONFIG_YAML)
        return 0
    if args.action == "ctl":
        return run_ctl(args)
    return run_exchange(args)


def build_config(args: argparse.Namespace):
    """The configuration: the file (or the embedded default) with the command line's overrides,
    all checked by the config's own rules."""
    from .config import ConfigError, default_config, load_config
    try:
        config = load_config(args.config) if args.config else default_config()
        md: dict = {}
        if args.rerequest_port is not None:
            md["rerequest_port"] = args.rerequest_port
        if args.source_port is not None:
            md["source_port"] = args.source_port
        if args.snapshot_port is not None:
            md["snapshot_port"] = args.snapshot_port
        if args.feed:
            md["subscribers"] = tuple(args.feed)
        bg: dict = {}
        if args.background_rate is not None:
            bg.update(rate=args.background_rate, enabled=args.background_rate > 0)
        if args.seed is not None:
            bg["seed"] = args.seed
        changes: dict = {"market_data": md, "background": bg,
                         "control": {"socket": args.control or config.control.socket or default_control_socket()}}
        if args.order_port is not None:
            changes["order_entry"] = {"port": args.order_port}
        if args.records:
            changes["records"] = {"directory": args.records}
        if args.duration is not None:
            changes["duration_s"] = args.duration
        return config.with_overrides(**changes)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def replay_settings(args: argparse.Namespace):
    """The replay's settings from the command line (None without ``--replay``), checked before the start."""
    given = [name for name in ("speed", "queue_model", "answer_lead") if getattr(args, name, None) is not None]
    if getattr(args, "replay_hold", False):
        given.append("replay_hold")
    if args.replay is None:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --replay")
        return None
    if args.background_rate:
        raise UsageError("--background-rate: a replay has no background flow (the recorded day is the market)")
    from appliance.replay.queue import QueueModelError, make
    from .replay import ReplaySettings
    queue_model = args.queue_model or "risk-averse"
    try:
        make(queue_model)
    except QueueModelError as exc:
        raise UsageError(str(exc)) from None
    try:
        with open(args.replay, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"--replay: cannot read {args.replay}: {exc.strerror or exc}") from None
    speed = None if args.speed == "max" else args.speed or 1.0
    return ReplaySettings(args.replay, speed, hold=args.replay_hold, queue_model=queue_model, seed=args.seed or 0,
                          answer_lead_ms=args.answer_lead or 0.0)


def run_exchange(args: argparse.Namespace) -> int:
    config = build_config(args)
    replay = replay_settings(args)
    from .server import serve
    try:
        return serve(config, linger_s=args.linger, replay=replay)
    except OSError as exc:        # a port in use, a records directory not writable, ...
        raise UsageError(f"cannot start: {exc}") from None
    except RuntimeError as exc:   # the control socket is held by a running exchange
        raise UsageError(str(exc)) from None


def _ctl_value(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):      # not JSON (or an int of over 4300 digits, [[[[... too deep): text
        return text


def parse_ctl_words(words: list[str]) -> dict:
    """``halt AAPL`` -> {"command": "halt", "symbol": "AAPL"}; ``faults drop=0.1`` -> {..., "drop": 0.1}."""
    from .control import COMMAND_ARGUMENTS
    command, rest = words[0], words[1:]
    allowed = COMMAND_ARGUMENTS.get(command)
    if allowed is None:
        raise UsageError(f"unknown command {command!r}; commands: {', '.join(COMMAND_ARGUMENTS)}")
    request: dict = {"command": command}
    positional = [name for name in allowed if command not in ("faults", "cancel-all")]
    for word in rest:
        name, sep, value = word.partition("=")
        if sep:
            if name not in allowed:
                raise UsageError(f"{command}: unknown argument {name!r}; allowed: {', '.join(allowed) or 'none'}")
            request[name] = _ctl_value(value)
        elif positional:
            request[positional.pop(0)] = _ctl_value(word) if command in ("drop-next", "burst", "background") else word
        else:
            raise UsageError(f"{command}: unexpected {word!r}")
    missing = [name for name in positional if name not in request]
    if missing:
        raise UsageError(f"{command}: missing {', '.join(missing)}")
    return request


def run_ctl(args: argparse.Namespace) -> int:
    from appliance.command_io.json_lines import request_json
    request = parse_ctl_words(args.words)
    if args.operator:
        request["operator"] = args.operator
    path = args.socket or default_control_socket()
    try:
        answer = request_json(path, request, args.timeout, "the exchange")
    except (OSError, ValueError) as exc:
        print(f"appliance exchange ctl: no answer from {path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=1))
    return 0 if answer.get("ok") else 1

"""``appliance up``: the supervisor's ``up``, plus ``--sim``: the simulated exchange beside it.

Without ``--sim`` this is ``appliance.supervisor.up`` unchanged. With it, before the children
start: the OMS's venue login is written for the exchange's firm when none exists
(``sim_credentials``), a fresh trading day gets its own directory ``run/sim-<time>/`` (the OMS
journal of the previous day moved there), and the exchange runs as a child process with its
control socket in the private ``run/control``; it is stopped (SIGTERM: end of day and report)
after the appliance's own processes.

``--strategy SPEC [--strategy-params FILE]`` (with or without ``--sim``) runs that strategy in the
layout's strategy process instead of the layout's own (``strategy/selection.py``: what is replaced,
how paths resolve). It is checked before anything starts (a bad one: exit 2), then the children
run from a copy of the layout with those params, beside it (so its relative paths still hold) as
``<layout>.strategy-<pid>.yaml``, removed when ``up`` exits; the layout's hash does not cover
params, so every tool attaches with the original.

``--sim --replay DAYFILE [--replay-speed X|max] [--answer-lead MS] [--queue-model NAME]``: the simulated
exchange replays a recorded ITCH day (``appliance exchange --replay``, which takes the last two as they
are) instead of trading a live one: the feed carries the recorded day, the appliance's orders are
matched against it by the backtest's venue model. The replay is
held until the appliance's trading gate opens (``children_started``), so the strategy sees the day
from its first message, as ``appliance backtest`` does; the exchange ends with the recorded day.

``--nats URL`` turns the drop copy on for this run: the same layout copy, with the drop copy's
``nats.url`` set to URL (checked first as the drop copy checks it: nats:// on loopback, tls:// with
credentials elsewhere; a bad one exits 2), so every order event reaches the firm's JetStream stream
(issue 19) without editing the layout.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from appliance.command_io.arguments import UsageError
from appliance.supervisor import up as supervisor_up

from .credentials import write_sim_login

log = logging.getLogger("appliance.supervisor")

READY_TIMEOUT_S = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    supervisor_up.add_arguments(parser)
    parser.add_argument("--sim", action="store_true",
                        help="also run the simulated exchange on its embedded default (a fresh trading day)")
    parser.add_argument("--sim-config", help="the simulated exchange's config instead of the embedded default")
    parser.add_argument("--replay", metavar="DAYFILE",
                        help="with --sim: the exchange replays this recorded ITCH day (BinaryFILE) from the moment "
                             "the trading gate opens")
    parser.add_argument("--replay-speed", metavar="X|max",
                        help="with --replay: event seconds per wall second (default 1), or max")
    parser.add_argument("--answer-lead", metavar="MS",
                        help="with --replay: the market data of an instant waits this long behind the answers it "
                             "caused (appliance exchange --answer-lead; default 0)")
    parser.add_argument("--queue-model", metavar="NAME",
                        help="with --replay: our orders' queue position model (default risk-averse; see "
                             "appliance backtest)")
    parser.add_argument("--strategy", metavar="SPEC",
                        help="run this strategy (module.path:ClassName or path/to/file.py:ClassName) instead of "
                             "the layout's")
    parser.add_argument("--strategy-params", metavar="FILE",
                        help="its parameters (YAML; without: its Parameters defaults); needs --strategy")
    parser.add_argument("--nats", metavar="URL",
                        help="run the drop copy to this NATS JetStream server (nats://127.0.0.1:4222; a cluster: "
                             "its URLs comma-separated) instead of the layout's nats.url")


def run(args: argparse.Namespace) -> int:
    if args.strategy_params is not None and args.strategy is None:
        raise UsageError("--strategy-params needs --strategy")
    replay = replay_day(args)
    venue = SimulatedVenue(args.sim_config, replay=replay, replay_speed=getattr(args, "replay_speed", None),
                           replay_options=replay_options(args)) if args.sim else None
    nats_url = getattr(args, "nats", None)
    if args.strategy is None and nats_url is None:
        return supervisor_up.run(args, venue)
    from appliance.dropcopy.config import DropCopyConfigError
    from appliance.runtime.layout import LayoutError
    from appliance.strategy.config import StrategyConfigError
    try:
        layout_path = write_run_layout(args.layout, args.strategy, args.strategy_params, nats_url)
    except (LayoutError, StrategyConfigError, DropCopyConfigError, OSError) as exc:
        print(f"appliance up: {exc}", file=sys.stderr)
        return supervisor_up.EXIT_CONFIG
    try:
        return supervisor_up.run(argparse.Namespace(**{**vars(args), "layout": str(layout_path)}), venue)
    finally:
        layout_path.unlink(missing_ok=True)


_REPLAY_OPTIONS = ("replay_speed", "answer_lead", "queue_model")


def replay_day(args: argparse.Namespace) -> str | None:
    """``--replay DAYFILE``'s absolute path, checked with ``--replay-speed``, ``--answer-lead`` and
    ``--queue-model`` before anything starts (None without it); a usage error when any is given without
    what it needs."""
    replay = getattr(args, "replay", None)
    if replay is None:
        given = [name for name in _REPLAY_OPTIONS if getattr(args, name, None) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --replay")
        return None
    if not args.sim:
        raise UsageError("--replay needs --sim")
    from appliance.exchange.cli import parse_answer_lead, parse_speed
    from appliance.replay.queue import QueueModelError, make
    speed, lead = getattr(args, "replay_speed", None), getattr(args, "answer_lead", None)
    for option, text, parse in (("--replay-speed", speed or "1", parse_speed),
                                ("--answer-lead", lead or "0", parse_answer_lead)):
        try:
            parse(text)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{option}: {exc}") from None
    if getattr(args, "queue_model", None) is not None:
        try:
            make(args.queue_model)
        except QueueModelError as exc:
            raise UsageError(f"--queue-model: {exc}") from None
    if not os.path.isfile(replay) or not os.access(replay, os.R_OK):
        raise UsageError(f"--replay: cannot read {replay}")
    return os.path.abspath(replay)


def replay_options(args: argparse.Namespace) -> tuple[str, ...]:
    """``--answer-lead`` and ``--queue-model`` as given (checked by ``replay_day``), for the exchange's command line."""
    options: tuple[str, ...] = ()
    for option in ("answer_lead", "queue_model"):
        value = getattr(args, option, None)
        if value is not None:
            options += (f"--{option.replace('_', '-')}", value)
    return options


def write_strategy_layout(layout_path: str, spec: str, parameters_file: str | None) -> Path:
    """Check SPEC and FILE against the layout, then write the layout with them beside it: its path."""
    return write_run_layout(layout_path, spec, parameters_file, None)


def write_run_layout(layout_path: str, spec: str | None, parameters_file: str | None,
                     nats_url: str | None) -> Path:
    """The layout with this run's strategy (SPEC, FILE) and drop copy URL, each checked against the
    layout first, written beside it (``<layout>.strategy-<pid>.yaml``): its path."""
    import yaml
    from appliance.dropcopy.config import parse_dropcopy_params
    from appliance.runtime.layout import LayoutError, load_layout
    from appliance.strategy.selection import STRATEGY_PROCESS, select_strategy
    layout = load_layout(layout_path)
    source = Path(layout.path)
    document = yaml.safe_load(source.read_text())
    changed = []
    if spec is not None:
        params, _loaded = select_strategy(layout, spec, parameters_file)
        _process(document, STRATEGY_PROCESS, layout.path)["params"] = params
        changed.append("the strategy of `appliance up --strategy`")
    if nats_url is not None:
        if "dropcopy" not in layout.processes:
            raise LayoutError(layout.path, "processes", "--nats needs a dropcopy process in the layout")
        process = _process(document, "dropcopy", layout.path)
        params = dict(process.get("params") or {})
        params["nats"] = {**(params.get("nats") or {}), "url": nats_url}
        parse_dropcopy_params(params, layout)
        process["params"] = params
        changed.append("the NATS URL of `appliance up --nats`")
    path = source.with_name(f"{source.name}.strategy-{os.getpid()}.yaml")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"# {source.name} with {' and '.join(changed)}: written by up, removed when it exits\n"
                       + yaml.safe_dump(document, sort_keys=False))
    partial.replace(path)
    return path


def _process(document: dict, name: str, where: str) -> dict:
    from appliance.runtime.layout import LayoutError
    for process in document["processes"]:
        if process.get("name") == name:
            return process
    raise LayoutError(where, "processes", f"no process named {name!r}")


def sim_control_socket(base: Path) -> str:
    """The simulated exchange's control socket beside the supervisor's, in the private ``run/control``
    (what ``appliance exchange ctl`` finds by default when run from the layout's directory)."""
    from appliance.exchange.cli import default_control_socket
    return default_control_socket(str(base))


def sim_credentials(layout, sim_config: str | None) -> None:
    """``--sim``: when the OMS's credentials file is missing, create it (0600) with the login of the
    simulated exchange's firm whose MPID is the OMS's ``firm``; an existing file is the operator's
    and is left alone (a wrong login there is refused by the venue and says so)."""
    from appliance.exchange.config import default_config, load_config
    from appliance.oms.config import OmsConfigError, parse_oms_params
    from appliance.oms.credentials import credentials_location
    from appliance.runtime.layout import LayoutError
    oms = layout.processes.get("oms")
    if oms is None:
        return
    try:
        params = parse_oms_params(oms.params, layout.path)
    except OmsConfigError as exc:
        raise LayoutError(layout.path, exc.key_path, exc.reason) from None
    path = params.credentials_path
    if os.path.lexists(credentials_location(path)[0]):
        return
    exchange = load_config(sim_config) if sim_config else default_config()
    firm = write_sim_login(path, exchange, params.firm)
    if firm is None:
        raise LayoutError(layout.path, "processes.oms.params.firm", f"no firm of the simulated exchange has MPID "
                          f"{params.firm!r} (its firms: {', '.join(f.mpid for f in exchange.firms)})")
    log.info("simulated venue login for %s written to %s (mode 0600)", firm.username, path)


class SimulatedVenue:
    """The venue ``supervisor.up`` starts before its children and stops after them (``--sim``)."""

    def __init__(self, sim_config: str | None, *, replay: str | None = None, replay_speed: str | None = None,
                 replay_options: tuple[str, ...] = ()) -> None:
        self.sim_config = sim_config
        self.replay = replay                  # a recorded day file (absolute), or None for a live day
        self.replay_speed = replay_speed
        self.replay_options = tuple(replay_options)     # more of the exchange's replay options (replay_options())
        self.control_socket: str | None = None
        self._starter = None
        self.exchange = None
        self.day: Path | None = None
        self.listing = None           # the embedded default listing the layout's instruments (no --sim-config)

    def prepare(self, layout) -> None:
        """Before anything starts (a bad config is a config error, exit 2). Without ``--sim-config``
        the exchange lists the layout's instruments (``listing.py``)."""
        sim_credentials(layout, self.sim_config)
        if self.sim_config is None and layout.instruments is not None:
            from appliance.exchange.config import default_config
            from .listing import listing_from
            self.listing = listing_from(default_config(), layout.instruments.file)

    def start(self, layout, base: Path) -> None:
        from .exchange_process import ExchangeProcess
        day = base / "run" / f"sim-{time.strftime('%Y%m%d-%H%M%S')}"
        day.mkdir(parents=True, exist_ok=True)
        self.day = day
        _rotate_oms_journal(layout, base, day)
        self.control_socket = sim_control_socket(base)
        args = ["--records", str(day / "exchange"), "--control", self.control_socket]
        if self.replay is not None:
            args += ["--replay", self.replay, "--replay-hold", "--speed", self.replay_speed or "1",
                     *self.replay_options]
        if self.sim_config:
            args += ["--config", self.sim_config]
        elif self.listing is not None:
            config_path = day / "exchange.yaml"
            config_path.write_text(self.listing.to_yaml())
            args += ["--config", str(config_path)]
        log_path = day / "exchange.log"
        self.exchange = ExchangeProcess(args, log_path=log_path, cwd=base)
        if layout.simulator_cpu is not None and not self.exchange.pin(layout.simulator_cpu):
            log.warning("simulator_cpu %d is not available here: the simulated exchange runs unpinned",
                        layout.simulator_cpu)
        try:
            self.exchange.wait_ready(READY_TIMEOUT_S)
        except RuntimeError as exc:
            raise supervisor_up.StartFailed(f"the simulated exchange: {exc} (see {log_path})") from None
        log.info("simulated exchange up (records in %s)", day / "exchange")

    def children_started(self, gate_open) -> None:
        """Every process of the appliance is up: a replay starts once ``gate_open()`` says the gate is
        open (polled in a thread of its own, at most ``READY_TIMEOUT_S``), so no recorded message
        reaches a strategy that could not trade yet."""
        if self.replay is None or self.exchange is None:
            return
        import threading
        self._starter = threading.Thread(target=self._start_replay, args=(gate_open,), name="replay-start",
                                         daemon=True)
        self._starter.start()

    def _start_replay(self, gate_open) -> None:
        from appliance.command_io.json_lines import request_json
        from appliance.runtime.polling import poll_until
        if not poll_until(gate_open, READY_TIMEOUT_S, 0.01):
            log.warning("the trading gate is still closed after %d s: the replay starts anyway", READY_TIMEOUT_S)
        try:
            answer = request_json(self.control_socket, {"command": "start", "operator": "appliance up"}, 10,
                                  "the exchange")
        except (OSError, ValueError) as exc:
            log.error("the replay of %s did not start: %s", self.replay, exc)
            return
        log.info("replay of %s started (%s)", self.replay, "ok" if answer.get("ok") else answer.get("error"))

    def stop(self) -> None:
        if self.exchange is not None and self.exchange.proc.poll() is None:
            self.exchange.stop(30)
            log.info("simulated exchange stopped; end-of-day report in %s", self.day / "exchange")

    def close(self) -> None:
        if self.exchange is not None:
            self.exchange.close()


def _rotate_oms_journal(layout, base: Path, day: Path) -> None:
    """A fresh simulated exchange is a fresh trading day: the OMS must not replay yesterday's journal."""
    oms = layout.processes.get("oms")
    journal = (oms.params or {}).get("journal") if oms is not None else None
    if not journal:
        return
    path = Path(journal) if os.path.isabs(journal) else base / journal
    if path.exists():
        path.rename(day / f"previous-{path.name}")
        log.info("previous OMS journal moved to %s (new simulated trading day)", day)

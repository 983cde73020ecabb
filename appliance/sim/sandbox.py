"""The whole appliance against a simulated exchange, on free ports, in a scratch directory.

What the end-to-end tests and ``appliance bench e2e`` run: the repository's layout with a
unique name and every address and path rewritten (the feed's port, the exchange's order entry
and re-request ports, the OMS journal, the supervisor's control socket and logs), the
simulated exchange as a process, and ``appliance up`` as a process. Nothing here is on a hot
path; everything it starts is stopped and removed by ``close`` (also after a failure).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from appliance.oms.config import OmsConfig
from appliance.runtime.polling import poll_until

from .credentials import write_sim_login
from .exchange_process import ExchangeProcess, appliance_env
from .ports import free_port

ROOT = Path(__file__).resolve().parents[2]
GENTLE_IDLE = {"strategy": "backoff", "spins": 20, "yields": 5, "min_park_ns": 20_000, "max_park_ns": 500_000}


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.02):
    value = poll_until(predicate, timeout_s, interval_s)
    if not value:
        raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
    return value


class Sandbox:
    def __init__(self, workdir: str | Path, *, name: str | None = None, background_rate: float = 2000,
                 seed: int = 7, faults: dict | None = None, gentle_idle: bool = True,
                 params: dict | None = None, exchange: dict | None = None, env: dict | None = None,
                 profile: str | None = None, up_args: tuple[str, ...] = (), replay: str | None = None,
                 replay_speed: str = "1", replay_args: tuple[str, ...] = (), venue: "Sandbox | None" = None):
        """``gentle_idle``: the gentler backoff for feed, strategy and OMS under the production
        placement (``profile: full``; what the tests run on 2 cores); ``profile``: otherwise the
        layout's ``profile`` key (None: the repository layout's own; runtime/layout.py);
        ``params``: per process, extra params merged over the repository layout's;
        ``exchange``: sections merged over the exchange's embedded default config (``firms``:
        {username: {field: value}} over the default firms); ``up_args``: more arguments for
        ``appliance up`` (``--strategy SPEC``); ``replay``: the exchange replays this recorded day
        (``appliance exchange --replay``, held until ``start_replay``) at ``replay_speed``, no
        background flow, with ``replay_args`` (``--answer-lead MS``); ``venue``: trade at that
        sandbox's exchange instead of one of this sandbox's own (made before ``venue`` starts, which
        then sends its feed here too; ``params`` give this OMS another ``firm`` of the exchange's,
        as a second firm at one venue; ``venue`` ends the day and reports it)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name or f"sbx{uuid.uuid4().hex[:8]}"
        self.background_rate = background_rate
        self.seed = seed
        self.faults = faults or {}
        self.gentle_idle = gentle_idle
        self.profile = "full" if gentle_idle else profile
        self.params = params or {}
        self.exchange_sections = exchange or {}
        self.env = dict(appliance_env(), **(env or {}))
        self.up_args = tuple(up_args)
        self.replay = replay
        self.replay_speed = replay_speed
        self.replay_args = tuple(replay_args)
        self.exchange: ExchangeProcess | None = None
        self.up_proc: subprocess.Popen | None = None
        self.layout = None
        self.layout_path = self.dir / "layout.yaml"
        self.records = self.dir / "exchange"
        self.exchange_runs: list[Path] = []       # the records directory of every exchange run, in order
        self.order_entry_port = 0                 # 0 until the first exchange run chose them
        self.rerequest_port = 0
        self.source_port = 0                      # the exchange's market-data source, the feed's only publisher
        self.snapshot_port = 0
        self.exchange_control = str(self.dir / "ctl" / "exchange.sock")     # ctl/: private, made 0700
        self.control_socket = str(self.dir / "ctl" / "supervisor.sock")
        self.journal = self.dir / "oms-journal.bin"
        self.credentials = self.dir / "venue.credentials"
        self.up_log = self.dir / "up.log"
        self.exchange_log = self.dir / "exchange.log"
        self._memory = None
        self.venue = venue
        self.other_feeds: list[int] = []          # the feed ports of the sandboxes trading at our exchange
        if venue is not None:
            if venue.exchange is not None:
                raise ValueError("a sandbox joins a venue before the venue's exchange starts (its feed's port)")
            self.feed_port = free_port()
            venue.other_feeds.append(self.feed_port)

    # ------------------------------------------------------------------ start

    def start(self, *, wait_gate: bool = True, timeout_s: float = 90) -> "Sandbox":
        if self.venue is None:
            self.feed_port = free_port()
            self._start_exchange()
        else:
            self._join_venue()
        self._write_layout()
        self.start_appliance()
        if wait_gate:
            self.wait_gate_open(timeout_s)
        return self

    def _start_exchange(self, session: str | None = None) -> None:
        """The exchange as a process; a restart keeps the ports the first run chose (the appliance
        reconnects to the same addresses), writes its records to a new directory and may name a
        new session."""
        from appliance.exchange.config import default_config
        run = len(self.exchange_runs)
        records = self.records if run == 0 else self.dir / f"exchange-{run}"
        overrides = {
            "order_entry": {"host": "127.0.0.1", "port": self.order_entry_port},
            "market_data": {"subscribers": tuple(("127.0.0.1", port) for port in (self.feed_port, *self.other_feeds)),
                            "rerequest_port": self.rerequest_port,
                            "source_port": self.source_port, "snapshot_port": self.snapshot_port},
            "background": {"enabled": self.background_rate > 0 and not self.replay, "rate": self.background_rate,
                           "seed": self.seed + run},
            "records": {"directory": str(records)},
            "control": {"socket": self.exchange_control},
        }
        if session is not None:
            overrides["market_data"]["session"] = session
        if self.faults:
            overrides["faults"] = self.faults
        from .listing import listing_from
        base = listing_from(default_config(), self.instruments_file())     # what the layout trades
        for section, values in self.exchange_sections.items():
            if section == "firms":                 # {username: {field: value}} over the default firms
                overrides["firms"] = tuple(dataclasses.replace(firm, **values.get(firm.username, {}))
                                           for firm in base.firms)
            else:
                overrides[section] = {**overrides.get(section, {}), **values}
        config = base.with_overrides(**overrides)
        self.exchange_config = config
        config_path = self.dir / f"exchange-{run}.yaml"
        config_path.write_text(config.to_yaml())
        self.exchange_runs.append(records)
        replay = ["--replay", str(self.replay), "--replay-hold", "--speed", self.replay_speed,
                  *self.replay_args] if self.replay else []
        self.exchange = ExchangeProcess(["--config", str(config_path), "--linger", "0.5", *replay],
                                        log_path=self.exchange_log, cwd=ROOT, env=self.env)
        ports = self.exchange.wait_ready(30)
        self.order_entry_port = ports["order_entry"][1]
        self.rerequest_port = ports["rerequest"][1]
        self.source_port = ports["source"][1]
        self.snapshot_port = ports["snapshot"][1]

    def _join_venue(self) -> None:
        venue = self.venue
        if venue.exchange is None:
            raise ValueError("the venue's sandbox is not started")
        self.exchange_config = venue.exchange_config
        self.order_entry_port, self.rerequest_port = venue.order_entry_port, venue.rerequest_port
        self.source_port, self.snapshot_port = venue.source_port, venue.snapshot_port
        self.exchange_control = venue.exchange_control

    @staticmethod
    def instruments_file() -> Path | None:
        """The repository layout's instruments file (absolute), or None when it names none."""
        named = yaml.safe_load((ROOT / "shm_layout.yaml").read_text()).get("instruments")
        return None if named is None else ROOT / named

    def restart_exchange(self, session: str | None = None, timeout_s: float = 30) -> None:
        """The venue process dies (no End of Session; its records flushed) and a new one starts on
        the same ports with an empty book and, with ``session``, a new session name."""
        self.ctl("crash")
        self.exchange.proc.wait(timeout_s)
        self._start_exchange(session)

    def exchange_output(self) -> str:
        try:
            return self.exchange_log.read_text(errors="replace")
        except OSError:
            return ""

    def _write_layout(self) -> None:
        doc = yaml.safe_load((ROOT / "shm_layout.yaml").read_text())
        doc["name"] = self.name
        if doc.get("instruments") is not None:
            doc["instruments"] = str(self.instruments_file())      # the layout is written elsewhere
        by_name = {p["name"]: p for p in doc["processes"]}
        sup = by_name["supervisor"].setdefault("params", {})
        sup.update({"clock": {"require_sync": False}, "exporter": {"enabled": False},
                    "control_socket": self.control_socket, "log_dir": str(self.dir / "logs"),
                    "restart": {"policy": "restart", "backoff_initial_ms": 100, "backoff_max_ms": 1000,
                                "max_restarts": 20}})
        feed = by_name["feed"].setdefault("params", {})
        feed.update({"listen": {"host": "127.0.0.1", "port": self.feed_port},
                     "rerequest": {"host": "127.0.0.1", "port": self.rerequest_port},
                     "source": {"host": "127.0.0.1", "port": self.source_port},
                     "snapshot": {**feed.get("snapshot", {}), "host": "127.0.0.1", "port": self.snapshot_port}})
        oms = by_name["oms"].setdefault("params", {})
        oms.update({"venue": {"host": "127.0.0.1", "port": self.order_entry_port}, "journal": str(self.journal),
                    "credentials": str(self.credentials)})
        risk = by_name["risk"].setdefault("params", {})
        risk["limits"] = str(ROOT / risk.get("limits", "config/risk_limits.yaml"))
        risk["state_file"] = str(self.dir / "risk-state.json")
        strategy = by_name["strategy"].setdefault("params", {})
        for key in ("parameters_file", "fees_file"):          # the repository's files, from the sandbox's layout
            if key in strategy:
                strategy[key] = str(ROOT / strategy[key])
        for process, extra in self.params.items():
            target = by_name[process].setdefault("params", {})
            for key, value in extra.items():
                if isinstance(value, dict) and isinstance(target.get(key), dict):
                    target[key] = {**target[key], **copy.deepcopy(value)}
                else:
                    target[key] = copy.deepcopy(value)
        if not self.credentials.exists():          # the login of the venue's firm with the OMS's MPID, 0600
            mpid = oms.get("firm", OmsConfig().firm)
            if write_sim_login(str(self.credentials), self.exchange_config, mpid) is None:
                raise ValueError(f"no firm of the simulated exchange has MPID {mpid!r}")
        if self.gentle_idle:
            for name in ("feed", "strategy", "oms"):
                by_name[name]["idle"] = dict(GENTLE_IDLE)
        if self.profile is not None:
            doc["profile"] = self.profile
        self.layout_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        from appliance.runtime.layout import load_layout
        self.layout = load_layout(self.layout_path)
        if self.layout.simulator_cpu is not None and self.exchange is not None:
            self.exchange.pin(self.layout.simulator_cpu)

    def start_appliance(self) -> None:
        self.up_log = self.dir / "up.log"
        with open(self.up_log, "ab") as out:
            self.up_proc = subprocess.Popen(
                [sys.executable, "-m", "appliance", "up", "--layout", str(self.layout_path), "--status-line", "off",
                 *self.up_args],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)

    # ------------------------------------------------------------------ observe

    def up_output(self) -> str:
        try:
            return self.up_log.read_text(errors="replace")
        except OSError:
            return ""

    def memory(self):
        """A read-only attachment to the running appliance's segment (reattached after a restart)."""
        from appliance.runtime.memory import SharedMemory
        if self._memory is None:
            def attach():
                if self.up_proc is not None and self.up_proc.poll() is not None:
                    raise RuntimeError(f"appliance up exited {self.up_proc.returncode}:\n{self.up_output()}")
                try:
                    return SharedMemory.attach(self.layout, writable=False)
                except Exception:
                    return None
            self._memory = _wait(attach, 60, "the appliance's segment")
        return self._memory

    def control(self) -> dict:
        return self.memory().control().snapshot()

    def status(self) -> dict:
        from appliance.supervisor.status import build_status
        return build_status(self.layout, self.memory())

    def pid_of(self, process: str) -> int:
        return self.memory().process_table().read(process).pid

    def counters(self) -> dict[str, int]:
        return self.memory().counters_reader().by_label()

    def wait_gate_open(self, timeout_s: float = 90) -> None:
        def is_open():
            if self.up_proc.poll() is not None:
                raise RuntimeError(f"appliance up exited {self.up_proc.returncode}:\n{self.up_output()}")
            return self.control()["gate_open"] == 1
        try:
            _wait(is_open, timeout_s, "the trading gate to open", 0.05)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; gate reasons {self.control().get('gate_reasons')}\n{self.up_output()[-4000:]}"
                               ) from None

    def start_replay(self) -> dict:
        """Let the held replay flow (``replay``): the exchange's answer."""
        return self.ctl("start", operator="sandbox")

    def ctl(self, command: str, **arguments) -> dict:
        from appliance.command_io.json_lines import request_json
        return request_json(self.exchange_control, {"command": command, **arguments}, 30, "the exchange")

    def appliance(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance", *args, "--layout", str(self.layout_path)],
                              capture_output=True, text=True, timeout=timeout, env=self.env, cwd=ROOT)

    # ------------------------------------------------------------------ stop

    def down(self, timeout_s: float = 60) -> int:
        """``appliance down``, then wait for ``up`` to exit: its exit status."""
        if self.up_proc is None or self.up_proc.poll() is not None:
            return self.up_proc.returncode if self.up_proc else 0
        self.appliance("down", "--timeout", str(timeout_s), timeout=timeout_s + 10)
        code = self.up_proc.wait(timeout_s)
        self._detach()
        return code

    def end_exchange_day(self, timeout_s: float = 30) -> dict:
        """End the exchange's trading day; its end-of-day report (orders, fills, positions per firm)."""
        import json
        if self.exchange is not None and self.exchange.proc.poll() is None:
            self.exchange.terminate()
            self.exchange.proc.wait(timeout_s)
        return json.loads((self.exchange_runs[-1] / "report.json").read_text())

    def _detach(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    def close(self) -> None:
        self._detach()
        if self.up_proc is not None and self.up_proc.poll() is None:
            self.up_proc.send_signal(signal.SIGTERM)
            try:
                self.up_proc.wait(60)
            except subprocess.TimeoutExpired:
                self.up_proc.kill()
                self.up_proc.wait(10)
        if self.exchange is not None:
            self.exchange.close()
        if self.layout is not None:              # whatever happened, no segment and no process left
            from appliance.runtime.segment import segment_path
            for spec in self.layout.segments.values():
                path = segment_path(spec)
                if os.path.lexists(path):
                    os.unlink(path)
            subprocess.run(["pkill", "-9", "-f", str(self.layout_path)], capture_output=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

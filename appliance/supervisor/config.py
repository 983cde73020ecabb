"""The supervisor's settings: the ``params`` of the supervisor process in ``shm_layout.yaml``.

Checked once at start; every problem names the key path and the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from appliance.clock.guard import ClockConfig, ClockConfigError, parse_clock_config
from appliance.config.checker import Checker, shown
from appliance.command_io.json_lines import control_socket_in
from appliance.config.errors import ParamsError

DEFAULT_START_ORDER = ("feed", "oms", "risk", "strategy")


class SupervisorConfigError(ParamsError):
    """A bad value in the supervisor settings: key path and reason."""


@dataclass(frozen=True)
class RestartPolicy:
    policy: str = "restart"          # restart (with backoff) | stop (stop everything)
    backoff_initial_ms: int = 200
    backoff_max_ms: int = 5000
    max_restarts: int = 10           # per process within window_s; beyond it the policy becomes stop
    window_s: int = 600              # a crash loop is max_restarts inside this; older restarts are forgiven


@dataclass(frozen=True)
class ExporterConfig:
    """``exporter: {enabled, address, port, tls: {cert, key}, basic_auth: {user, password_file}}``;
    an address that is not loopback needs tls and basic_auth (ops/exporter_security.py). Relative
    paths are taken from the layout's directory (the exporter runs there)."""
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9464
    tls_cert: str = ""
    tls_key: str = ""
    auth_user: str = ""
    auth_password_file: str = ""

    def argv(self) -> list[str]:
        """The ``appliance exporter`` options that say all of this."""
        args = ["--address", self.address, "--port", str(self.port)]
        for flag, value in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key),
                            ("--basic-auth-user", self.auth_user),
                            ("--basic-auth-password-file", self.auth_password_file)):
            if value:
                args += [flag, value]
        return args


@dataclass(frozen=True)
class SupervisorConfig:
    clock: ClockConfig = field(default_factory=ClockConfig)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    start_order: tuple[str, ...] = DEFAULT_START_ORDER
    heartbeat_timeout_ms: int = 1000         # any process
    risk_heartbeat_timeout_ms: int = 200     # risk: the gate closes at once past this
    market_data_stale_ms: int = 3000         # a book bad this long closes the gate (MARKET_DATA)
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    control_socket: str = ""                 # "" -> default_control_socket(layout path)
    log_dir: str = "run/logs"                # children's stdout/stderr (relative: to the layout's directory)


def default_control_socket(layout_path: str) -> str:
    """``run/control/supervisor.sock`` beside the layout (``control_socket_in``)."""
    return control_socket_in(os.path.dirname(os.path.abspath(layout_path)), "supervisor")


def control_socket_path(config: "SupervisorConfig", layout_path: str) -> str:
    """The configured socket (relative: to the layout's directory), else the default."""
    if not config.control_socket:
        return default_control_socket(layout_path)
    return os.path.join(os.path.dirname(os.path.abspath(layout_path)), config.control_socket)


_KEYS = {"clock": dict, "restart": dict, "exporter": dict, "start_order": list, "heartbeat_timeout_ms": int,
         "risk_heartbeat_timeout_ms": int, "market_data_stale_ms": int, "start_timeout_s": float,
         "stop_timeout_s": float, "control_socket": str, "log_dir": str}
_TIMEOUTS_MS = {"heartbeat_timeout_ms": (10, 600_000), "risk_heartbeat_timeout_ms": (5, 600_000),
                "market_data_stale_ms": (100, 600_000)}


def parse_supervisor_params(params: dict | None, processes: list[str],
                            path: str = "processes.supervisor.params") -> SupervisorConfig:
    top = Checker.for_params(SupervisorConfigError).section(params, path, None, _KEYS, optional=True)
    values: dict = {}
    try:
        values["clock"] = parse_clock_config(top.get("clock", None), f"{path}.clock")
    except ClockConfigError as exc:
        raise SupervisorConfigError(exc.key_path, exc.reason) from None
    r = top.section("restart", {"policy": str, "backoff_initial_ms": int, "backoff_max_ms": int, "max_restarts": int,
                                "window_s": int})
    defaults = RestartPolicy()
    values["restart"] = RestartPolicy(
        policy=r.choice("policy", ("restart", "stop"), defaults.policy),
        backoff_initial_ms=r.integer("backoff_initial_ms", 1, 600_000, defaults.backoff_initial_ms),
        backoff_max_ms=r.integer("backoff_max_ms", 1, 600_000, defaults.backoff_max_ms),
        max_restarts=r.integer("max_restarts", 0, 10_000, defaults.max_restarts),
        window_s=r.integer("window_s", 1, 604_800, defaults.window_s))
    e = top.section("exporter", {"enabled": bool, "address": str, "port": int, "tls": dict, "basic_auth": dict})
    tls = e.section("tls", {"cert": str, "key": str})
    auth = e.section("basic_auth", {"user": str, "password_file": str})
    defaults_e = ExporterConfig()
    exporter = ExporterConfig(enabled=e.boolean("enabled", defaults_e.enabled),
                              address=e.string("address", defaults_e.address, empty=True),
                              port=e.integer("port", 0, 65535, defaults_e.port),
                              tls_cert=tls.string("cert", "", empty=True), tls_key=tls.string("key", "", empty=True),
                              auth_user=auth.string("user", "", empty=True),
                              auth_password_file=auth.string("password_file", "", empty=True))
    if exporter.enabled:
        from appliance.ops.exporter_security import Exposure, ExposureError, check_exposure
        try:
            check_exposure(Exposure(exporter.address, exporter.tls_cert, exporter.tls_key, exporter.auth_user,
                                    exporter.auth_password_file))
        except ExposureError as exc:
            top.checker.fail(f"{path}.exporter", str(exc))
    values["exporter"] = exporter
    if "start_order" in top:
        order = []
        for _, name, item, _line in top.items("start_order"):
            if name not in processes:
                top.checker.fail(item, f"{shown(name)} is not a declared process")
            order.append(name)
        if len(set(order)) != len(order):
            top.fail("start_order", "a process is listed twice")
        values["start_order"] = tuple(order)
    else:
        values["start_order"] = tuple(p for p in DEFAULT_START_ORDER if p in processes) + tuple(
            p for p in processes if p not in DEFAULT_START_ORDER and p != "supervisor")
    values.update({key: top.integer(key, low, high) for key, (low, high) in _TIMEOUTS_MS.items() if key in top})
    values.update({key: float(top.number(key, 0.1, 3600)) for key in ("start_timeout_s", "stop_timeout_s")
                   if key in top})
    values.update({key: top.string(key, empty=True) for key in ("control_socket", "log_dir") if key in top})
    return SupervisorConfig(**values)


def layout_control_socket(layout) -> str:
    """The supervisor's control socket as its layout entry names it (the default one when those params cannot
    be read: ``up`` refuses them anyway): where ``appliance kill`` and the drop copy's firm commands go."""
    from appliance.runtime.layout import LayoutError
    spec = layout.processes.get("supervisor")
    try:
        config = parse_supervisor_params(spec.params if spec else {}, list(layout.processes))
    except (SupervisorConfigError, LayoutError):
        return default_control_socket(layout.path)
    return control_socket_path(config, layout.path)

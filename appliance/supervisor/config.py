"""The supervisor's settings: the ``params`` of the supervisor process in ``shm_layout.yaml``.

Checked once at start; every problem names the key path and the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from appliance.clock.guard import ClockConfig, ClockConfigError, parse_clock_config
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
    """``run/control/supervisor.sock`` beside the layout: a directory the supervisor keeps private
    (0700), found by every command from the layout alone (never a predictable name in /tmp)."""
    return os.path.join(os.path.dirname(os.path.abspath(layout_path)), "run", "control", "supervisor.sock")


def control_socket_path(config: "SupervisorConfig", layout_path: str) -> str:
    """The configured socket (relative: to the layout's directory), else the default."""
    if not config.control_socket:
        return default_control_socket(layout_path)
    return os.path.join(os.path.dirname(os.path.abspath(layout_path)), config.control_socket)


def _check(value, expected, path):
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
        raise SupervisorConfigError(path, f"expected {names}, got {type(value).__name__}")
    return value


def _section(params: dict, key: str, path: str, known: dict) -> dict:
    section = params.get(key, {})
    _check(section, dict, f"{path}.{key}")
    for k, v in section.items():
        if k not in known:
            raise SupervisorConfigError(f"{path}.{key}.{k}", f"unknown key (known: {', '.join(sorted(known))})")
        _check(v, known[k], f"{path}.{key}.{k}")
    return section


def parse_supervisor_params(params: dict | None, processes: list[str],
                            path: str = "processes.supervisor.params") -> SupervisorConfig:
    params = params or {}
    _check(params, dict, path)
    known = {"clock", "restart", "exporter", "start_order", "heartbeat_timeout_ms", "risk_heartbeat_timeout_ms",
             "market_data_stale_ms", "start_timeout_s", "stop_timeout_s", "control_socket", "log_dir"}
    for key in params:
        if key not in known:
            raise SupervisorConfigError(f"{path}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    values: dict = {}
    try:
        values["clock"] = parse_clock_config(params.get("clock"), f"{path}.clock")
    except ClockConfigError as exc:
        raise SupervisorConfigError(exc.key_path, exc.reason) from None
    r = _section(params, "restart", path, {"policy": str, "backoff_initial_ms": int, "backoff_max_ms": int,
                                           "max_restarts": int, "window_s": int})
    if r.get("policy", "restart") not in ("restart", "stop"):
        raise SupervisorConfigError(f"{path}.restart.policy", f"{r['policy']!r} is not restart or stop")
    for key in ("backoff_initial_ms", "backoff_max_ms"):
        if key in r and not 1 <= r[key] <= 600_000:
            raise SupervisorConfigError(f"{path}.restart.{key}", "must be 1..600000")
    if "max_restarts" in r and not 0 <= r["max_restarts"] <= 10_000:
        raise SupervisorConfigError(f"{path}.restart.max_restarts", "must be 0..10000")
    if "window_s" in r and not 1 <= r["window_s"] <= 604_800:
        raise SupervisorConfigError(f"{path}.restart.window_s", "must be 1..604800 (a week)")
    values["restart"] = RestartPolicy(**r)
    e = dict(_section(params, "exporter", path, {"enabled": bool, "address": str, "port": int, "tls": dict,
                                                 "basic_auth": dict}))
    if "port" in e and not 0 <= e["port"] <= 65535:
        raise SupervisorConfigError(f"{path}.exporter.port", "must be 0..65535")
    tls = _section(e, "tls", f"{path}.exporter", {"cert": str, "key": str})
    auth = _section(e, "basic_auth", f"{path}.exporter", {"user": str, "password_file": str})
    e.pop("tls", None)
    e.pop("basic_auth", None)
    exporter = ExporterConfig(**e, tls_cert=tls.get("cert", ""), tls_key=tls.get("key", ""),
                              auth_user=auth.get("user", ""), auth_password_file=auth.get("password_file", ""))
    if exporter.enabled:
        from appliance.ops.exporter_security import Exposure, ExposureError, check_exposure
        try:
            check_exposure(Exposure(exporter.address, exporter.tls_cert, exporter.tls_key, exporter.auth_user,
                                    exporter.auth_password_file))
        except ExposureError as exc:
            raise SupervisorConfigError(f"{path}.exporter", str(exc)) from None
    values["exporter"] = exporter
    if "start_order" in params:
        order = _check(params["start_order"], list, f"{path}.start_order")
        for i, name in enumerate(order):
            if name not in processes:
                raise SupervisorConfigError(f"{path}.start_order[{i}]", f"{name!r} is not a declared process")
        if len(set(order)) != len(order):
            raise SupervisorConfigError(f"{path}.start_order", "a process is listed twice")
        values["start_order"] = tuple(order)
    else:
        values["start_order"] = tuple(p for p in DEFAULT_START_ORDER if p in processes) + tuple(
            p for p in processes if p not in DEFAULT_START_ORDER and p != "supervisor")
    for key, low, high in (("heartbeat_timeout_ms", 10, 600_000), ("risk_heartbeat_timeout_ms", 5, 600_000),
                           ("market_data_stale_ms", 100, 600_000)):
        if key in params:
            if not low <= _check(params[key], int, f"{path}.{key}") <= high:
                raise SupervisorConfigError(f"{path}.{key}", f"must be {low}..{high}")
            values[key] = params[key]
    for key in ("start_timeout_s", "stop_timeout_s"):
        if key in params:
            value = _check(params[key], (int, float), f"{path}.{key}")
            if isinstance(value, bool) or not 0.1 <= value <= 3600:
                raise SupervisorConfigError(f"{path}.{key}", "must be 0.1..3600")
            values[key] = float(value)
    for key in ("control_socket", "log_dir"):
        if key in params:
            values[key] = _check(params[key], str, f"{path}.{key}")
    return SupervisorConfig(**values)

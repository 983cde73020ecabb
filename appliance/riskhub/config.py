"""The risk hub's configuration file, read through the one loader and the one checker.

    version: 1
    name: firm                     # the hub's name: in its heartbeats and commands, and its control subject
    nats:                          # checked as the drop copy's nats params are (dropcopy/config.py)
      url: nats://127.0.0.1:4222
      stream: APPLIANCE_EVENTS
      credentials: ""              # a .creds file, mode 0600 (relative: to this file)
      tls: {ca: "", cert: "", key: ""}
    heartbeat_ms: 500              # firm.heartbeat this often
    on_breach: kill                # kill | reduce: the firm command a breached limit sends
    operator: risk-hub             # the name recorded with the commands the hub sends by itself
    limits:                        # firm-wide, summed over every appliance; money in dollars
      max_position: {default: 5000, AAPL: 3000}   # |net shares| per symbol
      max_gross_exposure: 10000000 # sum over symbols of |position| x mark
      max_net_exposure: 5000000    # |sum over symbols of position x mark|
      max_daily_loss: 100000       # realized + marked P&L below minus this
      max_drawdown: 150000         # this far below the day's peak P&L

Every limit is optional (absent: not checked). A problem is ``RiskHubConfigError``:
``file:line: key.path: reason``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from appliance.config.checker import Checker
from appliance.config.errors import ConfigFileError
from appliance.config.yaml_lines import read_yaml_file
from appliance.dropcopy.config import DropCopyConfig, SUBJECT_TOKEN, read_nats_section
from appliance.messages.codes import PRICE_SCALE

SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{0,7}")
MAX_DOLLARS = 10**12
ON_BREACH = ("kill", "reduce")


class RiskHubConfigError(ConfigFileError):
    """A bad risk hub configuration file: file, line, key path, reason."""


@dataclass(frozen=True)
class FirmLimits:
    """Firm-wide limits; money in price units x shares (dollars x PRICE_SCALE), None: not checked."""
    max_position_default: int | None = None
    max_position: dict = field(default_factory=dict)      # symbol -> shares
    max_gross_exposure: int | None = None
    max_net_exposure: int | None = None
    max_daily_loss: int | None = None
    max_drawdown: int | None = None

    def position_limit(self, symbol: str) -> int | None:
        return self.max_position.get(symbol, self.max_position_default)


@dataclass(frozen=True)
class RiskHubConfig:
    file: str
    name: str
    url: str
    stream: str = DropCopyConfig.stream
    credentials: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    heartbeat_ms: int = 500
    on_breach: str = "kill"
    operator: str = "risk-hub"
    limits: FirmLimits = FirmLimits()

    @property
    def control_subject(self) -> str:
        """Where ``appliance risk-hub kill|reduce|activate|status`` asks this hub."""
        return f"firm.hub.{self.name}.control"


_KEYS = {"version": int, "name": str, "nats": dict, "heartbeat_ms": int, "on_breach": str, "operator": str,
         "limits": (dict, None)}
_LIMIT_KEYS = {"max_position": dict, "max_gross_exposure": (int, float), "max_net_exposure": (int, float),
               "max_daily_loss": (int, float), "max_drawdown": (int, float)}


def load_hub_config(path: str) -> RiskHubConfig:
    file = os.fspath(path)
    error = lambda key, reason, line: RiskHubConfigError(file, key, reason, line)   # noqa: E731
    document = read_yaml_file(file, error)
    checker = Checker.for_file(RiskHubConfigError, file)
    top = checker.section(document, "", None, _KEYS, required=("version", "name", "nats"),
                          hints={"nats": "nats: {url: nats://HOST:PORT}"})
    top.choice("version", (1,))
    name = top.string("name", pattern=SUBJECT_TOKEN, rule="1..64 letters, digits, '_' or '-' (a NATS subject token)")
    nats = top.section("nats", {"url": str, "stream": str, "credentials": str, "tls": dict}, required=("url",),
                       optional=False)
    connection = read_nats_section(nats, os.path.dirname(os.path.abspath(file)))
    if not connection["url"]:
        nats.fail("url", "must not be empty (the NATS server the appliances publish to)")
    operator = top.string("operator", RiskHubConfig.operator)
    if len(operator) > 64 or not operator.isprintable():
        top.fail("operator", "must be at most 64 printable characters")
    return RiskHubConfig(
        file=file, name=name, **connection,
        heartbeat_ms=top.integer("heartbeat_ms", 10, 600_000, RiskHubConfig.heartbeat_ms),
        on_breach=top.choice("on_breach", ON_BREACH, RiskHubConfig.on_breach), operator=operator,
        limits=_limits(top.section("limits", _LIMIT_KEYS)))


def _limits(section) -> FirmLimits:
    def money(key: str) -> int | None:
        value = section.number(key, 0, MAX_DOLLARS, None, nullable=True, above=0)
        return None if value is None else round(value * PRICE_SCALE)
    positions: dict = {}
    default = None
    if "max_position" in section:
        table = section.get("max_position")
        for symbol, value in table.items():
            path, line = section.key_path("max_position") + f".{symbol}", \
                getattr(table, "lines", {}).get(symbol, section.line_of("max_position"))
            if symbol != "default" and (not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol)):
                section.checker.fail(path, f"{symbol!r} must be 'default' or a symbol (1..8 upper-case letters, "
                                           "digits or '.')", line)
            shares = section.checker.integer(value, path, line, 1, 10**12)
            if symbol == "default":
                default = shares
            else:
                positions[symbol] = shares
    return FirmLimits(max_position_default=default, max_position=positions,
                      max_gross_exposure=money("max_gross_exposure"), max_net_exposure=money("max_net_exposure"),
                      max_daily_loss=money("max_daily_loss"), max_drawdown=money("max_drawdown"))


def check_secret_files(config: RiskHubConfig) -> None:
    """The credentials file and TLS key private and readable, before the hub connects."""
    from appliance.dropcopy.config import DropCopyConfigError, check_secret_files as check
    try:
        check(config, "")
    except DropCopyConfigError as exc:
        raise RiskHubConfigError(config.file, exc.key_path.lstrip("."), exc.reason) from None

"""``exchange.yaml``: what the simulated exchange lists, who may log in, and where it sends.

A wrong setting should stop the exchange before it opens a socket, and say where the mistake is.
``parse_config`` / ``load_config`` validate the whole document and return a frozen
``ExchangeConfig``; every problem is a ``ConfigError`` naming the file, the key path
(``symbols[2].reference_price``), the line and the reason. Omitted sections and keys take
the defaults of ``DEFAULT_CONFIG_YAML``, which is also what ``default_config()`` returns and
what a user copies to start their own file.

The loader follows ``appliance/runtime/layout.py`` (duplicate keys refused, the line of
every value remembered) without importing it: the exchange shares only ``appliance.wire``
with the appliance.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from appliance.wire import itch, moldudp64

CONFIG_VERSION = 1
MAX_SYMBOLS = 1000
MAX_FIRMS = 64
MAX_SHARES_LIMIT = 4_294_967_295          # u32 shares on the wire
MAX_REFERENCE_PRICE = 2_000_000_000       # 4 implied decimals: $200,000.0000
MAX_INTERVAL_MS = 3_600_000
MAX_BACKGROUND_RATE = 200_000             # messages per second
MIN_PAYLOAD = max(64, itch.MAX_MESSAGE_SIZE + 2)   # the largest ITCH message and its 2-byte length
MAX_PAYLOAD = 65_000                      # + the 20-byte MoldUDP64 header stays under a UDP datagram
MAX_SOCKET_PATH = 107                     # sun_path is 108 bytes with the terminating NUL
MAX_SEED = 2**64 - 1

_SYMBOL_RE = re.compile(r"[A-Z0-9.\-]{1,8}")
_USERNAME_RE = re.compile(r"[A-Za-z0-9]{1,6}")
_MPID_RE = re.compile(r"[A-Z0-9]{4}")      # A-Z plus digits: the default firm ALGO2 is ALG2
_VISIBLE_ASCII_RE = re.compile(r"[!-~]+")   # printable ASCII without the space (the wire pads with spaces)

DEFAULT_CONFIG_YAML = """\
# The simulated exchange (`appliance exchange --config exchange.yaml`).
# Every section but `symbols` and `firms` is optional; an omitted key takes the value shown here.
version: 1

# The instruments, in locate order: the first is locate 1. Prices have 4 implied decimals
# (1900000 is $190.0000); the reference price seeds the background flow.
symbols:
  - {symbol: AAPL, reference_price: 1900000, round_lot: 100}
  - {symbol: MSFT, reference_price: 4200000, round_lot: 100}
  - {symbol: SPY,  reference_price: 5600000, round_lot: 100}
  - {symbol: QQQ,  reference_price: 4800000, round_lot: 100}
  - {symbol: TSLA, reference_price: 2500000, round_lot: 100}

limits:
  max_shares: 1000000             # an order for more shares is rejected ('Z')

# OUCH 4.2 over SoupBinTCP 3.0.
order_entry:
  host: 127.0.0.1                 # an IPv4 address to listen on
  port: 15000                     # 0: any free port
  heartbeat_interval_ms: 1000
  peer_timeout_ms: 15000          # no message for this long ends the session; > heartbeat_interval_ms

# Who may log in. mpid (4 characters A-Z or 0-9) defaults to the username upper-cased, its first
# 4 characters padded with 'X'. Quote a password that YAML would read as a number.
# cancel_on_disconnect: when the firm's logged-in session ends other than by the end of the day
# (connection closed or reset, peer timeout, `ctl disconnect`, or its own Logout Request), every
# open order of the firm is canceled (OUCH Canceled reason 'Z', system cancel; ITCH 'D'), and its
# next login's replay says so. Off unless asked, as NASDAQ configures an OUCH port.
firms:
  - {username: ALGO1, password: secret1, mpid: ALGO, cancel_on_disconnect: false}
  - {username: ALGO2, password: secret2, mpid: ALG2, cancel_on_disconnect: false}

# ITCH 5.0 over MoldUDP64.
market_data:
  session: SIMEX00001             # 1..10 printable ASCII characters, no spaces
  source_host: 127.0.0.1          # the address packets are sent from
  source_port: 15003              # and the port: feeds accept only this source (0: any free port)
  subscribers: ["127.0.0.1:15001"]  # unicast destinations "host:port"; may be empty
  multicast: null                 # or {group: 239.1.1.1, port: 15001, interface: 127.0.0.1, ttl: 1}
  rerequest_host: 127.0.0.1       # the retransmission server
  rerequest_port: 15002           # 0: any free port
  snapshot_host: 127.0.0.1        # the GLIMPSE 5.0 snapshot server (SoupBinTCP; any login accepted)
  snapshot_port: 15004            # 0: any free port
  max_payload: 1400               # bytes of messages per packet after the 20-byte header
  heartbeat_interval_ms: 1000

# Damage done to the feed on purpose (probabilities per packet, 0..1).
faults:
  drop: 0.0
  duplicate: 0.0
  reorder: 0.0
  seed: 1

# Other participants: a random flow of orders around each reference price.
background:
  enabled: true
  rate: 2000                      # messages per second, 0..200000
  seed: 7
  firm: BGND                      # its username; must not be one of `firms`
  tick: 100                       # price increment (4 implied decimals: 100 is one cent)
  volatility_bp: 1.0              # random walk of the fair price, basis points per step
  max_resting_per_symbol: 200

records:
  directory: null                 # a directory for the day's records, or null for none

control:
  socket: null                    # a UNIX socket path for `appliance exchange ctl`, or null

duration_s: null                  # seconds to run, or null: until told to stop
"""


class ConfigError(ValueError):
    """An exchange configuration that cannot be used: names the file, key path, line and reason."""

    def __init__(self, file: str, key_path: str, reason: str, line: int | None = None):
        self.file, self.key_path, self.reason, self.line = file, key_path, reason, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key_path or '<top>'}: {reason}")


# --------------------------------------------------------------------------
# The validated configuration
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class SymbolConfig:
    """One listed instrument; its locate is its position in ``ExchangeConfig.symbols`` + 1."""

    symbol: str
    reference_price: int
    round_lot: int = 100


@dataclass(frozen=True)
class FirmConfig:
    """A participant allowed to log in to order entry."""

    username: str
    password: str
    mpid: str
    cancel_on_disconnect: bool = False   # cancel the firm's open orders when its session is lost


@dataclass(frozen=True)
class OrderEntryConfig:
    host: str
    port: int
    heartbeat_interval_ms: int
    peer_timeout_ms: int


@dataclass(frozen=True)
class MulticastConfig:
    group: str
    port: int
    interface: str
    ttl: int


@dataclass(frozen=True)
class MarketDataConfig:
    session: str
    source_host: str
    source_port: int
    subscribers: tuple[tuple[str, int], ...]
    multicast: MulticastConfig | None
    rerequest_host: str
    rerequest_port: int
    max_payload: int
    heartbeat_interval_ms: int
    snapshot_host: str = "127.0.0.1"      # the GLIMPSE snapshot server (appliance.exchange.glimpse)
    snapshot_port: int = 15004


@dataclass(frozen=True)
class FaultConfig:
    drop: float
    duplicate: float
    reorder: float
    seed: int


@dataclass(frozen=True)
class BackgroundConfig:
    enabled: bool
    rate: float
    seed: int
    firm: str
    tick: int
    volatility_bp: float
    max_resting_per_symbol: int


@dataclass(frozen=True)
class RecordsConfig:
    directory: str | None


@dataclass(frozen=True)
class ControlConfig:
    socket: str | None


_SECTIONS = ("order_entry", "market_data", "faults", "background", "records", "control")


@dataclass(frozen=True)
class ExchangeConfig:
    symbols: tuple[SymbolConfig, ...]
    max_shares: int
    order_entry: OrderEntryConfig
    firms: tuple[FirmConfig, ...]
    market_data: MarketDataConfig
    faults: FaultConfig
    background: BackgroundConfig
    records: RecordsConfig
    control: ControlConfig
    duration_s: float | None

    def with_overrides(self, **changes) -> ExchangeConfig:
        """A copy with fields replaced, validated like a file (a ConfigError names the bad key).

        A field takes its new value (``duration_s=5``, ``records=RecordsConfig("/tmp/r")``); a
        section may also take a dict of the fields to change (``order_entry={"port": 0}``).
        """
        fields = {f.name for f in dataclasses.fields(self)}
        replaced: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise ConfigError("<overrides>", name, f"unknown field (allowed: {', '.join(sorted(fields))})")
            if name in _SECTIONS and isinstance(value, dict):
                section = getattr(self, name)
                known = {f.name for f in dataclasses.fields(section)}
                for key in value:
                    if key not in known:
                        raise ConfigError("<overrides>", f"{name}.{key}",
                                          f"unknown field (allowed: {', '.join(sorted(known))})")
                value = dataclasses.replace(section, **value)
            replaced[name] = value
        candidate = dataclasses.replace(self, **replaced)
        return _build(candidate.to_dict(), "<overrides>", None)

    def replace_section(self, name: str, **fields) -> ExchangeConfig:
        """``with_overrides`` of one section: ``config.replace_section("faults", drop=0.1)``."""
        if name not in _SECTIONS:
            raise ConfigError("<overrides>", name, f"not a section (sections: {', '.join(_SECTIONS)})")
        return self.with_overrides(**{name: fields})

    def to_dict(self) -> dict[str, Any]:
        """The document form (what ``parse_config`` reads back to an equal config)."""
        md = self.market_data
        return {
            "version": CONFIG_VERSION,
            "symbols": [dataclasses.asdict(s) for s in self.symbols],
            "limits": {"max_shares": self.max_shares},
            "order_entry": dataclasses.asdict(self.order_entry),
            "firms": [dataclasses.asdict(f) for f in self.firms],
            "market_data": {
                "session": md.session,
                "source_host": md.source_host,
                "source_port": md.source_port,
                "subscribers": [f"{host}:{port}" for host, port in md.subscribers],
                "multicast": dataclasses.asdict(md.multicast) if md.multicast is not None else None,
                "rerequest_host": md.rerequest_host,
                "rerequest_port": md.rerequest_port,
                "max_payload": md.max_payload,
                "heartbeat_interval_ms": md.heartbeat_interval_ms,
                "snapshot_host": md.snapshot_host,
                "snapshot_port": md.snapshot_port,
            },
            "faults": dataclasses.asdict(self.faults),
            "background": dataclasses.asdict(self.background),
            "records": dataclasses.asdict(self.records),
            "control": dataclasses.asdict(self.control),
            "duration_s": self.duration_s,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------
# YAML with line numbers and duplicate-key detection
# --------------------------------------------------------------------------

class _MarkedDict(dict):
    lines: dict        # key -> line of its value
    key_lines: dict    # key -> line of the key itself


class _MarkedList(list):
    lines: list


_MAX_INT_DIGITS = 100    # no setting needs more; Python will not even print an int of over 4300 digits
_MAX_DEPTH = 64          # PyYAML's scanner is quadratic in the depth of [[[[...: refuse it where it starts


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and remembers the line of every value.

    Whatever the text, it raises only ``yaml.YAMLError`` (or ``_DuplicateKey``, ``RecursionError``):
    a scalar its tag cannot read (``!!float abc``, the timestamp ``2001-02-30``) and an integer of
    more than ``_MAX_INT_DIGITS`` digits are ``ConstructorError``s with their line, nesting deeper
    than ``_MAX_DEPTH`` a ``ScannerError`` or ``ComposerError``."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass):
        if self.flow_level >= _MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {_MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        if self._depth >= _MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {_MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            text = f" {node.value[:60]!r}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(None, None, f"cannot read{text} as {tag}: {exc}",
                                                    node.start_mark) from None

    def construct_yaml_int(self, node):
        value = super().construct_yaml_int(node)
        if abs(value) >= 10 ** _MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(None, None, f"an integer of more than {_MAX_INT_DIGITS} digits",
                                                    node.start_mark)
        return value

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
        result = _MarkedDict()
        result.lines, result.key_lines = {}, {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "unhashable key", key_node.start_mark)
            if key in result:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1, result.key_lines[key])
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = value_node.start_mark.line + 1
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node, deep=False):
        result = _MarkedList(self.construct_object(child, deep=True) for child in node.value)
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:seq", _StrictLoader.construct_sequence)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


class _DuplicateKey(Exception):
    def __init__(self, key_path: str, line: int, first_line: int | None):
        self.key_path, self.line, self.first_line = key_path, line, first_line


_MAX_NODES = 200_000   # alias expansion ("billion laughs") stops here


def _find_duplicate_keys(loader: _StrictLoader, node, path: str, active: set, budget: list) -> None:
    """Walk the composed document so a duplicate key is reported with its full key path."""
    budget[0] -= 1
    if budget[0] < 0:
        raise yaml.YAMLError("document too large (alias expansion?)")
    if id(node) in active:
        return   # a recursive alias: the constructor reports it
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key: Any = None
                if isinstance(key_node, yaml.ScalarNode):
                    key = loader.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise _DuplicateKey(_join(path, key), line, seen[key])
                    seen[key] = line
                _find_duplicate_keys(loader, value_node, _join(path, key), active, budget)
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                _find_duplicate_keys(loader, child, f"{path}[{i}]", active, budget)
    finally:
        active.discard(id(node))


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------

_REQUIRED = object()


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(value) -> str:
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"),
                        (int, "an integer"), (float, "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


class _Mapping:
    """One mapping of the document: checks its keys, then reads typed values with path and line."""

    def __init__(self, file: str, value, path: str, line: int | None, keys: tuple[str, ...],
                 required: tuple[str, ...] = ()):
        self.file, self.path, self.line = file, path, line
        if value is None and not required and path:
            value = {}   # an omitted section
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_type_name(value)}", line)
        self.value = value
        for key in value:
            if key not in keys:
                key_lines = getattr(value, "key_lines", {})
                self.fail(_join(path, key), f"unknown key (allowed: {', '.join(keys)})",
                          key_lines.get(key, self.line_of(key)))
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "missing required key", line)

    def fail(self, path: str, reason: str, line: int | None):
        raise ConfigError(self.file, path, reason, line)

    def line_of(self, key) -> int | None:
        return getattr(self.value, "lines", {}).get(key, self.line)

    def key_path(self, key: str) -> str:
        return _join(self.path, key)

    def raw(self, key: str, default=_REQUIRED):
        if key in self.value:
            return self.value[key]
        if default is _REQUIRED:
            self.fail(self.key_path(key), "missing required key", self.line)
        return default

    def bad(self, key: str, reason: str):
        self.fail(self.key_path(key), reason, self.line_of(key))

    def _expected(self, key: str, what: str, value):
        hint = " (quote it)" if what == "a string" and isinstance(value, (bool, int, float)) else ""
        self.bad(key, f"expected {what}, got {_type_name(value)}{hint}")

    def integer(self, key: str, lo: int, hi: int | None, default=_REQUIRED) -> int:
        value = self.raw(key, default)
        if not _is_int(value):
            self._expected(key, "an integer", value)
        if value < lo or (hi is not None and value > hi):
            self.bad(key, f"{value} outside {lo}..{hi}" if hi is not None else f"{value} is below {lo}")
        return value

    def number(self, key: str, lo: float, hi: float | None, default=_REQUIRED, *,
               above: bool = False, nullable: bool = False) -> float | None:
        """An int or float (never a boolean); ``above``: strictly greater than ``lo``."""
        value = self.raw(key, default)
        if value is None and nullable:
            return None
        if not _is_number(value):
            self._expected(key, "a number or null" if nullable else "a number", value)
        if not math.isfinite(value):
            self.bad(key, f"{value} is not a finite number")
        if above and value <= lo:
            self.bad(key, f"{value} must be greater than {lo}" + (" (or null)" if nullable else ""))
        if value < lo or (hi is not None and value > hi):
            self.bad(key, f"{value} outside {lo}..{hi}" if hi is not None else f"{value} is below {lo}")
        return float(value)

    def boolean(self, key: str, default=_REQUIRED) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self._expected(key, "true or false", value)
        return value

    def string(self, key: str, default=_REQUIRED, *, nullable: bool = False) -> str | None:
        value = self.raw(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self._expected(key, "a string or null" if nullable else "a string", value)
        if not value:
            self.bad(key, "must not be empty")
        return value

    def matching(self, key: str, pattern: re.Pattern, rule: str, default=_REQUIRED) -> str:
        value = self.string(key, default)
        if not pattern.fullmatch(value):
            self.bad(key, f"{value!r} must be {rule}")
        return value

    def ipv4(self, key: str, default=_REQUIRED) -> str:
        value = self.string(key, default)
        if _ipv4(value) is None:
            self.bad(key, f"{value!r} is not an IPv4 address like 127.0.0.1")
        return value

    def port(self, key: str, default=_REQUIRED, *, allow_any: bool) -> int:
        return self.integer(key, 0 if allow_any else 1, 65535, default)

    def listing(self, key: str, default=_REQUIRED) -> list:
        value = self.raw(key, default)
        if not isinstance(value, list):
            self._expected(key, "a list", value)
        return value

    def section(self, key: str, keys: tuple[str, ...], required: tuple[str, ...] = ()) -> _Mapping:
        return _Mapping(self.file, self.value.get(key), self.key_path(key), self.line_of(key), keys, required)

    def item(self, items: list, index: int, keys: tuple[str, ...], required: tuple[str, ...] = (),
             list_path: str = "") -> _Mapping:
        return _Mapping(self.file, items[index], f"{list_path}[{index}]", _item_line(items, index, self.line),
                        keys, required)


def _item_line(items: list, index: int, fallback: int | None) -> int | None:
    lines = getattr(items, "lines", None)
    return lines[index] if lines else fallback


# --------------------------------------------------------------------------
# Building the configuration
# --------------------------------------------------------------------------

_TOP_KEYS = ("version", "symbols", "limits", "order_entry", "firms", "market_data", "faults",
             "background", "records", "control", "duration_s")


def _build(data, file: str, root_line: int | None) -> ExchangeConfig:
    top = _Mapping(file, data, "", root_line, _TOP_KEYS, required=("version", "symbols", "firms"))
    version = top.raw("version")
    if not _is_int(version):
        top._expected("version", "an integer", version)
    if version != CONFIG_VERSION:
        top.bad("version", f"unsupported version {version} (this exchange reads version {CONFIG_VERSION})")

    symbols = _symbols(top)
    limits = top.section("limits", ("max_shares",))
    max_shares = limits.integer("max_shares", 1, MAX_SHARES_LIMIT, 1_000_000)
    order_entry = _order_entry(top)
    firms = _firms(top)
    market_data = _market_data(top)

    f = top.section("faults", ("drop", "duplicate", "reorder", "seed"))
    faults = FaultConfig(drop=f.number("drop", 0, 1, 0.0), duplicate=f.number("duplicate", 0, 1, 0.0),
                         reorder=f.number("reorder", 0, 1, 0.0), seed=f.integer("seed", 0, MAX_SEED, 1))

    background = _background(top, firms)

    r = top.section("records", ("directory",))
    records = RecordsConfig(directory=r.string("directory", None, nullable=True))
    if records.directory is not None:
        _path_bytes(r, "directory", records.directory)

    c = top.section("control", ("socket",))
    socket_path = c.string("socket", None, nullable=True)
    if socket_path is not None:
        encoded = _path_bytes(c, "socket", socket_path)
        if len(encoded) > MAX_SOCKET_PATH:
            c.bad("socket", f"path is {len(encoded)} bytes; a UNIX socket path holds at most {MAX_SOCKET_PATH}")
    control = ControlConfig(socket=socket_path)

    duration_s = top.number("duration_s", 0, None, None, above=True, nullable=True)

    return ExchangeConfig(symbols=symbols, max_shares=max_shares, order_entry=order_entry, firms=firms,
                          market_data=market_data, faults=faults, background=background, records=records,
                          control=control, duration_s=duration_s)


def _path_bytes(section: _Mapping, key: str, path: str) -> bytes:
    """The file name as the OS gets it: a NUL byte or an unpaired surrogate ("\\uD800") is refused here,
    not when the exchange opens the file."""
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:
        section.bad(key, f"{path!r} is not a valid file name (an unpaired surrogate)")
    if b"\0" in encoded:
        section.bad(key, f"{path!r} is not a valid file name (a NUL character)")
    return encoded


def _symbols(top: _Mapping) -> tuple[SymbolConfig, ...]:
    items = top.listing("symbols")
    if not 1 <= len(items) <= MAX_SYMBOLS:
        top.bad("symbols", f"{len(items)} symbols; between 1 and {MAX_SYMBOLS} are needed")
    seen: dict[str, int] = {}
    result = []
    for i in range(len(items)):
        entry = top.item(items, i, ("symbol", "reference_price", "round_lot"), ("symbol", "reference_price"),
                         "symbols")
        symbol = entry.matching("symbol", _SYMBOL_RE, "1..8 characters of A-Z, 0-9, '.' or '-'")
        if symbol in seen:
            entry.bad("symbol", f"duplicate symbol {symbol!r} (first at symbols[{seen[symbol]}])")
        seen[symbol] = i
        result.append(SymbolConfig(symbol=symbol,
                                   reference_price=entry.integer("reference_price", 1, MAX_REFERENCE_PRICE),
                                   round_lot=entry.integer("round_lot", 1, MAX_SHARES_LIMIT, 100)))
    return tuple(result)


def _order_entry(top: _Mapping) -> OrderEntryConfig:
    s = top.section("order_entry", ("host", "port", "heartbeat_interval_ms", "peer_timeout_ms"))
    config = OrderEntryConfig(host=s.ipv4("host", "127.0.0.1"), port=s.port("port", 15000, allow_any=True),
                              heartbeat_interval_ms=s.integer("heartbeat_interval_ms", 1, MAX_INTERVAL_MS, 1000),
                              peer_timeout_ms=s.integer("peer_timeout_ms", 1, 24 * MAX_INTERVAL_MS, 15000))
    if config.peer_timeout_ms <= config.heartbeat_interval_ms:
        s.bad("peer_timeout_ms", f"{config.peer_timeout_ms} must be greater than heartbeat_interval_ms "
                                 f"({config.heartbeat_interval_ms})")
    return config


def _default_mpid(username: str) -> str:
    return username.upper()[:4].ljust(4, "X")


def _firms(top: _Mapping) -> tuple[FirmConfig, ...]:
    items = top.listing("firms")
    if not 1 <= len(items) <= MAX_FIRMS:
        top.bad("firms", f"{len(items)} firms; between 1 and {MAX_FIRMS} are needed")
    seen: dict[str, int] = {}
    result = []
    for i in range(len(items)):
        entry = top.item(items, i, ("username", "password", "mpid", "cancel_on_disconnect"), ("username", "password"),
                         "firms")
        username = entry.matching("username", _USERNAME_RE, "1..6 letters or digits")
        if username in seen:
            entry.bad("username", f"duplicate username {username!r} (first at firms[{seen[username]}])")
        seen[username] = i
        password = entry.string("password")
        if len(password) > 10 or not _VISIBLE_ASCII_RE.fullmatch(password):
            entry.bad("password", "must be 1..10 printable ASCII characters without spaces")
        if "mpid" in entry.value:
            mpid = entry.matching("mpid", _MPID_RE, "4 characters A-Z or 0-9")
        else:
            mpid = _default_mpid(username)
        result.append(FirmConfig(username=username, password=password, mpid=mpid,
                                 cancel_on_disconnect=entry.boolean("cancel_on_disconnect", False)))
    return tuple(result)


def _subscriber(s: _Mapping, items: list, i: int) -> tuple[str, int]:
    path, line = f"{s.key_path('subscribers')}[{i}]", _item_line(items, i, s.line_of("subscribers"))
    text = items[i]
    if not isinstance(text, str):
        s.fail(path, f'expected a "host:port" string, got {_type_name(text)}', line)
    host, colon, port_text = text.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not port_text.isascii():
        s.fail(path, f'not host:port ("{text}")', line)
    address = _ipv4(host)
    if address is None:
        s.fail(path, f'host {host!r} is not an IPv4 address ("{text}")', line)
    if address.is_unspecified:
        s.fail(path, f'host {host} is not a destination ("{text}")', line)
    port = int(port_text) if len(port_text) <= 5 else 0     # int() of thousands of digits raises
    if not 1 <= port <= 65535:
        s.fail(path, f'port {port_text} outside 1..65535 ("{text}")', line)
    return str(address), port


def _market_data(top: _Mapping) -> MarketDataConfig:
    s = top.section("market_data", ("session", "source_host", "source_port", "subscribers", "multicast", "rerequest_host",
                                    "rerequest_port", "max_payload", "heartbeat_interval_ms", "snapshot_host",
                                    "snapshot_port"))
    session = s.string("session", "SIMEX00001")
    if len(session) > 10 or not _VISIBLE_ASCII_RE.fullmatch(session):
        s.bad("session", f"{session!r} must be 1..10 printable ASCII characters without spaces")
    source_host = s.ipv4("source_host", "127.0.0.1")

    items = s.listing("subscribers", ["127.0.0.1:15001"])
    subscribers: list[tuple[str, int]] = []
    for i in range(len(items)):
        subscriber = _subscriber(s, items, i)
        if subscriber in subscribers:
            s.fail(f"{s.key_path('subscribers')}[{i}]",
                   f'duplicate subscriber "{items[i]}" (first at subscribers[{subscribers.index(subscriber)}])',
                   _item_line(items, i, s.line_of("subscribers")))
        subscribers.append(subscriber)

    multicast = None
    if s.value.get("multicast") is not None:
        m = s.section("multicast", ("group", "port", "interface", "ttl"), required=("group",))
        group = m.ipv4("group")
        if not ipaddress.IPv4Address(group).is_multicast:
            m.bad("group", f"{group} is not a multicast address (224.0.0.0/4)")
        multicast = MulticastConfig(group=group, port=m.port("port", 15001, allow_any=False),
                                    interface=m.ipv4("interface", "127.0.0.1"), ttl=m.integer("ttl", 0, 255, 1))

    return MarketDataConfig(
        session=session, source_host=source_host, source_port=s.port("source_port", 15003, allow_any=True),
        subscribers=tuple(subscribers), multicast=multicast,
        rerequest_host=s.ipv4("rerequest_host", "127.0.0.1"),
        rerequest_port=s.port("rerequest_port", 15002, allow_any=True),
        max_payload=_max_payload(s),
        heartbeat_interval_ms=s.integer("heartbeat_interval_ms", 1, MAX_INTERVAL_MS, 1000),
        snapshot_host=s.ipv4("snapshot_host", "127.0.0.1"),
        snapshot_port=s.port("snapshot_port", 15004, allow_any=True))


def _max_payload(s: _Mapping) -> int:
    value = s.raw("max_payload", moldudp64.DEFAULT_MAX_PAYLOAD)
    if _is_int(value) and not MIN_PAYLOAD <= value <= MAX_PAYLOAD:
        s.bad("max_payload", f"{value} outside {MIN_PAYLOAD}..{MAX_PAYLOAD} (a packet must hold the largest "
                             f"ITCH message, {itch.MAX_MESSAGE_SIZE} bytes, and its 2-byte length)")
    return s.integer("max_payload", MIN_PAYLOAD, MAX_PAYLOAD, moldudp64.DEFAULT_MAX_PAYLOAD)


def _background(top: _Mapping, firms: tuple[FirmConfig, ...]) -> BackgroundConfig:
    s = top.section("background", ("enabled", "rate", "seed", "firm", "tick", "volatility_bp",
                                   "max_resting_per_symbol"))
    firm = s.matching("firm", _USERNAME_RE, "1..6 letters or digits", "BGND")
    for i, configured in enumerate(firms):
        if configured.username.upper() == firm.upper():
            s.bad("firm", f"{firm!r} is also the username of firms[{i}]")
    return BackgroundConfig(
        enabled=s.boolean("enabled", True),
        rate=s.number("rate", 0, MAX_BACKGROUND_RATE, 2000),
        seed=s.integer("seed", 0, MAX_SEED, 7),
        firm=firm,
        tick=s.integer("tick", 1, MAX_REFERENCE_PRICE, 100),
        volatility_bp=s.number("volatility_bp", 0, 10_000, 1.0),
        max_resting_per_symbol=s.integer("max_resting_per_symbol", 0, 1_000_000, 200))


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def parse_config(text: str | bytes, file: str = "<string>") -> ExchangeConfig:
    """Parse and validate one document; raises ConfigError on any problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(file, "", f"not UTF-8 text (byte {exc.start})") from None
    loader = None
    try:
        loader = _StrictLoader(text)          # reads the first characters: a control character fails here
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(file, "", "empty document")
        _find_duplicate_keys(loader, node, "", set(), [_MAX_NODES])
        data = loader.construct_document(node)
    except _DuplicateKey as exc:
        first = f" (first at line {exc.first_line})" if exc.first_line else ""
        raise ConfigError(file, exc.key_path, f"duplicate key{first}", exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, "", f"not valid YAML: {problem}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise ConfigError(file, "", "not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return _build(data, file, node.start_mark.line + 1)


def load_config(path: str | os.PathLike) -> ExchangeConfig:
    """Read and validate a file; a missing or unreadable file is a ConfigError too."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            text = fh.read()
    except (OSError, ValueError) as exc:          # ValueError: a NUL in the path
        raise ConfigError(file, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_config(text, file)


def default_config() -> ExchangeConfig:
    """The embedded default (``DEFAULT_CONFIG_YAML``)."""
    return parse_config(DEFAULT_CONFIG_YAML, "<embedded default>")

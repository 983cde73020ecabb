"""Checking an exchange configuration document and building the ``ExchangeConfig`` it describes.

Every key is read through the one checker (``appliance.config.checker``), so a problem is a
``ConfigError`` naming the file, the line, the key path (``symbols[2].reference_price``) and the
reason, said as every other configuration of the appliance says it. An omitted section or key
takes the default written in ``config.DEFAULT_CONFIG_YAML``.
"""
from __future__ import annotations

import ipaddress
import os
import re

from appliance.config.checker import Checker, Section, is_int, type_name
from appliance.config.errors import line_of
from appliance.config.instruments import Instruments, InstrumentsError, load_instruments, resolve_beside
from appliance.wire import itch, moldudp64

from .config_model import (
    CONFIG_VERSION, BackgroundConfig, ConfigError, ControlConfig, ExchangeConfig, FaultConfig, FirmConfig,
    MarketDataConfig, MulticastConfig, OrderEntryConfig, RecordsConfig, SymbolConfig,
)

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
_USERNAME_RULE = "1..6 letters or digits"

_TOP_KEYS = ("version", "symbols", "instruments", "limits", "order_entry", "firms", "market_data", "faults",
             "background", "records", "control", "duration_s")


def build_config(data, file: str, root_line: int | None) -> ExchangeConfig:
    """The configuration ``data`` (a parsed document) describes; raises ConfigError."""
    top = Checker.for_file(ConfigError, file).section(data, "", root_line, _TOP_KEYS,
                                                      required=("version", "firms"))
    version = top.integer("version")
    if version != CONFIG_VERSION:
        top.fail("version", f"unsupported version {version} (this exchange reads version {CONFIG_VERSION})")

    instruments = None
    if "instruments" in top:
        if "symbols" in top:
            top.fail("instruments", "give either symbols or instruments (a file that lists them), not both")
        instruments = _instruments(top, file)
        symbols = symbols_of(instruments, top)
    elif "symbols" in top:
        symbols = _symbols(top)
    else:
        top.fail("symbols", "missing required key (or instruments: the instruments file, e.g. "
                            "config/instruments.yaml)")
    max_shares = top.section("limits", ("max_shares",)).integer("max_shares", 1, MAX_SHARES_LIMIT, 1_000_000)
    order_entry = _order_entry(top)
    firms = _firms(top)
    market_data = _market_data(top)

    f = top.section("faults", ("drop", "duplicate", "reorder", "seed"))
    faults = FaultConfig(drop=float(f.number("drop", 0, 1, 0.0)), duplicate=float(f.number("duplicate", 0, 1, 0.0)),
                         reorder=float(f.number("reorder", 0, 1, 0.0)), seed=f.integer("seed", 0, MAX_SEED, 1))

    background = _background(top, firms)
    for instrument in instruments or ():
        if background.tick % instrument.tick:
            section = top.value.get("background") or {}
            top.checker.fail("background.tick", f"{background.tick} is not a multiple of {instrument.symbol}'s tick "
                             f"{instrument.tick} ({instruments.where(instrument)}): the background flow would quote "
                             "off its tick", line_of(section, "tick") or top.line_of("background"))

    r = top.section("records", ("directory",))
    records = RecordsConfig(directory=r.string("directory", None, nullable=True))
    if records.directory is not None:
        _path_bytes(r, "directory", records.directory)

    c = top.section("control", ("socket",))
    socket_path = c.string("socket", None, nullable=True)
    if socket_path is not None:
        encoded = _path_bytes(c, "socket", socket_path)
        if len(encoded) > MAX_SOCKET_PATH:
            c.fail("socket", f"path is {len(encoded)} bytes; a UNIX socket path holds at most {MAX_SOCKET_PATH}")
    control = ControlConfig(socket=socket_path)

    duration_s = top.number("duration_s", None, None, None, above=0, nullable=True)

    return ExchangeConfig(symbols=symbols, max_shares=max_shares, order_entry=order_entry, firms=firms,
                          market_data=market_data, faults=faults, background=background, records=records,
                          control=control, duration_s=None if duration_s is None else float(duration_s))


def _path_bytes(section: Section, key: str, path: str) -> bytes:
    """The file name as the OS gets it: a NUL byte or an unpaired surrogate ("\\uD800") is refused here,
    not when the exchange opens the file."""
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:
        section.fail(key, f"{path!r} is not a valid file name (an unpaired surrogate)")
    if b"\0" in encoded:
        section.fail(key, f"{path!r} is not a valid file name (a NUL character)")
    return encoded


def _ipv4(section: Section, key: str, default) -> str:
    value = section.string(key, default)
    if _address(value) is None:
        section.fail(key, f"{value!r} is not an IPv4 address like 127.0.0.1")
    return value


def _address(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _entries(top: Section, key: str, most: int, keys: tuple, required: tuple):
    """(index, Section) of each mapping in the list at ``key`` (1..most of them)."""
    items = top.listing(key)
    if not 1 <= len(items) <= most:
        top.fail(key, f"{len(items)} {key}; between 1 and {most} are needed")
    for i, item, path, line in top.items(key):
        yield i, top.checker.section(item, path, line, keys, required)


def _symbols(top: Section) -> tuple[SymbolConfig, ...]:
    seen: dict[str, int] = {}
    result = []
    for i, entry in _entries(top, "symbols", MAX_SYMBOLS, ("symbol", "reference_price", "round_lot"),
                             ("symbol", "reference_price")):
        symbol = entry.string("symbol", pattern=_SYMBOL_RE, rule="1..8 characters of A-Z, 0-9, '.' or '-'")
        if symbol in seen:
            entry.fail("symbol", f"duplicate symbol {symbol!r} (first at symbols[{seen[symbol]}])")
        seen[symbol] = i
        result.append(SymbolConfig(symbol=symbol, reference_price=entry.integer("reference_price", 1,
                                                                                MAX_REFERENCE_PRICE),
                                   round_lot=entry.integer("round_lot", 1, MAX_SHARES_LIMIT, 100)))
    return tuple(result)


def _instruments(top: Section, file: str) -> Instruments:
    """``instruments``: the appliance's instruments file (a path beside this file, or absolute)."""
    named = top.string("instruments")
    try:
        return load_instruments(resolve_beside(named, file))
    except InstrumentsError as exc:
        top.fail("instruments", f"{named}: {exc}")


def symbols_of(instruments: Instruments, top: Section) -> tuple[SymbolConfig, ...]:
    """The listing an instruments file describes: its symbols in its order (locate = position + 1), each
    with its reference price (required here: the background flow starts there) and round lot."""
    if len(instruments) > MAX_SYMBOLS:
        top.fail("instruments", f"{len(instruments)} instruments; at most {MAX_SYMBOLS} are listed")
    result = []
    for instrument in instruments:
        where = instruments.where(instrument)
        if not _SYMBOL_RE.fullmatch(instrument.symbol):
            top.fail("instruments", f"{where}: {instrument.symbol!r} cannot be listed here (1..8 characters of "
                                    "A-Z, 0-9, '.' or '-')")
        if not instrument.reference_price:
            top.fail("instruments", f"{where}: {instrument.symbol} has no reference_price (the simulated "
                                    "exchange's flow starts there)")
        result.append(SymbolConfig(symbol=instrument.symbol, reference_price=instrument.reference_price,
                                   round_lot=instrument.round_lot))
    return tuple(result)


def _order_entry(top: Section) -> OrderEntryConfig:
    s = top.section("order_entry", ("host", "port", "heartbeat_interval_ms", "peer_timeout_ms"))
    config = OrderEntryConfig(host=_ipv4(s, "host", "127.0.0.1"), port=s.integer("port", 0, 65535, 15000),
                              heartbeat_interval_ms=s.integer("heartbeat_interval_ms", 1, MAX_INTERVAL_MS, 1000),
                              peer_timeout_ms=s.integer("peer_timeout_ms", 1, 24 * MAX_INTERVAL_MS, 15000))
    if config.peer_timeout_ms <= config.heartbeat_interval_ms:
        s.fail("peer_timeout_ms", f"{config.peer_timeout_ms} must be greater than heartbeat_interval_ms "
                                  f"({config.heartbeat_interval_ms})")
    return config


def default_mpid(username: str) -> str:
    """The MPID of a firm that names none: its username upper-cased, 4 characters padded with 'X'."""
    return username.upper()[:4].ljust(4, "X")


def _firms(top: Section) -> tuple[FirmConfig, ...]:
    seen: dict[str, int] = {}
    result = []
    for i, entry in _entries(top, "firms", MAX_FIRMS, ("username", "password", "mpid", "cancel_on_disconnect"),
                             ("username", "password")):
        username = entry.string("username", pattern=_USERNAME_RE, rule=_USERNAME_RULE)
        if username in seen:
            entry.fail("username", f"duplicate username {username!r} (first at firms[{seen[username]}])")
        seen[username] = i
        password = entry.string("password")
        if len(password) > 10 or not _VISIBLE_ASCII_RE.fullmatch(password):
            entry.fail("password", "must be 1..10 printable ASCII characters without spaces")
        mpid = entry.string("mpid", pattern=_MPID_RE, rule="4 characters A-Z or 0-9") if "mpid" in entry \
            else default_mpid(username)
        result.append(FirmConfig(username=username, password=password, mpid=mpid,
                                 cancel_on_disconnect=entry.boolean("cancel_on_disconnect", False)))
    return tuple(result)


def _subscriber(checker: Checker, text, path: str, line: int | None) -> tuple[str, int]:
    if not isinstance(text, str):
        checker.fail(path, f'expected a "host:port" string, got {type_name(text)}', line)
    host, colon, port_text = text.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not port_text.isascii():
        checker.fail(path, f'not host:port ("{text}")', line)
    address = _address(host)
    if address is None:
        checker.fail(path, f'host {host!r} is not an IPv4 address ("{text}")', line)
    if address.is_unspecified:
        checker.fail(path, f'host {host} is not a destination ("{text}")', line)
    port = int(port_text) if len(port_text) <= 5 else 0     # int() of thousands of digits raises
    if not 1 <= port <= 65535:
        checker.fail(path, f'port {port_text} outside 1..65535 ("{text}")', line)
    return str(address), port


def _market_data(top: Section) -> MarketDataConfig:
    s = top.section("market_data", ("session", "source_host", "source_port", "subscribers", "multicast",
                                    "rerequest_host", "rerequest_port", "max_payload", "heartbeat_interval_ms",
                                    "snapshot_host", "snapshot_port"))
    session = s.string("session", "SIMEX00001")
    if len(session) > 10 or not _VISIBLE_ASCII_RE.fullmatch(session):
        s.fail("session", f"{session!r} must be 1..10 printable ASCII characters without spaces")
    source_host = _ipv4(s, "source_host", "127.0.0.1")

    subscribers: list[tuple[str, int]] = []
    for i, text, path, line in s.items("subscribers", ["127.0.0.1:15001"]):
        subscriber = _subscriber(s.checker, text, path, line)
        if subscriber in subscribers:
            s.checker.fail(path, f'duplicate subscriber "{text}" (first at subscribers[{subscribers.index(subscriber)}])',
                           line)
        subscribers.append(subscriber)

    multicast = None
    if s.value.get("multicast") is not None:
        m = s.section("multicast", ("group", "port", "interface", "ttl"), required=("group",))
        group = _ipv4(m, "group", None)
        if not ipaddress.IPv4Address(group).is_multicast:
            m.fail("group", f"{group} is not a multicast address (224.0.0.0/4)")
        multicast = MulticastConfig(group=group, port=m.integer("port", 1, 65535, 15001),
                                    interface=_ipv4(m, "interface", "127.0.0.1"), ttl=m.integer("ttl", 0, 255, 1))

    return MarketDataConfig(
        session=session, source_host=source_host, source_port=s.integer("source_port", 0, 65535, 15003),
        subscribers=tuple(subscribers), multicast=multicast,
        rerequest_host=_ipv4(s, "rerequest_host", "127.0.0.1"),
        rerequest_port=s.integer("rerequest_port", 0, 65535, 15002),
        max_payload=_max_payload(s),
        heartbeat_interval_ms=s.integer("heartbeat_interval_ms", 1, MAX_INTERVAL_MS, 1000),
        snapshot_host=_ipv4(s, "snapshot_host", "127.0.0.1"),
        snapshot_port=s.integer("snapshot_port", 0, 65535, 15004))


def _max_payload(s: Section) -> int:
    value = s.get("max_payload", moldudp64.DEFAULT_MAX_PAYLOAD)
    if is_int(value) and not MIN_PAYLOAD <= value <= MAX_PAYLOAD:
        s.fail("max_payload", f"must be {MIN_PAYLOAD}..{MAX_PAYLOAD}, got {value} (a packet must hold the largest "
                              f"ITCH message, {itch.MAX_MESSAGE_SIZE} bytes, and its 2-byte length)")
    return s.integer("max_payload", MIN_PAYLOAD, MAX_PAYLOAD, moldudp64.DEFAULT_MAX_PAYLOAD)


def _background(top: Section, firms: tuple[FirmConfig, ...]) -> BackgroundConfig:
    s = top.section("background", ("enabled", "rate", "seed", "firm", "tick", "volatility_bp",
                                   "max_resting_per_symbol"))
    firm = s.string("firm", "BGND", pattern=_USERNAME_RE, rule=_USERNAME_RULE)
    for i, configured in enumerate(firms):
        if configured.username.upper() == firm.upper():
            s.fail("firm", f"{firm!r} is also the username of firms[{i}]")
    return BackgroundConfig(
        enabled=s.boolean("enabled", True),
        rate=float(s.number("rate", 0, MAX_BACKGROUND_RATE, 2000)),
        seed=s.integer("seed", 0, MAX_SEED, 7),
        firm=firm,
        tick=s.integer("tick", 1, MAX_REFERENCE_PRICE, 100),
        volatility_bp=float(s.number("volatility_bp", 0, 10_000, 1.0)),
        max_resting_per_symbol=s.integer("max_resting_per_symbol", 0, 1_000_000, 200))

"""The feed handler's settings: the ``params`` of the feed process in ``shm_layout.yaml``.

Parsed and checked once, before the agent starts (nothing on the hot path reads YAML); every
problem names the key path and the reason. Defaults match the simulated exchange's embedded
configuration, so ``params`` may be left out entirely there.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from appliance.config.errors import ParamsError


class FeedConfigError(ParamsError):
    """A bad value in the feed settings: key path and reason."""


@dataclass(frozen=True)
class FeedConfig:
    listen_host: str = "127.0.0.1"          # unicast: the address the exchange sends to
    listen_port: int = 15001
    multicast_group: str | None = None      # when set: join this group on `interface`, port listen_port
    interface: str = "127.0.0.1"
    source_host: str = "127.0.0.1"          # only datagrams from the publisher are parsed (others: foreign)
    source_port: int | None = 15003         # None: any port of source_host
    rerequest_host: str = "127.0.0.1"       # the MoldUDP64 re-request server
    rerequest_port: int = 15002
    session: str | None = None              # None: adopt the session of the first packet
    stale_after_ms: int = 3000              # no packet (heartbeats count) for this long: every book stale
    rerequest_timeout_ms: int = 50          # a re-request unanswered this long is sent again
    rerequest_retries: int = 5              # then the gap is abandoned and the books marked stale
    max_buffered_packets: int = 4096        # packets held while a gap is filled
    max_packets_per_cycle: int = 64         # bounded work per duty cycle: heartbeats keep beating
    rcvbuf_bytes: int = 8 << 20
    counters_interval_ms: int = 10          # how often the shared-memory counters are refreshed
    book_dump: str | None = None            # on stop, every book order by order as JSON (reconciliation)
    snapshot: SnapshotConfig | None = None  # GLIMPSE: rebuild books from snapshots (None: by re-request from 1)


@dataclass(frozen=True)
class SnapshotConfig:
    """``params.snapshot``: the GLIMPSE server and how the feed uses it (``feed/snapshot.py``)."""
    host: str = "127.0.0.1"
    port: int = 15004
    timeout_ms: int = 2000                  # one attempt: connect, snapshot, and the live stream reaching it
    max_buffered_packets: int = 65536       # live packets kept for the replay while a snapshot is taken
    crossed_ms: int = 500                   # a book crossed this long is rebuilt (the venue's never is)


_KEYS = {
    "listen": dict, "multicast": dict, "source": dict, "rerequest": dict, "session": str, "stale_after_ms": int,
    "rerequest_timeout_ms": int, "rerequest_retries": int, "max_buffered_packets": int,
    "max_packets_per_cycle": int, "rcvbuf_bytes": int, "counters_interval_ms": int, "book_dump": str,
    "snapshot": dict,
}
_SNAPSHOT_RANGES = {"timeout_ms": (10, 600_000), "max_buffered_packets": (16, 1 << 22), "crossed_ms": (1, 3_600_000)}
_RANGES = {
    "stale_after_ms": (1, 3_600_000), "rerequest_timeout_ms": (1, 60_000), "rerequest_retries": (0, 1000),
    "max_buffered_packets": (1, 1 << 20), "max_packets_per_cycle": (1, 100_000),
    "rcvbuf_bytes": (65536, 1 << 30), "counters_interval_ms": (1, 10_000),
}


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", dict: "a mapping", list: "a list",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_type(value, expected, path: str):
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise FeedConfigError(path, f"expected {_type_name(expected())}, got {_type_name(value)}")
    return value


def _address(section: dict, path: str, default_host: str, default_port: int, *, host_key: str = "host"):
    unknown = set(section) - {host_key, "port"}
    if unknown:
        raise FeedConfigError(f"{path}.{sorted(unknown, key=str)[0]}", "unknown key")
    host = _check_type(section.get(host_key, default_host), str, f"{path}.{host_key}")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise FeedConfigError(f"{path}.{host_key}", f"{host!r} is not an IPv4 address") from None
    port = _check_type(section.get("port", default_port), int, f"{path}.port")
    if not 0 <= port <= 65535:
        raise FeedConfigError(f"{path}.port", f"must be 0..65535, got {port}")
    return host, port


def _snapshot(section: dict, path: str) -> SnapshotConfig:
    """``snapshot: {host, port, timeout_ms, max_buffered_packets, crossed_ms}``."""
    known = {"host", "port"} | set(_SNAPSHOT_RANGES)
    unknown = set(section) - known
    if unknown:
        raise FeedConfigError(f"{path}.{sorted(unknown, key=str)[0]}",
                              f"unknown key (known: {', '.join(sorted(known))})")
    if "port" not in section:
        raise FeedConfigError(f"{path}.port", "missing required key (the exchange's snapshot port)")
    defaults = SnapshotConfig()
    host, port = _address({k: v for k, v in section.items() if k in ("host", "port")}, path, defaults.host,
                          defaults.port)
    if port == 0:
        raise FeedConfigError(f"{path}.port", "must be the server's port, not 0")
    values = {}
    for key, (low, high) in _SNAPSHOT_RANGES.items():
        if key in section:
            value = _check_type(section[key], int, f"{path}.{key}")
            if not low <= value <= high:
                raise FeedConfigError(f"{path}.{key}", f"must be {low}..{high}, got {value}")
            values[key] = value
    return SnapshotConfig(host=host, port=port, **values)


def parse_feed_params(params: dict | None, path: str = "processes.feed.params") -> FeedConfig:
    """A FeedConfig from the feed process's ``params`` mapping (None or {} gives the defaults)."""
    params = params or {}
    if not isinstance(params, dict):
        raise FeedConfigError(path, f"expected a mapping, got {_type_name(params)}")
    values: dict = {}
    for key, value in params.items():
        if key not in _KEYS:
            raise FeedConfigError(f"{path}.{key}", f"unknown key (known: {', '.join(sorted(_KEYS))})")
        _check_type(value, _KEYS[key], f"{path}.{key}")
        if key in _RANGES:
            low, high = _RANGES[key]
            if not low <= value <= high:
                raise FeedConfigError(f"{path}.{key}", f"must be {low}..{high}, got {value}")
            values[key] = value
    defaults = FeedConfig()
    if "listen" in params:
        values["listen_host"], values["listen_port"] = _address(params["listen"], f"{path}.listen",
                                                                defaults.listen_host, defaults.listen_port)
    if "source" in params:
        source = params["source"]
        if "host" not in source:
            raise FeedConfigError(f"{path}.source.host", "missing required key (the publisher's address)")
        values["source_host"], port = _address(source, f"{path}.source", defaults.source_host, 0)
        if port == 0 and "port" in source:
            raise FeedConfigError(f"{path}.source.port", "must be the publisher's port (leave it out for any port)")
        values["source_port"] = port or None
    if "rerequest" in params:
        values["rerequest_host"], values["rerequest_port"] = _address(
            params["rerequest"], f"{path}.rerequest", defaults.rerequest_host, defaults.rerequest_port)
        if values["rerequest_port"] == 0:
            raise FeedConfigError(f"{path}.rerequest.port", "must be the server's port, not 0")
    if "multicast" in params:
        m = params["multicast"]
        unknown = set(m) - {"group", "interface"}
        if unknown:
            raise FeedConfigError(f"{path}.multicast.{sorted(unknown, key=str)[0]}", "unknown key")
        if "group" not in m:
            raise FeedConfigError(f"{path}.multicast.group", "missing required key")
        group = _check_type(m["group"], str, f"{path}.multicast.group")
        try:
            if not ipaddress.IPv4Address(group).is_multicast:
                raise FeedConfigError(f"{path}.multicast.group", f"{group!r} is not a multicast address")
        except ipaddress.AddressValueError:
            raise FeedConfigError(f"{path}.multicast.group", f"{group!r} is not an IPv4 address") from None
        values["multicast_group"] = group
        values["interface"] = _address({"interface": m.get("interface", "127.0.0.1")}, f"{path}.multicast",
                                       "127.0.0.1", 0, host_key="interface")[0]
    if "book_dump" in params:
        if not params["book_dump"]:
            raise FeedConfigError(f"{path}.book_dump", "must be a file path")
        values["book_dump"] = params["book_dump"]
    if "snapshot" in params:
        values["snapshot"] = _snapshot(params["snapshot"], f"{path}.snapshot")
    if "session" in params:
        session = params["session"]
        if not 1 <= len(session) <= 10 or not session.isascii() or not session.isprintable():
            raise FeedConfigError(f"{path}.session", f"{session!r} must be 1..10 printable ASCII characters")
        values["session"] = session
    return FeedConfig(**values)

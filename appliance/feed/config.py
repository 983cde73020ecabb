"""The feed handler's settings: the ``params`` of the feed process in ``shm_layout.yaml``.

Parsed and checked once, before the agent starts (nothing on the hot path reads YAML); every
problem names the key path and the reason. Defaults match the simulated exchange's embedded
configuration, so ``params`` may be left out entirely there.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from appliance.config.checker import Checker, Section
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
    compiled_books: bool = True             # feed/fast.py's C books when built (false: the Python reference)


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
    "snapshot": dict, "compiled_books": bool,
}
_SNAPSHOT_RANGES = {"timeout_ms": (10, 600_000), "max_buffered_packets": (16, 1 << 22), "crossed_ms": (1, 3_600_000)}
_RANGES = {
    "stale_after_ms": (1, 3_600_000), "rerequest_timeout_ms": (1, 60_000), "rerequest_retries": (0, 1000),
    "max_buffered_packets": (1, 1 << 20), "max_packets_per_cycle": (1, 100_000),
    "rcvbuf_bytes": (65536, 1 << 30), "counters_interval_ms": (1, 10_000),
}


def _ipv4(s: Section, key: str, default: str) -> str:
    host = s.string(key, default, empty=True)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        s.fail(key, f"{host!r} is not an IPv4 address")
    return host


def _address(s: Section, default_host: str, default_port: int) -> tuple[str, int]:
    return _ipv4(s, "host", default_host), s.integer("port", 0, 65535, default_port)


def _server(s: Section) -> tuple[str, int]:
    """A server the feed connects to: its port cannot be 'any'."""
    host, port = _address(s, "127.0.0.1", 0)
    if port == 0:
        s.fail("port", "must be the server's port, not 0")
    return host, port


def _snapshot(s: Section) -> SnapshotConfig:
    """``snapshot: {host, port, timeout_ms, max_buffered_packets, crossed_ms}``."""
    host, port = _server(s)
    return SnapshotConfig(host=host, port=port, **{key: s.integer(key, low, high) for key, (low, high)
                                                   in _SNAPSHOT_RANGES.items() if key in s})


def parse_feed_params(params: dict | None, path: str = "processes.feed.params") -> FeedConfig:
    """A FeedConfig from the feed process's ``params`` mapping (None or {} gives the defaults)."""
    top = Checker.for_params(FeedConfigError).section(params, path, None, _KEYS, optional=True)
    values: dict = {key: top.integer(key, low, high) for key, (low, high) in _RANGES.items() if key in top}
    defaults = FeedConfig()
    if "listen" in top:
        values["listen_host"], values["listen_port"] = _address(top.section("listen", ("host", "port")),
                                                                defaults.listen_host, defaults.listen_port)
    if "source" in top:
        source = top.section("source", ("host", "port"), required=("host",), hints={"host": "the publisher's address"})
        values["source_host"], port = _address(source, defaults.source_host, 0)
        if port == 0 and "port" in source:
            source.fail("port", "must be the publisher's port (leave it out for any port)")
        values["source_port"] = port or None
    if "rerequest" in top:
        values["rerequest_host"], values["rerequest_port"] = _server(top.section("rerequest", ("host", "port")))
    if "multicast" in top:
        m = top.section("multicast", ("group", "interface"), required=("group",))
        group = _ipv4(m, "group", "")
        if not ipaddress.IPv4Address(group).is_multicast:
            m.fail("group", f"{group!r} is not a multicast address")
        values["multicast_group"], values["interface"] = group, _ipv4(m, "interface", "127.0.0.1")
    if "book_dump" in top:
        if not top.get("book_dump"):
            top.fail("book_dump", "must be a file path")
        values["book_dump"] = top.get("book_dump")
    if "snapshot" in top:
        values["snapshot"] = _snapshot(top.section("snapshot", ("host", "port", *_SNAPSHOT_RANGES), required=("port",),
                                                   hints={"port": "the exchange's snapshot port"}))
    if "compiled_books" in top:
        values["compiled_books"] = top.boolean("compiled_books")
    if "session" in top:
        session = top.get("session")
        if not 1 <= len(session) <= 10 or not session.isascii() or not session.isprintable():
            top.fail("session", f"{session!r} must be 1..10 printable ASCII characters")
        values["session"] = session
    return FeedConfig(**values)

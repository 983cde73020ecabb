"""The OMS's settings: the ``params`` of the oms process in ``shm_layout.yaml``, checked once.

Parsed before the agent starts (nothing on the hot path reads YAML). Every problem names the
key path and the reason; the agent turns it into a ``LayoutError`` (the runner exits 2).
Defaults match the simulated exchange's embedded configuration (MPID ALGO, order entry on
127.0.0.1:15000), so ``params`` may be left out there. The login (username and password) is not
here: it is in the credentials file (``credentials.py``), and a ``username`` or ``password`` left
in the layout is refused with a message saying so.

    venue: {host: 127.0.0.1, port: 15000}
    credentials: run/venue.credentials   # the venue login, mode 0600 (relative to the layout's directory)
    firm: ALGO                 # the OUCH Enter Order firm field (MPID), 4 letters or digits
    journal: run/oms-journal.bin   # relative to the layout file's directory
    journal_size_mb: 64        # preallocated
    durability: group          # per_event | group | page_cache (see journal.py for what each risks)
    group_commit_us: 1000      # group: fdatasync at most this long after an append
    risk_heartbeat_limit_ms: 50    # a risk heartbeat older than this closes the gate
    in_flight_timeout_ms: 2000     # no venue answer this long: flagged, queried by cancel
    unacked_timeout_ms: 1000       # after a restart: unacknowledged orders cancelled by token after this
    reconnect_min_ms: 100      # reconnect backoff, doubling up to
    reconnect_max_ms: 5000
    heartbeat_ms: 1000         # SoupBinTCP client heartbeat after this long of our silence
    peer_timeout_ms: 15000     # the venue is dead after this long of its silence
    replay_margin_ms: 1        # after login: a venue message stamped this long after the LoginAccepted arrived
                               # proves the replay drained (covers the venue's and our clock error)
    replication:               # journal replication to a hot standby (replication.py, standby.py)
      mode: off                # off | sync (new orders leave only after the standby acknowledged
                               # their record) | async (never waits)
      transport: tcp           # tcp: the standby connects to primary below (this box or another) |
                               # shm: the standby on this box, over the layout's rings replication_records
                               # (oms -> oms_standby) and replication_acks (replication_shm.py)
      primary: {host: 127.0.0.1, port: 15010}   # the primary OMS listens here; the standby connects
      standby_journal: run/oms-standby-journal.bin   # the standby's copy (relative to the layout)
      ack_limit_ms: 50         # sync: a new order waits this long for the standby's acknowledgement
      without_standby: close_gate   # sync, no acknowledgement within ack_limit_ms: close_gate (held
                               # orders are not sent, new ones refused NO_STANDBY, cancels leave) | trade
      heartbeat_ms: 100        # either side sends a heartbeat after this long of its silence
      peer_timeout_ms: 1000    # the other side is gone after this long of its silence
      takeover: restart        # the OMS dies: the supervisor restarts it (restart), or runs a standby on this
                               # box beside it that takes over (standby: supervisor/standby.py, oms/takeover.py;
                               # over either transport);
                               # remote: this box's OMS is the standby of the primary on another box (primary:
                               # its address, given): the supervisor runs oms-standby --takeover remote in the
                               # OMS's place and adopts it when it takes over (supervisor/remote_standby.py)
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from appliance.oms.journal import DURABILITY_POLICIES
from appliance.config.checker import Checker
from appliance.config.errors import ParamsError


class OmsConfigError(ParamsError):
    """A bad value in the oms settings: key path and reason."""


@dataclass(frozen=True)
class OmsConfig:
    venue_host: str = "127.0.0.1"
    venue_port: int = 15000
    firm: str = "ALGO"
    credentials: str = "run/venue.credentials"    # as given; ``credentials_path`` is resolved
    credentials_path: str = ""
    journal: str = "run/oms-journal.bin"          # as given; ``journal_path`` is resolved
    journal_path: str = ""
    journal_size_mb: int = 64
    durability: str = "group"
    group_commit_us: int = 1000
    risk_heartbeat_limit_ms: int = 50
    in_flight_timeout_ms: int = 2000
    unacked_timeout_ms: int = 1000
    reconnect_min_ms: int = 100
    reconnect_max_ms: int = 5000
    heartbeat_ms: int = 1000
    peer_timeout_ms: int = 15000
    replay_margin_ms: int = 1
    replication: "ReplicationConfig" = None       # ReplicationConfig() when not given


REPLICATION_MODES = ("off", "sync", "async")
TRANSPORTS = ("tcp", "shm")
WITHOUT_STANDBY = ("close_gate", "trade")
TAKEOVER = ("restart", "standby", "remote")


@dataclass(frozen=True)
class ReplicationConfig:
    """``params.replication``: who streams the journal where, and what sync mode does without a standby."""
    mode: str = "off"
    transport: str = "tcp"
    primary_host: str = "127.0.0.1"
    primary_port: int = 15010
    standby_journal: str = "run/oms-standby-journal.bin"    # as given; ``standby_journal_path`` is resolved
    standby_journal_path: str = ""
    ack_limit_ms: int = 50
    without_standby: str = "close_gate"
    heartbeat_ms: int = 100
    peer_timeout_ms: int = 1000
    takeover: str = "restart"
    # how long the standby keeps polling for records after the last bytes came before it sleeps (0: it
    # sleeps at once, after a few checks): a sleeping standby must be woken, which costs sync mode the
    # wake-up on each order (tens of us on a VM); polling costs a CPU while orders flow
    standby_spin_us: int = 0
    # sync: how long the OMS waits for an order's acknowledgement where it sends it, before holding it for
    # the duty cycle to release (a standby on this box answers in tens of us; 0: always hold)
    ack_spin_us: int = 200

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


_RANGES = {
    "journal_size_mb": (1, 65536), "group_commit_us": (10, 10_000_000), "risk_heartbeat_limit_ms": (1, 3_600_000),
    "in_flight_timeout_ms": (1, 3_600_000), "unacked_timeout_ms": (1, 3_600_000),
    "reconnect_min_ms": (1, 3_600_000), "reconnect_max_ms": (1, 3_600_000), "heartbeat_ms": (10, 60_000),
    "peer_timeout_ms": (100, 3_600_000), "replay_margin_ms": (0, 60_000),
}
_STRINGS = ("firm", "journal", "durability", "credentials")
_KNOWN = set(_RANGES) | set(_STRINGS) | {"venue", "replication"}
_MOVED = ("username", "password")        # the login lives in the credentials file now
_FIRM = re.compile(r"[A-Z0-9]{4}")


_KEYS = {**dict.fromkeys(_RANGES, int), **dict.fromkeys(_STRINGS, str), "venue": dict, "replication": dict}
_REPLICATION_RANGES = {"ack_limit_ms": (1, 60_000), "heartbeat_ms": (1, 60_000), "peer_timeout_ms": (10, 3_600_000),
                       "standby_spin_us": (0, 10_000_000), "ack_spin_us": (0, 1_000_000)}
_REPLICATION_KEYS = {**dict.fromkeys(_REPLICATION_RANGES, int), "mode": (str, bool), "primary": dict, "standby_journal": str,
                     "without_standby": str, "transport": str, "takeover": str}


def parse_oms_params(params: dict | None, layout_path: str = "", path: str = "processes.oms.params") -> OmsConfig:
    """An OmsConfig from the oms process's ``params`` (None or {} gives the defaults)."""
    check = Checker.for_params(OmsConfigError)
    for key in _MOVED:
        if isinstance(params, dict) and key in params:
            check.fail(f"{path}.{key}", "the venue login is no longer in the layout: put 'username = ...' and "
                       "'password = ...' in the credentials file (processes.oms.params.credentials, "
                       "default run/venue.credentials, mode 0600) and delete this key")
    top = check.section(params, path, None, _KEYS, optional=True)
    values: dict = {key: top.integer(key, *_RANGES[key]) for key in _RANGES if key in top}
    values.update({key: top.string(key, empty=True) for key in _STRINGS if key in top})
    if "venue" in top:
        venue = top.section("venue", ("host", "port"))
        if "host" in venue:
            values["venue_host"] = venue.string("host", empty=True)
            try:
                ipaddress.IPv4Address(values["venue_host"])
            except ValueError:
                venue.fail("host", f"{values['venue_host']!r} is not an IPv4 address")
        if "port" in venue:
            values["venue_port"] = venue.integer("port", 1, 65535)
    replication = _replication(top) if "replication" in top else ReplicationConfig()
    if "firm" in values and not _FIRM.fullmatch(values["firm"]):
        top.fail("firm", "must be 4 capital letters or digits (the OUCH firm field)")
    if "durability" in values:
        top.choice("durability", DURABILITY_POLICIES)
    for key in ("journal", "credentials"):
        if key in values and not values[key].strip():
            top.fail(key, "must be a file path")
    config = OmsConfig(**values)
    if config.reconnect_max_ms < config.reconnect_min_ms:
        top.fail("reconnect_max_ms", f"must be at least reconnect_min_ms ({config.reconnect_min_ms}), "
                                     f"got {config.reconnect_max_ms}")
    if config.peer_timeout_ms <= config.heartbeat_ms:
        top.fail("peer_timeout_ms", f"must be more than heartbeat_ms ({config.heartbeat_ms})")
    base = os.path.dirname(os.path.abspath(layout_path)) if layout_path else os.getcwd()

    def resolved(name: str) -> str:
        return os.path.normpath(name if os.path.isabs(name) else os.path.join(base, name))
    replication = ReplicationConfig(**{**replication.__dict__,
                                       "standby_journal_path": resolved(replication.standby_journal)})
    if replication.enabled and replication.standby_journal_path == resolved(config.journal):
        top.fail("replication.standby_journal", "must not be the primary's journal file")
    return OmsConfig(**{**config.__dict__, "journal_path": resolved(config.journal),
                        "credentials_path": resolved(config.credentials), "replication": replication})


def _replication(top) -> ReplicationConfig:
    """``params.replication``, checked like the rest (key path and reason)."""
    section = top.section("replication", _REPLICATION_KEYS)
    values: dict = {key: section.integer(key, *_REPLICATION_RANGES[key]) for key in _REPLICATION_RANGES
                    if key in section}
    if "mode" in section:
        # YAML 1.1 reads an unquoted ``off`` as false: that is the mode off
        values["mode"] = "off" if section.get("mode") is False else section.choice("mode", REPLICATION_MODES)
    if "without_standby" in section:
        values["without_standby"] = section.choice("without_standby", WITHOUT_STANDBY)
    if "transport" in section:
        values["transport"] = section.choice("transport", TRANSPORTS)
    if "takeover" in section:
        values["takeover"] = section.choice("takeover", TAKEOVER)
    if "standby_journal" in section:
        values["standby_journal"] = section.string("standby_journal")
        if not values["standby_journal"].strip():
            section.fail("standby_journal", "must be a file path")
    if "primary" in section:
        primary = section.section("primary", ("host", "port"))
        if "host" in primary:
            values["primary_host"] = primary.string("host")
            try:
                ipaddress.IPv4Address(values["primary_host"])
            except ValueError:
                primary.fail("host", f"{values['primary_host']!r} is not an IPv4 address")
        if "port" in primary:
            values["primary_port"] = primary.integer("port", 1, 65535)
    config = ReplicationConfig(**values)
    if config.peer_timeout_ms <= config.heartbeat_ms:
        section.fail("peer_timeout_ms", f"must be more than heartbeat_ms ({config.heartbeat_ms})")
    if config.takeover == "standby" and config.mode == "off":
        section.fail("takeover", "a standby needs replication: mode sync or async")
    if config.takeover == "remote":
        _remote_rules(section, config)
    return config


def _remote_rules(section, config: ReplicationConfig) -> None:
    """``takeover: remote``: this box's OMS is the standby of a primary on another box, reached over TCP at an
    address the layout names (the default loopback one would be this box's own)."""
    if config.mode == "off":
        section.fail("takeover", "takeover: remote is the standby of another box's primary: it needs replication "
                                 "mode sync or async")
    if config.transport != "tcp":
        section.fail("takeover", "takeover: remote reaches the other box's primary over transport tcp "
                                 "(shm is this box's memory)")
    primary = section.get("primary", None)
    if not isinstance(primary, dict) or "host" not in primary:
        section.fail("primary", "takeover: remote needs primary: {host: ..., port: ...}, the other box's "
                                "replication address")
    if ipaddress.IPv4Address(config.primary_host).is_unspecified:
        section.fail("primary.host", "takeover: remote connects to the other box's primary: 0.0.0.0 is no "
                                     "address to connect to")

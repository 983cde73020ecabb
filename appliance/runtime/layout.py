"""``shm_layout.yaml``: the one description of segments, rings, tables and processes.

``load_layout(path)`` parses and validates the file and returns a ``Layout``
with every byte offset computed. Validation errors name the file, the key path
(``rings[1].capacity``), the line, and the reason; they are raised before any
process touches shared memory. Offsets depend only on the layout (never on the
machine or the backing chosen), and the canonical form of the layout, together
with the shape of every message it carries, has a SHA-256 hash that every
segment header records.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from appliance.messages.catalog import MESSAGES, records_on
from appliance.runtime import _shm
from appliance.config.errors import ConfigFileError
from appliance.config.yaml_lines import parse_yaml, plain

CACHE_LINE = _shm.CACHE_LINE
PAGE_SIZE = 4096
HUGE_PAGE_SIZE = 2 * 1024 * 1024

SEGMENT_HEADER_SIZE = PAGE_SIZE          # fixed header page; the canonical layout follows it
COUNTER_SLOT_SIZE = CACHE_LINE           # value on its own 64-byte line, metadata on the next
PROCESS_SLOT_SIZE = 2 * CACHE_LINE       # owner-written record line, then the doorbell line
PROCESS_DOORBELL_OFFSET = CACHE_LINE
RING_HEADER_SIZE = _shm.RING_HEADER_SIZE

IDLE_STRATEGIES = ("busy_spin", "yield", "backoff", "sleep", "doorbell")
SCHED_POLICIES = ("other", "fifo")
BACKINGS = ("hugepage", "4k")
TABLE_KINDS = ("counters", "processes", "market_state", "control", "positions")
REQUIRED_TABLE_KINDS = ("counters", "processes")      # market_state: required once symbols are declared
SYMBOL_MAX = 8                                        # an ITCH/OUCH stock field
MARKET_STATE_SLOT_SIZE = 128
POSITION_SLOT_SIZE = 128
CONTROL_WORD_SIZE = 64
# The control table's words and the one process that writes each (see runtime/control.py).
CONTROL_WORDS: tuple[tuple[str, str], ...] = (
    ("gate", "supervisor"),               # open flag, GateReason bits and epoch in one word (control.GateWord)
    ("gate_changed_ns", "supervisor"),
    ("clock_state", "supervisor"),        # codes.ClockState
    ("clock_offset_ns", "supervisor"),    # signed: PTP master offset, or 0 from adjtimex
    ("clock_maxerror_ns", "supervisor"),
    ("clock_checked_ns", "supervisor"),
    ("supervisor_pid", "supervisor"),
    ("feed_ready", "feed"),               # 1: the feed has live, non-stale books
    ("feed_stale_reason", "feed"),        # codes.FeedStaleReason: why every book is stale (0: live)
    ("strategy_ready", "strategy"),
    ("risk_state", "risk"),               # codes.RiskState
    ("risk_ready", "risk"),               # 1: state rebuilt from the OMS's records
    ("risk_kill_latched", "risk"),
    ("risk_state_changed_ns", "risk"),
    ("oms_ready", "oms"),                 # 1: new orders can leave: journal ok and recovered, logged in, replay drained
    ("oms_session_up", "oms"),            # 1: logged in to the venue
    ("oms_open_orders", "oms"),
    ("oms_cancel_all_epoch", "oms"),      # +1 each time the OMS cancelled everything (gate/risk)
)


class LayoutError(ConfigFileError):
    """A layout that cannot be used: names the file, key path, line and reason."""


# --------------------------------------------------------------------------
# YAML with line numbers and duplicate-key detection
# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# The validated layout
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentSpec:
    name: str
    backing: str
    mode: int
    size: int = 0                 # computed
    canonical_offset: int = SEGMENT_HEADER_SIZE
    shm_name: str = ""            # computed: <layout name>-<segment name>


@dataclass(frozen=True)
class IdleSpec:
    strategy: str
    spins: int = 100
    yields: int = 10
    min_park_ns: int = 1_000
    max_park_ns: int = 1_000_000
    sleep_ns: int = 100_000
    park_timeout_ns: int = 10_000_000


@dataclass(frozen=True)
class SchedulingSpec:
    policy: str = "other"
    priority: int = 0
    mlockall: bool = False


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    index: int
    agent: str
    cpu: int | None
    idle: IdleSpec
    scheduling: SchedulingSpec
    params: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class RingSpec:
    name: str
    segment: str
    producer: str
    consumer: str
    message: str
    slot_size: int
    capacity: int
    offset: int = 0               # computed: ring header inside the segment

    @property
    def size(self) -> int:
        return RING_HEADER_SIZE + self.slot_size * self.capacity


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: str
    segment: str
    slots: int
    slot_size: int
    slots_per_process: int = 0
    offset: int = 0               # computed


@dataclass
class Layout:
    path: str
    name: str
    version: int
    segments: dict[str, SegmentSpec]
    rings: dict[str, RingSpec]
    tables: dict[str, TableSpec]
    processes: dict[str, ProcessSpec]
    symbols: tuple[str, ...] = ()    # symbol id = index; every process agrees through the layout hash
    canonical: bytes = b""
    hash: bytes = b""
    warnings: list[str] = field(default_factory=list)

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    def table_of_kind(self, kind: str) -> TableSpec:
        for table in self.tables.values():
            if table.kind == kind:
                return table
        raise KeyError(kind)

    def symbol_id(self, symbol: str) -> int:
        """The id of ``symbol`` (its index in ``symbols``); KeyError when not declared."""
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(symbol) from None

    def rings_consumed_by(self, process: str) -> list[RingSpec]:
        return [r for r in self.rings.values() if r.consumer == process]

    def rings_produced_by(self, process: str) -> list[RingSpec]:
        return [r for r in self.rings.values() if r.producer == process]


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------

class _Checker:
    """Walks the parsed YAML, turning every problem into a LayoutError with its path and line."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, reason: str, line: int | None = None):
        raise LayoutError(self.file, path, reason, line)

    @staticmethod
    def line_of(container, key) -> int | None:
        lines = getattr(container, "lines", None)
        if lines is None:
            return None
        try:
            return lines[key]
        except (KeyError, IndexError, TypeError):
            return None

    def mapping(self, value, path: str, line: int | None, required: dict[str, Any], optional: dict[str, Any]):
        """Check keys of a mapping: each of ``required``/``optional`` maps key -> expected type(s)."""
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_type_name(value)}", line)
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join(sorted([*required, *optional]))
                self.fail(_join(path, key), f"unknown key (allowed: {allowed})", self.line_of(value, key))
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "missing required key", line)
        for key, expected in {**required, **optional}.items():
            if key in value:
                self.typed(value[key], expected, _join(path, key), self.line_of(value, key))
        return value

    def typed(self, value, expected, path: str, line: int | None):
        expected_types = expected if isinstance(expected, tuple) else (expected,)
        # bool is an int in Python; a YAML `true` is never a valid number here.
        if isinstance(value, bool) and bool not in expected_types:
            self.fail(path, f"expected {_expected_name(expected_types)}, got a boolean", line)
        if not isinstance(value, expected_types):
            self.fail(path, f"expected {_expected_name(expected_types)}, got {_type_name(value)}", line)
        return value

    def named_list(self, value, path: str, line: int | None):
        """A list of mappings each with a unique ``name``: the shape of every section."""
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_type_name(value)}", line)
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            item_path, item_line = f"{path}[{i}]", self.line_of(value, i)
            if not isinstance(item, dict):
                self.fail(item_path, f"expected a mapping, got {_type_name(item)}", item_line)
            if "name" not in item:
                self.fail(_join(item_path, "name"), "missing required key", item_line)
            name = self.typed(item["name"], str, _join(item_path, "name"), self.line_of(item, "name"))
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                self.fail(_join(item_path, "name"), f"{name!r} must be non-empty letters, digits, '_' or '-'",
                          self.line_of(item, "name"))
            if name in seen:
                self.fail(_join(item_path, "name"), f"duplicate name {name!r} (first at {path}[{seen[name]}])",
                          self.line_of(item, "name"))
            seen[name] = i
        return value


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(value) -> str:
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"),
                        (int, "an integer"), (float, "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def _expected_name(types: tuple) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", dict: "a mapping", list: "a list",
             type(None): "null", float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _parse_mode(checker: _Checker, value, path: str, line) -> int:
    """Mode bits as an octal string ("0600") or an int (YAML 0o600 is an int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            checker.fail(path, f"{value!r} is not an octal mode like \"0600\"", line)
    else:
        checker.fail(path, f"expected an octal mode string like \"0600\", got {_type_name(value)}", line)
    if not 0 <= mode <= 0o777:
        checker.fail(path, f"mode {oct(mode)} outside 0000..0777", line)
    if mode & 0o600 != 0o600:
        checker.fail(path, f"mode {oct(mode)} must let the owner read and write (0600)", line)
    return mode


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def load_layout(path: str | os.PathLike, *, available_cpus: set[int] | None = None) -> Layout:
    """Read, validate and compute offsets; raises LayoutError on any problem."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            text = fh.read()
    except (OSError, ValueError) as exc:          # ValueError: a NUL in the path
        raise LayoutError(file, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_layout(text, file, available_cpus=available_cpus)


def parse_layout(text: bytes | str, file: str = "<string>", *, available_cpus: set[int] | None = None) -> Layout:
    data = parse_yaml(text, lambda path, reason, line: LayoutError(file, path, reason, line))
    c = _Checker(file)
    if data is None:
        c.fail("", "empty file")
    c.mapping(data, "", 1,
              required={"version": int, "name": str, "segments": list, "rings": list, "tables": list,
                        "processes": list},
              optional={"symbols": list})
    version = data["version"]
    if version < 1:
        c.fail("version", f"must be >= 1, got {version}", c.line_of(data, "version"))
    name = data["name"]
    if not name or len(name) > 24 or not all(ch.isalnum() or ch in "_-" for ch in name):
        c.fail("name", f"{name!r} must be 1..24 letters, digits, '_' or '-' (it prefixes /dev/shm names)",
               c.line_of(data, "name"))

    # ---- symbols
    symbols_raw = data.get("symbols", [])
    symbols: list[str] = []
    for i, symbol in enumerate(symbols_raw):
        path, line = f"symbols[{i}]", c.line_of(symbols_raw, i)
        symbol = c.typed(symbol, str, path, line)
        if not 1 <= len(symbol) <= SYMBOL_MAX or not symbol.isascii() or symbol != symbol.strip() \
                or not all(ch.isupper() or ch.isdigit() or ch in "._-" for ch in symbol):
            c.fail(path, f"{symbol!r} must be 1..{SYMBOL_MAX} upper-case letters, digits, '.', '_' or '-'", line)
        if symbol in symbols:
            c.fail(path, f"{symbol!r} is declared twice (first at symbols[{symbols.index(symbol)}])", line)
        symbols.append(symbol)

    # ---- segments
    segments_raw = c.named_list(data["segments"], "segments", c.line_of(data, "segments"))
    if not segments_raw:
        c.fail("segments", "at least one segment is required", c.line_of(data, "segments"))
    segments: dict[str, dict] = {}
    for i, seg in enumerate(segments_raw):
        path = f"segments[{i}]"
        c.mapping(seg, path, c.line_of(segments_raw, i), required={"name": str},
                  optional={"backing": str, "mode": (str, int)})
        backing = seg.get("backing", "hugepage")
        if backing not in BACKINGS:
            c.fail(f"{path}.backing", f"{backing!r} is not one of {', '.join(BACKINGS)}", c.line_of(seg, "backing"))
        mode = _parse_mode(c, seg.get("mode", "0600"), f"{path}.mode", c.line_of(seg, "mode"))
        segments[seg["name"]] = {"name": seg["name"], "backing": backing, "mode": mode}

    # ---- processes
    processes_raw = c.named_list(data["processes"], "processes", c.line_of(data, "processes"))
    processes: dict[str, ProcessSpec] = {}
    cpus = available_cpus if available_cpus is not None else set(os.sched_getaffinity(0))
    warnings: list[str] = []
    for i, proc in enumerate(processes_raw):
        path = f"processes[{i}]"
        c.mapping(proc, path, c.line_of(processes_raw, i), required={"name": str, "agent": str, "idle": dict},
                  optional={"cpu": (int, type(None)), "scheduling": dict, "params": dict})
        agent = proc["agent"]
        module, _, cls = agent.partition(":")
        if not module or not cls or not all(p.isidentifier() for p in module.split(".") + cls.split(".")):
            c.fail(f"{path}.agent", f"{agent!r} must be 'package.module:ClassName'", c.line_of(proc, "agent"))
        cpu = proc.get("cpu")
        if cpu is not None:
            if cpu < 0:
                c.fail(f"{path}.cpu", f"must be >= 0, got {cpu}", c.line_of(proc, "cpu"))
            if cpu not in cpus:
                warnings.append(f"{file}:{c.line_of(proc, 'cpu')}: {path}.cpu: CPU {cpu} is not available on this "
                                f"machine (allowed: {_cpu_list(cpus)}); the process will run unpinned")
        idle = _parse_idle(c, proc["idle"], f"{path}.idle", c.line_of(proc, "idle"))
        sched = _parse_scheduling(c, proc.get("scheduling", {}), f"{path}.scheduling", c.line_of(proc, "scheduling"))
        processes[proc["name"]] = ProcessSpec(name=proc["name"], index=i, agent=agent, cpu=cpu, idle=idle,
                                              scheduling=sched, params=plain(proc.get("params", {})))
    spinners = [p.name for p in processes.values() if p.idle.strategy == "busy_spin"]
    if len(spinners) > len(cpus):
        warnings.append(f"{file}: {len(spinners)} busy-spinning processes ({', '.join(spinners)}) on "
                        f"{len(cpus)} CPUs: they will starve each other; use backoff or doorbell here")

    # ---- tables
    tables_raw = c.named_list(data["tables"], "tables", c.line_of(data, "tables"))
    tables: dict[str, dict] = {}
    for i, table in enumerate(tables_raw):
        path = f"tables[{i}]"
        c.mapping(table, path, c.line_of(tables_raw, i), required={"name": str, "kind": str, "segment": str},
                  optional={"slots_per_process": int})
        kind = table["kind"]
        if kind not in TABLE_KINDS:
            c.fail(f"{path}.kind", f"{kind!r} is not one of {', '.join(TABLE_KINDS)}", c.line_of(table, "kind"))
        if table["segment"] not in segments:
            c.fail(f"{path}.segment", f"no segment named {table['segment']!r}", c.line_of(table, "segment"))
        if any(t["kind"] == kind for t in tables.values()):
            c.fail(f"{path}.kind", f"a second {kind!r} table (one per layout)", c.line_of(table, "kind"))
        per_process = table.get("slots_per_process", 0)
        if kind == "counters":
            if "slots_per_process" not in table:
                c.fail(f"{path}.slots_per_process", "missing required key for a counters table",
                       c.line_of(tables_raw, i))
            if not 1 <= per_process <= 4096:
                c.fail(f"{path}.slots_per_process", f"must be 1..4096, got {per_process}",
                       c.line_of(table, "slots_per_process"))
            # block 0 belongs to the creator (the supervisor), then one block per process
            slots, slot_size = per_process * (1 + len(processes)), COUNTER_SLOT_SIZE
        elif kind == "market_state":
            if "slots_per_process" in table:
                c.fail(f"{path}.slots_per_process", "only a counters table has slots_per_process",
                       c.line_of(table, "slots_per_process"))
            if not symbols:
                c.fail(f"{path}.kind", "a market_state table needs the top-level 'symbols' list",
                       c.line_of(table, "kind"))
            slots, slot_size = len(symbols), MARKET_STATE_SLOT_SIZE
        elif kind in ("control", "positions"):
            if "slots_per_process" in table:
                c.fail(f"{path}.slots_per_process", "only a counters table has slots_per_process",
                       c.line_of(table, "slots_per_process"))
            if kind == "positions" and not symbols:
                c.fail(f"{path}.kind", "a positions table needs the top-level 'symbols' list",
                       c.line_of(table, "kind"))
            slots, slot_size = ((len(CONTROL_WORDS), CONTROL_WORD_SIZE) if kind == "control"
                                else (len(symbols), POSITION_SLOT_SIZE))
        else:
            if "slots_per_process" in table:
                c.fail(f"{path}.slots_per_process", "only a counters table has slots_per_process",
                       c.line_of(table, "slots_per_process"))
            slots, slot_size = len(processes), PROCESS_SLOT_SIZE
        tables[table["name"]] = {"name": table["name"], "kind": kind, "segment": table["segment"], "slots": slots,
                                 "slot_size": slot_size, "slots_per_process": per_process}
    required_kinds = REQUIRED_TABLE_KINDS + (("market_state",) if symbols else ())
    for kind in required_kinds:
        if not any(t["kind"] == kind for t in tables.values()):
            c.fail("tables", f"a {kind!r} table is required" + (" (symbols are declared)" if kind == "market_state"
                                                               else ""), c.line_of(data, "tables"))

    # ---- rings
    rings_raw = c.named_list(data["rings"], "rings", c.line_of(data, "rings"))
    rings: dict[str, dict] = {}
    for i, ring in enumerate(rings_raw):
        path = f"rings[{i}]"
        c.mapping(ring, path, c.line_of(rings_raw, i),
                  required={"name": str, "segment": str, "producer": (str, list), "consumer": (str, list),
                            "message": str, "slot_size": int, "capacity": int},
                  optional={})
        for role in ("producer", "consumer"):
            value, line = ring[role], c.line_of(ring, role)
            if isinstance(value, list):
                if len(value) != 1:
                    c.fail(f"{path}.{role}", f"a ring has exactly one {role} (single-producer/single-consumer); "
                           f"got {len(value)}: {', '.join(map(str, value))}", line)
                value = ring[role] = c.typed(value[0], str, f"{path}.{role}[0]", line)
            if value not in processes:
                c.fail(f"{path}.{role}", f"{value!r} is not a declared process "
                       f"(declared: {', '.join(processes) or 'none'})", line)
        if ring["producer"] == ring["consumer"]:
            c.fail(f"{path}.consumer", f"producer and consumer are both {ring['producer']!r}",
                   c.line_of(ring, "consumer"))
        if ring["segment"] not in segments:
            c.fail(f"{path}.segment", f"no segment named {ring['segment']!r}", c.line_of(ring, "segment"))
        message = MESSAGES.get(ring["message"])
        if message is None:
            c.fail(f"{path}.message", f"unknown message {ring['message']!r} (known: {', '.join(MESSAGES)})",
                   c.line_of(ring, "message"))
        capacity = ring["capacity"]
        if capacity < 2 or capacity & (capacity - 1):
            c.fail(f"{path}.capacity", f"{capacity} is not a power of two >= 2", c.line_of(ring, "capacity"))
        if capacity > 1 << 24:
            c.fail(f"{path}.capacity", f"{capacity} exceeds the limit of {1 << 24} slots", c.line_of(ring, "capacity"))
        slot_size = ring["slot_size"]
        if slot_size <= 0 or slot_size % 64:
            c.fail(f"{path}.slot_size", f"{slot_size} is not a positive multiple of 64", c.line_of(ring, "slot_size"))
        largest = max(records_on(message.name), key=lambda r: r.size)
        if slot_size < largest.size:
            c.fail(f"{path}.slot_size", f"{slot_size} is smaller than {largest.name} ({largest.size} bytes)"
                   + (f", which a {message.name} ring carries too" if largest is not message else ""),
                   c.line_of(ring, "slot_size"))
        if slot_size > 65536:
            c.fail(f"{path}.slot_size", f"{slot_size} exceeds the limit of 65536", c.line_of(ring, "slot_size"))
        rings[ring["name"]] = {"name": ring["name"], "segment": ring["segment"], "producer": ring["producer"],
                               "consumer": ring["consumer"], "message": ring["message"],
                               "slot_size": slot_size, "capacity": capacity}
    for ring_name in rings:
        if ring_name in tables:
            c.fail("rings", f"name {ring_name!r} is both a table and a ring", c.line_of(data, "rings"))

    return _compute(file, name, version, segments, rings, tables, processes, warnings, tuple(symbols))


def _parse_idle(c: _Checker, idle, path: str, line) -> IdleSpec:
    c.mapping(idle, path, line, required={"strategy": str},
              optional={"spins": int, "yields": int, "min_park_ns": int, "max_park_ns": int, "sleep_ns": int,
                        "park_timeout_ns": int})
    strategy = idle["strategy"]
    if strategy not in IDLE_STRATEGIES:
        c.fail(f"{path}.strategy", f"{strategy!r} is not one of {', '.join(IDLE_STRATEGIES)}",
               c.line_of(idle, "strategy"))
    for key in ("spins", "yields", "min_park_ns", "max_park_ns", "sleep_ns", "park_timeout_ns"):
        if key in idle and not 0 <= idle[key] <= 10**10:
            c.fail(f"{path}.{key}", f"must be 0..10000000000, got {idle[key]}", c.line_of(idle, key))
    for key in ("min_park_ns", "max_park_ns", "sleep_ns", "park_timeout_ns"):
        if key in idle and idle[key] == 0:
            c.fail(f"{path}.{key}", "must be > 0", c.line_of(idle, key))
    spec = IdleSpec(strategy=strategy, **{k: v for k, v in idle.items() if k != "strategy"})
    if spec.min_park_ns > spec.max_park_ns:
        c.fail(f"{path}.max_park_ns", f"{spec.max_park_ns} is below min_park_ns {spec.min_park_ns}",
               c.line_of(idle, "max_park_ns") or line)
    return spec


def _parse_scheduling(c: _Checker, sched, path: str, line) -> SchedulingSpec:
    c.mapping(sched, path, line, required={}, optional={"policy": str, "priority": int, "mlockall": bool})
    policy = sched.get("policy", "other")
    if policy not in SCHED_POLICIES:
        c.fail(f"{path}.policy", f"{policy!r} is not one of {', '.join(SCHED_POLICIES)}", c.line_of(sched, "policy"))
    priority = sched.get("priority", 0)
    if policy == "fifo" and not 1 <= priority <= 99:
        c.fail(f"{path}.priority", f"SCHED_FIFO priority must be 1..99, got {priority}", c.line_of(sched, "priority"))
    if policy == "other" and priority != 0:
        c.fail(f"{path}.priority", "a priority needs policy: fifo", c.line_of(sched, "priority"))
    return SchedulingSpec(policy=policy, priority=priority, mlockall=sched.get("mlockall", False))


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus)) or "none"


# --------------------------------------------------------------------------
# Offsets and the canonical hash
# --------------------------------------------------------------------------

def _canonical_document(name, version, segments, rings, tables, processes, symbols=()) -> dict:
    """Everything two processes must agree on to share memory, in a fixed order."""
    used_messages = sorted({record.name for r in rings.values() for record in records_on(r["message"])}
                           | ({"MarketState"} if any(t["kind"] == "market_state" for t in tables.values()) else set())
                           | ({"Position"} if any(t["kind"] == "positions" for t in tables.values()) else set()))
    return {
        "name": name,
        "version": version,
        "segments": [{"name": s["name"], "backing": s["backing"], "mode": s["mode"]} for s in segments.values()],
        "tables": [dict(t) for t in tables.values()],
        "rings": [dict(r) for r in rings.values()],
        "processes": [{"name": p.name, "index": p.index, "idle": p.idle.strategy} for p in processes.values()],
        "messages": {m: MESSAGES[m].describe() for m in used_messages},
        **({"symbols": list(symbols)} if symbols else {}),
        **({"control_words": [name for name, _ in CONTROL_WORDS]}
           if any(t["kind"] == "control" for t in tables.values()) else {}),
    }


def _compute(file, name, version, segments, rings, tables, processes, warnings, symbols=()) -> Layout:
    document = _canonical_document(name, version, segments, rings, tables, processes, symbols)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).digest()
    cursor = {s: SEGMENT_HEADER_SIZE + _align(len(canonical), PAGE_SIZE) for s in segments}

    table_specs: dict[str, TableSpec] = {}
    for t in tables.values():
        offset = cursor[t["segment"]]
        cursor[t["segment"]] = _align(offset + t["slots"] * t["slot_size"], PAGE_SIZE)
        table_specs[t["name"]] = TableSpec(offset=offset, **t)
    ring_specs: dict[str, RingSpec] = {}
    for r in rings.values():
        offset = cursor[r["segment"]]
        spec = RingSpec(offset=offset, **r)
        cursor[r["segment"]] = _align(offset + spec.size, PAGE_SIZE)
        ring_specs[r["name"]] = spec
    segment_specs = {}
    for s in segments.values():
        size = _align(cursor[s["name"]], HUGE_PAGE_SIZE)   # a multiple of the huge page size either way
        segment_specs[s["name"]] = SegmentSpec(size=size, shm_name=f"{name}-{s['name']}", **s)
    return Layout(path=file, name=name, version=version, segments=segment_specs, rings=ring_specs,
                  tables=table_specs, processes=processes, symbols=symbols, canonical=canonical, hash=digest, warnings=warnings)


def describe_difference(mine: bytes, theirs: bytes) -> list[str]:
    """Key paths where two canonical layouts differ (for refusal messages)."""
    try:
        a, b = json.loads(mine), json.loads(theirs)
    except ValueError:
        return ["the segment's recorded layout is unreadable"]
    out: list[str] = []

    def walk(x, y, path):
        if len(out) >= 8:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if k not in x:
                    out.append(f"{_join(path, k)}: only in the segment")
                elif k not in y:
                    out.append(f"{_join(path, k)}: only in this layout")
                else:
                    walk(x[k], y[k], _join(path, k))
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                out.append(f"{path}: {len(y)} entries in the segment, {len(x)} in this layout")
            for i, (xi, yi) in enumerate(zip(x, y)):
                walk(xi, yi, f"{path}[{i}]")
        elif x != y:
            out.append(f"{path}: segment has {y!r}, this layout has {x!r}")

    walk(a, b, "")
    return out

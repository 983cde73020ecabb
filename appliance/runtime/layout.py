"""``shm_layout.yaml``: the one description of segments, rings, tables and processes.

``load_layout(path)`` parses and validates the file and returns a ``Layout``
with every byte offset computed. Validation errors name the file, the key path
(``rings[1].capacity``), the line, and the reason; they are raised before any
process touches shared memory. Offsets depend only on the layout (never on the
machine or the backing chosen), and the canonical form of the layout, together
with the shape of every message it carries, has a SHA-256 hash that every
segment header records.

Profiles: the production placement (``full``: a pinned CPU per hot process) needs the CPUs it
names. ``profiles.small`` re-places the processes for a machine with fewer CPUs (consumers park
on their doorbells, at most one spinner, the simulated exchange's CPU apart). ``profile: auto``
(the default) picks ``small``, with a warning, when a CPU the processes are pinned to is not
available here, else ``full``; ``full`` or ``small`` names it outright. The choice is made in the
file, not on a command line, because every process and tool that attaches reads this file and
must reach the same result: the resolved profile and idle strategies are in the canonical hash.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace

from appliance.messages.catalog import MESSAGES, records_on
from appliance.runtime import _shm
from appliance.config.checker import Checker, type_name
from appliance.config.errors import ConfigFileError, join, line_of
from appliance.config.instruments import Instruments, InstrumentsError, load_instruments
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
SPINNING_IDLE = ("busy_spin", "yield")     # never sleep: one CPU each while the market is quiet
PROFILES = ("auto", "full", "small")
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
    peers: tuple[str, ...] = ()      # ring ends that are not processes (the same-box standby)
    instruments: Instruments | None = None   # the file named by ``instruments`` (None: the layout names none)
    canonical: bytes = b""
    hash: bytes = b""
    warnings: list[str] = field(default_factory=list)
    profile: str = "full"                  # the resolved profile: full or small
    simulator_cpu: int | None = None       # the small profile's CPU for the simulated exchange (sim/)

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
# Validation helpers (the checker itself: appliance/config/checker.py)
# --------------------------------------------------------------------------

def _named_list(c: Checker, value, path: str, line: int | None) -> list:
    """A list of mappings each with a unique ``name``: the shape of every section."""
    seen: dict[str, int] = {}
    for i, item, item_path, item_line in c.items(value, path, line):
        if not isinstance(item, dict):
            c.expected("a mapping", item, item_path, item_line)
        if "name" not in item:
            c.fail(join(item_path, "name"), "missing required key", item_line)
        name = c.typed(item["name"], str, join(item_path, "name"), line_of(item, "name"))
        if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
            c.fail(join(item_path, "name"), f"{name!r} must be non-empty letters, digits, '_' or '-'",
                   line_of(item, "name"))
        if name in seen:
            c.fail(join(item_path, "name"), f"duplicate name {name!r} (first at {path}[{seen[name]}])",
                   line_of(item, "name"))
        seen[name] = i
    return value


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _parse_mode(checker: Checker, value, path: str, line) -> int:
    """Mode bits as an octal string ("0600") or an int (YAML 0o600 is an int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            checker.fail(path, f"{value!r} is not an octal mode like \"0600\"", line)
    else:
        checker.fail(path, f"expected an octal mode string like \"0600\", got {type_name(value)}", line)
    if not 0 <= mode <= 0o777:
        checker.fail(path, f"mode {oct(mode)} outside 0000..0777", line)
    if mode & 0o600 != 0o600:
        checker.fail(path, f"mode {oct(mode)} must let the owner read and write (0600)", line)
    return mode



# --------------------------------------------------------------------------
# Loading: one function per section of the file
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
    c = Checker.for_file(LayoutError, file)
    if data is None:
        c.fail("", "empty file")
    c.mapping(data, "", 1, {"version": int, "name": str, "segments": list, "rings": list, "tables": list,
                            "processes": list, "symbols": list, "instruments": str, "profile": str,
                            "profiles": dict, "peers": list},
              required=("version", "name", "segments", "rings", "tables", "processes"))
    version = c.integer(data["version"], "version", line_of(data, "version"), 1)
    name = _name(c, data)
    symbols = _symbols(c, data)
    instruments = _instruments(c, data, file, symbols)
    if instruments is not None:
        symbols = instruments.symbols
    segments = _segments(c, data)
    cpus = available_cpus if available_cpus is not None else set(os.sched_getaffinity(0))
    processes, warnings = _processes(c, data, file, cpus)
    profile, processes, simulator_cpu, warnings = _profile(c, data, file, cpus, processes, warnings)
    tables = _tables(c, data, segments, processes, symbols)
    peers = _peers(c, data, processes)
    rings = _rings(c, data, segments, processes, tables, peers)
    layout = _compute(file, name, version, segments, rings, tables, processes, warnings, symbols, profile,
                      instruments, peers)
    layout.simulator_cpu = simulator_cpu
    return layout


def _peers(c: Checker, data, processes: dict) -> tuple[str, ...]:
    """``peers``: programs that are not processes of the layout (nothing spawns, pins or watches
    them) but sit at one end of its rings: the same-box standby OMS (``oms_standby``)."""
    peers: list[str] = []
    for _i, peer, path, line in c.items(data.get("peers", []), "peers", line_of(data, "peers")):
        peer = c.typed(peer, str, path, line)
        if not peer or not all(ch.isalnum() or ch in "_-" for ch in peer):
            c.fail(path, f"{peer!r} must be non-empty letters, digits, '_' or '-'", line)
        if peer in processes:
            c.fail(path, f"{peer!r} is a process of the layout, not a peer", line)
        if peer in peers:
            c.fail(path, f"{peer!r} is declared twice", line)
        peers.append(peer)
    return tuple(peers)


def _name(c: Checker, data) -> str:
    name = data["name"]
    if not name or len(name) > 24 or not all(ch.isalnum() or ch in "_-" for ch in name):
        c.fail("name", f"{name!r} must be 1..24 letters, digits, '_' or '-' (it prefixes /dev/shm names)",
               line_of(data, "name"))
    return name


def _symbols(c: Checker, data) -> tuple[str, ...]:
    """``symbols``: the ids every process agrees on (id = index)."""
    symbols: list[str] = []
    for i, symbol, path, line in c.items(data.get("symbols", []), "symbols", line_of(data, "symbols")):
        symbol = c.typed(symbol, str, path, line)
        if not 1 <= len(symbol) <= SYMBOL_MAX or not symbol.isascii() or symbol != symbol.strip() \
                or not all(ch.isupper() or ch.isdigit() or ch in "._-" for ch in symbol):
            c.fail(path, f"{symbol!r} must be 1..{SYMBOL_MAX} upper-case letters, digits, '.', '_' or '-'", line)
        if symbol in symbols:
            c.fail(path, f"{symbol!r} is declared twice (first at symbols[{symbols.index(symbol)}])", line)
        symbols.append(symbol)
    return tuple(symbols)


def resolve_instruments_path(path: str, layout_file: str) -> str:
    """Where the layout's ``instruments`` file is: an absolute path as is; a relative one beside the
    layout file, else in the working directory (the strategy loader's rule). A layout parsed from
    text (``<string>``) has no directory: the working directory's."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    from_text = layout_file.startswith("<") and layout_file.endswith(">")
    beside = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(layout_file)), path)) \
        if not from_text else os.path.abspath(path)
    return beside if os.path.exists(beside) or not os.path.exists(path) else os.path.abspath(path)


def _instruments(c: Checker, data, file: str, symbols: tuple[str, ...]) -> Instruments | None:
    """``instruments``: the file that defines every symbol (config/instruments.yaml); the layout's
    symbols are its symbols, in its order. A ``symbols`` list beside it must say the same."""
    if "instruments" not in data:
        return None
    line = line_of(data, "instruments")
    named = c.string(data["instruments"], "instruments", line)
    try:
        instruments = load_instruments(resolve_instruments_path(named, file))
    except InstrumentsError as exc:
        c.fail("instruments", f"{named}: {exc}", line)
    if "symbols" in data and symbols != instruments.symbols:
        missing = [s for s in instruments.symbols if s not in symbols]
        extra = [s for s in symbols if s not in instruments.symbols]
        reason = (f"{', '.join(extra)} not in the instruments file" if extra else
                  f"{', '.join(missing)} of the instruments file missing here" if missing else
                  "not in the instruments file's order")
        c.fail("symbols", f"must be the symbols of {instruments.file} in its order "
               f"({', '.join(instruments.symbols)}): {reason} (or leave symbols out: they come from there)",
               line_of(data, "symbols"))
    return instruments


def _segments(c: Checker, data) -> dict[str, dict]:
    segments_raw = _named_list(c, data["segments"], "segments", line_of(data, "segments"))
    if not segments_raw:
        c.fail("segments", "at least one segment is required", line_of(data, "segments"))
    segments: dict[str, dict] = {}
    for i, seg in enumerate(segments_raw):
        path = f"segments[{i}]"
        c.mapping(seg, path, line_of(segments_raw, i), {"name": str, "backing": str, "mode": (str, int)},
                  required=("name",))
        backing = c.choice(seg.get("backing", "hugepage"), f"{path}.backing", line_of(seg, "backing"), BACKINGS)
        mode = _parse_mode(c, seg.get("mode", "0600"), f"{path}.mode", line_of(seg, "mode"))
        segments[seg["name"]] = {"name": seg["name"], "backing": backing, "mode": mode}
    return segments


def _processes(c: Checker, data, file: str, cpus: set[int]) -> tuple[dict[str, ProcessSpec], list[str]]:
    """``processes``, and the warnings of a placement this machine cannot honour."""
    processes_raw = _named_list(c, data["processes"], "processes", line_of(data, "processes"))
    processes: dict[str, ProcessSpec] = {}
    warnings: list[str] = []
    for i, proc in enumerate(processes_raw):
        path = f"processes[{i}]"
        c.mapping(proc, path, line_of(processes_raw, i),
                  {"name": str, "agent": str, "idle": dict, "cpu": (int, None), "scheduling": dict, "params": dict},
                  required=("name", "agent", "idle"))
        agent = proc["agent"]
        module, _, cls = agent.partition(":")
        if not module or not cls or not all(p.isidentifier() for p in module.split(".") + cls.split(".")):
            c.fail(f"{path}.agent", f"{agent!r} must be 'package.module:ClassName'", line_of(proc, "agent"))
        cpu = _cpu(c, proc, path, file, cpus, warnings)
        idle = _parse_idle(c, proc["idle"], f"{path}.idle", line_of(proc, "idle"))
        sched = _parse_scheduling(c, proc.get("scheduling", {}), f"{path}.scheduling", line_of(proc, "scheduling"))
        processes[proc["name"]] = ProcessSpec(name=proc["name"], index=i, agent=agent, cpu=cpu, idle=idle,
                                              scheduling=sched, params=plain(proc.get("params", {})))
    spinners = [p.name for p in processes.values() if p.idle.strategy == "busy_spin"]
    if len(spinners) > len(cpus):
        warnings.append(f"{file}: {len(spinners)} busy-spinning processes ({', '.join(spinners)}) on "
                        f"{len(cpus)} CPUs: they will starve each other; use backoff or doorbell here")
    return processes, warnings


def _cpu(c: Checker, entry: dict, path: str, file: str, cpus: set[int], warnings: list[str]) -> int | None:
    """A process's ``cpu`` (null: unpinned); one this machine lacks is a warning (it runs unpinned)."""
    cpu = entry.get("cpu")
    if cpu is not None:
        c.integer(cpu, f"{path}.cpu", line_of(entry, "cpu"), 0)
        if cpu not in cpus:
            warnings.append(f"{file}:{line_of(entry, 'cpu')}: {path}.cpu: CPU {cpu} is not available on this "
                            f"machine (allowed: {_cpu_list(cpus)}); the process will run unpinned")
    return cpu


def _profile(c: Checker, data, file: str, cpus: set[int], processes: dict[str, ProcessSpec],
             warnings: list[str]) -> tuple[str, dict[str, ProcessSpec], int | None, list[str]]:
    """``profile`` and ``profiles``: which placement runs here, and the processes as it places them.

    ``profiles.small`` holds, per process, the ``cpu`` and ``idle`` that replace the process's own
    (a process it does not name keeps them), and ``simulator_cpu``. ``auto`` chooses small when a
    pinned CPU is missing here (the warning says so); small then must have at most one spinner."""
    chosen = c.choice(data.get("profile", "auto"), "profile", line_of(data, "profile"), PROFILES)
    top = c.section(data.get("profiles"), "profiles", line_of(data, "profiles"), {"small": dict}, optional=True)
    small = top.section("small", {"processes": dict, "simulator_cpu": (int, None)}) if "small" in top else None
    overrides: dict[str, dict] = {}
    simulator_cpu = None
    small_warnings: list[str] = []
    if small is not None:
        if small.get("simulator_cpu", None) is not None:
            simulator_cpu = small.integer("simulator_cpu", 0)
        entries = small.section("processes", {name: dict for name in processes})
        for name in entries.value:
            path = entries.key_path(name)
            entry = c.section(entries.value[name], path, entries.line_of(name), {"cpu": (int, None), "idle": dict})
            override = {}
            if "cpu" in entry:
                override["cpu"] = _cpu(c, entry.value, path, file, cpus, small_warnings)
            if "idle" in entry:
                override["idle"] = _parse_idle(c, entry.value["idle"], f"{path}.idle", entry.line_of("idle"))
            overrides[name] = override
    if chosen == "small" and small is None:
        c.fail("profile", "'small' needs a profiles.small section", line_of(data, "profile"))
    profile = chosen
    if chosen == "auto":
        asked = {p.cpu for p in processes.values() if p.cpu is not None}
        profile = "small" if small is not None and not asked <= cpus else "full"
        if profile == "small":
            small_warnings.insert(0, f"{file}: this machine has {len(cpus)} CPUs ({_cpu_list(cpus)}) and the layout "
                                     f"pins processes to {len(asked)} ({_cpu_list(asked)}): running the small profile "
                                     f"(profiles.small; set profile: full to keep the production placement)")
    if profile == "full":
        return profile, processes, None, warnings
    placed = {name: replace(spec, **overrides.get(name, {})) for name, spec in processes.items()}
    spinners = [p.name for p in placed.values() if p.idle.strategy in SPINNING_IDLE]
    if len(spinners) > 1:
        c.fail("profiles.small.processes", f"at most one spinner on a small machine, got {len(spinners)} "
               f"({', '.join(spinners)}): the others park (doorbell, backoff or sleep)", small.line_of("processes"))
    replaced = tuple(f"processes[{p.index}].cpu:" for p in placed.values() if "cpu" in overrides.get(p.name, {}))
    kept = [w for w in warnings if not any(prefix in w for prefix in replaced)]
    return profile, placed, simulator_cpu, small_warnings + kept


def _tables(c: Checker, data, segments: dict, processes: dict, symbols: tuple) -> dict[str, dict]:
    """``tables``: one of each kind, sized from the processes and symbols."""
    tables_raw = _named_list(c, data["tables"], "tables", line_of(data, "tables"))
    tables: dict[str, dict] = {}
    for i, table in enumerate(tables_raw):
        path = f"tables[{i}]"
        c.mapping(table, path, line_of(tables_raw, i), {"name": str, "kind": str, "segment": str,
                                                        "slots_per_process": int},
                  required=("name", "kind", "segment"))
        kind = c.choice(table["kind"], f"{path}.kind", line_of(table, "kind"), TABLE_KINDS)
        if table["segment"] not in segments:
            c.fail(f"{path}.segment", f"no segment named {table['segment']!r}", line_of(table, "segment"))
        if any(t["kind"] == kind for t in tables.values()):
            c.fail(f"{path}.kind", f"a second {kind!r} table (one per layout)", line_of(table, "kind"))
        per_process = table.get("slots_per_process", 0)
        if kind != "counters" and "slots_per_process" in table:
            c.fail(f"{path}.slots_per_process", "only a counters table has slots_per_process",
                   line_of(table, "slots_per_process"))
        if kind == "counters":
            if "slots_per_process" not in table:
                c.fail(f"{path}.slots_per_process", "missing required key for a counters table",
                       line_of(tables_raw, i))
            c.integer(per_process, f"{path}.slots_per_process", line_of(table, "slots_per_process"), 1, 4096)
            # block 0 belongs to the creator (the supervisor), then one block per process
            slots, slot_size = per_process * (1 + len(processes)), COUNTER_SLOT_SIZE
        elif kind in ("market_state", "positions"):
            if not symbols:
                c.fail(f"{path}.kind", f"a {kind} table needs the top-level 'symbols' list", line_of(table, "kind"))
            slots, slot_size = len(symbols), (MARKET_STATE_SLOT_SIZE if kind == "market_state" else POSITION_SLOT_SIZE)
        elif kind == "control":
            slots, slot_size = len(CONTROL_WORDS), CONTROL_WORD_SIZE
        else:
            slots, slot_size = len(processes), PROCESS_SLOT_SIZE
        tables[table["name"]] = {"name": table["name"], "kind": kind, "segment": table["segment"], "slots": slots,
                                 "slot_size": slot_size, "slots_per_process": per_process}
    required_kinds = REQUIRED_TABLE_KINDS + (("market_state",) if symbols else ())
    for kind in required_kinds:
        if not any(t["kind"] == kind for t in tables.values()):
            c.fail("tables", f"a {kind!r} table is required" + (" (symbols are declared)" if kind == "market_state"
                                                               else ""), line_of(data, "tables"))
    return tables


def _rings(c: Checker, data, segments: dict, processes: dict, tables: dict, peers: tuple = ()) -> dict[str, dict]:
    """``rings``: one producer, one consumer (a process or a peer, at least one a process), a
    message of the catalog, slots that hold it."""
    rings_raw = _named_list(c, data["rings"], "rings", line_of(data, "rings"))
    rings: dict[str, dict] = {}
    for i, ring in enumerate(rings_raw):
        path = f"rings[{i}]"
        c.mapping(ring, path, line_of(rings_raw, i),
                  {"name": str, "segment": str, "producer": (str, list), "consumer": (str, list),
                   "message": str, "slot_size": int, "capacity": int},
                  required=("name", "segment", "producer", "consumer", "message", "slot_size", "capacity"))
        for role in ("producer", "consumer"):
            value, line = ring[role], line_of(ring, role)
            if isinstance(value, list):
                if len(value) != 1:
                    c.fail(f"{path}.{role}", f"a ring has exactly one {role} (single-producer/single-consumer); "
                           f"got {len(value)}: {', '.join(map(str, value))}", line)
                value = ring[role] = c.typed(value[0], str, f"{path}.{role}[0]", line)
            if value not in processes and value not in peers:
                c.fail(f"{path}.{role}", f"{value!r} is not a declared process or peer "
                       f"(declared: {', '.join(processes) or 'none'}"
                       f"{'; peers: ' + ', '.join(peers) if peers else ''})", line)
        if ring["producer"] in peers and ring["consumer"] in peers:
            c.fail(f"{path}.consumer", "a ring between two peers: one end must be a process of the layout",
                   line_of(ring, "consumer"))
        if ring["producer"] == ring["consumer"]:
            c.fail(f"{path}.consumer", f"producer and consumer are both {ring['producer']!r}",
                   line_of(ring, "consumer"))
        if ring["segment"] not in segments:
            c.fail(f"{path}.segment", f"no segment named {ring['segment']!r}", line_of(ring, "segment"))
        message = MESSAGES.get(ring["message"])
        if message is None:
            c.fail(f"{path}.message", f"unknown message {ring['message']!r} (known: {', '.join(MESSAGES)})",
                   line_of(ring, "message"))
        capacity = ring["capacity"]
        if capacity < 2 or capacity & (capacity - 1):
            c.fail(f"{path}.capacity", f"{capacity} is not a power of two >= 2", line_of(ring, "capacity"))
        if capacity > 1 << 24:
            c.fail(f"{path}.capacity", f"{capacity} exceeds the limit of {1 << 24} slots", line_of(ring, "capacity"))
        slot_size = ring["slot_size"]
        if slot_size <= 0 or slot_size % 64:
            c.fail(f"{path}.slot_size", f"{slot_size} is not a positive multiple of 64", line_of(ring, "slot_size"))
        largest = max(records_on(message.name), key=lambda r: r.size)
        if slot_size < largest.size:
            c.fail(f"{path}.slot_size", f"{slot_size} is smaller than {largest.name} ({largest.size} bytes)"
                   + (f", which a {message.name} ring carries too" if largest is not message else ""),
                   line_of(ring, "slot_size"))
        if slot_size > 65536:
            c.fail(f"{path}.slot_size", f"{slot_size} exceeds the limit of 65536", line_of(ring, "slot_size"))
        rings[ring["name"]] = {"name": ring["name"], "segment": ring["segment"], "producer": ring["producer"],
                               "consumer": ring["consumer"], "message": ring["message"],
                               "slot_size": slot_size, "capacity": capacity}
    for ring_name in rings:
        if ring_name in tables:
            c.fail("rings", f"name {ring_name!r} is both a table and a ring", line_of(data, "rings"))
    return rings


_IDLE_COUNTS = ("spins", "yields")
_IDLE_DURATIONS = ("min_park_ns", "max_park_ns", "sleep_ns", "park_timeout_ns")


def _parse_idle(c: Checker, idle, path: str, line) -> IdleSpec:
    s = c.section(idle, path, line, {"strategy": str, **dict.fromkeys(_IDLE_COUNTS + _IDLE_DURATIONS, int)},
                  required=("strategy",))
    values = {"strategy": s.choice("strategy", IDLE_STRATEGIES)}
    for key in _IDLE_COUNTS + _IDLE_DURATIONS:
        if key in s:
            values[key] = s.integer(key, 0 if key in _IDLE_COUNTS else 1, 10**10)
    spec = IdleSpec(**values)
    if spec.min_park_ns > spec.max_park_ns:
        s.fail("max_park_ns", f"{spec.max_park_ns} is below min_park_ns {spec.min_park_ns}")
    return spec


def _parse_scheduling(c: Checker, sched, path: str, line) -> SchedulingSpec:
    s = c.section(sched, path, line, {"policy": str, "priority": int, "mlockall": bool})
    policy = s.choice("policy", SCHED_POLICIES, "other")
    priority = s.get("priority", 0)
    if policy == "fifo" and not 1 <= priority <= 99:
        s.fail("priority", f"SCHED_FIFO priority must be 1..99, got {priority}")
    if policy == "other" and priority != 0:
        s.fail("priority", "a priority needs policy: fifo")
    return SchedulingSpec(policy=policy, priority=priority, mlockall=s.get("mlockall", False))


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus)) or "none"


# --------------------------------------------------------------------------
# Offsets and the canonical hash
# --------------------------------------------------------------------------

def _canonical_document(name, version, segments, rings, tables, processes, symbols=(), profile="full",
                        instruments: Instruments | None = None, peers: tuple = ()) -> dict:
    """Everything two processes must agree on to share memory, in a fixed order."""
    used_messages = sorted({record.name for r in rings.values() for record in records_on(r["message"])}
                           | ({"MarketState"} if any(t["kind"] == "market_state" for t in tables.values()) else set())
                           | ({"Position"} if any(t["kind"] == "positions" for t in tables.values()) else set()))
    return {
        "name": name,
        "version": version,
        "profile": profile,
        "segments": [{"name": s["name"], "backing": s["backing"], "mode": s["mode"]} for s in segments.values()],
        "tables": [dict(t) for t in tables.values()],
        "rings": [dict(r) for r in rings.values()],
        "processes": [{"name": p.name, "index": p.index, "idle": p.idle.strategy} for p in processes.values()],
        "messages": {m: MESSAGES[m].describe() for m in used_messages},
        **({"symbols": list(symbols)} if symbols else {}),
        **({"peers": list(peers)} if peers else {}),
        **({"instruments": instruments.canonical()} if instruments is not None else {}),
        **({"control_words": [name for name, _ in CONTROL_WORDS]}
           if any(t["kind"] == "control" for t in tables.values()) else {}),
    }


def _compute(file, name, version, segments, rings, tables, processes, warnings, symbols=(), profile="full",
             instruments: Instruments | None = None, peers: tuple = ()) -> Layout:
    document = _canonical_document(name, version, segments, rings, tables, processes, symbols, profile, instruments,
                                   peers)
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
                  tables=table_specs, processes=processes, symbols=symbols, canonical=canonical, hash=digest, warnings=warnings,
                  profile=profile, instruments=instruments, peers=peers)


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
                    out.append(f"{join(path, k)}: only in the segment")
                elif k not in y:
                    out.append(f"{join(path, k)}: only in this layout")
                else:
                    walk(x[k], y[k], join(path, k))
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                out.append(f"{path}: {len(y)} entries in the segment, {len(x)} in this layout")
            for i, (xi, yi) in enumerate(zip(x, y)):
                walk(xi, yi, f"{path}[{i}]")
        elif x != y:
            out.append(f"{path}: segment has {y!r}, this layout has {x!r}")

    walk(a, b, "")
    return out

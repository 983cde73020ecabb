"""shm_layout.yaml validation: every error names the file, the key path, the line and the reason."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from appliance.messages.catalog import ORDER_INTENT
from appliance.runtime.layout import HUGE_PAGE_SIZE, LayoutError, load_layout, parse_layout
from conftest import layout_document

ROOT = Path(__file__).resolve().parents[2]


def base() -> dict:
    return layout_document(
        "tvalid",
        processes=[{"name": "prod", "agent": "m.a:P", "cpu": 0, "idle": {"strategy": "backoff"}},
                   {"name": "cons", "agent": "m.a:C", "cpu": 1, "idle": {"strategy": "doorbell"}}],
        rings=[{"name": "probe", "segment": "main", "producer": "prod", "consumer": "cons", "message": "Probe",
                "slot_size": 64, "capacity": 1024}])


def load(write_layout, document) -> tuple:
    path = write_layout(document)
    return path, load_layout(path, available_cpus={0, 1})


def error_of(write_layout, document) -> tuple[Path, LayoutError]:
    path = write_layout(document)
    with pytest.raises(LayoutError) as info:
        load_layout(path, available_cpus={0, 1})
    return path, info.value


def mutate(fn):
    doc = copy.deepcopy(base())
    fn(doc)
    return doc


CASES = [
    ("unknown top-level key", lambda d: d.update(extra=1), "extra", "unknown key"),
    ("unknown nested key", lambda d: d["rings"][0].update(colour="red"), "rings[0].colour", "unknown key"),
    ("missing section", lambda d: d.pop("rings"), "rings", "missing required key"),
    ("missing ring field", lambda d: d["rings"][0].pop("capacity"), "rings[0].capacity", "missing required key"),
    ("wrong type", lambda d: d.update(version="one"), "version", "expected an integer, got a string"),
    ("boolean as number", lambda d: d["rings"][0].update(capacity=True), "rings[0].capacity",
     "expected an integer, got a boolean"),
    ("section not a list", lambda d: d.update(rings={"a": 1}), "rings", "expected a list, got a mapping"),
    ("capacity not a power of two", lambda d: d["rings"][0].update(capacity=1000), "rings[0].capacity",
     "1000 is not a power of two"),
    ("slot size not a multiple of 64", lambda d: d["rings"][0].update(slot_size=96), "rings[0].slot_size",
     "96 is not a positive multiple of 64"),
    ("slot size below the message", lambda d: d["rings"][0].update(message="OrderIntent"), "rings[0].slot_size",
     f"64 is smaller than OrderIntent ({ORDER_INTENT.size} bytes)"),
    ("unknown message", lambda d: d["rings"][0].update(message="Nope"), "rings[0].message", "unknown message 'Nope'"),
    ("duplicate ring name", lambda d: d["rings"].append(dict(d["rings"][0])), "rings[1].name",
     "duplicate name 'probe' (first at rings[0])"),
    ("duplicate process name", lambda d: d["processes"].append(dict(d["processes"][0])), "processes[2].name",
     "duplicate name 'prod'"),
    ("producer not declared", lambda d: d["rings"][0].update(producer="ghost"), "rings[0].producer",
     "'ghost' is not a declared process"),
    ("consumer not declared", lambda d: d["rings"][0].update(consumer="ghost"), "rings[0].consumer",
     "'ghost' is not a declared process"),
    ("second producer", lambda d: d["rings"][0].update(producer=["prod", "cons"]), "rings[0].producer",
     "exactly one producer (single-producer/single-consumer); got 2: prod, cons"),
    ("second consumer", lambda d: d["rings"][0].update(consumer=["cons", "prod"]), "rings[0].consumer",
     "exactly one consumer"),
    ("ring to itself", lambda d: d["rings"][0].update(consumer="prod"), "rings[0].consumer",
     "producer and consumer are both 'prod'"),
    ("unknown segment", lambda d: d["rings"][0].update(segment="other"), "rings[0].segment", "no segment named 'other'"),
    ("unknown idle strategy", lambda d: d["processes"][0]["idle"].update(strategy="nap"), "processes[0].idle.strategy",
     "must be one of busy_spin, yield, backoff, sleep, doorbell, got 'nap'"),
    ("fifo priority out of range", lambda d: d["processes"][0].update(scheduling={"policy": "fifo", "priority": 0}),
     "processes[0].scheduling.priority", "SCHED_FIFO priority must be 1..99"),
    ("bad mode", lambda d: d["segments"][0].update(mode="rw"), "segments[0].mode", "not an octal mode"),
    ("mode without owner access", lambda d: d["segments"][0].update(mode="0400"), "segments[0].mode",
     "must let the owner read and write"),
    ("bad backing", lambda d: d["segments"][0].update(backing="ssd"), "segments[0].backing", "must be one of hugepage, 4k, got 'ssd'"),
    ("bad agent path", lambda d: d["processes"][0].update(agent="not a path"), "processes[0].agent",
     "must be 'package.module:ClassName'"),
    ("no counters table", lambda d: d["tables"].pop(0), "tables", "a 'counters' table is required"),
    ("bad name", lambda d: d.update(name="a/b"), "name", "must be 1..24 letters"),
    ("symbol in lower case", lambda d: d.update(symbols=["aapl"]), "symbols[0]", "must be 1..8 upper-case"),
    ("symbol too long", lambda d: d.update(symbols=["ABCDEFGHI"]), "symbols[0]", "must be 1..8 upper-case"),
    ("symbol not a string", lambda d: d.update(symbols=[7]), "symbols[0]", "expected a string"),
    ("symbol twice", lambda d: d.update(symbols=["AAPL", "MSFT", "AAPL"]), "symbols[2]",
     "'AAPL' is declared twice (first at symbols[0])"),
    ("symbols without a market_state table", lambda d: d.update(symbols=["AAPL"]), "tables",
     "a 'market_state' table is required (symbols are declared)"),
    ("market_state without symbols", lambda d: d["tables"].append({"name": "ms", "kind": "market_state",
                                                                  "segment": "main"}),
     "tables[2].kind", "needs the top-level 'symbols' list"),
]


@pytest.mark.parametrize("label,change,key_path,reason", CASES, ids=[c[0] for c in CASES])
def test_each_validation_error_names_file_key_and_reason(write_layout, label, change, key_path, reason):
    path, err = error_of(write_layout, mutate(change))
    assert err.key_path == key_path
    assert reason in err.reason
    assert str(err).startswith(f"{path}:")
    assert key_path in str(err) and reason in str(err)


def test_error_carries_the_line_of_the_offending_value(write_layout):
    text = """\
version: 1
name: tlines
segments:
  - name: main
tables:
  - {name: counters, kind: counters, segment: main, slots_per_process: 8}
  - {name: processes, kind: processes, segment: main}
processes:
  - name: a
    agent: m:A
    idle: {strategy: yield}
  - name: b
    agent: m:B
    idle: {strategy: yield}
rings:
  - name: r
    segment: main
    producer: a
    consumer: b
    message: Probe
    slot_size: 64
    capacity: 100
"""
    path, err = error_of(write_layout, text)
    assert err.line == 22 and err.key_path == "rings[0].capacity"
    assert str(err).startswith(f"{path}:22: rings[0].capacity: 100 is not a power of two")


def test_duplicate_yaml_key_is_refused(write_layout):
    path, err = error_of(write_layout, "version: 1\nversion: 2\n")
    assert err.reason == "duplicate key (first at line 1)" and err.key_path == "version" and err.line == 2


@pytest.mark.parametrize("text,reason", [
    ("", "empty file"),
    ("version: [1\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping, got a list"),
    ("\xff\xfe", "expected a mapping, got a string"),
    ("a: *nowhere\n", "not valid YAML"),
])
def test_garbage_files_fail_cleanly(write_layout, text, reason):
    _, err = error_of(write_layout, text)
    assert reason in str(err)


def test_non_utf8_bytes_fail_cleanly():
    with pytest.raises(LayoutError, match="not UTF-8"):
        parse_layout(b"version: \xff\xfe\n", "bytes.yaml")


def test_missing_file_fails_cleanly(tmp_path):
    with pytest.raises(LayoutError, match="cannot read"):
        load_layout(tmp_path / "absent.yaml")


def test_cpu_the_machine_lacks_is_a_warning_not_an_error(write_layout):
    doc = mutate(lambda d: d["processes"][1].update(cpu=999))
    _, layout = load(write_layout, doc)
    assert any("processes[1].cpu: CPU 999 is not available" in w for w in layout.warnings)


def test_more_busy_spinners_than_cpus_warns(write_layout):
    def spin(d):
        for p in d["processes"]:
            p["idle"] = {"strategy": "busy_spin"}
        d["processes"].append({"name": "third", "agent": "m:T", "idle": {"strategy": "busy_spin"}})
    _, layout = load(write_layout, mutate(spin))
    assert any("3 busy-spinning processes" in w for w in layout.warnings)


def test_offsets_are_deterministic_aligned_and_disjoint(write_layout):
    doc = mutate(lambda d: d["rings"].append({"name": "back", "segment": "main", "producer": "cons",
                                              "consumer": "prod", "message": "ExecutionReport", "slot_size": 128,
                                              "capacity": 256}))
    _, first = load(write_layout, doc)
    _, second = load(write_layout, doc)
    assert first.hash == second.hash and len(first.hash) == 32
    regions = []
    for ring in first.rings.values():
        assert ring.offset == second.rings[ring.name].offset
        assert ring.offset % 4096 == 0
        regions.append((ring.offset, ring.offset + ring.size))
    for table in first.tables.values():
        assert table.offset % 4096 == 0
        regions.append((table.offset, table.offset + table.slots * table.slot_size))
    regions.sort()
    for (a_start, a_end), (b_start, _) in zip(regions, regions[1:]):
        assert a_end <= b_start, "regions overlap"
    segment = first.segments["main"]
    assert segment.size % HUGE_PAGE_SIZE == 0 and segment.size >= regions[-1][1]
    assert first.tables["counters"].slots == 32 * 3       # creator block + two processes


def test_hash_changes_with_any_shared_field(write_layout):
    _, original = load(write_layout, base())
    for change in (lambda d: d["rings"][0].update(capacity=2048), lambda d: d.update(version=2),
                   lambda d: d["rings"][0].update(slot_size=128), lambda d: d["processes"].reverse()):
        _, changed = load(write_layout, mutate(change))
        assert changed.hash != original.hash


def test_symbols_give_ids_a_market_state_table_and_a_hash(write_layout):
    _, plain = load(write_layout, base())
    doc = mutate(lambda d: d.update(symbols=["AAPL", "BRK.B", "SPY"]))
    doc["tables"].append({"name": "market_state", "kind": "market_state", "segment": "main"})
    _, layout = load(write_layout, doc)
    assert layout.symbols == ("AAPL", "BRK.B", "SPY") and layout.symbol_id("SPY") == 2
    with pytest.raises(KeyError):
        layout.symbol_id("TSLA")
    table = layout.table_of_kind("market_state")
    assert table.slots == 3 and table.slot_size == 128 and table.offset % 4096 == 0
    assert plain.symbols == () and layout.hash != plain.hash
    doc["symbols"].reverse()
    _, reordered = load(write_layout, doc)
    assert reordered.hash != layout.hash        # ids changed: processes built on the old order must refuse


def test_repository_layout_is_valid():
    layout = load_layout(ROOT / "shm_layout.yaml")
    assert {"feed", "strategy", "risk", "oms"} <= set(layout.processes)
    assert layout.symbols and layout.table_of_kind("market_state").slots == len(layout.symbols)
    for ring in layout.rings.values():
        assert ring.producer != ring.consumer


def test_a_ring_is_sized_for_and_hashed_with_every_record_it_carries(write_layout, monkeypatch):
    """A ring's slots hold each record it carries besides its ``message`` (the OMS's RiskSnapshot on
    exec_to_risk), and the hash covers their shapes, so a process built with another shape refuses."""
    from appliance.messages import catalog
    _, before = load(write_layout, base())
    monkeypatch.setitem(catalog.ALSO_CARRIED, "Probe", (catalog.ORDER_INTENT,))
    _, error = error_of(write_layout, base())
    assert error.key_path == "rings[0].slot_size"
    assert f"64 is smaller than OrderIntent ({ORDER_INTENT.size} bytes), which a Probe ring carries too" in str(error)
    _, after = load(write_layout, mutate(lambda d: d["rings"][0].update(slot_size=128)))
    assert b'"OrderIntent"' in after.canonical and b'"OrderIntent"' not in before.canonical
    monkeypatch.undo()
    repository = load_layout(ROOT / "shm_layout.yaml")
    assert b'"RiskSnapshot"' in repository.canonical

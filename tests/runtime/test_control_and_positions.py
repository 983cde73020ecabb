"""The control words (one writer each) and the positions table (seqlocked, written by the OMS)."""
from __future__ import annotations

import pytest

from appliance.messages.codes import GateReason, RiskState
from appliance.runtime.control import pack_gate, unpack_gate
from appliance.runtime.layout import CONTROL_WORDS, load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document


@pytest.fixture
def memory(write_layout, unique_name):
    doc = layout_document(
        unique_name,
        processes=[{"name": "supervisor", "agent": "m:S", "idle": {"strategy": "sleep"}},
                   {"name": "risk", "agent": "m:R", "idle": {"strategy": "sleep"}},
                   {"name": "oms", "agent": "m:O", "idle": {"strategy": "sleep"}}],
        rings=[{"name": "r", "segment": "main", "producer": "risk", "consumer": "oms", "message": "Probe",
                "slot_size": 64, "capacity": 64}],
        symbols=["AAPL", "MSFT"])
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    with SharedMemory.create(load_layout(write_layout(doc))) as mem:
        yield mem


def test_each_control_word_has_one_writer_and_everyone_reads_it(memory):
    supervisor, risk, reader = memory.control("supervisor"), memory.control("risk"), memory.control()
    with pytest.raises(PermissionError, match="reads the control words"):
        reader.set("clock_state", 1)
    assert all(value == 0 for value in reader.snapshot().values())       # closed gate until someone opens it
    supervisor.write_gate(GateReason.STARTING | GateReason.CLOCK_UNHEALTHY)
    supervisor.set("clock_offset_ns", -1234)
    risk.set("risk_state", RiskState.HALTED)
    assert GateReason(reader.get("gate_reasons")) == GateReason.STARTING | GateReason.CLOCK_UNHEALTHY
    assert reader.get("clock_offset_ns") == -1234 and reader.get("risk_state") == RiskState.HALTED
    with pytest.raises(PermissionError, match="gate is written by supervisor, not risk"):
        risk.set("gate", 1)
    with pytest.raises(PermissionError, match="write it whole"):
        supervisor.set("gate_open", 1)
    assert reader.get("gate_open") == 0
    assert set(reader.snapshot()) == {name for name, _ in CONTROL_WORDS} | {"gate_open", "gate_reasons", "gate_epoch"}
    offsets = sorted(reader.word_offset(name) for name, _ in CONTROL_WORDS)
    assert all(b - a == 64 for a, b in zip(offsets, offsets[1:]))          # one line per word


def test_the_gate_is_one_word_open_only_without_a_reason_and_its_epoch_counts_decisions(memory):
    supervisor, reader = memory.control("supervisor"), memory.control()
    assert reader.gate() == (0, 0, 0)                                      # never written: closed
    supervisor.write_gate(GateReason.STARTING)
    assert reader.gate() == (0, GateReason.STARTING, 1)
    supervisor.write_gate(0)
    assert reader.gate() == (1, 0, 2) and reader.get("gate_open") == 1 and reader.get("gate_epoch") == 2
    supervisor.write_gate(GateReason.KILL_SWITCH | GateReason.STOPPING)
    assert reader.gate() == (0, GateReason.KILL_SWITCH | GateReason.STOPPING, 3)
    assert unpack_gate(pack_gate(0, (1 << 31) + 5)).epoch == 5                  # the epoch wraps inside its bits


def test_positions_round_trip_and_mark_to_market(memory):
    writer, reader = memory.positions_writer(), memory.positions_reader()
    writer.publish(1, -300, -300 * 4_200_000, 55_000, 7, 3, 300, 1, 2)
    view = reader.read(1)
    assert (view.symbol, view.position, view.realized_pnl, view.orders_sent, view.fills, view.rejects,
            view.open_orders) == ("MSFT", -300, 55_000, 7, 3, 1, 2)
    assert view.average_price() == 420.0
    assert view.unrealized_pnl(4_100_000) == 300 * 100_000                # short, price fell: a gain
    assert reader.read(0).position == 0 and reader.read(0).t_update_ns == 0


def test_positions_without_symbols_is_a_layout_error(write_layout, unique_name):
    from appliance.runtime.layout import LayoutError
    doc = layout_document(unique_name, processes=[{"name": "a", "agent": "m:A", "idle": {"strategy": "sleep"}},
                                                  {"name": "b", "agent": "m:B", "idle": {"strategy": "sleep"}}],
                          rings=[])
    doc["tables"].append({"name": "positions", "kind": "positions", "segment": "main"})
    with pytest.raises(LayoutError, match="needs the top-level 'symbols' list"):
        load_layout(write_layout(doc))

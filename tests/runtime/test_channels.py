"""Typed ring channels: an agent's declared rings held against the layout, and each channel carrying
the buffer of its own ring's segment."""
from __future__ import annotations

import pytest

from appliance.messages.catalog import BOOK_UPDATE, ORDER_INTENT, PROBE
from appliance.runtime.channels import CONSUMER, PRODUCER, RingUse, check_ring_uses
from appliance.runtime.layout import LayoutError, load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document

QUIET = {"strategy": "sleep", "sleep_ns": 1_000_000}


def two_segment_layout(name: str) -> dict:
    doc = layout_document(
        name,
        processes=[{"name": "a", "agent": "x:Y", "idle": QUIET}, {"name": "b", "agent": "x:Y", "idle": QUIET}],
        rings=[{"name": "ab", "segment": "main", "producer": "a", "consumer": "b", "message": "Probe",
                "slot_size": 64, "capacity": 16},
               {"name": "ba", "segment": "side", "producer": "b", "consumer": "a", "message": "Probe",
                "slot_size": 64, "capacity": 16}])
    doc["segments"].append({"name": "side", "backing": "4k", "mode": "0600"})
    return doc


@pytest.fixture
def layout(write_layout, unique_name):
    return load_layout(write_layout(two_segment_layout(unique_name)))


def test_declared_rings_that_fit_the_layout_pass(layout):
    check_ring_uses(layout, "a", (RingUse("ab", PRODUCER, PROBE, peer="b"), RingUse("ba", CONSUMER, PROBE),
                                  RingUse("absent", CONSUMER, PROBE, required=False)), "agent a")


@pytest.mark.parametrize("use, key_path, words", [
    (RingUse("absent", CONSUMER, PROBE), "rings", "needs a ring named 'absent'"),
    (RingUse("ab", CONSUMER, PROBE), "rings.ab.consumer", "is 'b', but agent a runs as 'a'"),
    (RingUse("ab", PRODUCER, PROBE, peer="c"), "rings.ab.consumer", "works with 'c' there"),
    (RingUse("ab", PRODUCER, BOOK_UPDATE), "rings.ab.message", "reads/writes BookUpdate, not Probe"),
])
def test_a_declared_ring_the_layout_disagrees_with_is_a_layout_error_naming_the_key(layout, use, key_path, words):
    with pytest.raises(LayoutError) as caught:
        check_ring_uses(layout, "a", (use,), "agent a")
    assert caught.value.key_path == key_path and words in str(caught.value)


def test_the_other_side_of_a_declared_ring_is_the_peer_s_declaration(layout):
    use = RingUse("ab", PRODUCER, PROBE, peer="b")
    other = use.other_side()
    assert (other.name, other.role, other.record, other.peer) == ("ab", CONSUMER, PROBE, None)
    check_ring_uses(layout, "b", (other,), "agent b")
    assert other.other_side().role == PRODUCER


def test_a_role_other_than_producer_or_consumer_is_refused():
    with pytest.raises(ValueError, match="role"):
        RingUse("ab", "observer", ORDER_INTENT)


def test_each_channel_carries_the_buffer_of_its_own_segment(layout):
    with SharedMemory.create(layout) as memory:
        out = memory.channel(RingUse("ab", PRODUCER, PROBE), "a")
        back = memory.channel(RingUse("ba", CONSUMER, PROBE), "a")
        assert out.buffer is memory.buffer_of("main") and back.buffer is memory.buffer_of("side")
        assert out.record is PROBE and (out.role, back.role) == (PRODUCER, CONSUMER)
        # a record written through one side is read through the other, in the segment the layout says
        writer = memory.channel(RingUse("ba", PRODUCER, PROBE), "b")
        offset = writer.claim()
        PROBE.pack_into(writer.buffer, offset, 7, 1, 2, 3, 4, 5, 6)
        writer.commit()
        offset = back.peek()
        assert offset >= 0 and PROBE.as_dict(back.buffer, offset)["sequence"] == 7
        back.release()
        assert memory.channels((RingUse("ab", PRODUCER, PROBE), RingUse("gone", CONSUMER, PROBE, required=False)),
                               "a").keys() == {"ab"}
        with pytest.raises(LayoutError):
            memory.channel(RingUse("ab", CONSUMER, PROBE), "a")
        del out, back, writer

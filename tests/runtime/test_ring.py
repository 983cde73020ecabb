"""SPSC ring unit tests (one process): wrap-around, full, empty, claim/commit, batch drain, roles."""
from __future__ import annotations

import mmap
import struct

import pytest

from appliance.runtime import _shm

SLOT = 64


def make(capacity: int = 8, slot: int = SLOT):
    region = mmap.mmap(-1, _shm.RING_HEADER_SIZE + slot * capacity)
    _shm.ring_format(region, 0, slot, capacity)
    producer = _shm.Ring(region, 0, slot, capacity, "p")
    consumer = _shm.Ring(region, 0, slot, capacity, "c")
    return region, producer, consumer


def msg(i: int, slot: int = SLOT) -> bytes:
    return struct.pack("<Q", i) + bytes([i % 251]) * (slot - 8)


def seq(data) -> int:
    return struct.unpack_from("<Q", data)[0]


def test_empty_ring_pops_nothing():
    _, _, consumer = make()
    assert consumer.try_pop() is None
    assert consumer.try_pop_into(bytearray(SLOT)) is False
    assert consumer.peek() == -1
    assert consumer.drain_into(bytearray(SLOT * 4)) == 0
    assert consumer.available() == 0


def test_full_ring_refuses_and_counts_one_full_event_per_episode():
    _, producer, consumer = make(capacity=4)
    assert all(producer.try_push(msg(i)) for i in range(4))
    assert producer.try_push(msg(4)) is False
    assert producer.try_push(msg(4)) is False          # still the same episode
    assert producer.full_events == 1
    assert producer.max_depth == 4
    assert seq(consumer.try_pop()) == 0                # nothing was overwritten
    assert producer.try_push(msg(4)) is True
    assert producer.try_push(msg(5)) is False
    assert producer.full_events == 2
    assert [seq(consumer.try_pop()) for _ in range(4)] == [1, 2, 3, 4]


def test_wrap_around_many_times_preserves_order_and_content():
    _, producer, consumer = make(capacity=8)
    out, seen = bytearray(SLOT), []
    for i in range(1000):
        assert producer.try_push(msg(i))
        if i % 3 == 2:                                  # run 1..3 deep so indices wrap unevenly
            while consumer.try_pop_into(out):
                assert out == msg(seq(out))
                seen.append(seq(out))
    while consumer.try_pop_into(out):
        seen.append(seq(out))
    assert seen == list(range(1000))
    assert producer.tail == 1000 and consumer.head == 1000


def test_every_message_arrives_exactly_once_across_wraps():
    _, producer, consumer = make(capacity=8)
    seen, out = [], bytearray(SLOT)
    for i in range(100):
        assert producer.try_push(msg(i))
        if i % 5 == 4:
            while consumer.try_pop_into(out):
                seen.append(seq(out))
                assert out == msg(seen[-1])
    while consumer.try_pop_into(out):
        seen.append(seq(out))
    assert seen == list(range(100))


def test_short_message_and_oversize_message():
    _, producer, consumer = make()
    assert producer.try_push(b"abc")
    assert consumer.try_pop()[:3] == b"abc"
    with pytest.raises(ValueError, match="does not fit"):
        producer.try_push(bytes(SLOT + 1))


def test_claim_commit_is_zero_copy_and_invisible_until_commit():
    region, producer, consumer = make(capacity=4)
    offset = producer.claim()
    assert offset >= _shm.RING_HEADER_SIZE
    assert producer.claim() == offset                  # claiming again: same slot
    region[offset:offset + SLOT] = msg(7)
    assert consumer.try_pop() is None                  # not published yet
    assert consumer.available() == 0
    producer.commit()
    read_at = consumer.peek()
    assert read_at == offset and seq(region[read_at:read_at + 8]) == 7
    consumer.release()
    assert consumer.peek() == -1
    with pytest.raises(RuntimeError, match="commit\\(\\) without claim"):
        producer.commit()
    with pytest.raises(RuntimeError, match="release\\(\\) without peek"):
        consumer.release()


def test_claim_on_a_full_ring_returns_minus_one():
    _, producer, _ = make(capacity=2)
    producer.try_push(msg(0))
    producer.try_push(msg(1))
    assert producer.claim() == -1
    assert producer.full_events == 1


def test_outstanding_claim_or_peek_blocks_the_other_paths():
    _, producer, consumer = make()
    producer.claim()
    with pytest.raises(RuntimeError, match="claim"):
        producer.try_push(msg(1))
    producer.commit()
    consumer.peek()
    with pytest.raises(RuntimeError, match="peek"):
        consumer.try_pop()


def test_push_batch_and_drain_into_across_the_wrap():
    _, producer, consumer = make(capacity=8)
    assert producer.push_batch(b"".join(msg(i) for i in range(6))) == 6
    out = bytearray(SLOT * 4)
    assert consumer.drain_into(out) == 4
    assert [seq(out[i * SLOT:]) for i in range(4)] == [0, 1, 2, 3]
    # 2 left; push 8 more: only 6 fit, and the batch wraps past the end of the slot array
    assert producer.push_batch(b"".join(msg(i) for i in range(6, 14))) == 6
    assert producer.push_batch(msg(99)) == 0
    out = bytearray(SLOT * 16)
    assert consumer.drain_into(out) == 8
    assert [seq(out[i * SLOT:]) for i in range(8)] == [4, 5, 6, 7, 8, 9, 10, 11]
    assert consumer.drain_into(out) == 0


def test_push_batch_count_and_drain_limit():
    _, producer, consumer = make(capacity=16)
    data = b"".join(msg(i) for i in range(10))
    assert producer.push_batch(data, 3) == 3
    out = bytearray(SLOT * 10)
    assert consumer.drain_into(out, 2) == 2
    assert consumer.drain_into(out) == 1 and seq(out) == 2


def test_roles_are_enforced():
    region, producer, consumer = make()
    observer = _shm.Ring(region, 0, SLOT, 8, "o")
    with pytest.raises(PermissionError, match="producer side"):
        producer.try_pop()
    with pytest.raises(PermissionError, match="consumer side"):
        consumer.try_push(msg(0))
    with pytest.raises(PermissionError, match="observer side"):
        observer.try_push(msg(0))
    producer.try_push(msg(0))
    assert observer.depth() == 1 and observer.tail == 1 and observer.head == 0


def test_attach_checks_the_ring_header():
    region = mmap.mmap(-1, 1 << 16)
    with pytest.raises(ValueError, match="no ring"):
        _shm.Ring(region, 0, SLOT, 8, "p")
    _shm.ring_format(region, 0, SLOT, 8)
    with pytest.raises(ValueError, match="no ring of slot_size 64 and capacity 16"):
        _shm.Ring(region, 0, SLOT, 16, "p")
    with pytest.raises(ValueError, match="power of two"):
        _shm.Ring(region, 0, SLOT, 12, "p")
    with pytest.raises(ValueError, match="outside"):
        _shm.Ring(region, 1 << 16, SLOT, 8, "p")


def test_a_new_handle_resumes_from_the_shared_indices():
    region, producer, consumer = make(capacity=8)
    for i in range(5):
        producer.try_push(msg(i))
    consumer.try_pop()
    del producer, consumer                              # both sides "restart"
    producer = _shm.Ring(region, 0, SLOT, 8, "p")
    consumer = _shm.Ring(region, 0, SLOT, 8, "c")
    assert producer.try_push(msg(5))
    assert [seq(consumer.try_pop()) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert consumer.try_pop() is None


def test_handles_keep_the_mapping_alive():
    region, producer, consumer = make()
    with pytest.raises(BufferError):
        region.close()
    del producer, consumer
    region.close()

"""Cross-process ring stress under the real agent runner: millions of checksummed messages between
two processes on two CPUs, for every idle strategy that can run on 2 cores; and a producer killed
with SIGKILL mid-write, then restarted."""
from __future__ import annotations

import signal

import pytest

from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document, output_of, wait_until

MESSAGES = 5_000_000


def pair_layout(write_layout, name, strategy: str, producer_params: dict, consumer_params: dict, **idle):
    idle_spec = {"strategy": strategy, **idle}
    doc = layout_document(
        name,
        processes=[{"name": "producer", "agent": "probe_agents:ProbeProducer", "cpu": 0, "idle": idle_spec,
                    "params": {"ring": "probe", **producer_params}},
                   {"name": "consumer", "agent": "probe_agents:ProbeConsumer", "cpu": 1, "idle": idle_spec,
                    "params": {"ring": "probe", **consumer_params}}],
        rings=[{"name": "probe", "segment": "main", "producer": "producer", "consumer": "consumer",
                "message": "Probe", "slot_size": 64, "capacity": 4096}])
    path = write_layout(doc)
    return path, load_layout(path)


def counters(memory) -> dict:
    return memory.counters_reader().by_label()


def assert_stream_whole(memory, expected: int):
    values = counters(memory)
    assert values["probe.errors"] == 0, f"first bad sequence {values['probe.first_error_seq']}"
    assert values["probe.received"] == expected
    ring = memory.ring("probe", "observer")
    assert ring.tail == expected and ring.head == expected and ring.depth() == 0


# busy_spin: two spinners on two CPUs is the limit this machine allows; doorbell's park timeout is
# long (5 s) so the stream only completes in time if producers really ring the consumer awake.
STRATEGIES = [("busy_spin", {}), ("yield", {}), ("backoff", {}), ("sleep", {"sleep_ns": 50_000}),
              ("doorbell", {"park_timeout_ns": 5_000_000_000, "spins": 10})]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,idle", STRATEGIES, ids=[s for s, _ in STRATEGIES])
def test_millions_of_messages_arrive_whole_in_order(write_layout, unique_name, spawner, strategy, idle):
    path, layout = pair_layout(write_layout, unique_name, strategy, {"messages": MESSAGES}, {"mode": "mixed"}, **idle)
    with SharedMemory.create(layout) as memory:
        consumer = spawner.start(path, "consumer")
        producer = spawner.start(path, "producer")
        wait_until(lambda: counters(memory).get("probe.received", 0) >= MESSAGES or consumer.poll() is not None
                   or producer.poll() is not None, 300, 0.05, f"{MESSAGES} messages")
        assert consumer.poll() is None and producer.poll() is None, output_of(consumer) + output_of(producer)
        assert_stream_whole(memory, MESSAGES)
        assert memory.ring("probe", "observer").full_events >= 0
        for proc in (producer, consumer):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0


@pytest.mark.slow
def test_producer_killed_mid_write_exposes_nothing_and_a_restart_resumes(write_layout, unique_name, spawner):
    total, stall = 2_000_000, 1_000_000
    path, layout = pair_layout(write_layout, unique_name, "backoff", {"messages": total, "stall_after": stall},
                               {"mode": "mixed"})
    with SharedMemory.create(layout) as memory:
        consumer = spawner.start(path, "consumer")
        producer = spawner.start(path, "producer")
        # The producer publishes `stall` records, claims the next slot, half-writes garbage, stops there.
        wait_until(lambda: counters(memory).get("probe.producer_stalled") == 1
                   and counters(memory).get("probe.received") == stall, 120, 0.05, "producer stalled mid-write")
        producer.send_signal(signal.SIGKILL)
        assert producer.wait(10) == -signal.SIGKILL
        restarted = spawner.start(path, "producer")
        wait_until(lambda: counters(memory).get("probe.received", 0) >= total or restarted.poll() is not None,
                   120, 0.05, "stream resumed to the end")
        assert counters(memory)["probe.producer_starts"] == 2
        assert_stream_whole(memory, total)     # the half-written slot was never seen; no gap, no repeat
        assert consumer.poll() is None


@pytest.mark.slow
def test_consumer_restart_resumes_from_the_shared_head(write_layout, unique_name, spawner):
    total = 2_000_000
    path, layout = pair_layout(write_layout, unique_name, "backoff", {"messages": total}, {"mode": "batch"})
    with SharedMemory.create(layout) as memory:
        consumer = spawner.start(path, "consumer")
        producer = spawner.start(path, "producer")
        wait_until(lambda: counters(memory).get("probe.received", 0) >= 300_000, 120, 0.01, "first part")
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(10) == 0
        assert counters(memory)["probe.received"] < total
        consumer = spawner.start(path, "consumer")
        wait_until(lambda: counters(memory).get("probe.received", 0) >= total or consumer.poll() is not None,
                   120, 0.05, "the rest")
        assert_stream_whole(memory, total)
        assert producer.poll() is None

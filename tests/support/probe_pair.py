"""A running producer/consumer pair of probe agents, for tests of the tools that watch an appliance."""
from __future__ import annotations

import contextlib

from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document, wait_until


def pair_document(name: str, version: int = 1) -> dict:
    """Producer and consumer that idle by sleeping 1 ms, so they leave the CPUs to the test."""
    idle = {"strategy": "sleep", "sleep_ns": 1_000_000}
    doc = layout_document(
        name,
        processes=[{"name": "producer", "agent": "probe_agents:ProbeProducer", "cpu": 0, "idle": idle,
                    "params": {"ring": "probe", "messages": 10**12, "batch": 64}},
                   {"name": "consumer", "agent": "probe_agents:ProbeConsumer", "cpu": 1, "idle": idle,
                    "params": {"ring": "probe", "mode": "batch"}}],
        rings=[{"name": "probe", "segment": "main", "producer": "producer", "consumer": "consumer",
                "message": "Probe", "slot_size": 64, "capacity": 4096}])
    doc["version"] = version
    return doc


@contextlib.contextmanager
def running_pair(write_layout, name: str, spawner):
    """Create the memory, start both agents, wait until messages flow; yields (layout path, processes)."""
    path = write_layout(pair_document(name))
    with SharedMemory.create(load_layout(path)) as memory:
        procs = {process: spawner.start(path, process) for process in ("consumer", "producer")}
        wait_until(lambda: memory.counters_reader().by_label().get("probe.received", 0) > 10_000, 60,
                   message="the pair streaming")
        yield path, procs

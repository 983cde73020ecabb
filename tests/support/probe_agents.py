"""Agents for the runtime tests: a producer of checksummed Probe records and a consumer that proves
the stream arrived whole (no message lost, duplicated, reordered or torn).

They run under the real AgentRunner (``python -m appliance.runtime.agent``), so the stress tests
exercise the ring, the idle strategy from the layout and the runner together. Results are
published in shared-memory counters the test reads.

Params (from the layout's ``params``):
  producer: ring, messages, batch (records per batch), stall_after (stop mid-write after this many
            published records: claim the next slot, scribble into it, never commit)
  consumer: ring, mode ("batch" | "single" | "mixed")
"""
from __future__ import annotations

import numpy as np

from appliance.messages.catalog import PROBE
from appliance.runtime.agent import Agent
from appliance.runtime.counters import CounterKind

K = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5,
              0xFF51AFD7ED558CCD], dtype=np.uint64)


def checksum(records: np.ndarray) -> np.ndarray:
    """Mix sequence and payload words (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        c = records["sequence"] * K[0]
        c = (c ^ (c >> np.uint64(29))) + records["payload0"] * K[1]
        c = (c ^ (c >> np.uint64(31))) + records["payload1"] * K[2]
        c = (c ^ (c >> np.uint64(27))) + records["payload2"] * K[3]
        c = (c ^ (c >> np.uint64(33))) + records["payload3"] * K[4]
        return c ^ (c >> np.uint64(30))


class ProbeProducer(Agent):
    name = "probe-producer"

    def on_start(self) -> None:
        params = self.context.params
        self.ring = self.context.memory.ring(params["ring"], "producer")
        self.total = int(params["messages"])
        self.batch_size = int(params.get("batch", 512))
        self.stall_after = params.get("stall_after")
        self.rng = np.random.default_rng()
        self.next_seq = self.ring.tail          # a restarted producer resumes where the ring says
        self.published = self.context.counters.allocate("probe.published", CounterKind.COUNTER)
        self.starts = self.context.counters.allocate("probe.producer_starts", CounterKind.COUNTER)
        self.starts.inc()
        self.stalled_flag = self.context.counters.allocate("probe.producer_stalled", CounterKind.INFO)
        self.stalled_flag.set(0)
        if self.starts.get() > 1:
            self.stall_after = None             # the rehearsal applies to the first incarnation only
        self.records = np.zeros(self.batch_size, dtype=PROBE.dtype)
        self.records["type_id"] = PROBE.type_id
        self.records["schema_version"] = PROBE.version
        self.records["size"] = PROBE.size
        self.raw = memoryview(self.records.view(np.uint8))
        self.pending = 0                        # records of the current batch not yet pushed
        self.cursor = 0
        self.batch_index = 0
        self.stalled = False
        self.segment_view = memoryview(self.context.memory.buffer_of(
            self.context.layout.rings[params["ring"]].segment))

    def _fill(self) -> None:
        n = min(self.batch_size, self.total - self.next_seq)
        if self.stall_after is not None:
            n = min(n, int(self.stall_after) - self.next_seq)
        r = self.records[:n]
        r["sequence"] = np.arange(self.next_seq, self.next_seq + n, dtype=np.uint64)
        for name in ("payload0", "payload1", "payload2", "payload3"):
            r[name] = self.rng.integers(0, 2**63, size=n, dtype=np.uint64)
        r["checksum"] = checksum(r)
        self.pending, self.cursor = n, 0
        self.batch_index += 1

    def do_work(self) -> int:
        if self.stalled:
            return 0
        if self.pending == 0:
            if self.stall_after is not None and self.next_seq >= int(self.stall_after):
                self._stall()
                return 0
            if self.next_seq >= self.total:
                return 0
            self._fill()
        size = PROBE.size
        mode = self.batch_index % 3
        if mode == 0:        # batch publish
            pushed = self.ring.push_batch(self.raw[self.cursor * size:], self.pending)
        elif mode == 1:      # one at a time
            pushed = 0
            while pushed < self.pending and self.ring.try_push(
                    self.raw[(self.cursor + pushed) * size:(self.cursor + pushed + 1) * size]):
                pushed += 1
        else:                # zero-copy claim / commit
            pushed = 0
            while pushed < self.pending:
                offset = self.ring.claim()
                if offset < 0:
                    break
                start = (self.cursor + pushed) * size
                self.segment_view[offset:offset + size] = self.raw[start:start + size]
                self.ring.commit()
                pushed += 1
        self.cursor += pushed
        self.pending -= pushed
        self.next_seq += pushed
        if pushed:
            self.published.add(pushed)
        return pushed

    def _stall(self) -> None:
        """Die-mid-write rehearsal: claim the next slot, write half a record of garbage, never commit."""
        offset = self.ring.claim()
        if offset >= 0:
            self.segment_view[offset:offset + PROBE.size // 2] = b"\xAB" * (PROBE.size // 2)
        self.stalled = True
        self.stalled_flag.set(1)


class ProbeConsumer(Agent):
    name = "probe-consumer"

    def on_start(self) -> None:
        params = self.context.params
        self.ring = self.context.memory.ring(params["ring"], "consumer")
        self.mode = params.get("mode", "mixed")
        counters = self.context.counters
        self.received = counters.allocate("probe.received", CounterKind.COUNTER)
        self.errors = counters.allocate("probe.errors", CounterKind.COUNTER)
        self.first_error_seq = counters.allocate("probe.first_error_seq", CounterKind.INFO)
        self.expected = self.ring.head            # messages consumed so far == next sequence
        self.buffer = np.zeros(1024, dtype=PROBE.dtype)
        self.raw = memoryview(self.buffer.view(np.uint8))
        self.one = bytearray(PROBE.size)
        self.cycle = 0

    def do_work(self) -> int:
        self.cycle += 1
        if self.mode == "batch" or (self.mode == "mixed" and self.cycle % 2):
            n = self.ring.drain_into(self.raw)
        else:
            n = 0
            while n < 64 and self.ring.try_pop_into(self.raw[n * PROBE.size:(n + 1) * PROBE.size]):
                n += 1
        if n:
            self._verify(self.buffer[:n])
        return n

    def _verify(self, records: np.ndarray) -> None:
        n = len(records)
        expected = np.arange(self.expected, self.expected + n, dtype=np.uint64)
        good = ((records["sequence"] == expected) & (records["checksum"] == checksum(records))
                & (records["type_id"] == PROBE.type_id) & (records["size"] == PROBE.size))
        bad = n - int(np.count_nonzero(good))
        if bad:
            if self.errors.get() == 0:
                self.first_error_seq.set(int(expected[int(np.argmin(good))]))
            self.errors.add(bad)
            # resynchronise on what arrived so one gap is counted once, not forever
            self.expected = int(records["sequence"][-1]) + 1
        else:
            self.expected += n
        self.received.add(n)

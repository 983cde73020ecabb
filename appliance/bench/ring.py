"""``appliance bench ring``: the shared-memory SPSC ring against the IPC a Python developer reaches for.

Two processes pinned to two different CPUs, 64-byte messages. For every peer:
round-trip latency by ping-pong (p50/p99/p99.9), and one-way throughput. The
ring also runs batched (``push_batch`` / ``drain_into``), and faster-fifo with
its own batch calls. Peers: ``multiprocessing.Queue``, ``multiprocessing.Pipe``,
``posix_ipc.MessageQueue``, pyzmq PUSH/PULL over ``ipc://`` and faster-fifo, all in
the same run with the same message size and pinning. Ratios are peer / ring for
latency and ring / peer for throughput.

The ring runs the real ``_shm.Ring`` over a shared anonymous mapping made
before the fork (the same code and memory ordering as a /dev/shm segment,
without leaving a file behind if the bench is interrupted). Both ring sides
busy-spin (two spinners on two CPUs); peers block in their own calls.

Every measurement has ``--timeout`` seconds. A peer that fails, dies or runs
out of time is listed as failed, with why, in the table and in the JSON
``errors``; the others are still measured and the exit status is 0 (it is 1
only if the ring itself could not be measured).
"""
from __future__ import annotations

import argparse
import gc
import json
import mmap
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from multiprocessing import connection

from appliance.bench.timing import machine_info as base_machine_info
from appliance.command_io.arguments import positive_int

MESSAGE_SIZE = 64
BATCH = 256
PEERS = ("shm_ring", "mp_queue", "mp_pipe", "posix_mq", "zmq_ipc", "faster_fifo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--round-trips", type=positive_int, default=100_000,
                        help="ping-pong round trips for the ring (default 100000)")
    parser.add_argument("--messages", type=positive_int, default=2_000_000,
                        help="one-way messages for the ring (default 2000000)")
    parser.add_argument("--peer-round-trips", type=positive_int, default=100_000,
                        help="round trips for each peer (default 100000; mp.Queue takes ~100 us each)")
    parser.add_argument("--peer-messages", type=positive_int, default=2_000_000,
                        help="one-way messages for each peer (default 2000000)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated subset of {','.join(PEERS)} (shm_ring always runs)")
    parser.add_argument("--timeout", type=positive_int, default=600, help="seconds allowed per measurement")


# ---------------------------------------------------------------------------
# child-process plumbing
# ---------------------------------------------------------------------------

def _cpus() -> tuple[int, int]:
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) > 1 else (allowed[0], allowed[0])


def _prepare_child(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    gc.collect()
    gc.disable()


def _percentiles(latencies) -> dict:
    import numpy as np
    values = np.asarray(latencies, dtype=np.int64)
    p50, p99, p999 = np.percentile(values, [50, 99, 99.9])
    return {"rtt_p50_ns": int(p50), "rtt_p99_ns": int(p99), "rtt_p999_ns": int(p999), "round_trips": int(values.size)}


class _Signal:
    """A one-shot child -> parent signal (``set()`` in the child) the parent waits on with the children."""

    def __init__(self):
        self.receiver, self._sender = multiprocessing.get_context("fork").Pipe(duplex=False)

    def set(self) -> None:
        self._sender.send_bytes(b"\1")

    def close(self) -> None:
        self.receiver.close()
        self._sender.close()


class _Child:
    def __init__(self, name: str, process, receiver):
        self.name, self.process, self.receiver = name, process, receiver
        self.reported, self.value = False, None


class _Children:
    """The children of one measurement, each reporting through its own pipe.

    Every wait (for a child's result or a ``_Signal``) shares one deadline, ``timeout`` seconds from the
    start, and watches every child: one that raises, or exits without a report (killed, os._exit, a crash
    in C), ends the wait at once with why. Leaving the block reaps them all: a short grace period after a
    clean measurement, killed at once after a failure, so a stuck peer never holds the run up.
    """

    GRACE = 5.0

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._children: list[_Child] = []
        self._signals: list[_Signal] = []

    def __enter__(self) -> "_Children":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _reap(*(c.process for c in self._children), grace=self.GRACE if exc_type is None else 0.0)
        for child in self._children:
            child.receiver.close()
        for signal in self._signals:
            signal.close()

    def signal(self) -> _Signal:
        """A child -> parent signal for this measurement (make it before starting the child that sets it)."""
        signal = _Signal()
        self._signals.append(signal)
        return signal

    def start(self, target, *args) -> _Child:
        ctx = multiprocessing.get_context("fork")
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, args=(sender, target, args), name=target.__name__, daemon=True)
        child = _Child(target.__name__, proc, receiver)
        self._children.append(child)
        proc.start()
        sender.close()          # the child holds the only writer: its exit is EOF here
        return child

    def result(self, child: _Child):
        """What `child`'s target returned (raises if any child failed, or at the deadline)."""
        while not child.reported:
            self._wait_once(f"{child.name} did not finish", [])
        return child.value

    def finish(self) -> None:
        """Wait until every child has reported (a measurement counts only if both sides finished)."""
        for child in self._children:
            self.result(child)

    def wait(self, signal: _Signal, what: str) -> None:
        while not signal.receiver.poll():
            self._wait_once(what, [signal.receiver])
        signal.receiver.recv_bytes()

    def _wait_once(self, what: str, also) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what} within {self.timeout:g} s")
        live = [c for c in self._children if not c.reported]
        connection.wait([*also, *(c.receiver for c in live), *(c.process.sentinel for c in live)], remaining)
        for child in live:
            exited = not child.process.is_alive()      # checked before the pipe: a report precedes the exit
            if child.receiver.poll():
                try:
                    kind, value = child.receiver.recv()
                except EOFError:
                    kind, value = "died", None
                if kind == "error":
                    raise RuntimeError(value)
                if kind == "result":
                    child.reported, child.value = True, value
                    continue
            elif not exited:
                continue
            child.process.join(1)
            raise RuntimeError(f"{child.name} exited with code {child.process.exitcode} without a result")


def _reap(*procs, grace: float = 5.0) -> None:
    """Join children for up to `grace` seconds in all, then kill what is still running."""
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()


def _child_main(sender, target, args):
    try:
        sender.send(("result", target(*args)))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        sender.send(("error", f"{target.__name__}: {exc!r}"))
    finally:
        sender.close()


# ---------------------------------------------------------------------------
# the ring
# ---------------------------------------------------------------------------

def _ring_region(capacity: int):
    from appliance.runtime import _shm
    size = _shm.RING_HEADER_SIZE + MESSAGE_SIZE * capacity
    region = mmap.mmap(-1, 2 * size)      # anonymous MAP_SHARED: shared with forked children
    _shm.ring_format(region, 0, MESSAGE_SIZE, capacity)
    _shm.ring_format(region, size, MESSAGE_SIZE, capacity)
    return region, (0, size)


def _ring_pinger(region, offsets, capacity, n, warmup, cpu):
    from array import array
    from time import perf_counter_ns
    from appliance.runtime import _shm
    _prepare_child(cpu)
    out = _shm.Ring(region, offsets[0], MESSAGE_SIZE, capacity, "p")
    back = _shm.Ring(region, offsets[1], MESSAGE_SIZE, capacity, "c")
    push, pop = out.try_push, back.try_pop_into
    msg, buf = bytes(MESSAGE_SIZE), bytearray(MESSAGE_SIZE)
    for _ in range(warmup):
        while not push(msg):
            pass
        while not pop(buf):
            pass
    latencies = array("q", bytes(8 * n))
    for i in range(n):
        t0 = perf_counter_ns()
        while not push(msg):
            pass
        while not pop(buf):
            pass
        latencies[i] = perf_counter_ns() - t0
    return _percentiles(latencies)


def _ring_ponger(region, offsets, capacity, n, cpu):
    from appliance.runtime import _shm
    _prepare_child(cpu)
    inbound = _shm.Ring(region, offsets[0], MESSAGE_SIZE, capacity, "c")
    reply = _shm.Ring(region, offsets[1], MESSAGE_SIZE, capacity, "p")
    pop, push = inbound.try_pop_into, reply.try_push
    buf = bytearray(MESSAGE_SIZE)
    for _ in range(n):
        while not pop(buf):
            pass
        while not push(buf):
            pass


def _ring_consumer(region, offset, capacity, n, batched, cpu):
    from appliance.runtime import _shm
    _prepare_child(cpu)
    ring = _shm.Ring(region, offset, MESSAGE_SIZE, capacity, "c")
    received = 0
    if batched:
        drain = ring.drain_into
        buf = bytearray(MESSAGE_SIZE * BATCH)
        while received < n:
            received += drain(buf)
    else:
        pop = ring.try_pop_into
        buf = bytearray(MESSAGE_SIZE)
        while received < n:
            if pop(buf):
                received += 1
    return time.monotonic_ns()


def _ring_producer(region, offset, capacity, n, batched, cpu, start, armed):
    from appliance.runtime import _shm
    _prepare_child(cpu)
    ring = _shm.Ring(region, offset, MESSAGE_SIZE, capacity, "p")
    armed.set()
    start.wait()
    if batched:
        push_batch = ring.push_batch
        batch = bytes(MESSAGE_SIZE * BATCH)
        sent = 0
        while sent < n:
            sent += push_batch(batch, min(BATCH, n - sent))
    else:
        push = ring.try_push
        msg = bytes(MESSAGE_SIZE)
        for _ in range(n):
            while not push(msg):
                pass


# ---------------------------------------------------------------------------
# peers: each is (make endpoints in the parent) -> (send, recv) in the children
# ---------------------------------------------------------------------------

class _Peer:
    """Two one-way channels a->b and b->a; subclasses build them before the fork."""
    name = ""
    batch = False

    def channel(self, index: int):
        """(sender factory, receiver factory) for channel `index`, called in the child."""
        raise NotImplementedError

    def hang_up(self) -> None:
        """In a sending child, once its receiver has confirmed it has everything: release this side."""

    def close(self) -> None:
        pass


class _MpQueue(_Peer):
    name = "mp_queue"

    def __init__(self):
        ctx = multiprocessing.get_context("fork")
        self.queues = [ctx.Queue(), ctx.Queue()]

    def channel(self, index):
        q = self.queues[index]
        return (lambda: q.put), (lambda: q.get)


class _MpPipe(_Peer):
    name = "mp_pipe"

    def __init__(self):
        ctx = multiprocessing.get_context("fork")
        self.pipes = [ctx.Pipe(duplex=False), ctx.Pipe(duplex=False)]

    def channel(self, index):
        receiver, sender = self.pipes[index]
        return (lambda: sender.send_bytes), (lambda: receiver.recv_bytes)


class _PosixMq(_Peer):
    name = "posix_mq"

    def __init__(self):
        import posix_ipc
        base = f"/appliance-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.names = [base + "-a", base + "-b"]
        self.queues = [posix_ipc.MessageQueue(n, posix_ipc.O_CREX, max_messages=10, max_message_size=MESSAGE_SIZE)
                       for n in self.names]

    def channel(self, index):
        q = self.queues[index]

        def recv_factory():
            receive = q.receive
            return lambda: receive()[0]
        return (lambda: q.send), recv_factory

    def close(self):
        for q in self.queues:
            q.close()
            q.unlink()


class _ZmqIpc(_Peer):
    name = "zmq_ipc"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="appliance-bench-zmq-")
        self.addresses = [f"ipc://{self.dir}/a", f"ipc://{self.dir}/b"]
        self._sockets = []          # this process's sockets (each child appends its own)

    def channel(self, index):
        address = self.addresses[index]

        def sender():
            import zmq
            sock = zmq.Context.instance().socket(zmq.PUSH)
            sock.connect(address)
            self._sockets.append(sock)
            return sock.send

        def receiver():
            import zmq
            sock = zmq.Context.instance().socket(zmq.PULL)
            sock.bind(address)
            self._sockets.append(sock)
            return sock.recv
        return sender, receiver

    def hang_up(self):
        # Only called once the receiver has confirmed every message, so nothing is left to linger for
        # (and linger 0 means term() cannot block if that confirmation timed out). Hanging up any
        # earlier loses messages: linger -1 and term() do not make them arrive. When the receiver
        # lags, its PULL queue fills (RCVHWM) and libzmq stops reading the socket; the sender's close
        # then reaches it as EPOLLHUP, which libzmq treats as an I/O error on a stopped input, and once
        # the application has drained the queue it drops the connection with the rest still unread in
        # the kernel (stream_engine_base in_event_internal / restart_input; libzmq #4660, #1922).
        for sock in self._sockets:
            sock.close(linger=0)
        import zmq
        zmq.Context.instance().term()

    def close(self):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


class _FasterFifo(_Peer):
    name = "faster_fifo"
    batch = True

    def __init__(self):
        from faster_fifo import Queue
        self.queues = [Queue(max_size_bytes=16 * 1024 * 1024), Queue(max_size_bytes=16 * 1024 * 1024)]

    def channel(self, index):
        q = self.queues[index]
        return (lambda: q.put), (lambda: q.get)

    def batch_calls(self):
        q = self.queues[0]
        return q.put_many, q.get_many

    def close(self):
        for q in self.queues:
            q.close()


PEER_CLASSES = {cls.name: cls for cls in (_MpQueue, _MpPipe, _PosixMq, _ZmqIpc, _FasterFifo)}


# A sending child hangs up only once its receiver has confirmed it has everything (`done` / `consumed`):
# a peer's own flushing on close is not a delivery guarantee (see _ZmqIpc.hang_up). Every wait in a child
# is bounded by the measurement's timeout; the parent kills what is left at the end anyway.

def _wait(event, timeout: float, what: str) -> None:
    if not event.wait(timeout):
        raise TimeoutError(f"{what} within {timeout:g} s")


def _meet(barrier, timeout: float, what: str) -> None:
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        raise TimeoutError(f"{what} within {timeout:g} s") from None


def _peer_pinger(peer, n, warmup, cpu, bound, done, timeout):
    from array import array
    from time import perf_counter_ns
    _prepare_child(cpu)
    send_factory, _ = peer.channel(0)
    _, recv_factory = peer.channel(1)
    recv = recv_factory()        # bind/open our inbound side, and connect only once the ponger has bound its own
    _meet(bound, timeout, "the ponger did not get ready")
    send = send_factory()
    msg = bytes(MESSAGE_SIZE)
    for _ in range(warmup):
        send(msg)
        recv()
    latencies = array("q", bytes(8 * n))
    for i in range(n):
        t0 = perf_counter_ns()
        send(msg)
        recv()
        latencies[i] = perf_counter_ns() - t0
    done.set()
    return _percentiles(latencies)


def _peer_ponger(peer, n, cpu, bound, done, timeout):
    _prepare_child(cpu)
    _, recv_factory = peer.channel(0)
    send_factory, _ = peer.channel(1)
    recv = recv_factory()
    _meet(bound, timeout, "the pinger did not get ready")
    send = send_factory()
    for _ in range(n):
        send(recv())
    _wait(done, timeout, "the pinger did not confirm the last reply")
    peer.hang_up()


def _peer_consumer(peer, n, batched, cpu, ready, consumed):
    _prepare_child(cpu)
    _, recv_factory = peer.channel(0)
    received = 0
    if batched:
        _, get_many = peer.batch_calls()
        ready.set()
        while received < n:
            received += len(get_many(max_messages_to_get=BATCH))
    else:
        recv = recv_factory()
        ready.set()
        for _ in range(n):
            recv()
        received = n
    end = time.monotonic_ns()
    consumed.set()
    return end


def _peer_producer(peer, n, batched, cpu, ready, start, armed, consumed, timeout):
    _prepare_child(cpu)
    send_factory, _ = peer.channel(0)
    _wait(ready, timeout, "the consumer did not get ready")
    msg = bytes(MESSAGE_SIZE)
    if batched:
        put_many, _ = peer.batch_calls()
        batch = [msg] * BATCH
        armed.set()
        _wait(start, timeout, "the start was not given")
        sent = 0
        while sent < n:
            k = min(BATCH, n - sent)
            put_many(batch[:k], timeout=timeout)
            sent += k
    else:
        send = send_factory()
        armed.set()
        _wait(start, timeout, "the start was not given")
        for _ in range(n):
            send(msg)
    _wait(consumed, timeout, "the consumer did not confirm every message")
    peer.hang_up()


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------

def measure_ring(round_trips: int, messages: int, timeout: float) -> dict:
    cpu_a, cpu_b = _cpus()
    capacity = 1024
    region, offsets = _ring_region(capacity)
    warmup = min(10_000, round_trips)
    with _Children(timeout) as children:
        children.start(_ring_ponger, region, offsets, capacity, round_trips + warmup, cpu_b)
        pinger = children.start(_ring_pinger, region, offsets, capacity, round_trips, warmup, cpu_a)
        result = children.result(pinger)
        children.finish()
    for batched, key in ((False, "throughput_msgs_per_s"), (True, "batch_throughput_msgs_per_s")):
        region, offsets = _ring_region(capacity)
        with _Children(timeout) as children:
            start, armed = multiprocessing.get_context("fork").Event(), children.signal()
            consumer = children.start(_ring_consumer, region, offsets[0], capacity, messages, batched, cpu_b)
            children.start(_ring_producer, region, offsets[0], capacity, messages, batched, cpu_a, start, armed)
            result[key] = _timed(children, consumer, start, armed, messages)
    result["messages"] = messages
    return result


def measure_peer(name: str, round_trips: int, messages: int, timeout: float) -> dict:
    """Round trips and one-way throughput of one peer; raises (with why) if any part fails or times out."""
    cpu_a, cpu_b = _cpus()
    ctx = multiprocessing.get_context("fork")
    cls = PEER_CLASSES[name]
    peer = cls()
    try:
        warmup = min(1_000, round_trips)
        with _Children(timeout) as children:
            bound, done = ctx.Barrier(2), ctx.Event()
            children.start(_peer_ponger, peer, round_trips + warmup, cpu_b, bound, done, timeout)
            pinger = children.start(_peer_pinger, peer, round_trips, warmup, cpu_a, bound, done, timeout)
            result = children.result(pinger)
            children.finish()
    finally:
        peer.close()
    for batched, key in ((False, "throughput_msgs_per_s"), (True, "batch_throughput_msgs_per_s")):
        if batched and not cls.batch:
            result[key] = None
            continue
        peer = cls()
        try:
            with _Children(timeout) as children:
                ready, start, consumed, armed = ctx.Event(), ctx.Event(), ctx.Event(), children.signal()
                consumer = children.start(_peer_consumer, peer, messages, batched, cpu_b, ready, consumed)
                children.start(_peer_producer, peer, messages, batched, cpu_a, ready, start, armed, consumed,
                               timeout)
                result[key] = _timed(children, consumer, start, armed, messages)
        finally:
            peer.close()
    result["messages"] = messages
    return result


def _timed(children: _Children, consumer: _Child, start, armed: _Signal, n: int) -> float:
    """Messages/s from releasing the armed producer to the consumer's last receive; then both must finish."""
    children.wait(armed, "the producer did not get ready")
    t0 = time.monotonic_ns()
    start.set()
    end = children.result(consumer)
    children.finish()
    return n / ((end - t0) / 1e9)


def machine_info() -> dict:
    info = base_machine_info()
    info.update(cpus_used=list(_cpus()), message_size=MESSAGE_SIZE)
    return info


def run(args: argparse.Namespace) -> int:
    from appliance.command_io.arguments import UsageError
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise UsageError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}      # what failed (a peer, or the ring itself) and why
    for name in ["shm_ring", *(p for p in peers if p != "shm_ring")]:
        try:
            if name == "shm_ring":
                results[name] = measure_ring(args.round_trips, args.messages, args.timeout)
            else:
                results[name] = measure_peer(name, args.peer_round_trips, args.peer_messages, args.timeout)
        except ImportError as exc:
            errors[name] = f"not installed ({exc.name}); pip install -e '.[bench]'"
        except Exception as exc:  # noqa: BLE001 - one broken peer must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
    ratios = _ratios(results)
    if args.json:
        json.dump({"machine": machine_info(), "results": results, "ratios": ratios, "errors": errors},
                  sys.stdout, indent=2)
        print()
    else:
        _print_table(results, ratios, errors)
    # A peer that failed is a result (reported above, with why); only the ring failing leaves nothing to report.
    return 1 if "shm_ring" in errors else 0


def _ratios(results: dict) -> dict:
    ring = results.get("shm_ring")
    out = {}
    if ring is None:
        return out
    for name, r in results.items():
        if name == "shm_ring" or not r:
            continue
        out[name] = {
            "rtt_p50_vs_ring": round(r["rtt_p50_ns"] / ring["rtt_p50_ns"], 1),
            "ring_throughput_vs_peer": round(ring["throughput_msgs_per_s"] / r["throughput_msgs_per_s"], 1),
        }
    return out


def _print_table(results: dict, ratios: dict, errors: dict) -> None:
    m = machine_info()
    print(f"ring benchmark: {m['message_size']}-byte messages, CPUs {m['cpus_used']}, {m['cpu_model']}, "
          f"kernel {m['kernel']}, Python {m['python']}")
    header = (f"{'peer':<12} {'round trips':>11} {'p50 ns':>9} {'p99 ns':>9} {'p99.9 ns':>10} {'msgs':>9} "
              f"{'msg/s':>12} {'batch msg/s':>12} {'p50 x ring':>10} {'ring x tput':>11}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        ratio = ratios.get(name, {})
        batch = r["batch_throughput_msgs_per_s"]
        print(f"{name:<12} {r['round_trips']:>11} {r['rtt_p50_ns']:>9} {r['rtt_p99_ns']:>9} {r['rtt_p999_ns']:>10} "
              f"{r['messages']:>9} {r['throughput_msgs_per_s']:>12,.0f} "
              f"{(f'{batch:,.0f}' if batch else '-'):>12} {ratio.get('rtt_p50_vs_ring', '-'):>10} "
              f"{ratio.get('ring_throughput_vs_peer', '-'):>11}")
    for name, why in errors.items():
        print(f"{name:<12} failed: {why}")

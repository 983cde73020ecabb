"""`appliance bench ring --json` runs the ring and every peer in one run and reports numbers and ratios.

Small counts: this checks the benchmark works and reports what it measured, not how fast anything is.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from appliance.bench import ring

PEERS = ("shm_ring", "mp_queue", "mp_pipe", "posix_mq", "zmq_ipc", "faster_fifo")


def test_bench_ring_json_reports_every_peer_and_ratios():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "ring", "--json", "--round-trips", "2000",
                           "--messages", "50000", "--peer-round-trips", "300", "--peer-messages", "3000",
                           "--timeout", "120"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert set(report["results"]) == set(PEERS) and not report["errors"]
    ring = report["results"]["shm_ring"]
    assert ring["round_trips"] == 2000 and ring["messages"] == 50000
    assert 0 < ring["rtt_p50_ns"] <= ring["rtt_p99_ns"] <= ring["rtt_p999_ns"]
    assert ring["throughput_msgs_per_s"] > 0 and ring["batch_throughput_msgs_per_s"] > 0
    for peer in PEERS[1:]:
        result = report["results"][peer]
        assert result["round_trips"] == 300 and result["throughput_msgs_per_s"] > 0
        assert report["ratios"][peer]["rtt_p50_vs_ring"] > 0
    assert report["machine"]["message_size"] == 64


def test_bench_ring_rejects_an_unknown_peer():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "ring", "--peers", "carrier_pigeon"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "unknown peer(s) carrier_pigeon" in proc.stderr


def test_bench_ring_rejects_a_bad_count():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "ring", "--messages", "-5"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "must be between 1 and" in proc.stderr


# ---------------------------------------------------------------------------
# in-process: a peer whose consumer lags, and peers that hang, raise or die
# ---------------------------------------------------------------------------

def _bench_args(*argv):
    from appliance.cli import build_parser
    return build_parser().parse_args(["bench", "ring", "--json", *argv])


def _exited(pid: int) -> bool:
    """True once `pid` has exited (gone, or a zombie its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_zmq_peer_delivers_every_message_to_a_consumer_that_lags_behind_the_producer(monkeypatch):
    """The hang in issue 15: on a busy machine the consumer falls behind, its PULL queue fills (RCVHWM) and
    libzmq stops reading the socket; a producer that hangs up then (it had sent everything) makes libzmq drop
    what is still unread in the kernel, so the consumer waits for a count it can never reach. Here the
    consumer lags on purpose: it reads nothing until the producer has exited, or for 3 s if the producer
    (correctly) waits for the consumer's word before hanging up."""
    pytest.importorskip("zmq")
    import multiprocessing


    ctx = multiprocessing.get_context("fork")

    class LaggingConsumerZmq(ring._ZmqIpc):
        made = 0        # instances made in the parent: the first is the ping-pong, the next ones throughput

        def __init__(self):
            super().__init__()
            type(self).made += 1
            self.lag = type(self).made > 1
            self.producer_pid = ctx.Value("q", 0, lock=False)

        def channel(self, index):
            send_factory, recv_factory = super().channel(index)
            if index != 0 or not self.lag:
                return send_factory, recv_factory

            def sender():
                self.producer_pid.value = os.getpid()
                return send_factory()

            def receiver():
                recv = recv_factory()
                lagged = []

                def lagging_recv():
                    if not lagged:
                        lagged.append(True)
                        deadline = time.monotonic() + 3.0
                        while time.monotonic() < deadline:
                            pid = self.producer_pid.value
                            if pid and _exited(pid):
                                break
                            time.sleep(0.01)
                    return recv()
                return lagging_recv
            return sender, receiver

    monkeypatch.setitem(ring.PEER_CLASSES, "zmq_ipc", LaggingConsumerZmq)
    # 1200 messages: more than the consumer's queue (RCVHWM 1000) and one read batch, few enough for the
    # socket buffer to take the rest, so a producer that does not wait can send them all and hang up.
    result = ring.measure_peer("zmq_ipc", round_trips=50, messages=1200, timeout=15)
    assert result["messages"] == 1200 and result["throughput_msgs_per_s"] > 0
    assert multiprocessing.active_children() == []


class _Broken:
    """Peers that go wrong in each way a child can: never answer, raise, or die without a word."""

    class Hangs(ring._Peer):
        name = "hangs"

        def __init__(self):
            import multiprocessing
            self.never, self._unused = multiprocessing.get_context("fork").Pipe(duplex=False)  # never written

        def channel(self, index):
            return (lambda: (lambda msg: None)), (lambda: self.never.recv_bytes)

        def close(self):
            self.never.close()
            self._unused.close()

    class Raises(Hangs):
        name = "raises"

        def channel(self, index):
            def sender():
                raise ConnectionRefusedError("no carrier pigeon at this address")
            return sender, (lambda: self.never.recv_bytes)

    class Dies(Hangs):
        name = "dies"

        def channel(self, index):
            def sender():
                os._exit(3)
            return sender, (lambda: self.never.recv_bytes)


def test_bench_ring_reports_a_peer_that_hangs_raises_or_dies_and_still_exits_0(monkeypatch, capsys):
    import multiprocessing


    broken = {cls.name: cls for cls in (_Broken.Hangs, _Broken.Raises, _Broken.Dies)}
    monkeypatch.setattr(ring, "PEERS", ring.PEERS + tuple(broken))
    monkeypatch.setattr(ring, "PEER_CLASSES", {**ring.PEER_CLASSES, **broken})
    args = _bench_args("--round-trips", "200", "--messages", "2000", "--peer-round-trips", "50",
                       "--peer-messages", "500", "--timeout", "3", "--peers", "hangs,mp_pipe,raises,dies")
    t0 = time.monotonic()
    status = ring.run(args)
    elapsed = time.monotonic() - t0
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert set(report["results"]) == {"shm_ring", "mp_pipe"} and report["results"]["mp_pipe"]["round_trips"] == 50
    errors = report["errors"]
    assert set(errors) == {"hangs", "raises", "dies"}
    assert "did not finish within 3 s" in errors["hangs"]
    assert "no carrier pigeon at this address" in errors["raises"]
    assert "exited with code 3" in errors["dies"]
    assert elapsed < 20, f"a broken peer held the run up for {elapsed:.1f} s"
    assert multiprocessing.active_children() == []


def test_bench_ring_table_lists_a_failed_peer_with_why(monkeypatch, capsys):

    monkeypatch.setattr(ring, "PEERS", ring.PEERS + ("raises",))
    monkeypatch.setattr(ring, "PEER_CLASSES", {**ring.PEER_CLASSES, "raises": _Broken.Raises})
    args = _bench_args("--round-trips", "200", "--messages", "2000", "--timeout", "30", "--peers", "raises")
    args.json = False
    assert ring.run(args) == 0
    out = capsys.readouterr().out
    assert "shm_ring" in out
    assert any(line.startswith("raises") and "failed" in line and "no carrier pigeon" in line
               for line in out.splitlines()), out

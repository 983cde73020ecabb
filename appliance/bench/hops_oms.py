"""``bench hops`` OMS: ApprovedOrder to the bytes handed to the socket (journal ``group``) and to the
bytes a TCP peer reads (a relay in front of the simulated exchange)."""
from __future__ import annotations

import os
import shutil
import signal
import time
from array import array

from appliance.bench.hops_rig import MeasuredAgent, Timeout, pinned, scratch_directory, summary


# ---------------------------------------------------------------------------
# OMS: ApprovedOrder -> bytes handed to the socket, and -> bytes read by the peer
# ---------------------------------------------------------------------------

class Relay:
    """A byte-for-byte TCP relay between the OMS and the exchange's order entry, run by the driver's
    loop: the peer that stamps when the OMS's bytes are read (``recv`` returned)."""

    def __init__(self, exchange_address: tuple[str, int]) -> None:
        import socket
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.exchange_address = exchange_address
        self.oms = self.exchange = None
        self.buffer = bytearray(65536)

    def pump(self) -> None:
        """Accept the OMS, forward whatever waits in either direction (never blocks)."""
        import socket
        if self.oms is None:
            try:
                self.oms, _ = self.listener.accept()
            except BlockingIOError:
                return
            self.oms.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.exchange = socket.create_connection(self.exchange_address, timeout=10)
            self.exchange.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.oms.setblocking(False)
            self.exchange.setblocking(False)
        self.forward(self.oms, self.exchange)
        self.forward(self.exchange, self.oms)

    def forward(self, source, sink) -> int:
        try:
            n = source.recv_into(self.buffer)
        except (BlockingIOError, InterruptedError):
            return 0
        if n == 0:
            raise RuntimeError("the relay's peer closed its connection")
        sink.sendall(memoryview(self.buffer)[:n])
        return n

    def close(self) -> None:
        for sock in (self.oms, self.exchange, self.listener):
            if sock is not None:
                sock.close()


def carries_enter_order(data, n: int) -> bool:
    """Whether the first ``n`` bytes read from the OMS hold an OUCH Enter Order: SoupBinTCP packets
    (a big-endian u16 length, then the type) walked from the start, one of them Unsequenced Data
    (b"U") carrying OUCH type b"O" (a heartbeat may come first in the same read)."""
    position = 0
    while position + 4 <= n:
        if data[position + 2] == 0x55 and data[position + 3] == 0x4F:
            return True
        position += 2 + ((data[position] << 8) | data[position + 1])
    return False


def measure_oms(args, driver_cpu: int, agent_cpu: int) -> dict:
    import socket

    from appliance.bench.exchange_load import exchange_args
    from appliance.exchange.config import default_config
    from appliance.messages.catalog import APPROVED_ORDER
    from appliance.messages.codes import TIF_IOC, Action, Side
    from appliance.oms.config import OmsConfig
    from appliance.sim.credentials import write_sim_login
    from appliance.sim.exchange_process import ExchangeProcess

    workdir = scratch_directory("oms")
    feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    feed.bind(("127.0.0.1", 0))
    exchange = ExchangeProcess(exchange_args(feed.getsockname()[1], os.path.join(workdir, "ctl.sock"), 0))
    agent = relay = None
    try:
        ports = exchange.wait_ready(args.timeout)
        try:
            os.sched_setaffinity(exchange.proc.pid, {driver_cpu})      # off the measured agent's CPU
        except OSError:
            pass
        relay = Relay(ports["order_entry"])
        credentials = os.path.join(workdir, "venue.credentials")
        write_sim_login(credentials, default_config(), OmsConfig().firm)
        params = {"venue": {"host": "127.0.0.1", "port": relay.port}, "journal": os.path.join(workdir, "journal.bin"),
                  "journal_size_mb": 256, "credentials": credentials, "durability": "group",
                  "risk_heartbeat_limit_ms": 60_000, "heartbeat_ms": 1000, "in_flight_timeout_ms": 60_000}
        samples_path = os.path.join(workdir, "ring_to_wire.bin")
        memory = None
        agent = MeasuredAgent("oms", params, agent_cpu, args.timeout, workdir, samples_path)
        memory = agent.memory
        control = memory.control("*")
        control.write_gate(0)
        heartbeat = memory.heartbeat("risk")
        heartbeat.begin()
        heartbeat.end(0)
        deadline = time.monotonic() + args.timeout
        while control.get("oms_ready") != 1:
            relay.pump()
            agent.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the OMS did not log in through the relay in time:\n" + agent.log_tail())
        approved = memory.ring("approved_orders", "producer")
        buffer = memory.ring_buffer("approved_orders")
        drains = [memory.ring("exec_to_strategy", "consumer"), memory.ring("exec_to_risk", "consumer")]
        pack = APPROVED_ORDER.pack_into
        total = args.warmup + args.samples
        to_peer = array("q", bytes(8 * total))

        def drive() -> None:
            tns = time.time_ns
            oms_sock, exchange_sock, data = relay.oms, relay.exchange, relay.buffer
            recv_into, send = oms_sock.recv_into, exchange_sock.sendall
            view = memoryview(data)
            for i in range(total):
                heartbeat.begin()
                heartbeat.end(0)
                offset = approved.claim()
                now = tns()
                pack(buffer, offset, i + 1, 0, 1, 0, Action.NEW, Side.BUY, 0, 0, 100, 1_000_000, TIF_IOC, 0, 0, 0, 0,
                     now - 30_000, now - 20_000, now - 10_000, now)
                approved.commit()
                spins = 0
                while True:
                    try:
                        n = recv_into(data)
                    except BlockingIOError:
                        spins += 1
                        if spins & 4095 == 0 and tns() - now > args.timeout * 1e9:
                            agent.check_alive()
                            rejects = {k: v for k, v in memory.counters_reader().by_label().items()
                                       if k.startswith("oms.rejects.") and v}
                            raise Timeout(f"the OMS sent no Enter Order in time (its rejects: {rejects}):\n"
                                          + agent.log_tail())
                        continue
                    t_read = tns()
                    if n == 0:
                        raise RuntimeError("the OMS closed its connection:\n" + agent.log_tail())
                    send(view[:n])
                    if carries_enter_order(data, n):
                        to_peer[i] = t_read - now
                        break
                # the venue's answers (accepted, canceled: IOC far below the market) back to the OMS, untimed
                reports = 0
                deadline = time.monotonic() + args.timeout
                while reports < 4:
                    relay.pump()
                    for ring in drains:
                        while ring.peek() >= 0:
                            ring.release()
                            reports += 1
                    if time.monotonic() > deadline:
                        raise Timeout("the OMS reported no Accepted and Canceled in time:\n" + agent.log_tail())
        pinned(driver_cpu, drive)
        agent.proc.send_signal(signal.SIGTERM)          # the OMS logs out through the relay, then writes its samples
        deadline = time.monotonic() + args.timeout
        relaying = True
        while agent.proc.poll() is None and time.monotonic() < deadline:
            if relaying:                                # until the OMS's logout closed the relay; then
                try:                                    # wait on: a second SIGTERM (stop) after its runner
                    relay.pump()                        # returned would kill it before it wrote its samples
                except (RuntimeError, OSError):
                    relaying = False
            time.sleep(0.001)
        ring_to_wire = agent.stop()
        if len(ring_to_wire) != total:
            raise RuntimeError(f"the OMS recorded {len(ring_to_wire)} ring-to-socket spans of {total} orders")
        peer = summary(to_peer[args.warmup:])
        return {**summary(ring_to_wire[args.warmup:]), "warmup": args.warmup, "durability": "group",
                "label": "ring read->socket", "cases": {"approved -> bytes read by peer": peer},
                "approved_to_peer": peer,
                "what": "ApprovedOrder read from the ring -> bytes handed to the socket (journal group); and "
                        "ApprovedOrder committed -> the Enter Order read by the peer (a TCP relay to the exchange)"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        if relay is not None:
            relay.close()
        exchange.terminate()
        exchange.close()
        feed.close()
        shutil.rmtree(workdir, ignore_errors=True)

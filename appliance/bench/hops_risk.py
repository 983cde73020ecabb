"""``bench hops`` risk: OrderIntent committed to ApprovedOrder committed, every check configured.

Each approved order is cancelled by the driver (the venue's answer, untimed). The measured flow
sends the next intent once risk has finished the duty cycle that read that report (its process
record's duty-cycle count moved on after the report left the ring), so a sample is the hop alone,
not the tail of the previous order's booking and report; the case ``back to back`` sends it at
once (the previous round's pacing: the hop plus whatever of that work is still running)."""
from __future__ import annotations

import os
import shutil
import time
from array import array

from appliance.bench.hops_rig import (SYMBOLS, TICK, MeasuredAgent, Timeout, pinned, scratch_directory,
                                      spin_peek, summary)


# ---------------------------------------------------------------------------
# risk: OrderIntent -> ApprovedOrder
# ---------------------------------------------------------------------------

def measure_risk(args, driver_cpu: int, agent_cpu: int) -> dict:
    import random

    import yaml

    from appliance.bench.risk import limits_document
    from appliance.messages.catalog import APPROVED_ORDER, EXECUTION_REPORT, ORDER_INTENT, RISK_SNAPSHOT
    from appliance.messages.codes import Action, ExecEvent, SnapshotKind

    workdir = scratch_directory("risk")
    agent = None
    try:
        now = time.time_ns()
        limits = limits_document(SYMBOLS, now)
        # every check configured and reached; the flow repeats prices, so the identical-order filter
        # (still checked) gets room for the driver's rate
        limits["global"].update(max_identical_orders=10_000)
        limits_path = os.path.join(workdir, "limits.yaml")
        with open(limits_path, "w") as fh:
            yaml.safe_dump(limits, fh, sort_keys=False)
        agent = MeasuredAgent("risk", {"limits": limits_path, "state_file": os.path.join(workdir, "state.json")},
                              agent_cpu, args.timeout, workdir)
        memory = agent.memory
        market = memory.market_state_writer()
        rng = random.Random(42)
        refs = [rng.randrange(2_000, 50_000) * TICK for _ in SYMBOLS]
        for sid, ref in enumerate(refs):
            market.publish(sid, ref - TICK, 500, ref + TICK, 500, ref, 100, 0, ord("T"), 1, now, now)
        intents = memory.ring("order_intents", "producer")
        intents_buffer = memory.ring_buffer("order_intents")
        approved = memory.ring("approved_orders", "consumer")
        approved_buffer = memory.ring_buffer("approved_orders")
        rejects = memory.ring("risk_rejects", "consumer")
        events = memory.ring("risk_events", "consumer")
        reports = memory.ring("exec_to_risk", "producer")
        reports_buffer = memory.ring_buffer("exec_to_risk")
        control = memory.control("*")
        # the OMS's answer to risk's snapshot request: no positions, no open orders
        offset = reports.claim()
        RISK_SNAPSHOT.pack_into(reports_buffer, offset, 0, 0, 0, 0xFFFFFFFF, int(SnapshotKind.END), 0, 0, 0, 0, 0, 0,
                                0, time.time_ns())
        reports.commit()
        deadline = time.monotonic() + args.timeout
        while control.get("risk_ready") != 1:
            agent.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("risk did not become ready (the snapshot's END) in time:\n" + agent.log_tail())
            time.sleep(0.005)
        from appliance.runtime import _shm
        from appliance.runtime.counters import process_record_offset
        atomics = memory.process_table_atomics()
        beats_at = process_record_offset(agent.layout, agent.layout.processes["risk"]) + _shm.PROC_BEATS_OFFSET
        flow = []
        for i in range(args.warmup + args.samples):
            sid = rng.randrange(len(SYMBOLS))
            buy = rng.random() < 0.5
            away = rng.randrange(1, 6) * TICK
            flow.append((10_000 + i, sid, 66 if buy else 83, refs[sid] - away if buy else refs[sid] + away))
        t_out = APPROVED_ORDER.offset_of["t_risk_out_ns"]
        t_in = APPROVED_ORDER.offset_of["t_strategy_out_ns"]
        import struct
        u64 = struct.Struct("<Q").unpack_from
        pack_intent, pack_report = ORDER_INTENT.pack_into, EXECUTION_REPORT.pack_into
        stamp = struct.Struct("<Q").pack_into
        t_stamp = ORDER_INTENT.offset_of["t_strategy_out_ns"]
        new, canceled = int(Action.NEW), int(ExecEvent.CANCELED)
        refused = 0

        def settled(spins: int = 0) -> None:
            """Until risk finished the duty cycle that took the last report: the ring empty, then
            its duty-cycle count moved on."""
            load = atomics.load
            while reports.depth():
                spins += 1
                if spins & 4095 == 0:
                    agent.check_alive()
            beats = load(beats_at)
            deadline = time.monotonic() + args.timeout
            while load(beats_at) == beats:
                spins += 1
                if spins & 4095 == 0:
                    agent.check_alive()
                    if time.monotonic() > deadline:
                        raise Timeout("risk's duty cycle did not move on:\n" + agent.log_tail())

        def drive(flow, latencies, paced: bool) -> None:
            nonlocal refused
            tns = time.time_ns
            for i, (cid, sid, side, price) in enumerate(flow):
                offset = intents.claim()
                pack_intent(intents_buffer, offset, cid, 0, 1, sid, new, side, 0, 0, 100, price, 99998, 0, 0, 0, 0, 0, 0, 0)
                stamp(intents_buffer, offset + t_stamp, tns())       # the instant before the commit
                intents.commit()
                offset = spin_peek(approved, agent, args.timeout, rejects)
                if offset < 0:
                    refused += 1
                    rejects.release()
                    continue
                latencies[i] = u64(approved_buffer, offset + t_out)[0] - u64(approved_buffer, offset + t_in)[0]
                approved.release()
                # the venue's answer, untimed: the order is gone (risk's open orders stay as they were)
                offset = reports.claim()
                pack_report(reports_buffer, offset, cid, 0, 0, 0, 1, sid, canceled, side, 0, 0, 100, price, 0, 0, 0,
                            0, 0, 0, 0)
                reports.commit()
                while events.peek() >= 0:
                    events.release()
                if paced:
                    settled()
        paced = array("q", bytes(8 * len(flow)))
        back_to_back = array("q", bytes(8 * len(flow)))
        pinned(driver_cpu, lambda: drive(flow, paced, True))
        refused_paced = refused
        again = [(cid + len(flow), sid, side, price) for cid, sid, side, price in flow]   # new client order ids
        pinned(driver_cpu, lambda: drive(again, back_to_back, False))
        if refused:
            raise RuntimeError(f"risk refused {refused} of {2 * len(flow)} orders ({refused_paced} paced): "
                               "not every check was reached")
        return {**summary(paced[args.warmup:]), "warmup": args.warmup, "label": "intent->approved",
                "cases": {"back to back (previous order's work running)": summary(back_to_back[args.warmup:])},
                "what": "OrderIntent committed -> ApprovedOrder committed, every check configured and reached; "
                        "the next intent once risk finished the previous order's report (the case: at once)"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        shutil.rmtree(workdir, ignore_errors=True)

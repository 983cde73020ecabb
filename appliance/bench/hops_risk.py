"""``bench hops`` risk: OrderIntent committed to ApprovedOrder committed, every check configured."""
from __future__ import annotations

import os
import shutil
import time
from array import array

from appliance.bench.hops_rig import SYMBOLS, TICK, MeasuredAgent, pinned, scratch_directory, spin_peek, summary


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
        latencies = array("q", bytes(8 * len(flow)))
        pack_intent, pack_report = ORDER_INTENT.pack_into, EXECUTION_REPORT.pack_into
        new, canceled = int(Action.NEW), int(ExecEvent.CANCELED)
        refused = 0

        def drive() -> None:
            nonlocal refused
            tns = time.time_ns
            for i, (cid, sid, side, price) in enumerate(flow):
                offset = intents.claim()
                pack_intent(intents_buffer, offset, cid, 0, 1, sid, new, side, 0, 100, price, 99998, 0, 0, tns())
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
                            0, 0, 0)
                reports.commit()
                while events.peek() >= 0:
                    events.release()
        pinned(driver_cpu, drive)
        if refused:
            raise RuntimeError(f"risk refused {refused} of {len(flow)} orders: not every check was reached")
        return {**summary(latencies[args.warmup:]), "warmup": args.warmup, "label": "intent->approved",
                "what": "OrderIntent committed -> "
                "ApprovedOrder committed, every check configured and reached"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        shutil.rmtree(workdir, ignore_errors=True)

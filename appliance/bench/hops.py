"""``appliance bench hops``: each hop of the order path alone, as on a machine with a core per process.

Every hop runs the real agent in its own process through the real runner (``python -m
appliance.bench.hops worker``: ``runtime.agent.build_runner`` on a private layout, the agent
pinned by the layout's ``cpu`` to one CPU with the ``busy_spin`` idle strategy); this process is
the driver, pinned to the other CPU, spinning too: it plays every neighbour of the measured
agent (writes its input ring, reads its output ring, answers what it must to keep the agent
working) and nothing else spins. The latency of one sample is read from the messages' own
timestamps (``time.time_ns``, one clock for every process): the driver stamps its input the
instant before it commits it, the agent stamps its output the instant before it commits it.

- ``feed``: one MoldUDP64 datagram with one top-changing ITCH message (an Add Order improving
  the bid, then its Delete), and a datagram of 20 messages over 5 symbols (20 Adds improving
  both sides, then the 20 Deletes), sent from the publisher's address: from the driver's
  ``sendto`` (stamped before the call) and from the kernel receive timestamp (``t_rx_ns``) to
  the BookUpdate committed (``t_feed_out_ns``; of the packet's last symbol, final state);
- ``strategy``: BookUpdate committed (``t_feed_out_ns``, stamped by the driver) to the first
  OrderIntent committed (``t_strategy_out_ns``): the reference market maker requoting its bid
  and ask (the mid moves 3 ticks each sample; the driver acknowledges every intent as the OMS
  would, untimed, and waits until the strategy read the acknowledgements);
- ``risk``: OrderIntent committed (``t_strategy_out_ns``) to ApprovedOrder committed
  (``t_risk_out_ns``), every check configured and reached (``bench/risk.py``'s limits); the
  driver answers risk's snapshot request and cancels each approved order afterwards, untimed, and
  sends the next intent once risk's duty cycle that read the cancel is over (the case ``back to
  back``: at once, so a sample may include the previous order's booking and report);
- ``oms``: ApprovedOrder read from the ring to the bytes handed to the socket (the OMS's own
  ``sample_ring_to_wire`` span, journal ``group``) and ApprovedOrder committed (``t_risk_out_ns``)
  to the bytes read by the peer: the driver is a byte-for-byte TCP relay between the OMS and
  the simulated exchange (``sim/exchange_process.py``) and stamps the Enter Order when its
  ``recv`` returns it;
- ``ring``: one crossing of the shared-memory ring, half the round trip of ``bench/ring.py``'s
  pinned ping-pong.

This module is the command (options, the run, the sums, verdicts and the table); each hop is a
module of its own (``hops_feed``, ``hops_strategy``, ``hops_risk``, ``hops_oms``) on the shared rig
(``hops_rig``: the measured agent's process and the driver's tools).

Percentiles are nearest rank (``bench/timing.percentile``); ``--warmup`` samples of every hop
are dropped. ``sum`` adds the hops' percentiles (feed from the kernel receive, OMS to the
bytes handed to the socket): an upper bound of a path's percentile, not a measured path.
"""
from __future__ import annotations
from __future__ import annotations

import argparse
import os
import sys

from appliance.command_io.arguments import bounded, positive_int
from appliance.bench.hops_feed import measure_feed
from appliance.bench.hops_oms import measure_oms
from appliance.bench.hops_rig import worker
from appliance.bench.hops_risk import measure_risk
from appliance.bench.hops_strategy import measure_strategy


# The co-located C++ market maker's budget (issue 16), microseconds per stage.
BUDGET_US = (("decode", 1), ("book", 1), ("signal", 3), ("risk", 2), ("encode+send", 2), ("NIC", 1))
# The targets, p50 in ns (feed including the kernel receive); p99 of each at most 3x its p50.
TARGET_P50_NS = {"feed": 4_000, "strategy": 3_000, "risk": 1_500, "oms": 3_000}
TARGET_SUM_P50_NS = 12_000
GOAL_SUM_P50_NS = 10_000
TAIL_RATIO = 3
HOPS = ("feed", "strategy", "risk", "oms", "ring")




def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=positive_int, default=10_000,
                        help="measured samples per hop and case (default 10000: the whole bench in about a minute "
                             "on a 2-core box)")
    parser.add_argument("--warmup", type=bounded(int, 0, 1_000_000), default=1_000,
                        help="samples per hop before measuring (default 1000)")
    parser.add_argument("--ring-round-trips", type=positive_int, default=50_000,
                        help="ring ping-pong round trips (default 50000)")
    parser.add_argument("--hops", default=",".join(HOPS),
                        help=f"hops to measure, comma separated (default {','.join(HOPS)})")
    parser.add_argument("--timeout", type=bounded(float, 1, 600, " s"), default=30.0,
                        help="seconds allowed for an agent to start and for any one sample (default 30)")


def _hop_names(text: str) -> list[str]:
    from appliance.command_io.arguments import UsageError
    names = [h.strip() for h in text.split(",") if h.strip()]
    if not names or any(h not in HOPS for h in names):
        raise UsageError(f"--hops: choose from {', '.join(HOPS)} (got {text!r})")
    return names


def cpus() -> tuple[int, int]:
    """(driver CPU, agent CPU): two different CPUs when this process may use two."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[-1])


# ---------------------------------------------------------------------------
# ring: one crossing
# ---------------------------------------------------------------------------

def measure_ring_crossing(args, driver_cpu: int, agent_cpu: int) -> dict:
    """Half the round trip of ``bench/ring.py``'s ping-pong: two processes on the two CPUs, both spinning."""
    from appliance.bench.ring import measure_ring
    rtt = measure_ring(args.ring_round_trips, 1000, args.timeout)
    return {"samples": rtt["round_trips"], "p50_ns": rtt["rtt_p50_ns"] // 2, "p99_ns": rtt["rtt_p99_ns"] // 2,
            "p999_ns": rtt["rtt_p999_ns"] // 2, "round_trip": rtt, "label": "one crossing",
            "what": "one crossing of the shared-memory ring: half a ping-pong round trip (bench/ring.py)"}


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

MEASURE = {"feed": measure_feed, "strategy": measure_strategy, "risk": measure_risk, "oms": measure_oms, "ring": measure_ring_crossing}


def run(args: argparse.Namespace) -> int:
    from appliance.bench.timing import publish
    names = _hop_names(args.hops)
    driver_cpu, agent_cpu = cpus()
    hops: dict[str, dict] = {}
    errors: dict[str, str] = {}
    peers: dict[str, dict] = {}
    for name in names:
        try:
            hops[name] = MEASURE[name](args, driver_cpu, agent_cpu)
        except Exception as exc:            # noqa: BLE001 - reported, the other hops still run
            errors[name] = f"{type(exc).__name__}: {exc}"
    if "strategy" in hops:
        try:
            python = measure_strategy(args, driver_cpu, agent_cpu, compiled_step=False)
            peers["strategy_python_quote"] = {
                **python, "ours_p50_ns": hops["strategy"]["p50_ns"],
                "what": "the strategy hop with the market maker's compiled_step: false: desired_quotes and "
                        "needs_requote in Python, the reference of strategy/_quote_fast.c (ours: the compiled "
                        "step), same updates, same run"}
        except Exception as exc:            # noqa: BLE001 - reported beside the hops
            errors["strategy_python_quote"] = f"{type(exc).__name__}: {exc}"
    decode = hops.get("feed", {}).pop("peers", None)
    if decode:
        for case in ("single", "packet20"):
            ours = decode[f"decode_{case}_c"]
            peers[f"itch_decode_{case}_python"] = {
                **decode[f"decode_{case}_python"], "ours": ours, "ours_p50_ns": ours["p50_ns"],
                "what": f"the feed's decode of the {case} datagram: FeedPacketScanner(use_c=False), the pure-Python "
                        f"reference of wire/_itch_fast.c (ours: use_c=True), in the driver's process"}
        python = decode.get("agent_python_books")
        if python:
            feed = hops["feed"]
            peers["feed_agent_python_books"] = {
                **python["single_rx"], "packet20": python["packet20_rx"], "ours_p50_ns": feed["p50_ns"],
                "ours_packet20_p50_ns": feed["packet20"]["from_rx"]["p50_ns"],
                "what": "the feed hop (kernel receive -> BookUpdate committed) with params.compiled_books: false: "
                        "the Python BookSet and BookOutputs, the reference of feed/_book_fast.c (ours: the "
                        "compiled books), same datagrams, same run"}
    peers["not_available"] = {
        "what": "no pure-Python reference exists for the other hops: the risk and OMS paths and the strategy "
                "host are Python already (today's implementation is the reference), and the ring has only its C "
                "implementation (bench ring compares it with multiprocessing, posix_ipc, zmq, faster-fifo)"}
    results = {"hops": hops, **sums(hops), "driver_cpu": driver_cpu, "agent_cpu": agent_cpu,
               "targets": {"p50_ns": TARGET_P50_NS, "sum_p50_ns": TARGET_SUM_P50_NS, "p99_over_p50": TAIL_RATIO},
               "budget_ns": {stage: us * 1000 for stage, us in BUDGET_US}, "verdicts": verdicts(hops)}
    return publish("hops", results, errors, getattr(args, "json", False), _print_table, peers=peers,
                   ratios=ratios(hops, peers))


def sums(hops: dict) -> dict:
    """The hops' percentiles added (feed, strategy, risk, oms): None unless all four were measured."""
    path = [hops.get(h) for h in ("feed", "strategy", "risk", "oms")]
    if any(p is None for p in path):
        return {"sum_p50_ns": None, "sum_p99_ns": None, "sum_p999_ns": None}
    return {f"sum_{key}_ns": sum(p[f"{key}_ns"] for p in path) for key in ("p50", "p99", "p999")}


def verdicts(hops: dict) -> dict:
    """met / not met per target line (None: not measured)."""
    out: dict[str, bool | None] = {}
    for hop, target in TARGET_P50_NS.items():
        h = hops.get(hop)
        out[f"{hop}_p50"] = None if h is None else h["p50_ns"] <= target
        out[f"{hop}_p99"] = None if h is None else h["p99_ns"] <= TAIL_RATIO * h["p50_ns"]
    total = sums(hops)
    out["sum_p50"] = None if total["sum_p50_ns"] is None else total["sum_p50_ns"] <= TARGET_SUM_P50_NS
    out["sum_p50_goal"] = None if total["sum_p50_ns"] is None else total["sum_p50_ns"] <= GOAL_SUM_P50_NS
    return out


def ratios(hops: dict, peers: dict) -> dict:
    """Each hop's p50 over its target; each peer's p50 over ours where both exist."""
    out = {f"{hop}_p50_vs_target": hops[hop]["p50_ns"] / target
           for hop, target in TARGET_P50_NS.items() if hop in hops}
    for name, peer in peers.items():
        ours = peer.get("ours_p50_ns")
        if peer.get("p50_ns") and ours:
            out[f"{name}_vs_ours_p50"] = peer["p50_ns"] / ours
    return out


def _print_table(report: dict) -> None:
    from appliance.bench.table import fmt, one_line
    r, m = report["results"], report["machine"]
    hops, verdict = r["hops"], r["verdicts"]
    print(f"hops: each agent alone in its own process on CPU {r['agent_cpu']} (busy spin), the driver on CPU "
          f"{r['driver_cpu']}; Python {m['python']} on {m['cpu_model'] or 'unknown CPU'}")
    header = f"{'hop':<38} {'samples':>8} {'p50 ns':>9} {'p99 ns':>9} {'p99.9 ns':>9} {'target p50':>11} " \
             f"{'p50':>8} {'p99<=3x':>8}   budget (C++ market maker)"
    print(header)
    print("-" * len(header))
    budget = [f"{stage} {us} us" for stage, us in BUDGET_US]

    def mark(v):
        return "-" if v is None else ("met" if v else "NOT met")
    lines = []
    for hop in HOPS:
        h = hops.get(hop)
        target = TARGET_P50_NS.get(hop)
        if h is None:
            if hop in report["errors"]:
                lines.append(f"{hop:<38} FAILED: {one_line(report['errors'][hop])}")
            continue
        lines.append(f"{hop + ' (' + h.get('label', h['what'])[:28] + ')':<38} {h['samples']:>8,} {h['p50_ns']:>9,} "
                     f"{h['p99_ns']:>9,} {h['p999_ns']:>9,} {fmt(target, ','):>11} "
                     f"{mark(verdict.get(hop + '_p50')):>8} {mark(verdict.get(hop + '_p99')):>8}")
        for extra_name, extra in h.get("cases", {}).items():
            lines.append(f"{'  ' + extra_name:<38} {extra['samples']:>8,} {extra['p50_ns']:>9,} {extra['p99_ns']:>9,} "
                         f"{extra['p999_ns']:>9,}")
    lines.append(f"{'sum (feed+strategy+risk+oms)':<38} {'':>8} {fmt(r['sum_p50_ns'], ','):>9} "
                 f"{fmt(r['sum_p99_ns'], ','):>9} {fmt(r['sum_p999_ns'], ','):>9} {TARGET_SUM_P50_NS:>11,} "
                 f"{mark(verdict.get('sum_p50')):>8} {'':>8}")
    lines.append(f"{'  goal beyond':<38} {'':>8} {'':>9} {'':>9} {'':>9} {GOAL_SUM_P50_NS:>11,} "
                 f"{mark(verdict.get('sum_p50_goal')):>8}")
    budget_width = max(len(line) for line in lines if "FAILED" not in line)
    for i, line in enumerate(lines):
        print(line.ljust(budget_width) + ("   " + budget[i] if i < len(budget) and "FAILED" not in line else ""))
    rest = budget[len(lines):] + ["total 10 us"]
    for item in rest:
        print(" " * budget_width + "   " + item)
    for name, peer in report["peers"].items():
        if "p50_ns" not in peer:
            print(f"peers: {peer['what']}")
            continue
        print(f"peer {name}: p50 {peer['p50_ns']:,} ns, p99 {peer['p99_ns']:,} ns; ours p50 {peer['ours_p50_ns']:,} ns; "
              f"{report['ratios'][name + '_vs_ours_p50']:.1f}x ours ({peer['what']})")
    for name, error in report["errors"].items():
        print(f"error ({name}): {one_line(error)}")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "worker":
        return worker(argv[1], argv[2], argv[3] if len(argv) > 3 else None)
    print("usage: python -m appliance.bench.hops worker LAYOUT PROCESS [SAMPLES]  (run by appliance bench hops)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

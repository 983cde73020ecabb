"""The table of ``appliance bench feed`` (without ``--json``): the replay part, then the live part."""
from __future__ import annotations

from appliance.bench.feed_live import SENDER_LIMIT_RATIO, TARGET_RX_TO_RING_P50_NS
from appliance.bench.feed_replay import TARGET_FEED_PATH_MSGS_PER_S, TARGET_REPLAY_MSGS_PER_S
from appliance.bench.table import fmt, one_line


def _pct(share) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1000:.1f}"


def print_table(report: dict) -> None:
    m = report["machine"]
    results, peers, ratios = report["results"], report["peers"], report["ratios"]
    print(f"feed handler bench: {m.get('cpu_model') or 'unknown CPU'}, {m.get('cores')} cores "
          f"(allowed {m.get('cpus_allowed')}), Python {m['python']}, kernel {m.get('kernel')}, "
          f"load {' '.join(m.get('loadavg_at_start', []))}")
    if "replay" in results:
        _print_replay(results, peers, ratios)
    if "live" in results:
        if "replay" in results:
            print()
        _print_live(results["live"], peers, ratios)
    for part, text in report["errors"].items():
        print(f"error ({part}): {text}")


def _print_replay(results: dict, peers: dict, ratios: dict) -> None:
    ours = results["replay"]
    f = ours["file"]
    print(f"replay: {f['messages']:,} messages, {f['bytes'] / 1e6:.1f} MB BinaryFILE "
          f"({'cached' if f['cached'] else 'generated in ' + format(f['generate_seconds'], '.1f') + ' s'}: "
          f"{f['path']}), seed {ours['seed']}, {ours['symbols']} symbols; one process pinned to CPU {ours['cpu']}, "
          f"gc disabled")
    print(f"subscribed {len(ours['subscribed'])} of {ours['symbols']} (locates "
          f"{', '.join(map(str, ours['subscribed_locates']))}): {100 * ours['book_share']:.1f}% of the messages "
          f"reach a book; decoder backend {ours['backend']}")
    feed = peers.get("itchfeed", {})
    header = (f"{'path':<48} {'messages':>11} {'seconds':>8} {'msg/s':>12} {'ns/msg':>7} {'vs itchfeed':>11} "
              f"{'vs target':>9}")
    print(header)
    print("-" * len(header))
    prefix = results.get("itchfeed_prefix", {})

    def row(label: str, r: dict, key: str | None) -> None:
        vs_peer = "-"
        if feed.get("available") and key in prefix:
            vs_peer = f"{prefix[key]['msgs_per_s'] / feed['msgs_per_s']:.1f}x"
        print(f"{label:<48} {r['messages']:>11,} {r['seconds']:>8.3f} {r['msgs_per_s']:>12,.0f} "
              f"{r['ns_per_msg']:>7.0f} {vs_peer:>11} {r['msgs_per_s'] / TARGET_REPLAY_MSGS_PER_S:>8.2f}x")

    row(f"ours: scan + filter + books ({len(ours['subscribed'])}/{ours['symbols']})", ours, "replay")
    row(f"ours: scan + filter, no books ({len(ours['subscribed'])}/{ours['symbols']})", results["filter_only"], None)
    row("ours: decode only (all symbols, no books)", results["decode_only"], "decode_only")
    row(f"ours: scan + books ({ours['symbols']}/{ours['symbols']})", results["books_all_symbols"], None)
    row(f"ours: scan + filter + books + publish ({len(ours['subscribed'])}/{ours['symbols']})",
        results["replay_with_publish"], None)
    python = peers.get("python_feed_path", {})
    if python.get("available"):
        n = ours["symbols"]
        k = len(ours["subscribed"])
        row(f"ours: compiled scan+books+publish ({k}/{n})", results["compiled_with_publish"], None)
        row(f"ours: compiled scan+books+publish ({n}/{n})", results["compiled_all_symbols"], None)
        row(f"peer: Python scan+books+publish ({n}/{n})", python["all_symbols"], None)
    if feed.get("available"):
        label = f"itchfeed {feed['version']} ({'C++' if feed['cpp_backend'] else 'pure Python'}), decode only"
        print(f"{label:<48} {feed['messages']:>11,} {feed['seconds']:>8.3f} {feed['msgs_per_s']:>12,.0f} "
              f"{feed['ns_per_msg']:>7.0f} {'1.0x':>11} {feed['msgs_per_s'] / TARGET_REPLAY_MSGS_PER_S:>8.2f}x")
    else:
        print(f"{'itchfeed':<48} {'skipped' if feed.get('skipped') else 'unavailable'}: {feed.get('reason', '?')}")
    print(f"{'target':<48} {'':>11} {'':>8} {TARGET_REPLAY_MSGS_PER_S:>12,} {1e9 / TARGET_REPLAY_MSGS_PER_S:>7.0f}")
    if feed.get("available") and not feed["whole_file"]:
        p = prefix
        print(f"itchfeed ran on the first {feed['messages']:,} messages only (--itchfeed-messages); the 'vs itchfeed' "
              f"ratios compare ours on that same prefix ({p['replay']['msgs_per_s']:,.0f} and "
              f"{p['decode_only']['msgs_per_s']:,.0f} msg/s there)")
    if python.get("available"):
        print(f"compiled path (feed/_book_fast.c, one call per packet) vs the Python path in this run: "
              f"{ratios['compiled_vs_python_subscribed']:.1f}x with {len(ours['subscribed'])} symbols, "
              f"{ratios['compiled_vs_python_all_symbols']:.1f}x with all {ours['symbols']}; all {ours['symbols']}: "
              f"{results['compiled_all_symbols']['msgs_per_s']:,.0f} msg/s, target {TARGET_FEED_PATH_MSGS_PER_S:,} "
              f"({ratios['compiled_all_symbols_vs_target']:.2f}x)")
    elif python:
        print(f"compiled path: unavailable: {python.get('reason', '?')}")
    check = ours["check"]
    if check["ok"]:
        print(f"books check: ok - unknown_order 0, over_execution 0, duplicate_add 0, no malformed block, every "
              f"message walked; the {len(ours['subscribed'])} books equal those of the {ours['symbols']}-symbol pass; "
              f"{check['resting_orders']:,} orders resting in {check['books_with_orders']} books, "
              f"{ours['book_changes']:,} book changes")
        print(f"books cost per message applied (books pass minus scanner pass): "
              f"{ours['books_ns_per_applied_msg']:,.0f} ns with {len(ours['subscribed'])} books, "
              f"{results['books_all_symbols']['books_ns_per_applied_msg']:,.0f} ns with all {ours['symbols']}; "
              f"publish (market state + ring) per update: "
              f"{results['replay_with_publish']['publish_ns_per_update']:,.0f} ns "
              f"({results['replay_with_publish']['published']:,} updates, one per changed symbol per packet, for "
              f"{results['replay_with_publish']['messages_covered']:,} book changes in "
              f"{results['replay_with_publish']['packets']:,} packets)")
    else:
        print(f"books check: FAILED - {'; '.join(check['problems'])}")


def _print_live(live: dict, peers: dict, ratios: dict) -> None:
    idle = live["feed_idle"]
    idle_text = idle["strategy"] if idle["strategy"] != "backoff" else \
        (f"backoff: {idle['spins']} spins, {idle['yields']} yields, park {idle['min_park_ns'] // 1000}.."
         f"{idle['max_park_ns'] // 1000} us")
    print(f"live: the exchange as a process (background flow, {len(live['symbols'])} symbols, all subscribed) -> "
          f"MoldUDP64 on 127.0.0.1 -> the feed agent as a process ({idle_text}, {live.get('feed_books', 'compiled')} "
          f"books) -> book_updates ring drained here; "
          f"{live['seconds']:g} s window per rate after {live['settle_seconds']:g} s of warm-up, "
          f"{live['catch_up_seconds']:g} s to catch up")
    header = (f"{'asked op/s':>10} {'sent msg/s':>10} {'sender':>8} {'feed msg/s':>10} {'gaps':>5} {'recov':>6} "
              f"{'lost':>5} {'kdrop':>5} {'updates':>8} {'no loss':>7} {'feed CPU':>8} {'CPU us/msg':>10} "
              f"{'exch CPU':>8}")
    print(header)
    print("-" * len(header))
    for r in live["runs"]:
        if "error" in r:
            print(f"{r['rate_asked']:>10,.0f} failed: {one_line(r['error'])}")
            continue
        sender = "LIMIT" if r["sender_limited"] else (f"{r['achieved_ratio']:.2f}x" if r["achieved_ratio"] else "-")
        print(f"{r['rate_asked']:>10,.0f} {r['published_msgs_per_s']:>10,.0f} {sender:>8} "
              f"{r['delivered_msgs_per_s']:>10,.0f} {r['gaps']:>5} {r['messages_recovered']:>6,} "
              f"{r['messages_lost']:>5,} {fmt(r['kernel_drops'], 'd'):>5} {r['book_updates']:>8,} "
              f"{'yes' if r['no_loss'] else 'NO':>7} {_pct(r['feed_cpu_share']):>8} "
              f"{_us(r['feed_cpu_ns_per_msg']):>10} {_pct(r['exchange_cpu_share']):>8}")
    print(f"sender: background operations the exchange ran / asked (LIMIT: under {SENDER_LIMIT_RATIO:.0%}: the "
          "sender was the limit); gaps: packets the feed never saw (recov: messages re-requested, lost: given "
          "up); kdrop: the kernel's drops on the feed's socket; CPU: share of one core in the window (the feed's "
          "includes its idle strategy)")
    print()
    print("rx->ring latency (t_feed_out - t_rx, the kernel receive timestamp), every BookUpdate of the window, us")
    header = (f"{'asked op/s':>10} {'sent msg/s':>10} {'msgs/pkt':>8} {'updates':>8} {'p50':>7} {'p99':>8} "
              f"{'p99.9':>8} {'max':>8} {'1st p50':>8} {'1st p99':>8} {'step p50':>8}")
    print(header)
    print("-" * len(header))
    for r in live["runs"]:
        if "error" in r:
            continue
        lat, first, step = r["rx_to_ring"], r["rx_to_ring_first_in_packet"], r["update_spacing_in_packet"]
        per_packet = r["delivered"] / r["packets"] if r["packets"] else None
        print(f"{r['rate_asked']:>10,.0f} {r['published_msgs_per_s']:>10,.0f} {fmt(per_packet, '.1f'):>8} "
              f"{lat['count']:>8,} {_us(lat['p50_ns']):>7} {_us(lat['p99_ns']):>8} {_us(lat['p999_ns']):>8} "
              f"{_us(lat['max_ns']):>8} {_us(first['p50_ns']):>8} {_us(first['p99_ns']):>8} {_us(step['p50_ns']):>8}")
    print("1st: the first update of each packet only (wake-up and receive, no queueing behind the packet's earlier "
          "messages); step: between consecutive updates of one packet (the feed's work per update)")
    bare = peers.get("bare_recv_into", {})
    if bare.get("available"):
        print()
        print("peer: a bare Python recv_into loop (same rcvbuf and idle strategy, this process, no decoding, "
              "no books) at the same rates, its own exchange")
        header = (f"{'asked op/s':>10} {'sent msg/s':>10} {'sender':>8} {'recv msg/s':>10} {'packets':>8} "
                  f"{'gaps':>5} {'missing':>7} {'kdrop':>5} {'no loss':>7} {'feed/bare':>9}")
        print(header)
        print("-" * len(header))
        feed_by_rate = {r["rate_asked"]: r for r in live["runs"]}
        for r in bare["runs"]:
            if "error" in r:
                print(f"{r['rate_asked']:>10,.0f} failed: {one_line(r['error'])}")
                continue
            sender = "LIMIT" if r["sender_limited"] else (f"{r['achieved_ratio']:.2f}x" if r["achieved_ratio"] else "-")
            ratio = feed_by_rate.get(r["rate_asked"], {}).get("vs_bare_receiver")
            print(f"{r['rate_asked']:>10,.0f} {r['published_msgs_per_s']:>10,.0f} {sender:>8} "
                  f"{r['received_msgs_per_s']:>10,.0f} {r['packets']:>8,} {r['gaps']:>5} {r['missing_messages']:>7,} "
                  f"{fmt(r['kernel_drops'], 'd'):>5} {'yes' if r['no_loss'] else 'NO':>7} "
                  f"{fmt(ratio, '.2f'):>8}x")
    elif bare:
        print(f"peer bare recv_into: {'skipped' if bare.get('skipped') else 'unavailable'}: {bare.get('reason', '?')}")
    print()
    best = live["max_msgs_per_s_no_loss"]
    line = f"max msg/s with no loss: feed {fmt(best)}"
    if bare.get("available"):
        line += f", bare recv_into {fmt(bare['max_msgs_per_s_no_loss'])}"
        if "live_max_no_loss_vs_bare" in ratios:
            line += f" (feed/bare {ratios['live_max_no_loss_vs_bare']:.2f}x)"
    highest = live["highest_published_msgs_per_s"]
    if live["sender_limited_at"]:
        line += (f"; the exchange was the limit at {', '.join(format(r, ',.0f') for r in live['sender_limited_at'])} "
                 f"op/s asked (most it sent: {fmt(highest)} msg/s)")
    if best is not None and highest is not None and best >= highest:
        line += "; no loss at the highest rate the exchange sent: the feed's own limit is above it"
    print(line)
    if live["rx_to_ring_p50_ns"] is not None:
        where = f"{live['latency_at_msgs_per_s']:,.0f} msg/s ({live['latency_at_rate_asked']:,.0f} op/s asked)"
        print(f"rx->ring at {where}{' (that run had loss)' if live['latency_run_had_loss'] else ''}: "
              f"p50 {_us(live['rx_to_ring_p50_ns'])} us, p99 {_us(live['rx_to_ring_p99_ns'])} us, "
              f"p99.9 {_us(live['rx_to_ring_p999_ns'])} us; target p50 <= {TARGET_RX_TO_RING_P50_NS / 1000:g} us: "
              f"{ratios.get('rx_to_ring_p50_vs_target', 0):.1f}x the target")

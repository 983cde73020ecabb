"""`appliance bench feed --json`: the replay part (ours, the books check, itchfeed) and the live part (the
exchange and the feed agent as processes, and the bare recv_into peer), run as a command.

Tiny sizes: these check the benchmark runs, reports what it measured, reuses its cached day file and cleans
up (no /dev/shm segment, temporary directory or process left, Ctrl-C included), never how fast anything is.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

PREFIX = "benchfeed"                 # appliance.bench.feed: layout names, /dev/shm names and temp directories


def _bench(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "bench", "feed", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _leftovers() -> dict[str, set]:
    """What the bench could leave behind: segments, temporary directories, processes naming them."""
    processes = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if PREFIX.encode() in cmdline and b"pytest" not in cmdline:
            processes.add((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return {"shm": {n for n in os.listdir("/dev/shm") if n.startswith(PREFIX)},
            "tmp": set(glob.glob(f"/tmp/{PREFIX}*")), "processes": processes}


def _assert_nothing_new(before: dict[str, set]) -> None:
    deadline = time.monotonic() + 5                    # a killed child may take a moment to be gone
    while True:
        after = _leftovers()
        new = {kind: after[kind] - before[kind] for kind in after}
        if not any(new.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not any(new.values()), f"left behind: {new}"


def _ordered(summary: dict) -> None:
    assert summary["count"] > 0
    assert 0 < summary["p50_ns"] <= summary["p99_ns"] <= summary["p999_ns"] <= summary["max_ns"]


def test_bench_feed_json_reports_replay_live_and_peers(tmp_path):
    cache = tmp_path / "cache"
    before = _leftovers()
    proc = _bench("--json", "--messages", "20000", "--rates", "2000", "--seconds", "1", "--settle", "0.3",
                  "--catch-up", "10", "--cache-dir", str(cache))
    _assert_nothing_new(before)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)                   # one JSON object, nothing else on stdout
    assert report["benchmark"] == "feed" and report["errors"] == {}
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["python"] and "cpu_model" in machine

    results, peers, ratios = report["results"], report["peers"], report["ratios"]
    replay = results["replay"]
    total = 20000 + 100 + 2                            # order messages, the directory, two system events
    assert replay["file"]["messages"] == total and replay["file"]["cached"] is False
    assert os.path.exists(replay["file"]["path"]) and str(cache) in replay["file"]["path"]
    assert replay["messages"] == total and replay["symbols"] == 100 and len(replay["subscribed"]) == 10
    assert replay["subscribed_locates"] == list(range(1, 101, 10))
    assert replay["msgs_per_s"] > 0 and replay["ns_per_msg"] == pytest.approx(1e9 / replay["msgs_per_s"])
    assert 0 < replay["applied"] < total and replay["book_share"] == pytest.approx(replay["applied"] / total)
    assert 0 < replay["book_changes"] <= replay["applied"]
    check = replay["check"]
    assert check["ok"] and check["problems"] == [] and check["unknown_order"] == 0
    assert check["compared_with_all_symbols_pass"] and check["resting_orders"] > 0
    for name in ("filter_only", "decode_only", "books_all_symbols", "replay_with_publish"):
        assert results[name]["messages"] == total and results[name]["msgs_per_s"] > 0, name
    assert results["decode_only"]["returned"] == total
    assert results["books_all_symbols"]["applied"] > replay["applied"]
    published = results["replay_with_publish"]
    assert published["messages_covered"] == replay["book_changes"]          # every change in some update
    assert 0 < published["published"] <= replay["book_changes"] and published["packets"] > 1
    assert results["replay_with_publish"]["dropped"] == 0
    assert ratios["replay_vs_target"] == pytest.approx(replay["msgs_per_s"] / 1_000_000)
    # ours: the compiled path; its peer: the Python path, same packets, same run, the same counts
    python = peers["python_feed_path"]
    assert python["available"], python
    for ours_key, peer, books in (("compiled_with_publish", python["subscribed"], 10),
                                  ("compiled_all_symbols", python["all_symbols"], 100)):
        compiled = results[ours_key]
        assert compiled["books"] == peer["books"] == books and compiled["msgs_per_s"] > 0, ours_key
        for key in ("messages", "applied", "published", "messages_covered", "dropped", "malformed", "packets"):
            assert compiled[key] == peer[key], (ours_key, key)
        assert compiled["published"] > 0 and "FastFeed" in compiled["path"]
    assert results["compiled_with_publish"]["messages_covered"] == replay["book_changes"]
    assert ratios["compiled_vs_python_all_symbols"] == pytest.approx(
        results["compiled_all_symbols"]["msgs_per_s"] / python["all_symbols"]["msgs_per_s"])
    assert ratios["compiled_all_symbols_vs_target"] == pytest.approx(
        results["compiled_all_symbols"]["msgs_per_s"] / 2_000_000)
    assert report["targets"]["feed_path_all_symbols_msgs_per_s"] == 2_000_000
    itchfeed = peers["itchfeed"]
    if itchfeed["available"]:
        assert itchfeed["messages"] == total and itchfeed["whole_file"] and itchfeed["msgs_per_s"] > 0
        assert ratios["replay_vs_itchfeed"] > 0 and ratios["decode_only_vs_itchfeed"] > 0
    else:
        assert "not installed" in itchfeed["reason"]

    live = results["live"]
    assert len(live["runs"]) == 1
    run = live["runs"][0]
    assert "error" not in run, run
    assert run["rate_asked"] == 2000 and run["seconds"] >= 1
    assert run["published"] > 0 and run["published_msgs_per_s"] > 0 and run["background_ops_per_s"] > 0
    assert run["delivered"] > 0 and run["caught_up"] and run["delivered_total"] >= run["published_total"]
    assert run["gaps"] >= 0 and run["messages_lost"] >= 0 and run["packets"] > 0 and run["book_updates"] > 0
    assert run["no_loss"] == (run["gaps"] == 0 and run["messages_lost"] == 0 and run["caught_up"])
    assert run["book_updates_dropped"] == 0 and run["feed_exit"] == 0
    _ordered(run["rx_to_ring"])
    _ordered(run["rx_to_ring_first_in_packet"])
    assert run["rx_to_ring_p50_ns"] == run["rx_to_ring"]["p50_ns"]
    assert live["rx_to_ring_p50_ns"] > 0 and live["rx_to_ring_p50_ns"] <= live["rx_to_ring_p99_ns"]
    best = live["max_msgs_per_s_no_loss"]
    assert best is None or 0 < best <= live["highest_published_msgs_per_s"]
    assert best == (run["published_msgs_per_s"] if run["no_loss"] else None)
    assert live["symbols"] and live["feed_idle"]["strategy"] == "backoff" and live["feed_books"] == "compiled"
    assert live["limited_by"] == ("sender" if run["no_loss"] else "feed")
    assert ratios["rx_to_ring_p50_vs_target"] == pytest.approx(live["rx_to_ring_p50_ns"] / 5000)

    bare = peers["bare_recv_into"]
    assert bare["available"] and len(bare["runs"]) == 1
    peer = bare["runs"][0]
    assert "error" not in peer, peer
    assert peer["rate_asked"] == 2000 and peer["received"] > 0 and peer["packets"] > 0 and peer["published"] > 0
    assert peer["caught_up"] and peer["no_loss"] == (peer["gaps"] == 0)
    assert run["vs_bare_receiver"] > 0

    # A second run finds the day file in the cache.
    again = _bench("--json", "--messages", "20000", "--skip-live", "--skip-peers", "--cache-dir", str(cache))
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["results"]["replay"]["file"]["cached"] is True
    assert second["results"]["replay"]["file"]["path"] == replay["file"]["path"]
    assert "live" not in second["results"] and second["peers"]["itchfeed"]["skipped"]
    _assert_nothing_new(before)


def test_bench_feed_table(tmp_path):
    proc = _bench("--messages", "5000", "--skip-live", "--skip-peers", "--cache-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ours: scan + filter + books (10/100)" in out and "target" in out and "1,000,000" in out
    assert "books check: ok" in out and "itchfeed" in out and "skipped" in out
    assert "ours: compiled scan+books+publish (100/100)" in out and "peer: Python scan+books+publish (100/100)" in out
    assert "compiled path (feed/_book_fast.c" in out and "target 2,000,000" in out


@pytest.mark.parametrize("argv, message", [(["--rates", "10,abc"], "is not a number"),
                                           (["--rates", "500000"], "must be between"),
                                           (["--rates", ","], "names no rate"),
                                           (["--seconds", "0"], "must be between"),
                                           (["--feed-idle", "busy_spin"], "invalid choice"),
                                           (["--feed-books", "c"], "invalid choice")])
def test_bad_arguments_are_usage_errors(argv, message):
    proc = _bench(*argv)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_more_subscribed_than_symbols_is_a_usage_error(tmp_path):
    proc = _bench("--symbols", "5", "--subscribed", "6", "--skip-live", "--cache-dir", str(tmp_path))
    assert proc.returncode == 2 and "--subscribed 6 is more than --symbols 5" in proc.stderr
    assert not list(tmp_path.iterdir())               # nothing generated


def test_ctrl_c_in_the_live_part_leaves_nothing_behind():
    before = _leftovers()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "bench", "feed", "--json", "--skip-replay",
                             "--rates", "2000", "--seconds", "30", "--settle", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        # Interrupt once the feed agent and the exchange both run (their command lines name the layout).
        while len(_leftovers()["processes"] - before["processes"]) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the live part did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    _assert_nothing_new(before)

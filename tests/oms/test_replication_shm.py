"""The same-box replication carrier (oms/replication_shm.py): the layout's peers and rings, connections
told apart by epoch, closes, a dead peer, bad slots, one standby at a time. The OMS and the standby
over it: test_replication.py and test_standby_process.py (parametrized by transport)."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
import yaml

from appliance.oms import replication_shm as rs
from appliance.oms import replication_wire as rw
from appliance.runtime.layout import LayoutError, load_layout, parse_layout
from appliance.runtime.memory import SharedMemory
from conftest import ROOT, layout_document


def doc_with_rings(name: str) -> dict:
    quiet = {"strategy": "sleep", "sleep_ns": 1_000_000}
    doc = layout_document(name, processes=[{"name": "oms", "agent": "appliance.oms.agent:OmsAgent", "idle": quiet}],
                          rings=[])
    return rs.add_to_layout(doc)


def test_the_layout_declares_the_standby_as_a_peer_and_checks_its_rings(unique_name):
    layout = parse_layout(yaml.safe_dump(doc_with_rings(unique_name)))
    assert layout.peers == ("oms_standby",) and layout.rings[rs.RECORDS_RING].consumer == "oms_standby"
    assert b'"peers":["oms_standby"]' in layout.canonical        # in the hash: both ends agree on it
    rs.check_layout(layout, rs.PRIMARY)
    rs.check_layout(layout, rs.STANDBY)
    cases = {
        "undeclared": (lambda d: d.pop("peers"), r"rings\[0\]\.consumer.*'oms_standby' is not a declared process"),
        "a process": (lambda d: d.update(peers=["oms_standby", "oms"]), r"peers\[1\].*'oms' is a process"),
        "twice": (lambda d: d.update(peers=["oms_standby", "oms_standby"]), r"declared twice"),
        "peer to peer": (lambda d: d.update(peers=["oms_standby", "x"]) or d["rings"][0].update(producer="x"),
                         r"rings\[0\]\.consumer.*between two peers"),
        "bad name": (lambda d: d.update(peers=["oms standby"]), r"peers\[0\].*letters"),
    }
    for label, (change, expected) in cases.items():
        doc = doc_with_rings(unique_name)
        change(doc)
        with pytest.raises(LayoutError, match=expected):
            parse_layout(yaml.safe_dump(doc))
    doc = doc_with_rings(unique_name)
    doc["rings"][1]["segment"] = doc["segments"][0]["name"]
    with pytest.raises(LayoutError, match=r"replication_acks.segment.*must be the segment of replication_records"):
        rs.StandbyLink(parse_layout(yaml.safe_dump(doc)), "/nonexistent/lock")
    doc = doc_with_rings(unique_name)
    doc["rings"][0]["consumer"], doc["rings"][1]["producer"] = "oms", "oms"
    doc["rings"][0]["producer"] = doc["rings"][1]["consumer"] = "oms_standby"
    with pytest.raises(LayoutError, match=r"rings\.replication_records\.producer"):
        rs.check_layout(parse_layout(yaml.safe_dump(doc)), rs.PRIMARY)


def test_the_commented_example_in_shm_layout_yaml_is_a_valid_layout(tmp_path):
    """Uncommented as its comment says, the repository's example loads, as layout_entries makes it."""
    text = (ROOT / "shm_layout.yaml").read_text()
    rings = re.findall(r"^#(  - \{name: replication_\w+.*)$", text, re.M)
    segment = re.search(r"^# \(and under segments:\)(  - \{name: replication.*)$", text, re.M).group(1)
    assert len(rings) == 2 and "# peers: [oms_standby]" in text
    text = text.replace("# peers: [oms_standby]", "peers: [oms_standby]")
    for ring in rings:
        text = text.replace("#" + ring, ring)
    text = text.replace("    mode: \"0600\"\n\ntables:", "    mode: \"0600\"\n" + segment + "\n\ntables:", 1)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "instruments.yaml").write_text((ROOT / "config" / "instruments.yaml").read_text())
    (tmp_path / "layout.yaml").write_text(text)
    layout = load_layout(tmp_path / "layout.yaml")
    expected = rs.layout_entries()
    assert [dict(name=r.name, segment=r.segment, producer=r.producer, consumer=r.consumer, message=r.message,
                 slot_size=r.slot_size, capacity=r.capacity) for r in layout.rings.values()][-2:] == expected["rings"]
    assert layout.peers == tuple(expected["peers"]) and "replication" in layout.segments
    assert "peers" not in load_layout(ROOT / "shm_layout.yaml").canonical.decode()     # off by default


@pytest.fixture
def memory(unique_name):
    layout = parse_layout(yaml.safe_dump(doc_with_rings(unique_name)))
    memory = SharedMemory.create(layout)
    yield memory
    memory.remove()


def standby_side(memory, tmp_path) -> rs.StandbyLink:
    return rs.StandbyLink(memory.layout, str(tmp_path / "standby.lock"))


def accept(listener):
    try:
        return listener.accept()[0]
    except BlockingIOError:
        return None


def connected(link, listener) -> tuple:
    """(the standby's connection, the primary's end of it), the standby's first byte read by the primary."""
    standby = link.connect()
    standby.sendall(b"s")
    primary = accept(listener)
    assert primary.recv(1) == b"s"
    return standby, primary


def test_a_connection_carries_the_byte_stream_both_ways_in_order_across_slots(memory, tmp_path):
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    try:
        assert accept(listener) is None
        standby = link.connect()
        standby.sendall(rw.subscribe(1, None))
        primary = accept(listener)
        assert primary is not None and primary.epoch == standby.epoch and primary.peer_pid > 0
        assert rw.FrameReader((rw.SUBSCRIBE,)).feed(primary.recv(1 << 16)) == [(rw.SUBSCRIBE, rw.subscribe(
            1, None)[5:])]
        big = bytes(range(256)) * 100                        # 25,600 bytes: seven slots of 4,072
        assert primary.send(big) == len(big)
        got = bytearray()
        while len(got) < len(big):
            got += standby.recv(1 << 20)
        assert bytes(got) == big
        with pytest.raises(BlockingIOError):
            standby.recv(100)
        # a full ring takes what fits, then nothing
        room = memory.layout.rings[rs.RECORDS_RING]
        sent = primary.send(bytes(room.slot_size * room.capacity * 2))
        assert sent == (room.slot_size - 24) * room.capacity
        with pytest.raises(BlockingIOError):
            primary.send(b"x")
    finally:
        link.close()


def test_an_older_connections_slots_are_skipped_and_a_newer_one_ends_the_old(memory, tmp_path):
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    try:
        first = link.connect()
        first.sendall(b"one-")
        old = accept(listener)
        assert old.recv(100) == b"one-"
        old.send(b"to the first")
        first.sendall(b"late bytes of the first")       # never read as the second's
        second = link.connect()                          # the standby reconnected (a new epoch)
        assert second.epoch > first.epoch
        second.sendall(b"two")
        assert old.recv(100) == b"late bytes of the first"
        assert old.recv(100) == b""                      # a newer connection waits: this one is over
        new = accept(listener)
        assert new.epoch == second.epoch and new.recv(100) == b"two"
        with pytest.raises(BlockingIOError):
            second.recv(100)                             # the primary's bytes to the first are skipped
        new.send(b"hi")
        assert second.recv(100) == b"hi"
        new.close()                                      # a close reaches the other side as b""
        assert second.recv(100) == b""
        with pytest.raises(BrokenPipeError):
            second.send(b"x")
        third = link.connect()
        third.sendall(b"3")
        stale = link.connect()                           # ... and a connection that said nothing: skipped
        assert accept(listener).recv(10) == b"3"
        assert stale.epoch > third.epoch
    finally:
        link.close()


def test_a_dead_peer_ends_the_connection_and_a_bad_slot_is_an_error(memory, tmp_path):
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    try:
        standby, primary = connected(link, listener)
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait(10)
        primary.peer_pid = child.pid                     # as if the standby's slots had come from it
        assert primary.recv(10) == b""                   # gone: closed without waiting for a heartbeat
        standby = link.connect()
        ring = memory.layout.rings[rs.ACKS_RING]
        offset = standby._out.claim()                    # a slot that says more than a slot holds
        rs._HEADER.pack_into(memory.buffer_of("replication"), offset, 60, 1, 24, standby.epoch, 1, ring.slot_size)
        standby._out.commit()
        primary = accept(listener)
        with pytest.raises(ConnectionResetError, match="more than"):
            primary.recv(10)
    finally:
        link.close()


def test_the_waiting_standby_sees_a_dead_primary_after_reading_its_last_slot(memory, tmp_path, monkeypatch):
    """A dead primary rings no doorbell: the standby's wait says readable at its timeout once the pid is
    gone (recv then gives b"", as after a FIN), not after the peer timeout. The pid is looked at before the
    ring: bytes committed just before the death are read first, never dropped with the connection."""
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    try:
        standby, primary = connected(link, listener)
        primary.send(b"hello")
        assert standby.recv(100) == b"hello" and standby.peer_pid == primary.pid
        assert standby.wait_readable(0.02) is False           # alive and quiet: not readable
        last = []

        def gone_after_its_last_bytes(pid):                   # the primary commits, then dies, as the standby looks
            if not last:
                last.append(primary.send(b"last words"))
            return False
        monkeypatch.setattr(rs, "_pid_alive", gone_after_its_last_bytes)
        assert standby.wait_readable(0.02) is True
        assert standby.recv(100) == b"last words"
        assert standby.wait_readable(0.02) is True and standby.recv(100) == b""
    finally:
        link.close()


def test_a_standby_asleep_in_a_long_wait_wakes_when_its_primary_dies(memory, tmp_path, monkeypatch):
    """The takeover's detection on this box: the asleep standby looks at the primary's pid while it waits,
    not only when its wait times out."""
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    waiter = None
    try:
        standby, primary = connected(link, listener)
        primary.send(b"hello")
        assert standby.recv(100) == b"hello"
        result = []
        waiter = threading.Thread(target=lambda: result.append(standby.wait_readable(60)))
        waiter.start()
        deadline = time.monotonic() + 10
        while link._doorbell.waits == 0 and time.monotonic() < deadline:
            time.sleep(0.001)                  # until it is in the futex wait
        monkeypatch.setattr(rs, "_pid_alive", lambda pid: pid != primary.pid)     # the primary dies
        waiter.join(10)
        assert result == [True] and standby.recv(100) == b""       # back long before its 60 s
    finally:
        monkeypatch.undo()
        if waiter is not None and waiter.is_alive():
            primary.send(b"wake")              # its doorbell: never left asleep on a closed segment
            waiter.join(10)
        link.close()


def test_a_takeover_retires_the_old_standbys_slots_and_the_rings_keep_their_roles(memory, tmp_path):
    """The standby becomes the primary (replication_shm's takeover rule): what it left in replication_acks
    as a standby is released before it listens, so the first connection it accepts is the new standby's,
    never its own past; the dead primary's unread slots in replication_records are skipped by the new
    standby (an older epoch). Twice: the second swaps the roles back."""
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    standby = link.connect()
    standby.sendall(b"subscribe")
    primary = accept(listener)
    assert primary.recv(100) == b"subscribe"
    try:
        for n in range(2):
            primary.send(b"unread records")            # the primary's last bytes; then it dies, unread ...
            standby.sendall(b"ack")                    # ... as the standby's last acknowledgement
            standby.close()                            # the takeover closes the standby's side
            link.close()
            next_link = standby_side(memory, tmp_path / f"next-{n}")
            waiting = next_link.connect()              # a new standby already there: newer, kept
            waiting.sendall(b"new subscribe")
            assert rs.retire_standby_slots(memory, link.last_epoch) == 2       # the ack and the close
            listener = rs.ShmListener(memory)          # the old standby listens as the layout's oms
            primary = accept(listener)
            assert primary.epoch == waiting.epoch and primary.recv(100) == b"new subscribe"
            primary.send(b"records")
            assert waiting.recv(100) == b"records"      # the dead primary's slots skipped
            link, standby = next_link, waiting
    finally:
        link.close()


def test_one_standby_at_a_time(memory, tmp_path):
    link = standby_side(memory, tmp_path)
    try:
        with pytest.raises(RuntimeError, match="another standby"):
            standby_side(memory, tmp_path)
        link.connect()
        # another journal (after a takeover the journals swap: the standby's is the old primary's file),
        # the same rings: refused when it attaches, never a second producer of replication_acks
        other = standby_side(memory, tmp_path / "other")
        try:
            with pytest.raises(rs.StandbyConflict, match="another standby is attached"):
                other.connect()
        finally:
            other.close()
    finally:
        link.close()
    again = standby_side(memory, tmp_path / "other")      # free again once the first is gone
    try:
        again.connect()
    finally:
        again.close()


def test_a_standby_before_the_segment_exists_is_refused_and_tries_again(unique_name, tmp_path):
    layout = parse_layout(yaml.safe_dump(doc_with_rings(unique_name)))
    link = rs.StandbyLink(layout, str(tmp_path / "standby.lock"))
    try:
        with pytest.raises(ConnectionRefusedError, match="replication segment"):
            link.connect()
        memory = SharedMemory.create(layout)
        try:
            connection = link.connect()
            connection.sendall(b"s")
            assert rs.ShmListener(memory).accept()[0].recv(1) == b"s"
        finally:
            link.close()
            memory.remove()
    finally:
        link.close()


def test_the_standby_sleeps_on_the_records_rings_doorbell_and_the_primarys_commit_wakes_it(memory, tmp_path):
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    try:
        standby, primary = connected(link, listener)
        assert standby.wait_readable(0.02) is False          # nothing came: back at the timeout
        asleep = threading.Event()
        result = []

        def wait():
            asleep.set()
            result.append(standby.wait_readable(30))
        waiter = threading.Thread(target=wait)
        waiter.start()
        asleep.wait(5)
        deadline = time.monotonic() + 10
        while link._doorbell.waits == 0 and time.monotonic() < deadline:
            time.sleep(0.001)                  # until it is in the futex wait
        primary.send(b"record")
        waiter.join(10)
        assert result == [True] and link._doorbell.wakeups >= 1    # woken by the ring, not the timeout
        assert standby.recv(100) == b"record"
    finally:
        link.close()


def test_a_standby_polling_until_its_spin_deadline_takes_a_record_without_sleeping_on_the_doorbell(memory, tmp_path):
    """standby_spin_us: a record that comes while the standby polls finds it awake, so the primary's
    commit rings nobody (no futex wait entered, none woken)."""
    listener = rs.ShmListener(memory)
    link = standby_side(memory, tmp_path)
    try:
        standby, primary = connected(link, listener)
        polling = threading.Event()
        result = []

        def wait():
            polling.set()
            result.append(standby.wait_readable(60, time.monotonic_ns() + 60_000_000_000))
        waiter = threading.Thread(target=wait)
        waiter.start()
        polling.wait(5)
        primary.send(b"record")
        waiter.join(30)
        assert result == [True] and link._doorbell.waits == 0 and link._doorbell.wakeups == 0
        assert standby.recv(100) == b"record"
        assert standby.wait_readable(0.02, time.monotonic_ns() + 5_000_000) is False   # the timeout still ends it
    finally:
        link.close()


def test_oms_standby_refuses_a_shm_layout_without_the_rings(write_layout, unique_name, tmp_path):
    from oms_rig import journal_path, oms_layout
    doc = oms_layout(unique_name, 1, journal_path(tmp_path), replication={"mode": "sync", "transport": "shm"})
    doc["rings"] = [r for r in doc["rings"] if r["name"] != rs.ACKS_RING]
    path = write_layout(doc)
    done = subprocess.run([sys.executable, "-m", "appliance", "oms-standby", "--layout", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "needs a ring named 'replication_acks'" in done.stderr, done.stderr


def test_oms_standby_refuses_a_remote_takeover_over_the_shm_rings(write_layout, unique_name, tmp_path):
    """Takeover over shm works on this box (auto, signal, now); ``remote`` (the primary on another box)
    over this box's rings makes no sense: a usage error, not a standby waiting for a stream that cannot come."""
    from oms_rig import journal_path, oms_layout
    path = write_layout(oms_layout(unique_name, 1, journal_path(tmp_path),
                                   replication={"mode": "sync", "transport": "shm"}))
    done = subprocess.run([sys.executable, "-m", "appliance", "oms-standby", "--layout", str(path), "--takeover",
                           "remote"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "--takeover remote" in done.stderr and "transport tcp" in done.stderr, done.stderr


def test_a_second_oms_standby_on_the_same_rings_exits_2_whatever_its_journal(write_layout, unique_name, tmp_path):
    """After a takeover the standby's journal is the other file: the journal's lock alone would let a second
    standby (on the layout's own standby_journal, say) attach as a second producer of replication_acks."""
    from oms_rig import journal_path, oms_layout
    from standby_process import Standby
    from conftest import wait_until
    doc = oms_layout(unique_name, 1, journal_path(tmp_path), replication={"mode": "sync", "transport": "shm"})
    path = write_layout(doc)
    memory = SharedMemory.create(load_layout(path))
    first = Standby(path, tmp_path / "first.log", "--journal", str(tmp_path / "first.bin"))
    try:
        wait_until(lambda: "connected to the primary" in first.log() or first.proc.poll() is not None, 30,
                   message="the first standby attached")
        assert first.proc.poll() is None, first.log()
        second = subprocess.run([sys.executable, "-m", "appliance", "oms-standby", "--layout", str(path)],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert second.returncode == 2 and "another standby is attached" in second.stderr, second.stderr
        assert first.proc.poll() is None
    finally:
        first.stop()
        memory.remove()

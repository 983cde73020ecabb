"""Every decoder fed random and mutated bytes: only WireFormatError, never another exception or a hang.

100,000+ inputs per protocol, from a seeded generator (reproducible; the seed is in
the failure message). Mutations start from valid messages so the fuzz reaches past
the first length check.
"""
from __future__ import annotations

import random

import pytest

from appliance.wire import itch, moldudp64 as mold, ouch, soupbintcp as soup
from appliance.wire.dayfile import DayFileReader
from appliance.wire.errors import WireFormatError
from test_wire_itch import BACKENDS, HAND_WRITTEN
from test_wire_ouch import CANCEL_BYTES, ENTER_BYTES, EXECUTED_BYTES as OUCH_EXECUTED, REPLACE_BYTES
from test_wire_soupbintcp import ACCEPTED_BYTES, LOGIN_BYTES, SEQUENCED_BYTES
from wire_testkit import frame

INPUTS = 100_000
SEED = 7


def _valid_itch(rng: random.Random) -> list[bytes]:
    out = [raw for raw, _ in HAND_WRITTEN]
    for layout in itch.MESSAGES:
        out.append(bytes([ord(layout.type_code)]) + rng.randbytes(layout.size - 1))
    return out


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6 and data:
            del data[rng.randrange(len(data)):]
        elif choice < 0.8:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif data:
            at = rng.randrange(len(data))
            del data[at:at + rng.randint(1, 8)]
    return bytes(data)


def _inputs(rng: random.Random, seeds: list[bytes], n: int):
    for i in range(n):
        if i % 4 == 0:
            yield rng.randbytes(rng.randint(0, 96))
        else:
            yield _mutate(rng, rng.choice(seeds))


def _only_wire_errors(decode, inputs) -> tuple[int, int]:
    ok = bad = 0
    for data in inputs:
        try:
            decode(data)
            ok += 1
        except WireFormatError as exc:
            assert isinstance(exc.offset, int) and 0 <= exc.offset <= len(data) + 1 and exc.reason
            bad += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{decode.__qualname__} raised {exc!r} on {data!r}")
    return ok, bad


def test_fuzz_itch_decode():
    rng = random.Random(SEED)
    ok, bad = _only_wire_errors(itch.decode, _inputs(rng, _valid_itch(rng), INPUTS))
    assert ok > 1000 and bad > 1000, (ok, bad)   # both paths were exercised


@pytest.mark.parametrize("use_c", BACKENDS)
def test_fuzz_itch_block_streams(use_c):
    """Strict scans raise only WireFormatError; lenient scans never raise and walk to the end."""
    rng = random.Random(SEED + 1)
    seeds = [frame(*rng.sample(_valid_itch(rng), 4)) for _ in range(50)]
    strict = itch.BlockScanner(strict=True, use_c=use_c)
    lenient = itch.BlockScanner(use_c=use_c)

    def both(data):
        walk = lenient.scan(data)
        for _ in walk:
            pass
        assert walk.offset <= len(data) and (walk.offset == len(data) or len(data) - walk.offset < 2 + 0xFFFF)
        list(strict.scan(data))
    n = INPUTS // 2 if use_c else INPUTS // 5
    ok, bad = _only_wire_errors(both, _inputs(rng, seeds, n))
    assert bad > 100 and lenient.malformed > 100


@pytest.mark.parametrize("final", [False, True])
def test_fuzz_c_and_python_scanners_agree(final):
    if itch._itch_fast is None:
        pytest.skip("C fast path not built")
    rng = random.Random(SEED + 2)
    seeds = [frame(*rng.sample(_valid_itch(rng), 4)) for _ in range(50)]
    subscribed = itch.BlockScanner.locate_map(range(0, 65536, 3))
    for data in _inputs(rng, seeds, 20_000):
        results = []
        for use_c in (True, False):
            scanner = itch.BlockScanner(subscribed, use_c=use_c)
            walk = scanner.scan(data, final=final)
            results.append((list(walk), walk.offset, list(scanner.counters)))
        assert results[0] == results[1], data


def test_fuzz_day_file_reader():
    import io
    rng = random.Random(SEED + 3)
    seeds = [frame(*rng.sample(_valid_itch(rng), 3)) for _ in range(30)]

    def read(data):
        list(DayFileReader(io.BytesIO(data), chunk_size=17).iter_raw())
    _only_wire_errors(read, _inputs(rng, seeds, 20_000))


def test_fuzz_moldudp64():
    rng = random.Random(SEED + 4)
    valid = _valid_itch(rng)
    seeds = [p for _ in range(20) for p in mold.pack_messages("S1", rng.randrange(1, 1 << 40), rng.sample(valid, 5), 120)]
    seeds += [mold.heartbeat("S1", 9), mold.end_of_session("S1", 9), mold.request("S1", 3, 4)]
    feed = mold.FeedPacketScanner(itch.BlockScanner.locate_map([5]))

    def decode(data):
        for _ in feed.scan(data, len(data)):   # never raises
            pass
        try:
            mold.decode_request(data)
        except WireFormatError:
            pass
        mold.decode_packet(data)
    ok, bad = _only_wire_errors(decode, _inputs(rng, seeds, INPUTS))
    assert ok > 100 and bad > 1000


def test_fuzz_soupbintcp_packets_and_sessions():
    rng = random.Random(SEED + 5)
    seeds = [LOGIN_BYTES, ACCEPTED_BYTES, SEQUENCED_BYTES, b"\x00\x01H", b"\x00\x02JA", b"\x00\x03+hi",
             LOGIN_BYTES + SEQUENCED_BYTES, ACCEPTED_BYTES + SEQUENCED_BYTES * 3]
    ok, bad = _only_wire_errors(soup.decode_packet, _inputs(rng, seeds, INPUTS))
    assert ok > 100 and bad > 1000
    # the state machines turn any garbage into events, never exceptions
    store = soup.SequencedStore("S1")
    for i, data in enumerate(_inputs(rng, seeds, 20_000)):
        server = soup.ServerSession(store, lambda u, p: True)
        server.connection_made(0)
        server.receive(data, 1)
        server.tick(2)
        client = soup.ClientSession("U", "P")
        client.connect(0)
        client.receive(data, 1)
        client.tick(2)


def test_fuzz_ouch_both_directions():
    rng = random.Random(SEED + 6)
    seeds = [ENTER_BYTES, CANCEL_BYTES, REPLACE_BYTES, OUCH_EXECUTED]
    seeds += [bytes([ord(lay.type_code)]) + rng.randbytes(lay.size - 1) for lay in ouch.OUTBOUND.layouts]
    inputs = list(_inputs(rng, seeds, INPUTS))
    ok_in, bad_in = _only_wire_errors(ouch.decode_inbound, inputs)
    ok_out, bad_out = _only_wire_errors(ouch.decode_outbound, inputs)
    assert ok_in > 100 and ok_out > 100 and bad_in > 1000 and bad_out > 1000

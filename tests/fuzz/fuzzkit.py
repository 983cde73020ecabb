"""The machinery every fuzz test shares: case counts, seeds and replay, the hang guard, the mutators.

Every target runs ``cases`` inputs, each built from its own ``random.Random`` seeded by
(``FUZZ_SEED``, target name, case number), so one case is replayed alone without the ones
before it. The run is reproducible: the same seed gives the same inputs.

Environment:

=====================  ==============================================================================
``FUZZ_CASES``         cases per target (default: each target's small CI count, the whole of
                       tests/fuzz well under a minute). ``FUZZ_CASES=1000000``: a million per target
``FUZZ_SOAK``          cases per *family* (the targets of one test module), shared out by each
                       target's ``soak_share`` (what it costs and how much it has to explore: a YAML
                       case costs 10-30 ms in PyYAML's pure-Python parser, a wire case 0.05 ms).
                       ``FUZZ_SOAK=1000000``: the soak that runs in hours rather than days
``FUZZ_SEED``          the run's seed (default ``DEFAULT_SEED``; ``random`` picks one and prints it)
``FUZZ_CASE``          run only this case number (replay a failure; the message names it)
``FUZZ_CASE_TIMEOUT``  seconds one case may take before it counts as a hang (default: the target's)
``FUZZ_KEEP_GOING``    1: collect every distinct failure (by exception type and where it was raised)
                       instead of stopping at the first; the report lists each with its case number
=====================  ==============================================================================

An accepted outcome is whatever ``check`` returns (a label counted in the summary) or one of
the target's ``expected`` exception classes (counted as ``"error"``; ``on_error`` may assert
more about it, e.g. that a configuration error names the file). Anything else fails the test
with the seed, the case number, the exact command to replay it, the input and the traceback.

The hang guard: ``setitimer(ITIMER_PROF)`` interrupts a case that uses more CPU than its
timeout with ``CaseTimeout`` (a ``BaseException``, so code under test that catches ``Exception``
cannot swallow it; CPU time, so a soak at ``nice 19`` on a busy machine does not time out while
it waits for a core), and a ``faulthandler`` watchdog (wall clock, two minutes at least) ends
the whole process with every thread's traceback if a case is stuck where no Python signal
handler can run (inside one C call) or waits forever: a hang fails CI instead of stalling it.
"""
from __future__ import annotations

import datetime
import faulthandler
import logging
import math
import os
import random
import reprlib
import resource
import signal
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_SEED = 20261201
MAX_RSS_GROWTH_KB = 1 << 20        # a target that grows the process by 1 GiB is eating memory


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return int(value.replace("_", ""))


def run_seed() -> int:
    value = os.environ.get("FUZZ_SEED", "")
    if value == "random":
        seed = int.from_bytes(os.urandom(4), "big")
        os.environ["FUZZ_SEED"] = str(seed)          # every target of this run uses it
        print(f"\nFUZZ_SEED=random chose FUZZ_SEED={seed}", file=sys.stderr)
        return seed
    return int(value) if value else DEFAULT_SEED


def case_count(ci_default: int, soak_share: float = 1.0) -> int:
    forced = _env_int("FUZZ_CASES")
    if forced is not None:
        return forced
    soak = _env_int("FUZZ_SOAK")
    if soak is not None:
        return max(1, round(soak * soak_share))
    return ci_default


class CaseTimeout(BaseException):
    """One case ran past its time limit (a hang, or a pathological slow path)."""


class GeneratorFailed(Exception):
    """The fuzz test's own input generator raised: a bug in the test, not in the code under test."""


_TIMER, _TIMER_SIGNAL = signal.ITIMER_PROF, signal.SIGPROF       # CPU time of the process


def _on_alarm(signum, frame):
    raise CaseTimeout()


@dataclass
class Summary:
    target: str
    seed: int
    cases: int = 0
    outcomes: dict = field(default_factory=dict)
    slowest: float = 0.0
    slowest_case: int = -1
    wall: float = 0.0

    def line(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (f"fuzz {self.target}: {self.cases} cases in {self.wall:.1f} s (seed {self.seed}; {outcomes}; "
                f"slowest case {self.slowest * 1000:.1f} ms: #{self.slowest_case})")


def _short(value: Any, limit: int = 1500) -> str:
    """A bounded description of an input (inputs may hold shared or recursive references)."""
    if isinstance(value, (bytes, bytearray, str)):
        text = repr(value[:limit])
        return text + (f" ... ({len(value)} {'characters' if isinstance(value, str) else 'bytes'} in all)"
                       if len(value) > limit else "")
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 5, 12, 12, 12
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 200, 200, 60


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    frame = frames[-1] if frames else None
    return f"{os.path.relpath(frame.filename)}:{frame.lineno}" if frame else "?"


def run_cases(target: str, ci_cases: int, make_input: Callable[[random.Random], Any],
              check: Callable[[Any], Any], *, expected: tuple = (), on_error: Callable | None = None,
              timeout: float = 5.0, test_file: str = "", describe: Callable[[Any], str] = _short,
              soak_share: float = 1.0) -> Summary:
    """Run the target's cases; fail (pytest) with a replayable report on the first bad outcome.
    ``soak_share``: this target's part of its family's ``FUZZ_SOAK`` (the shares of a module add up to 1)."""
    import pytest

    seed = run_seed()
    cases = case_count(ci_cases, soak_share)
    only = _env_int("FUZZ_CASE")
    timeout = float(os.environ.get("FUZZ_CASE_TIMEOUT") or timeout)
    keep_going = os.environ.get("FUZZ_KEEP_GOING", "") not in ("", "0")
    base = (seed * 1_000_003) ^ (zlib.crc32(target.encode()) << 20)
    rng = random.Random()
    summary = Summary(target, seed)
    failures: dict[tuple, str] = {}
    case_numbers = [only] if only is not None else range(cases)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    previous_handler = signal.signal(_TIMER_SIGNAL, _on_alarm)
    logging.disable(logging.CRITICAL)              # the code under test logs what it drops: thousands of lines
    watchdog_armed = 0.0
    started = progress_shown = time.monotonic()
    try:
        for case in case_numbers:
            now = time.monotonic()
            if now - watchdog_armed > 1.0:             # re-arming costs a thread wake-up: not per case
                faulthandler.dump_traceback_later(max(120.0, timeout * 10), exit=True)
                watchdog_armed = now
                if now - progress_shown > 600:         # a soak says where it is every ten minutes
                    print(f"\nfuzz {target}: case {case} of {cases} after {now - started:.0f} s",
                          file=sys.stderr, flush=True)
                    progress_shown = now
            rng.seed(base + case)
            data = None
            t0 = time.perf_counter()
            try:
                signal.setitimer(_TIMER, timeout)
                try:
                    try:
                        data = make_input(rng)
                    except Exception as exc:            # noqa: BLE001
                        raise GeneratorFailed(f"the input generator failed: {exc!r}") from exc
                    outcome = check(data)
                finally:
                    signal.setitimer(_TIMER, 0)
                outcome = outcome if isinstance(outcome, str) else "ok"
            except expected as exc:
                outcome = f"error {type(exc).__name__}"
                if on_error is not None:
                    try:
                        on_error(exc, data)
                    except AssertionError as bad:
                        failure = bad
                        outcome = None
            except CaseTimeout:
                failure = CaseTimeout(f"case used more than {timeout} s of CPU (hang?)")
                outcome = None
            except Exception as exc:                   # noqa: BLE001 - the point of fuzzing
                failure = exc
                outcome = None
            elapsed = time.perf_counter() - t0
            summary.cases += 1
            if elapsed > summary.slowest:
                summary.slowest, summary.slowest_case = elapsed, case
            if outcome is not None:
                summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
                continue
            key = (type(failure).__name__, _where(failure))
            if key in failures:
                continue
            node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0] or test_file
            replay = f"FUZZ_SEED={seed} FUZZ_CASE={case} python -m pytest '{node}'"
            failures[key] = (f"target {target!r}, seed {seed}, case {case}: {type(failure).__name__}: {failure}\n"
                             f"  replay: {replay}\n  input: {describe(data)}\n"
                             + "".join(traceback.format_exception(failure)[-12:]))
            if not keep_going:
                break
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(_TIMER_SIGNAL, previous_handler)
        logging.disable(logging.NOTSET)
        summary.wall = time.monotonic() - started
    print("\n" + summary.line())
    if failures:
        pytest.fail(f"{len(failures)} distinct failure(s) after {summary.cases} cases:\n\n"
                    + "\n\n".join(failures.values()), pytrace=False)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert growth < MAX_RSS_GROWTH_KB, f"fuzz {target}: the process grew by {growth // 1024} MiB"
    return summary


# ----------------------------------------------------------------------------------- bytes

INTERESTING = {
    1: (0, 1, 0x20, 0x7F, 0x80, 0xFF),
    2: (0, 1, 2, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF),
    4: (0, 1, 0x7FFFFFFE, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF),
    8: (0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1),
}


def _randbytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def mutate_bytes(rng: random.Random, data: bytes, seeds: list[bytes] = (), *, ops: int = 0,
                 max_size: int = 1 << 16) -> bytes:
    """1..4 (or ``ops``) byte-level mutations of ``data``: flips, boundary integers, truncation,
    insertion, deletion, duplication, splicing with another seed."""
    out = bytearray(data)
    for _ in range(ops or rng.randint(1, 4)):
        choice = rng.randrange(12)
        n = len(out)
        if choice == 0 and n:                                   # flip one bit
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif choice == 1 and n:                                 # any byte
            out[rng.randrange(n)] = rng.randrange(256)
        elif choice == 2 and n:                                 # a boundary integer, either byte order
            width = rng.choice((1, 2, 4, 8))
            at = rng.randrange(n)
            value = rng.choice(INTERESTING[width]).to_bytes(width, rng.choice(("big", "little")))
            out[at:at + width] = value
        elif choice == 3:                                       # truncate
            del out[rng.randrange(n + 1):]
        elif choice == 4:                                       # insert random bytes
            at = rng.randrange(n + 1)
            out[at:at] = _randbytes(rng, rng.choice((1, 1, 2, 3, 8, 64)))
        elif choice == 5 and n:                                 # delete a range
            at = rng.randrange(n)
            del out[at:at + rng.randint(1, 16)]
        elif choice == 6 and n:                                 # duplicate a range in place
            at = rng.randrange(n)
            chunk = out[at:at + rng.randint(1, 64)]
            out[at:at] = chunk * rng.randint(1, 4)
        elif choice == 7 and seeds:                             # splice: our head, another seed's tail
            other = rng.choice(seeds)
            out = out[:rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1):]
        elif choice == 8 and seeds:                             # insert a whole other seed
            at = rng.randrange(n + 1)
            out[at:at] = rng.choice(seeds)
        elif choice == 9 and n:                                 # zero a range
            at = rng.randrange(n)
            width = rng.randint(1, 32)
            out[at:at + width] = bytes(len(out[at:at + width]))
        elif choice == 10 and n:                                # 0xFF a range
            at = rng.randrange(n)
            width = rng.randint(1, 8)
            out[at:at + width] = b"\xff" * len(out[at:at + width])
        elif choice == 11:                                      # append random tail
            out += _randbytes(rng, rng.randint(1, 32))
        if len(out) > max_size:
            del out[max_size:]
    return bytes(out)


def byte_inputs(rng: random.Random, seeds: list[bytes], *, random_share: float = 0.1, max_random: int = 96) -> bytes:
    """Mostly mutated seeds (so the fuzz gets past the first length check), some pure noise."""
    if rng.random() < random_share:
        return _randbytes(rng, rng.randint(0, max_random))
    return mutate_bytes(rng, rng.choice(seeds), seeds)


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` cut at random places (how TCP hands a stream to a reader)."""
    out, at = [], 0
    while at < len(data):
        step = rng.choice((1, 2, 3, 7, 64, 1 << 16))
        out.append(data[at:at + step])
        at += step
    return out


# ----------------------------------------------------------------------------------- values

def laughs(levels: int = 10, width: int = 10) -> list:
    """A 'billion laughs' value: ``width ** levels`` leaves through shared references (the YAML
    dumper writes it with anchors and aliases, a few hundred bytes)."""
    node: Any = ["lol"] * width
    for _ in range(levels - 1):
        node = [node] * width
    return node


def deep(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"k": leaf}
    return leaf


def recursive() -> list:
    node: list = []
    node.append(node)
    return node


# Values a YAML file can give a loader (the loaders see the same after parsing): every type
# the safe loader constructs, boundaries, and the hostile ones.
NASTY_SCALARS: tuple = (
    None, True, False, 0, 1, -1, 2, 7, 64, 100, 1000, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
    2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63, 10**13, 10**30, 10**99, -10**99,
    0.0, -0.0, 0.5, 1e-9, 1.5, 99.9, 1e15, 1e308, math.inf, -math.inf, math.nan,
    "", " ", "x", "0", "1", "-1", "0600", "0777", "1e5", "0x10", "09:30", "16:00", "25:99", "null", "true", "~",
    "AAPL", "MSFT", "BRK.B", "aapl", "A" * 9, "a:b", "a.b:C", "pkg.mod:Class", ":", "-", "_",
    "127.0.0.1", "0.0.0.0", "239.1.1.1", "256.1.1.1", "127.0.0.1:15001", "::1", "/dev/null", "../../etc/passwd",
    "x" * 300, "y" * 5000, "é", "\u00a0", "日本", "\U0001f600", "\x00", "a\x00b", "\ud800", "tab\there", "line\nbreak",
    "America/New_York", "UTC", "Mars/Olympus", "Factory", "Mon", "Sun", "Funday", "per_event", "fifo", "busy_spin",
    "hugepage", "4k", "counters", "processes", "market_state", "control", "positions", "restart", "stop",
    datetime.date(2001, 2, 3), datetime.datetime(2001, 2, 3, 4, 5, 6), b"\x00binary\xff",
)


def nasty_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.70 or depth > 2:
        return rng.choice(NASTY_SCALARS)
    if roll < 0.78:
        return [nasty_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.86:
        return {rng.choice(("a", "name", "port", "host", "1", "", "symbols")): nasty_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    if roll < 0.90:
        return laughs(rng.randint(2, 10), rng.randint(2, 10))
    if roll < 0.95:
        return deep(rng.choice((10, 100, 300, 2000)), kind=rng.choice(("list", "dict")))
    if roll < 0.97:
        return recursive()
    return {rng.choice((1, None, 1.5, True)): nasty_value(rng, depth + 1)}     # a key that is not a string


# ----------------------------------------------------------------------------------- trees

def _paths(node, path=(), out=None, limit=400):
    """Every (container, key) in a parsed document, to pick one to damage."""
    if out is None:
        out = []
    if len(out) >= limit:
        return out
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _paths(node[key], path + (key,), out, limit)
    elif isinstance(node, list):
        for i in range(len(node)):
            out.append((node, i))
            _paths(node[i], path + (i,), out, limit)
    return out


def copy_tree(node, memo: dict | None = None):
    """A deep copy that keeps shared and recursive references (so a 'billion laughs' value stays small)."""
    if memo is None:
        memo = {}
    if not isinstance(node, (dict, list)):
        return node
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, dict):
        out: Any = {}
        memo[id(node)] = out
        for k, v in node.items():
            out[k] = copy_tree(v, memo)
    else:
        out = []
        memo[id(node)] = out
        out.extend(copy_tree(v, memo) for v in node)
    return out


def limited(node, budget: list | None = None, depth: int = 0):
    """A plain tree of at most a few thousand nodes (no sharing): what a dumper can always write."""
    if budget is None:
        budget = [2000]
    budget[0] -= 1
    if budget[0] < 0 or depth > 40:
        return None
    if isinstance(node, dict):
        return {k: limited(v, budget, depth + 1) for k, v in list(node.items())[:50]}
    if isinstance(node, list):
        return [limited(v, budget, depth + 1) for v in node[:50]]
    if isinstance(node, str):
        return node.encode("utf-8", "replace").decode("utf-8")
    return node


def mutate_tree(rng: random.Random, doc, *, ops: int = 0, donors: list = ()):
    """Structure-aware damage to a parsed document (a copy): wrong types and values, missing,
    unknown and renamed keys, duplicated and dropped items, subtrees moved or taken from
    another valid document (``donors``)."""
    doc = copy_tree(doc)
    for _ in range(ops or rng.choice((1, 1, 1, 2, 3))):
        try:
            doc = _mutate_once(rng, doc, donors)
        except RecursionError:                      # a value nested deeper than this walker goes
            pass
    return doc


def _mutate_once(rng: random.Random, doc, donors):
    places = _paths(doc)
    if not places:
        return nasty_value(rng) if rng.random() < 0.5 else doc
    container, key = rng.choice(places)
    if key not in container if isinstance(container, dict) else key >= len(container):
        return doc
    choice = rng.randrange(9)
    if choice <= 2:
        container[key] = nasty_value(rng)
    elif choice == 3:
        del container[key]
    elif choice == 4:
        if isinstance(container, dict):                                # an unknown key
            new_key = rng.choice(("unknown", "nme", "Name", f"{key}_x", f"{key}.x", 1, None))
            container[new_key] = nasty_value(rng)
        else:
            container.insert(key, copy_tree(container[key]))            # a duplicate item
    elif choice == 5 and isinstance(container, dict) and isinstance(key, str):
        container[key[:-1] if len(key) > 1 and rng.random() < 0.5 else key.upper()] = container.pop(key)
    elif choice == 6:
        _, other_key = rng.choice(places)
        other = rng.choice(places)[0]
        try:
            container[key] = copy_tree(other[other_key])             # a subtree from elsewhere
        except (KeyError, IndexError, TypeError, RecursionError):
            pass
    elif choice == 7 and donors:
        donor_places = _paths(rng.choice(donors))
        if donor_places:
            d_container, d_key = rng.choice(donor_places)
            container[key] = copy_tree(d_container[d_key])
    elif choice == 8:
        value = container[key]
        if isinstance(value, bool) or value is None:
            container[key] = rng.choice((0, 1, "yes", [value]))
        elif isinstance(value, int):
            container[key] = rng.choice((value + 1, value - 1, -value, value * 1000, str(value), float(value),
                                         2 ** rng.randrange(70), value + 0.5))
        elif isinstance(value, float):
            container[key] = rng.choice((int(value) if math.isfinite(value) else 0, -value, str(value), value * 1e9))
        elif isinstance(value, str):
            container[key] = rng.choice((value * 2, value[:-1], value.upper(), value + " ", " " + value, value + ":",
                                         value.encode("utf-8", "surrogatepass"), [value], {value: value}))
        elif isinstance(value, list):
            container[key] = rng.choice(([], value * 2, value[:1], value[::-1], {"0": value}))
        elif isinstance(value, dict):
            container[key] = rng.choice(({}, [value], list(value), None, {k: None for k in value}))
    return doc


def dump_yaml(rng: random.Random, doc) -> str:
    """A document as YAML text in a random style (block, flow, mixed); shared references become
    anchors and aliases, exactly as a person could write them."""
    import yaml
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    options = dict(sort_keys=False, default_flow_style=rng.choice((False, None, True)),
                   allow_unicode=rng.random() < 0.5, width=rng.choice((80, 4096)))
    try:
        return yaml.dump(doc, Dumper=dumper, **options)
    except (yaml.YAMLError, RecursionError, UnicodeEncodeError, ValueError):
        return yaml.dump(limited(doc), Dumper=dumper, **options)


# ----------------------------------------------------------------------------------- YAML text

_LAUGHS = ("{a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol], "
           + ", ".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)) + "}")

# YAML fragments a value (or a whole line) may be replaced with.
YAML_FRAGMENTS: tuple[str, ...] = (
    "", "~", "null", "true", "yes", "on", "0", "-1", "0x7fffffffffffffff", "0o777", "0b101", "1_000", "+12", ".inf", "-.inf",
    ".nan", "1e400", "99999999999999999999999999", "0x" + "f" * 600, "0b" + "1" * 3000, "1" * 5000,
    "1:2:3:4:5:6", "2001-02-03", "2001-02-30", "2001-13-01 25:61:61", "!!float abc", "!!int xyz", "!!int 0x",
    "!!bool maybe", "!!null x", "!!timestamp 2001-99-99", "!!timestamp nonsense", "!!binary AAAA", "!!binary %%%",
    "!!str 12", "!!set {a, b}", "!!omap [a: 1, a: 2]", "!!pairs [a: 1]", "!!omap x", "!!python/object:os.system ls",
    "!!python/name:os.system", "!unknown tag", "!<tag:yaml.org,2002:int> 5", "!!map [1]", "!!seq {a: 1}",
    "&x [*x]", "&y {k: *y}", "*undefined", "&a 1", "[&b 1, *b]", _LAUGHS, "{<<: {a: 1}, b: 2}", "[<<]",
    "[" * 3000 + "]" * 3000, "{a: " * 1000 + "1" + "}" * 1000, "[" * 50 + "]" * 50, "'" + "q" * 20000 + "'",
    '"\\uD800"', '"\\x00"', '"\\U0010FFFF"', '"\\ud83d\\ude00"', '"\\N\\_\\L\\P"', "'unterminated", '"unterminated',
    "|\n  literal\n  block", ">\n  folded", "? complex\n: key", "[a, b", "{a: 1", "a: b: c", "- - -", "@reserved",
    "`backtick", "%YAML 1.1", "--- second document", "...", "\t", "key: \t value", "{[1]: 2}", "{{a: 1}: 2}",
    "{? [a]: 1}", "[a, [b, [c]]]", "{1: a, 1.0: b}", "{true: a, 1: b}", "{null: a, ~: b}", "{.nan: 1, .nan: 2}",
)


def mutate_yaml_text(rng: random.Random, text: str, seeds: list[str] = ()) -> str | bytes:
    """Line- and token-level damage that keeps most of the document: the YAML parser and the
    validators both get exercised. Returns bytes when the damage is at the encoding level."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        choice = rng.randrange(13)
        i = rng.randrange(len(lines))
        line = lines[i]
        if choice == 0:
            del lines[i]
            if not lines:
                lines = [""]
        elif choice == 1:                                   # a duplicated line: duplicate keys, or items
            lines.insert(rng.randrange(len(lines) + 1), line)
        elif choice == 2:                                   # re-indent
            lines[i] = " " * rng.choice((0, 1, 2, 3, 4, 6, 8, 12)) + line.lstrip(" ")
        elif choice == 3:                                   # truncate the file here
            lines = lines[:i] + [line[:rng.randrange(len(line) + 1)]]
        elif choice == 4 or choice == 5:                    # replace a value after "key:" or "- "
            colon = line.find(": ")
            dash = line.find("- ")
            at = colon + 2 if colon >= 0 else dash + 2 if dash >= 0 else -1
            if at >= 0:
                newline = "\n" if line.endswith("\n") else ""
                lines[i] = line[:at] + rng.choice(YAML_FRAGMENTS) + newline
        elif choice == 6:                                   # a token at a random place
            j = rng.randrange(len(line) + 1)
            token = rng.choice((":", ": ", "-", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!", "#", "'", '"', "|",
                                ">", "?", "\t", "\n", "  ", "%", "@", "\\", "\r", "\x85", "\u2028", "\ufeff"))
            lines[i] = line[:j] + token + line[j + rng.randint(0, 2):]
        elif choice == 7:                                   # a key-value line anywhere
            indent = " " * (len(line) - len(line.lstrip(" ")))
            key = rng.choice(("name", "version", "x", "params", "symbols", "<<", "? a", "1", "null", "'a'"))
            lines.insert(i, f"{indent}{key}: {rng.choice(YAML_FRAGMENTS)}\n")
        elif choice == 8 and seeds:                         # splice in lines of another valid document
            other = rng.choice(seeds).splitlines(keepends=True)
            if other:
                j = rng.randrange(len(other))
                lines[i:i] = other[j:j + rng.randint(1, 8)]
        elif choice == 9:                                   # very long line
            lines[i] = line.rstrip("\n") + "z" * rng.choice((100, 10000, 60000)) + "\n"
        elif choice == 10:                                  # swap two lines
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif choice == 11:                                  # anchor a value, alias it elsewhere
            colon = line.find(": ")
            if colon >= 0:
                lines[i] = line[:colon + 2] + "&r " + line[colon + 2:]
                j = rng.randrange(len(lines))
                other = lines[j]
                colon2 = other.find(": ")
                if colon2 >= 0 and j != i:
                    lines[j] = other[:colon2 + 2] + "*r" + ("\n" if other.endswith("\n") else "")
        else:                                               # a document-level oddity at the top
            lines.insert(0, rng.choice(("%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "--- !!map\n", "---\n", "--- |\n",
                                        "\ufeff", "# comment\n", "- list at top\n", "!!set\n")))
    out = "".join(lines)
    roll = rng.random()
    if roll < 0.04:                                         # not UTF-8 at all
        raw = out.encode("utf-8", "surrogatepass")
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + bytes([rng.choice((0x80, 0xC3, 0xFF, 0xFE, 0xED))]) + raw[at:]
    if roll < 0.06:
        return out.encode("utf-16")                         # a BOM and UTF-16: YAML allows it, we say what it is
    if roll < 0.08:
        return mutate_bytes(rng, out.encode("utf-8", "surrogatepass"), ops=1)
    return out


def yaml_inputs(rng: random.Random, seed_texts: list[str], seed_docs: list) -> str | bytes:
    """One input for a YAML loader: text-level damage of a valid file, or a structure-level
    damage of its parsed form dumped in a random style (sometimes both)."""
    roll = rng.random()
    if roll < 0.45:
        return mutate_yaml_text(rng, rng.choice(seed_texts), seed_texts)
    text = dump_yaml(rng, mutate_tree(rng, rng.choice(seed_docs), donors=seed_docs))
    if roll < 0.6:
        return mutate_yaml_text(rng, text, seed_texts)
    return text


# ----------------------------------------------------------------------------------- JSON

def json_lines(rng: random.Random, seeds: list[dict]) -> bytes:
    """One control-socket line: a damaged valid request (values of every JSON type, huge and
    deep ones), or byte-level damage of one, or noise."""
    import json
    roll = rng.random()
    if roll < 0.5:
        doc = mutate_tree(rng, rng.choice(seeds))
        try:
            text = json.dumps(_jsonable(doc), allow_nan=True)
        except (ValueError, RecursionError, TypeError):
            text = "{}"
        return text.encode("utf-8", "surrogatepass")
    if roll < 0.8:
        return mutate_bytes(rng, json.dumps(rng.choice(seeds)).encode(), ops=rng.randint(1, 3), max_size=70_000)
    return rng.choice((b"", b"\xff\xfe", b"[" * 100_000, b"{\"command\": " + b"[" * 5000 + b"]" * 5000 + b"}",
                       b"1" * 5000, b"{\"command\": \"status\", \"x\": " + b"9" * 5000 + b"}", b"null", b"[]",
                       b"\"command\"", b"{\"command\": 1e999}", b"NaN", b"{\"command\": \"\\ud800\"}",
                       b"{\"command\": \"status\"}" * 3, _randbytes(rng, rng.randint(1, 200))))


def _jsonable(node, budget: list | None = None, depth: int = 0):
    """A JSON-able plain copy of at most a few thousand nodes (deep nesting kept: it is the point)."""
    if budget is None:
        budget = [5000]
    budget[0] -= 1
    if budget[0] < 0 or depth > 3000:
        return None
    if isinstance(node, dict):
        return {k if isinstance(k, (str, int, float, bool)) or k is None else str(k): _jsonable(v, budget, depth + 1)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_jsonable(v, budget, depth + 1) for v in node]
    if isinstance(node, (bytes, datetime.date)):
        return str(node)
    return node


def as_loaded(node, budget: list | None = None, active: set | None = None, depth: int = 0):
    """What a value looks like after the YAML loader and ``plain()``: shared references expanded
    into copies (at most ``budget`` nodes, as the loader's alias limit allows; the rest None),
    no recursive references and no nesting deeper than the parser reaches (None there)."""
    if budget is None:
        budget, active = [10_000], set()          # (the loader allows 100,000: the parsers care about kind, not size)
    budget[0] -= 1
    if budget[0] < 0 or depth > 200:
        return None
    if isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 10**100:
        return None                                 # the loader refuses such an integer
    if not isinstance(node, (dict, list)):
        return node
    if id(node) in active:
        return None
    active.add(id(node))
    try:
        if isinstance(node, dict):
            return {k: as_loaded(v, budget, active, depth + 1) for k, v in node.items()}
        return [as_loaded(v, budget, active, depth + 1) for v in node]
    finally:
        active.discard(id(node))

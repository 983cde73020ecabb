"""The fuzz harness itself: reproducible cases, replay of one case, the hang guard."""
from __future__ import annotations

import pytest

import fuzzkit


def test_each_case_is_reproducible_and_replayable_alone(monkeypatch):
    seen: list = []
    monkeypatch.delenv("FUZZ_CASES", raising=False)
    monkeypatch.delenv("FUZZ_SOAK", raising=False)
    monkeypatch.delenv("FUZZ_CASE", raising=False)
    fuzzkit.run_cases("selftest", 20, lambda rng: fuzzkit.mutate_bytes(rng, b"seed" * 8), seen.append)
    again: list = []
    fuzzkit.run_cases("selftest", 20, lambda rng: fuzzkit.mutate_bytes(rng, b"seed" * 8), again.append)
    assert seen == again and len(set(seen)) > 10
    monkeypatch.setenv("FUZZ_CASE", "13")
    alone: list = []
    fuzzkit.run_cases("selftest", 20, lambda rng: fuzzkit.mutate_bytes(rng, b"seed" * 8), alone.append)
    assert alone == [seen[13]]


def test_a_failure_names_the_seed_the_case_and_the_replay(monkeypatch):
    monkeypatch.delenv("FUZZ_CASE", raising=False)

    def check(value):
        if value > 0.9:
            raise KeyError("boom")

    with pytest.raises(pytest.fail.Exception) as caught:
        fuzzkit.run_cases("selftest-failure", 200, lambda rng: rng.random(), check)
    message = str(caught.value)
    assert "KeyError" in message and "FUZZ_SEED=" in message and "FUZZ_CASE=" in message


def test_a_hanging_case_fails_instead_of_stalling(monkeypatch):
    monkeypatch.delenv("FUZZ_CASE", raising=False)

    def spin(_):
        while True:
            pass

    with pytest.raises(pytest.fail.Exception, match="CaseTimeout"):
        fuzzkit.run_cases("selftest-hang", 1, lambda rng: 0, spin, timeout=0.3)

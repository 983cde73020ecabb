"""The one polling loop: the predicate's value when it holds, None once the deadline passed."""
from __future__ import annotations

from appliance.runtime.polling import poll_until


def test_the_first_truthy_value_is_returned():
    answers = iter([0, "", None, {"ready": 1}])
    assert poll_until(lambda: next(answers), 5, 0.0) == {"ready": 1}


def test_a_timeout_gives_none_after_one_last_look():
    calls = []
    assert poll_until(lambda: calls.append(1), 0.0, 0.0) is None
    assert len(calls) >= 1


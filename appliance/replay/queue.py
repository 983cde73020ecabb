"""Queue-position models: how far a recorded cancel at our price moves our order toward the front.

Every model shares the rest of the venue's rules (``venue.py``): an order joins the back of its price
level (``ahead`` = the recorded shares there), recorded executions at that price consume ``ahead``
first and then fill us, and ``ahead`` never exceeds the recorded level's shares. A model only decides
what a recorded *cancel* (ITCH X, D, or the old half of a U) at our price does to ``ahead``:

``risk-averse``  cancels never advance us (hftbacktest's RiskAdverseQueueModel): ``ahead`` only
                 shrinks to the level's remaining shares.
``prob-power[:N]``, ``prob-log``
                 hftbacktest's ProbQueueModel, sampled: with ``front`` = ahead and ``back`` = the level's
                 shares behind us, the cancel came from ahead of us with probability
                 f(front) / (f(front) + f(back)), f(x) = x**N (N=3 by default) or log(1 + x); a seeded
                 draw (``random.Random(seed)``) decides, so a run is reproducible. A cancel of an order
                 that joined after us (ITCH names the order, so this is known) is behind us: no draw.
``fifo``         exact price-time priority from the order references: a cancel of an order that joined
                 before us advances us by its shares, one that joined after does not.
"""
from __future__ import annotations

import math
import random

MODELS = ("risk-averse", "prob-power[:N]", "prob-log", "fifo")
DEFAULT_POWER = 3


class QueueModelError(ValueError):
    """An unknown queue model name."""


class RiskAverse:
    name = "risk-averse"

    def cancel(self, order, shares: int, level_after: int, older: bool) -> None:
        if order.ahead > level_after:
            order.ahead = level_after


class Fifo:
    name = "fifo"

    def cancel(self, order, shares: int, level_after: int, older: bool) -> None:
        ahead = order.ahead - shares if older else order.ahead
        order.ahead = min(max(ahead, 0), level_after)


class Probabilistic:
    """hftbacktest's probability of a cancel coming from ahead, decided by a seeded draw."""

    def __init__(self, name: str, f, seed: int) -> None:
        self.name = name
        self.f = f
        self.random = random.Random(seed).random

    def cancel(self, order, shares: int, level_after: int, older: bool) -> None:
        front = order.ahead
        if older and front > 0:
            back = max(level_after + shares - front, 0)
            f = self.f
            weight_front, weight_back = f(front), f(back)
            if self.random() * (weight_front + weight_back) < weight_front:
                front = max(front - shares, 0)
        order.ahead = min(front, level_after)


def make(name: str, seed: int = 0):
    """The model called ``name`` (see ``MODELS``); ``seed`` seeds the probabilistic ones."""
    if name == "risk-averse":
        return RiskAverse()
    if name == "fifo":
        return Fifo()
    if name == "prob-log":
        return Probabilistic(name, math.log1p, seed)
    if name == "prob-power" or name.startswith("prob-power:"):
        _, _, power = name.partition(":")
        try:
            n = float(power) if power else DEFAULT_POWER
        except ValueError:
            n = -1.0
        if not 0 < n <= 10:
            raise QueueModelError(f"queue model {name!r}: the power must be a number in (0, 10]")
        return Probabilistic(f"prob-power:{power or DEFAULT_POWER}", lambda x, n=n: float(x) ** n, seed)
    raise QueueModelError(f"unknown queue model {name!r} (known: {', '.join(MODELS)})")

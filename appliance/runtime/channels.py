"""Typed ring channels: an agent declares the rings it uses, the layout is checked against them once.

An agent lists its rings as ``RingUse`` (the ring's name in the layout, the agent's side, the
record the ring carries, and, where the agent depends on it, the process on the other side).
``check_ring_uses`` holds the declarations against the layout when the agent is built (a bad
layout is a ``LayoutError``, exit 2, before anything starts); ``SharedMemory.channel`` then hands
back a ``Channel`` that carries its own ring side, the buffer of the ring's own segment and the
record, so no agent looks up a segment's buffer by hand (and none can write a ring through
another ring's segment).
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.messages.schema import Record
from appliance.runtime.layout import Layout, LayoutError, RingSpec

PRODUCER = "producer"
CONSUMER = "consumer"


@dataclass(frozen=True)
class RingUse:
    """One ring an agent uses. ``peer``: the process that must be on the other side (None: any)."""
    name: str
    role: str                   # PRODUCER or CONSUMER: the agent's own side
    record: Record              # what the ring carries, by the layout's ``message``
    required: bool = True       # False: the agent runs without it when the layout has no such ring
    peer: str | None = None

    def __post_init__(self):
        if self.role not in (PRODUCER, CONSUMER):
            raise ValueError(f"ring {self.name}: role must be {PRODUCER} or {CONSUMER}, not {self.role!r}")

    def other_side(self) -> "RingUse":
        """The same ring from the process at its other end (a test or bench playing the peer)."""
        return RingUse(self.name, CONSUMER if self.role == PRODUCER else PRODUCER, self.record, self.required)


def check_ring_uses(layout: Layout, process: str, uses, who: str) -> None:
    """Every declared ring against the layout: present (if required), this process on its side, the
    declared peer on the other, the record the agent reads or writes. ``who`` names the agent in errors."""
    for use in uses:
        spec = layout.rings.get(use.name)
        if spec is None:
            if use.required:
                raise LayoutError(layout.path, "rings", f"{who} needs a ring named {use.name!r}")
            continue
        own, other = (use.role, CONSUMER if use.role == PRODUCER else PRODUCER)
        if getattr(spec, own) != process:
            raise LayoutError(layout.path, f"rings.{use.name}.{own}",
                              f"is {getattr(spec, own)!r}, but {who} runs as {process!r}")
        if use.peer is not None and getattr(spec, other) != use.peer:
            raise LayoutError(layout.path, f"rings.{use.name}.{other}",
                              f"is {getattr(spec, other)!r}, but {who} works with {use.peer!r} there")
        if spec.message != use.record.name:
            raise LayoutError(layout.path, f"rings.{use.name}.message",
                              f"{who} reads/writes {use.record.name}, not {spec.message}")


class Channel:
    """One side of a ring with the buffer of its own segment and the record it carries.

    The ring's calls are bound here as attributes (``claim``/``commit`` for a producer,
    ``peek``/``release`` for a consumer, ``depth``), so ``channel.peek()`` costs what
    ``ring.peek()`` does. Offsets from them are offsets into ``buffer``.
    """
    __slots__ = ("name", "role", "record", "spec", "ring", "buffer", "capacity",
                 "claim", "commit", "peek", "release", "depth")

    def __init__(self, use: RingUse, spec: RingSpec, ring, buffer):
        self.name = use.name
        self.role = use.role
        self.record = use.record
        self.spec = spec
        self.ring = ring
        self.buffer = buffer
        self.capacity = ring.capacity
        self.claim, self.commit = ring.claim, ring.commit
        self.peek, self.release = ring.peek, ring.release
        self.depth = ring.depth

    def __repr__(self) -> str:
        return f"Channel({self.name}, {self.role}, {self.record.name}, segment {self.spec.segment})"

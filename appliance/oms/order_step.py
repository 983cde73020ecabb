"""The compiled order step: a new order's or a replace's ORDER_SENT journaled and its OUCH frame handed
to the socket, in one C call (``Journal.append_then_send`` on ``_journal_fast.order_step``).

The C side holds no layout of its own: the record's shape comes from ``journal_records.ORDER_SENT``
(``journal.py`` gives it) and each frame's from the wire codec's ``DataFrame`` (given here, from
``ouch.ENTER_ORDER_FRAME`` and ``ouch.REPLACE_ORDER_FRAME``). The Python path (``ORDER_SENT.pack``,
``Journal.append``, ``DataFrame.pack``, ``VenueSession.send_packet``) is the reference and the fallback
where the extension lacks the step; ``tests/oms/test_oms_order_step.py`` holds the two byte-identical.
"""
from __future__ import annotations

from appliance.oms import journal
from appliance.wire import ouch

ENTER, REPLACE = 0, 1
FRAMES = {ENTER: ouch.ENTER_ORDER_FRAME, REPLACE: ouch.REPLACE_ORDER_FRAME}


def _give_frames():
    """The frames' shapes to the extension; its ``handed_ns``, or None when there is no compiled step."""
    if not journal.HAS_ORDER_STEP:
        return None
    from appliance.oms import _journal_fast
    for frame_id, frame in FRAMES.items():
        _journal_fast.set_step_frame(frame_id, *frame.compiled_shape())
    return _journal_fast.handed_ns


handed_ns = _give_frames()            # the monotonic clock just before the step's last send
AVAILABLE = handed_ns is not None


def send_buffers() -> list[bytearray]:
    """One buffer per frame, exactly its size: the step packs a frame there (a partial send queues the rest)."""
    return [bytearray(FRAMES[frame_id].layout.size) for frame_id in sorted(FRAMES)]

"""The hub's cheap stream sequence of a delivered event agrees with nats-py's metadata."""
from nats.aio.msg import Msg

from appliance.riskhub.hub import _stream_sequence


def _msg(reply):
    return Msg(_client=None, subject="appliance.a.events", reply=reply, data=b"{}")


def test_the_sequence_from_the_reply_subject_equals_nats_py_metadata():
    replies = ["$JS.ACK.APPLIANCE_EVENTS.c1.1.%d.%d.1700000000000000000.%d" % (s, s, 9 - s % 9) for s in (1, 7, 123456789)]
    replies += ["$JS.ACK.dom.ACCHASH.APPLIANCE_EVENTS.c1.1.%d.%d.1700000000000000000.3.tok" % (s, s) for s in (2, 99)]
    replies += ["$JS.ACK.dom.ACCHASH.APPLIANCE_EVENTS.c1.1.%d.%d.1700000000000000000.3" % (s, s) for s in (5,)]
    for reply in replies:
        assert _stream_sequence(_msg(reply)) == _msg(reply).metadata.sequence.stream > 0, reply


def test_a_reply_that_is_not_jetstreams_gives_zero_never_an_error():
    for reply in ("", "_INBOX.x", "$JS.ACK", "$JS.ACK.s.c.1.x.2.3.4", "$JS.NAK.s.c.1.2.3.4.5", "a.b.c.d.e.f.g.h.i.j.k"):
        assert _stream_sequence(_msg(reply)) == 0, reply

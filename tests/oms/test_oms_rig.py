"""The OMS tests' scripted SoupBinTCP venue (tests/support/oms_rig.py) does what the tests rely on."""
from __future__ import annotations

import socket
import time

from appliance.wire import ouch, soupbintcp
from oms_rig import ScriptedVenue


def test_the_scripted_venue_logs_a_client_in_and_replays_from_its_sequence_number():
    venue = ScriptedVenue()
    try:
        venue.store.append(ouch.encode_outbound({"type": "S", "timestamp": 0, "event_code": "S"}))
        with socket.create_connection(("127.0.0.1", venue.port), timeout=5) as sock:
            sock.sendall(soupbintcp.login_request("ALGO1", "secret1", "", 1))
            reader = soupbintcp.PacketReader()
            packets = []
            deadline = time.monotonic() + 5
            while len(packets) < 2 and time.monotonic() < deadline:
                reader.feed(sock.recv(65536))
                while (found := reader.next_packet()) is not None:
                    layout, offset, length = found
                    packet = soupbintcp.decode_packet(reader.buffer, offset, length + 2)
                    if packet["packet_type"] != "H":
                        packets.append(packet)
        assert packets[0]["packet_type"] == "A" and packets[0]["sequence_number"] == 1
        assert packets[1]["packet_type"] == "S"
    finally:
        venue.close()

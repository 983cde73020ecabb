"""A 3-node NATS cluster on loopback (the stream with 3 replicas): one node killed mid-session loses
nothing; every node stopped and started again: each drop copy catches up, nothing lost or doubled;
the hub, following the cluster's nodes, ends up with every event once."""
from __future__ import annotations

import pytest

from conftest import wait_until
from dropcopy_rig import stream_messages
from nats_server import nats_cluster   # noqa: F401  (the fixture)
from riskhub_rig import D, Firm, RunningHub, write_hub_config

pytestmark = pytest.mark.slow


def test_a_node_lost_and_the_whole_cluster_restarted_lose_and_double_nothing(nats_cluster, tmp_path):
    url = nats_cluster.url
    firm = Firm(nats_cluster, tmp_path, nats={"url": url, "replicas": 3}, retry={"initial_ms": 50, "max_ms": 500})
    hub = None
    try:
        v1, v2 = firm.journals["venue1"], firm.journals["venue2"]
        sent = {"venue1": 0, "venue2": 0}

        def trade(rounds: int):
            for _ in range(rounds):
                sent["venue1"] += v1.fill("AAPL", "B", 10, 190 * D)
                sent["venue2"] += v2.fill("AAPL", "S", 5, 191 * D)

        def published():
            return all(firm.published(name) == count for name, count in sent.items())
        trade(20)
        wait_until(published, 60, message="the first fills in the stream")
        hub = RunningHub(write_hub_config(tmp_path / "hub.yaml", url)).caught_up(60)

        nats_cluster.nodes[0].kill()                          # one node of three: the stream keeps a quorum
        trade(20)
        wait_until(published, 120, message="publishing on with a node down")

        for node in nats_cluster.nodes[1:]:                   # all of it down, trading on
            node.stop()
        trade(20)
        wait_until(lambda: all(r.copy.stats.connected == 0 for r in firm.copies.values()), 60,
                   message="the drop copies seeing NATS gone")
        nats_cluster.start()
        wait_until(published, 180, message="every drop copy catching up")
        wait_until(lambda: hub.hub.caught_up and all(
            getattr(hub.hub.book.appliances.get(n), "last_sequence", 0) == c for n, c in sent.items()), 180,
            message="the hub following the cluster")
        f = hub.hub.book.figures()
        assert f["symbols"]["AAPL"]["by_appliance"] == {"venue1": 600, "venue2": -300}
        assert f["applied"] == sum(sent.values()) and f["duplicates"] == 0
    finally:
        if hub is not None:
            hub.stop()
        firm.close()
    ids = [m[1] for m in stream_messages(nats_cluster.nodes[1])]
    assert len(ids) == len(set(ids)) == sum(sent.values())

"""``sovhub gpu-queue``: the queue rebuilt from the servers' saved places."""

from __future__ import annotations

from sovereign_hub.spawner.fairqueue import FairQueue, Pool, Waiter
from sovereign_hub.spawner.queuecli import render, waiters_from_users


def test_the_listing_shows_each_pool_in_the_hubs_order():
    hub_queue = FairQueue({"eu-researchers": 4, "vision": 1})
    for user, group, pool in [
        ("ana", "eu-researchers", Pool("a100", "eu")),
        ("bob", "vision", Pool("a100", "eu")),
        ("carol", "eu-researchers", Pool("a100", "eu")),
        ("dan", "vision", Pool("a100-1g5gb", "eu")),
    ]:
        hub_queue.add(Waiter(user, "", pool, group, 1, since=1000.0))
    # What the REST API returns: each waiting server's state carries its place.
    users = [
        {
            "name": w.user,
            "servers": {
                "": {
                    "state": {
                        "sovereign": {
                            "queued": {
                                "waiter": w.to_state(),
                                "clock": hub_queue.to_state(),
                                "maxWait": 3600,
                            }
                        }
                    }
                }
            },
        }
        for w in hub_queue.waiters()
    ] + [{"name": "eve", "servers": {"": {"state": {"sovereign": {"queued": None}}}}}]
    rebuilt = waiters_from_users(users)
    assert [w.key for w in rebuilt.order()] == [w.key for w in hub_queue.order()]
    text = render(rebuilt, now=1125.0)
    assert text.splitlines()[0] == "a100 in eu: 3 waiting"
    assert "    1  ana " in text
    assert "a100-1g5gb in eu: 1 waiting" in text
    assert "2m05s" in text
    assert render(FairQueue(), 0) == "The GPU queue is empty.\n"

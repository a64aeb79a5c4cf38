"""Each pod's events from an index, answering exactly as KubeSpawner's scan of them all.

KubeSpawner's progress stream asks for its pod's events once a second and KubeSpawner
sorts every event of the namespace to answer: with 1,000 servers starting at once, 13% of
the hub's samples in a py-spy profile. The index must change that cost and nothing else.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

from kubespawner import KubeSpawner

from sovereign_hub.spawner.podevents import EventsByPod, IndexedEventReflector, IndexedEvents


def event(uid: str, pod: str, second: int) -> dict:
    stamp = f"2026-11-30T07:00:{second:02d}Z"
    return {
        "metadata": {"uid": uid, "name": f"{pod}.{uid}", "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ns"},
        "lastTimestamp": stamp if second % 2 else None,
        "eventTime": None if second % 2 else stamp,
        "message": uid,
    }


def scanned(events: dict, pod: str) -> list:
    """KubeSpawner's answer: every event sorted, the pod's kept."""
    ordered = sorted(events.values(), key=lambda e: e["lastTimestamp"] or e["eventTime"])
    return [e for e in ordered if e["involvedObject"]["name"] == pod]


def test_the_index_follows_every_change_the_reflector_makes():
    """Two thousand random adds, replacements (with equal timestamps: ties keep the
    reflector's order, as KubeSpawner's stable sort does) and deletes, checked against the
    full scan after each."""
    rng = random.Random(7)  # noqa: S311 (a reproducible draw, not a secret)
    plain: dict = {}
    indexed = EventsByPod()
    pods = [f"jupyter-u{i}" for i in range(6)]
    for step in range(2000):
        key = f"ns/e{rng.randrange(60)}"
        if rng.random() < 0.25:
            plain.pop(key, None)
            indexed.pop(key, None)
        else:
            new = event(key, rng.choice(pods), rng.randrange(5))
            plain[key] = new
            indexed[key] = new
        if step % 97 == 0:  # the reflector's relist replaces its store whole
            indexed = EventsByPod(dict(plain))
        assert dict(indexed) == plain
        for pod in pods:
            assert indexed.for_pod(pod) == scanned(plain, pod), (step, pod)


def test_every_way_to_change_the_store_keeps_the_index():
    store = EventsByPod({"ns/a": event("a", "p", 1)})
    store.update({"ns/b": event("b", "p", 2)}, **{"ns/c": event("c", "q", 3)})
    store.setdefault("ns/d", event("d", "q", 4))
    del store["ns/a"]
    assert [e["message"] for e in store.for_pod("p")] == ["b"]
    assert store.popitem()[0] == "ns/d"
    assert [e["message"] for e in store.for_pod("q")] == ["c"]
    store["ns/c"] = event("c", "p", 5)  # the same event now about another pod
    assert store.for_pod("q") == []
    assert [e["message"] for e in store.for_pod("p")] == ["b", "c"]
    store.clear()
    assert store.for_pod("p") == []
    assert store.pop("ns/x", None) is None


class _Spawner:
    """What KubeSpawner's ``events`` and ours read of a spawner."""

    def __init__(self, reflector: object, last_event: str | None) -> None:
        self.event_reflector = reflector
        self.pod_name = "jupyter-ana"
        self._last_event = last_event


async def test_a_pods_events_since_the_start_marker_are_kubespawners():
    """The same answer as KubeSpawner's ``events``, marker rule included, from a reflector
    whose store the traitlets validation turned into the index."""
    events = {
        f"ns/{uid}": event(uid, pod, second)
        for uid, pod, second in [
            ("a", "jupyter-ana", 1),
            ("b", "jupyter-bob", 2),
            ("c", "jupyter-ana", 3),  # the last event of the previous start: the marker
            ("d", "jupyter-ana", 4),
            ("e", "jupyter-ana", 4),
        ]
    }
    reflector = IndexedEventReflector(namespace="ns")
    await reflector.api.api_client.close()  # never started: no request is made
    reflector.resources = dict(events)  # as the reflector's list assigns it
    assert isinstance(reflector.resources, EventsByPod)
    every = sorted(events.values(), key=lambda e: e["lastTimestamp"] or e["eventTime"])
    stock_reflector = SimpleNamespace(events=every)
    for marker in (None, "c", "e", "unknown"):
        ours = IndexedEvents.events.fget(_Spawner(reflector, marker))
        stock = KubeSpawner.events.fget(_Spawner(stock_reflector, marker))
        assert ours == stock, marker
    assert [e["message"] for e in IndexedEvents.events.fget(_Spawner(reflector, "c"))] == [
        "d",
        "e",
    ]
    assert IndexedEvents.events.fget(_Spawner(None, None)) == []

"""Each pod's events, found without scanning every event of the namespace.

A starting server's progress stream (KubeSpawner's ``progress``) asks for its pod's
events once a second, and KubeSpawner's ``events`` answers by sorting every event the
shared event reflector holds and keeping the pod's: with a thousand servers starting at
once, a thousand sorts of several thousand events a second, a cost that grows with the
square of the spawns at once. A py-spy profile of the hub during 1,000 spawns at once had
13% of its samples there.

:class:`EventsByPod` is the reflector's store with an index by the involved pod's name,
kept as the reflector adds, replaces and drops events; :class:`IndexedEvents` starts the
event reflector with it and reads a pod's events from the index, in KubeSpawner's order
and with its "since the last start" rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kubespawner.spawner import EventReflector
from traitlets import validate

Event = dict[str, Any]


def _pod_of(event: Event) -> str:
    return str((event.get("involvedObject") or {}).get("name", ""))


def _when(event: Event) -> Any:
    # KubeSpawner's sort key: one of the two is set, as the event's API version has it.
    return event["lastTimestamp"] or event["eventTime"]


class EventsByPod(dict[str, Event]):
    """The event reflector's events by key, and by the name of the pod each is about.

    The reflector stores into it (``[key] = event``), drops from it (``pop``) and replaces
    it whole after each list; every other way to change a dict keeps the index too."""

    def __init__(self, events: Mapping[str, Event] | Iterable[tuple[str, Event]] = ()) -> None:
        super().__init__()
        self._by_pod: dict[str, dict[str, Event]] = {}
        self._place: dict[str, int] = {}
        """Each key's place in this dict's order: KubeSpawner's sort is stable, so events
        with equal timestamps come in the store's order, and so they do here."""
        self._next_place = 0
        self.update(events)

    def __setitem__(self, key: str, event: Event) -> None:
        old = self.get(key)
        if old is None:
            self._place[key] = self._next_place
            self._next_place += 1
        elif _pod_of(old) != _pod_of(event):
            self._forget(key, old)
        super().__setitem__(key, event)
        self._by_pod.setdefault(_pod_of(event), {})[key] = event

    def __delitem__(self, key: str) -> None:
        self._forget(key, self[key])
        del self._place[key]
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            event = self[key]
            del self[key]
            return event
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[str, Event]:
        key = next(reversed(self))
        return key, self.pop(key)

    def setdefault(self, key: str, default: Event | None = None) -> Event:
        if key not in self:
            self[key] = default if default is not None else {}
        return self[key]

    def update(self, *args: Any, **kwargs: Event) -> None:
        for key, event in dict(*args, **kwargs).items():
            self[key] = event

    def clear(self) -> None:
        super().clear()
        self._by_pod.clear()
        self._place.clear()

    def _forget(self, key: str, event: Event) -> None:
        events = self._by_pod.get(_pod_of(event), {})
        events.pop(key, None)
        if not events:
            self._by_pod.pop(_pod_of(event), None)

    def for_pod(self, name: str) -> list[Event]:
        """The events about pod ``name``, oldest first (KubeSpawner's order)."""
        events = self._by_pod.get(name, {})
        return [events[k] for k in sorted(events, key=lambda k: (_when(events[k]), self._place[k]))]


class IndexedEventReflector(EventReflector):  # type: ignore[misc]  # KubeSpawner's, untyped
    """KubeSpawner's event reflector, storing its events in an :class:`EventsByPod`."""

    @validate("resources")
    def _indexed(self, proposal: Any) -> EventsByPod:
        value = proposal["value"]
        return value if isinstance(value, EventsByPod) else EventsByPod(value)

    def for_pod(self, name: str) -> list[Event]:
        resources = self.resources
        if isinstance(resources, EventsByPod):
            return resources.for_pod(name)
        # Before the first list stored an index (the trait's default): scan, as KubeSpawner.
        return sorted((e for e in resources.values() if _pod_of(e) == name), key=_when)


class IndexedEvents:
    """KubeSpawner mixin: the event reflector indexed by pod, and ``events`` read from it.

    ``_start_watching_events`` is KubeSpawner's own (not a documented hook; pinned by
    tests/test_kubespawner_seams.py) with the reflector class changed; regional clusters
    subclass it as they do KubeSpawner's."""

    if TYPE_CHECKING:
        # What it uses of the KubeSpawner it is mixed into.
        enable_user_namespaces: bool
        pod_name: str
        event_reflector: Any
        _last_event: str | None

        async def _start_reflector(
            self, kind: str, reflector_class: type, replace: bool = False, **kwargs: Any
        ) -> Any: ...

    async def _start_watching_events(self, replace: bool = False) -> Any:
        return await self._start_reflector(
            kind="events",
            reflector_class=IndexedEventReflector,
            fields={"involvedObject.kind": "Pod"},
            omit_namespace=self.enable_user_namespaces,
            replace=replace,
        )

    @property
    def events(self) -> list[Event]:
        """This pod's events since the last start's marker, as KubeSpawner's ``events``."""
        reflector = self.event_reflector
        if reflector is None:
            return []
        if not isinstance(reflector, IndexedEventReflector):
            # A reflector another spawner class started in this hub: KubeSpawner's own scan.
            return super().events  # type: ignore[misc, no-any-return]
        events: list[Event] = []
        for event in reflector.for_pod(self.pod_name):
            if self._last_event and event["metadata"]["uid"] == self._last_event:
                events = []  # the marker: only what came after it counts
            else:
                events.append(event)
        return events

"""The private members of KubeSpawner (and of JupyterHub's Spawner under it) that the
Sovereign spawner overrides or calls, pinned against the installed versions.

None of them is a documented hook: an upgrade may rename them or change their parameters
without notice, and the spawner would then fail at run time (a wrapper no longer called, a
keyword no longer accepted), far from the cause. Each test here fails on such an upgrade
and names the code of ours that depends on the member. The list is also checked to be
complete: a new use of a private KubeSpawner member under ``spawner/`` must be added here.
docs/explanation/design-notes.md ("KubeSpawner's private members") lists the same.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest
from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner
from kubespawner.reflector import ResourceReflector
from kubespawner.spawner import EventReflector

from tests.conftest import ROOT


@dataclass(frozen=True)
class Seam:
    name: str
    shape: str
    """Parameters without annotations, as ``(self, kind, replace=False, **kwargs)``; for
    ``async`` methods prefixed ``async ``; ``property`` or ``attribute`` otherwise."""
    owner: type
    used_by: str


SEAMS = [
    Seam(
        "_start_watching_pods",
        "async (self, replace=False)",
        KubeSpawner,
        "spawner/transient.py ApiRetries._start_watching_pods overrides it, calls it with "
        "replace=True after a failed first list, and reads the returned reflector's "
        "first_load_future",
    ),
    Seam(
        "_start_reflector",
        "async (self, kind, reflector_class, replace=False, **kwargs)",
        KubeSpawner,
        "spawner/clusters.py RegionalClusters._start_reflector overrides it to pass a "
        "regional reflector class and its cluster_client through **kwargs",
    ),
    Seam(
        "_get_reflector_key",
        "(self, kind)",
        KubeSpawner,
        "spawner/clusters.py RegionalClusters._get_reflector_key overrides it and appends the "
        "cluster's name to the tuple it returns",
    ),
    Seam(
        "_get_pod_url",
        "(self, pod)",
        KubeSpawner,
        "spawner/clusters.py RegionalClusters._get_pod_url overrides it: a region behind a "
        "gateway is reached at the gateway's URL instead of the pod's IP (start and poll)",
    ),
    Seam(
        "_build_common_labels",
        "(self, extra_labels)",
        KubeSpawner,
        "spawner/planning.py home_claim calls it for the labels of the per-region home claim",
    ),
    Seam(
        "_expand_user_properties",
        "(self, template, slug_scheme=None)",
        KubeSpawner,
        "spawner/planning.py adopted_claim expands a region's adoptClaims template with it, "
        "so an adopted claim's name is the one KubeSpawner gave it",
    ),
    Seam(
        "_make_create_pod_request",
        "async (self, pod, request_timeout)",
        KubeSpawner,
        "spawner/transient.py ApiRetries._make_create_pod_request overrides it: a create whose "
        "answer was lost is retried, and a pod carrying this start's spawn id is kept",
    ),
    Seam(
        "_make_delete_pod_request",
        "async (self, pod_name, delete_options, grace_seconds, request_timeout)",
        KubeSpawner,
        "spawner/transient.py ApiRetries._make_delete_pod_request overrides it: a stop's "
        "delete is timed on the API server's answer, not on the wait for a connection",
    ),
    Seam(
        "_log_name",
        "property",
        Spawner,
        "spawner/spawner.py, queueing.py and clusters.py read it to name the server in log lines",
    ),
    Seam(
        "_start_future",
        "attribute",
        KubeSpawner,
        "spawner/spawner.py SovereignSpawner.start sets it (KubeSpawner.progress ends the "
        "progress stream when it is done); spawner/queueing.py and transient.py read it",
    ),
    Seam(
        "_start_watching_events",
        "async (self, replace=False)",
        KubeSpawner,
        "spawner/podevents.py IndexedEvents._start_watching_events overrides it to start the "
        "event reflector with an index of each pod's events",
    ),
    Seam(
        "_last_event",
        "attribute",
        KubeSpawner,
        "spawner/podevents.py IndexedEvents.events reads it as KubeSpawner's events does: the "
        "start's marker, after which a pod's events count",
    ),
    Seam(
        "_stopping",
        "attribute",
        ResourceReflector,
        "spawner/transient.py _gave_up reads it with watch_task: a reflector whose watch task "
        "ended while not stopping gave up, and the next spawn or poll replaces it",
    ),
]


def shape(member: Any) -> str:
    if isinstance(member, property):
        return "property"
    parameters = inspect.signature(member).parameters.values()
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in parameters]
    text = str(inspect.Signature(bare))
    return f"async {text}" if inspect.iscoroutinefunction(member) else text


def upgrade_message(seam: Seam, found: str) -> str:
    return (
        f"jupyterhub-kubespawner {version('jupyterhub-kubespawner')} / jupyterhub "
        f"{version('jupyterhub')}: {seam.owner.__name__}.{seam.name} is {found}, "
        f"expected {seam.shape}. Our code depends on it: {seam.used_by}. Re-read that code "
        "against the new version and update it (and this pin) before upgrading."
    )


@pytest.mark.parametrize("seam", [s for s in SEAMS if s.shape != "attribute"], ids=lambda s: s.name)
def test_each_private_method_we_rely_on_keeps_its_parameters(seam: Seam):
    member = inspect.getattr_static(seam.owner, seam.name, None)
    if member is None:
        pytest.fail(upgrade_message(seam, "gone"))
    found = shape(member)
    assert found == seam.shape, upgrade_message(seam, found)


def test_kubespawner_start_sets_and_progress_reads_the_start_future():
    # An instance attribute, so there is no signature to compare: what matters is that
    # KubeSpawner still stores start()'s future there and its progress() still reads it.
    (seam,) = [s for s in SEAMS if s.name == "_start_future"]
    start = inspect.getsource(KubeSpawner.start)
    progress = inspect.getsource(KubeSpawner.progress)
    assert "self._start_future = " in start, upgrade_message(seam, "no longer set by start()")
    assert "self._start_future" in progress, upgrade_message(seam, "no longer read by progress()")


def test_kubespawner_events_are_the_pods_own_after_the_start_marker():
    # IndexedEvents.events answers as KubeSpawner's does from an index: the same filter (the
    # involved object's name), the same marker (_last_event, set by start()), the same order.
    (seam,) = [s for s in SEAMS if s.name == "_last_event"]
    events = inspect.getsource(KubeSpawner.events.fget)
    assert 'event["involvedObject"]["name"] != self.pod_name' in events, upgrade_message(
        seam, "no longer the filter of events"
    )
    assert "self._last_event" in events, upgrade_message(seam, "no longer read by events")
    assert "self._last_event = " in inspect.getsource(KubeSpawner._start), upgrade_message(
        seam, "no longer set by _start()"
    )
    reflector = inspect.getsource(EventReflector)
    assert 'event["lastTimestamp"] or event["eventTime"]' in reflector, upgrade_message(
        seam, "events no longer sorted by lastTimestamp or eventTime"
    )


def test_a_reflector_that_gives_up_ends_its_watch_task_without_stopping():
    # _gave_up tells "gave up" (task done, _stopping False) from "stopped" (_stopping True).
    (seam,) = [s for s in SEAMS if s.name == "_stopping"]
    start = inspect.getsource(ResourceReflector.start)
    stop = inspect.getsource(ResourceReflector.stop)
    watch = inspect.getsource(ResourceReflector._watch_and_update)
    assert "self.watch_task = " in start, upgrade_message(seam, "no longer holding watch_task")
    assert "self._stopping = True" in stop, upgrade_message(seam, "no longer set by stop()")
    assert "giving up" in watch, upgrade_message(seam, "a watch that no longer gives up")


def private_kubespawner_members_used_in_spawner() -> dict[str, list[str]]:
    """Every ``_name`` that the code under spawner/ defines, reads or calls and that
    KubeSpawner (or a class it inherits from) also has, with where it stands."""
    pinned_attributes = {s.name for s in SEAMS if s.shape == "attribute"}
    used: dict[str, list[str]] = {}
    for path in sorted((ROOT / "spawner").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
            else:
                continue
            if not name.startswith("_") or name.startswith("__"):
                continue
            if hasattr(KubeSpawner, name) or name in pinned_attributes:
                used.setdefault(name, []).append(f"spawner/{path.name}:{node.lineno}")
    return used


def test_every_private_kubespawner_member_the_spawner_uses_is_pinned_here():
    used = private_kubespawner_members_used_in_spawner()
    unpinned = {name: where for name, where in used.items() if name not in {s.name for s in SEAMS}}
    assert not unpinned, (
        f"spawner/ uses private KubeSpawner members not pinned in {__name__}: {unpinned}; "
        "add a Seam for each (or use a documented hook instead), and list it in "
        "docs/explanation/design-notes.md"
    )
    # A pin for a member no longer used is stale: drop it and its line in the docs.
    assert set(used) == {s.name for s in SEAMS}, sorted({s.name for s in SEAMS} - set(used))

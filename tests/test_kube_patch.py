"""The emulated API server's strategic merge patch and server-side apply, as pure functions.

Each row is a patch a real client sends (kubectl, Helm's three-way merge) and what a real
kube-apiserver stores; the patch strategies come from the kinds' schemas
(sandbox/kube/schemas.py), as the real server's come from its Go types.
"""

from __future__ import annotations

import copy

import pytest

from sovereign_hub.sandbox.kube import apply, schemas
from sovereign_hub.sandbox.kube.patch import PatchError, merge_map

DEPLOYMENT = schemas.of("apps", "v1", "Deployment")
PDB = schemas.of("policy", "v1", "PodDisruptionBudget")


def deployment(**pod: object) -> dict:
    spec = {"containers": [{"name": "hub", "image": "hub:1", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "ports": [{"containerPort": 8081, "name": "http"}]}],
        "volumes": [{"name": "config", "configMap": {"name": "cfg"}}], **pod}  # fmt: skip
    return {"metadata": {"name": "d", "finalizers": ["a"]},
            "spec": {"replicas": 1, "template": {"spec": spec}}}  # fmt: skip


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def smp(patch_pod: dict) -> dict:
    return merge_map(deployment(), {"spec": {"template": {"spec": patch_pod}}}, DEPLOYMENT)


@pytest.mark.parametrize(
    ("patch", "field", "expected"),
    [
        # Lists with the merge strategy merge by their key; the other entries stay.
        ({"containers": [{"name": "hub", "env": [{"name": "C", "value": "3"}]}]},
         "env", [{"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                 {"name": "C", "value": "3"}]),
        ({"containers": [{"name": "hub", "env": [{"name": "A", "value": "9"}]}]},
         "env", [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]),
        ({"containers": [{"name": "hub", "env": [{"name": "A", "$patch": "delete"}]}]},
         "env", [{"name": "B", "value": "2"}]),
        ({"containers": [{"name": "hub", "env": [{"name": "Z", "value": "0"},
                                                 {"$patch": "replace"}]}]},
         "env", [{"name": "Z", "value": "0"}]),
        ({"containers": [{"name": "hub", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                          "env": [{"name": "B", "value": "2"}]}]},
         "env", [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]),
        # Ports merge by containerPort.
        ({"containers": [{"name": "hub", "ports": [{"containerPort": 9090, "name": "m"}]}]},
         "ports", [{"containerPort": 8081, "name": "http"}, {"containerPort": 9090, "name": "m"}]),
        # Volumes merge by name, and $retainKeys swaps a volume's source.
        ({"volumes": [{"name": "config", "secret": {"secretName": "s"},
                       "$retainKeys": ["name", "secret"]}]},
         "volumes", [{"name": "config", "secret": {"secretName": "s"}}]),
        ({"volumes": [{"name": "data", "emptyDir": {}}]},
         "volumes", [{"name": "config", "configMap": {"name": "cfg"}},
                     {"name": "data", "emptyDir": {}}]),
        # A list with no strategy is replaced.
        ({"tolerations": [{"key": "gpu", "operator": "Exists"}]},
         "tolerations", [{"key": "gpu", "operator": "Exists"}]),
        # null deletes.
        ({"volumes": None}, "volumes", None),
    ],
    ids=["env-add", "env-change", "env-delete", "env-replace", "env-order", "ports", "retain-keys",
         "volume-add", "atomic-list", "null"],
)  # fmt: skip
def test_strategic_merge_patch_follows_each_fields_strategy(patch, field, expected):
    merged = pod_spec(smp(patch))
    value = (
        merged.get(field) if field in ("volumes", "tolerations") else merged["containers"][0][field]
    )
    assert value == expected


def test_a_scalar_list_with_the_merge_strategy_is_a_union_and_takes_deletions():
    merged = merge_map(deployment(), {"metadata": {"finalizers": ["b", "a"]}}, DEPLOYMENT)
    assert merged["metadata"]["finalizers"] == ["a", "b"]
    gone = merge_map(merged, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
                     DEPLOYMENT)  # fmt: skip
    assert gone["metadata"]["finalizers"] == ["b"]


def test_a_map_with_the_replace_strategy_is_replaced_and_directives_replace_or_delete_maps():
    pdb = {"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "maxUnavailable": 1}}
    merged = merge_map(pdb, {"spec": {"selector": {"matchLabels": {"c": "3"}}}}, PDB)
    assert merged["spec"]["selector"] == {"matchLabels": {"c": "3"}}
    replaced = merge_map(deployment(), {"spec": {"template": {"$patch": "replace", "spec": {}}}},
                         DEPLOYMENT)  # fmt: skip
    assert replaced["spec"]["template"] == {"spec": {}}
    emptied = merge_map(deployment(), {"spec": {"template": {"$patch": "delete"}}}, DEPLOYMENT)
    assert emptied["spec"]["template"] == {}


@pytest.mark.parametrize(
    ("patch", "code", "words"),
    [
        ({"spec": {"$patch": "merge"}}, 400, "unknown patch type: merge"),
        ({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, 400,
         "does not contain declared merge key: name"),
        ({"spec": {"strategy": {"type": "Recreate", "$retainKeys": ["type"],
                                "rollingUpdate": {}}}}, 422, "does not match retainKeys"),
    ],
    ids=["unknown-directive", "missing-merge-key", "retain-keys-mismatch"],
)  # fmt: skip
def test_bad_patches_are_refused_as_the_real_server_refuses_them(patch, code, words):
    with pytest.raises(PatchError) as info:
        merge_map(deployment(), patch, DEPLOYMENT)
    assert info.value.code == code
    assert words in str(info.value)


def config(replicas: int, *env: str) -> dict:
    container = {"name": "hub", "image": "hub:1", "env": [{"name": e, "value": e} for e in env]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}}}  # fmt: skip


def applied(current, body, manager, force=False):
    return apply.apply(current, body, DEPLOYMENT, manager=manager, api_version="apps/v1",
                       force=force)  # fmt: skip


def test_apply_records_ownership_and_removes_only_what_the_manager_stopped_applying():
    first = applied(None, config(1, "A", "B"), "helm")
    (entry,) = first["metadata"]["managedFields"]
    assert entry["manager"] == "helm"
    assert entry["operation"] == "Apply"
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(containers['k:{"name":"hub"}']["f:env"]) == {'k:{"name":"A"}', 'k:{"name":"B"}'}
    # Another manager co-owns B (same value); helm stops applying A and B.
    shared = applied(first, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "hub", "env": [
            {"name": "B", "value": "B"}]}]}}}}, "ops")  # fmt: skip
    after = applied(shared, config(1), "helm")
    env = after["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "B", "value": "B"}]
    assert after["spec"]["replicas"] == 1


def test_apply_refuses_to_change_another_managers_field_unless_forced():
    first = applied(None, config(1), "helm")
    with pytest.raises(apply.Conflicts) as info:
        applied(first, config(3), "kubectl")
    assert info.value.conflicts == [("helm", ".spec.replicas")]
    assert 'conflict with "helm" using apps/v1: .spec.replicas' in str(info.value)
    forced = applied(copy.deepcopy(first), config(3), "kubectl", force=True)
    assert forced["spec"]["replicas"] == 3
    owners = apply.owners(forced["metadata"])
    assert ("f:spec", "f:replicas") in owners[("kubectl", "Apply")]
    assert ("f:spec", "f:replicas") not in owners[("helm", "Apply")]


def test_an_update_takes_the_fields_it_changes_and_apply_then_conflicts_with_it():
    """An update that names a fieldManager (kubectl scale, Helm 3's patches) owns what it
    changed (an Update entry), taken from the applier; applying another value is then a
    conflict with the updater, as on a real server."""
    first = applied(None, config(1, "A"), "helm")
    scaled = copy.deepcopy(first)
    scaled["spec"]["replicas"] = 5
    apply.record_update(first, scaled, DEPLOYMENT, manager="kubectl-scale", api_version="apps/v1")
    owners = apply.owners(scaled["metadata"])
    assert owners[("kubectl-scale", "Update")] == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in owners[("helm", "Apply")]
    with pytest.raises(apply.Conflicts) as info:
        applied(scaled, config(2, "A"), "helm")
    assert info.value.conflicts == [("kubectl-scale", ".spec.replicas")]
    # The same value is no conflict: the applier shares the field.
    same = applied(scaled, config(5, "A"), "helm")
    assert same["spec"]["replicas"] == 5


@pytest.mark.parametrize(
    "items",
    [[{"$patch": "replace"}, "x"], ["x", {"$patch": "replace"}], [{"$patch": "delete"}, 3]],
    ids=["replace-then-scalar", "scalar-then-replace", "delete-then-scalar"],
)
def test_a_scalar_in_a_list_merged_by_key_is_400_whatever_directive_it_sits_beside(items):
    """apimachinery checks that a list merged by key holds only maps before it reads a
    directive; the emulator once answered 500 here."""
    with pytest.raises(PatchError) as info:
        smp({"containers": items})
    assert info.value.code == 400
    assert "in a list merged by name" in str(info.value)

"""The emulated kubelet's environment rules, without an API server (sandbox/kube/podenv.py)."""

from __future__ import annotations

import pytest

from sovereign_hub.sandbox.kube.podenv import ConfigError, container_env, expand

POD = {
    "metadata": {"name": "p", "namespace": "team", "uid": "u-1", "labels": {"app": "nb"}},
    "spec": {"nodeName": "eu-cpu-1", "serviceAccountName": "default"},
}
DATA = {
    ("secret", "creds"): {"token": b"s3cret"},
    ("configmap", "cfg"): {"REGION": b"eu", "MODE": b"fast"},
}


async def read(kind, ns, name, optional):
    assert ns == "team"
    if (kind, name) in DATA:
        return DATA[(kind, name)]
    if optional:
        return {}
    raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$(A)-$(B)", {"A": "1"}, "1-$(B)"),
        ("$$(A)", {"A": "1"}, "$(A)"),
        ("$$$(A)", {"A": "1"}, "$1"),
        ("no vars", {}, "no vars"),
    ],
)
def test_expansion(text, env, expected):
    assert expand(text, env) == expected


async def test_every_source_in_kubernetes_order():
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "MODE", "value": "$(CFG_MODE)-then"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
        "resources": {"limits": {"cpu": "2"}},
    }
    env = await container_env(POD, container, "127.9.0.2", read)
    assert env == {
        "CFG_REGION": "eu",
        "CFG_MODE": "fast",
        "MODE": "fast-then",
        "TOKEN": "s3cret",
        "APP": "nb",
        "IP": "127.9.0.2",
        "NODE": "eu-cpu-1",
        "CPU": "2",
    }


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, 'secret "absent" not found'),
        (
            {"secretKeyRef": {"name": "creds", "key": "k"}},
            "couldn't find key k in Secret team/creds",
        ),
        (
            {"configMapKeyRef": {"name": "cfg", "key": "k"}},
            "couldn't find key k in ConfigMap team/cfg",
        ),
    ],
)
async def test_a_missing_reference_fails_the_container(ref, message):
    with pytest.raises(ConfigError) as info:
        await container_env(POD, {"env": [{"name": "X", "valueFrom": ref}]}, "ip", read)
    assert info.value.reason == "CreateContainerConfigError"
    assert str(info.value) == message

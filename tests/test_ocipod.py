"""sovereign_hub.sandbox.ocipod: a rendered pod spec turned into what runc runs, as a kubelet
would mount and start it (no runc here: the files and the options it gives)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from sovereign_hub.sandbox.ocipod import (
    SERVICE_ACCOUNT_DIR,
    Objects,
    PodSpecError,
    ServiceAccount,
    run_options,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBJECTS = Objects.from_manifests([
    {"kind": "ConfigMap", "metadata": {"name": "config"}, "data": {"a.py": "print(1)"}},
    {"kind": "Secret", "metadata": {"name": "hub"}, "data": {"cookie": b64("c" * 8),
                                                             "token": b64("t0k")}},
])  # fmt: skip

POD = {
    "securityContext": {"runAsUser": os.getuid(), "runAsGroup": os.getgid(),
                        "fsGroup": os.getgid()},
    "containers": [{
        "name": "hub",
        "args": ["jupyterhub", "--config=/etc/x/a.py", "--ns=$(NS)", "$(UNSET)"],
        "workingDir": "/srv",
        "env": [
            {"name": "PLAIN", "value": "1"},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/x", "readOnly": True},
            {"name": "secrets", "mountPath": "/etc/cookie", "subPath": "cookie-file"},
            {"name": "state", "mountPath": "/srv"},
            {"name": "oidc", "mountPath": "/etc/oidc"},
        ],
    }],
    "volumes": [
        {"name": "config", "configMap": {"name": "config"}},
        {"name": "secrets", "secret": {"secretName": "hub",
                                       "items": [{"key": "cookie", "path": "cookie-file"}]}},
        {"name": "state", "persistentVolumeClaim": {"claimName": "db"}},
        {"name": "oidc", "secret": {"secretName": "absent", "optional": True}},
    ],
}  # fmt: skip
ACCOUNT = ServiceAccount("127.0.0.1", 6443, "sa-token", b"CA PEM", "hubs")


def test_volumes_env_user_and_security_context_as_a_kubelet_gives_them(tmp_path: Path):
    options = run_options(POD, "hub", OBJECTS, tmp_path, entrypoint=["tini", "--"],
                          service_account=ACCOUNT, netns="/var/run/netns/p")  # fmt: skip
    assert options.args == ("tini", "--", "jupyterhub", "--config=/etc/x/a.py", "--ns=hubs",
                            "$(UNSET)")  # fmt: skip
    assert options.env == {"PLAIN": "1", "FROM_SECRET": "t0k", "NS": "hubs",
                           "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                           "KUBERNETES_SERVICE_PORT": "6443"}  # fmt: skip
    assert (options.uid, options.cwd, options.netns) == (os.getuid(), "/srv", "/var/run/netns/p")
    assert options.read_only_root
    assert options.drop_all_capabilities
    assert options.no_new_privileges
    assert (options.binds["/etc/x"] / "a.py").read_text() == "print(1)"
    assert options.binds["/etc/cookie"].read_text() == "c" * 8  # a subPath: the file itself
    assert set(options.writable) == {"/srv"}  # the claim; config and secrets are read-only
    assert os.listdir(options.binds["/etc/oidc"]) == []  # an optional, absent Secret: empty
    account = options.binds[SERVICE_ACCOUNT_DIR]
    assert (account / "token").read_text() == "sa-token"
    assert (account / "namespace").read_text() == "hubs"


def test_what_it_cannot_do_as_a_kubelet_is_refused_by_name(tmp_path: Path):
    host_path = {**POD, "volumes": [*POD["volumes"], {"name": "h", "hostPath": {"path": "/"}}]}
    with pytest.raises(PodSpecError, match="volume 'h': hostPath volumes are not run here"):
        run_options(host_path, "hub", OBJECTS, tmp_path / "a", entrypoint=[])
    missing = {**POD, "volumes": [{"name": "config", "configMap": {"name": "nope"}}]}
    with pytest.raises(PodSpecError, match="configMap 'nope' was not rendered"):
        run_options(missing, "hub", OBJECTS, tmp_path / "b", entrypoint=[])
    (container,) = POD["containers"]
    resource = {
        **container,
        "volumeMounts": [],
        "env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "cpu"}}}],
    }
    with pytest.raises(PodSpecError, match="env 'CPU': valueFrom"):
        run_options({**POD, "containers": [resource]}, "hub", OBJECTS, tmp_path / "c",
                    entrypoint=[])  # fmt: skip
    adds = {**container, "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
    with pytest.raises(PodSpecError, match=r"capabilities\.add"):
        run_options({**POD, "containers": [adds]}, "hub", OBJECTS, tmp_path / "e", entrypoint=[])
    root = {**POD, "securityContext": {"runAsUser": 0, "runAsNonRoot": True}}
    with pytest.raises(PodSpecError, match="runAsNonRoot"):
        run_options(root, "hub", OBJECTS, tmp_path / "f", entrypoint=[])
    no_user = {**POD, "securityContext": {}}
    with pytest.raises(PodSpecError, match="runAsUser"):
        run_options(no_user, "hub", OBJECTS, tmp_path / "d", entrypoint=[])

"""The emulated kubelet's container runtime (sandbox/kube/ociruntime.py) and the sandbox's
pinning of the built images (sandbox/containers.py), without running a container: the
image store's lookup by digest, Kubernetes' command/args rules, and the pinned policy.
Running pods from a built image is tested in tests/test_image_build.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox.containers import policy_with_images
from sovereign_hub.sandbox.kube.ociruntime import (
    ImageConfig,
    ImageStore,
    OciRuntime,
    command_line,
    split_mounts,
)
from sovereign_hub.sandbox.kube.podenv import ConfigError
from tests.conftest import ROOT

DIGEST = "sha256:" + "ab" * 32


def layout(folder: Path, name: str, digest: str = DIGEST, tag: str = "1.0") -> Path:
    """An OCI image layout's index (all the store reads)."""
    path = folder / name
    path.mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
        "size": 1, "annotations": {"org.opencontainers.image.ref.name": tag}}]}))  # fmt: skip
    return path


def test_the_store_finds_an_image_by_its_digest_whatever_the_repository(tmp_path):
    layout(tmp_path, "notebook-cpu")
    store = ImageStore.from_dir(tmp_path)
    found = store.find(f"registry.corp.example/any/name@{DIGEST}")
    assert (found.name, found.tag, found.digest) == ("notebook-cpu", "1.0", DIGEST)


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (f"quay.io/x@sha256:{'cd' * 32}", "it is in none of this node's image layouts"),
        ("quay.io/jupyter/base-notebook:latest", "it names no digest"),
    ],
)
def test_an_image_not_in_the_store_is_err_image_pull_saying_why(tmp_path, image, why):
    layout(tmp_path, "notebook-cpu")
    store = ImageStore.from_dir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        store.find(image)
    assert refused.value.reason == "ErrImagePull"
    assert why in str(refused.value)
    assert str(tmp_path / "notebook-cpu") in str(refused.value)
    assert "make images" in str(refused.value)


def test_a_folder_without_layouts_is_refused_with_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"no OCI image layout in it \(build them: make images\)"):
        ImageStore.from_dir(tmp_path)
    with pytest.raises(ValueError, match="no such folder of images"):
        ImageStore.from_dir(tmp_path / "absent")


IMAGE = ImageConfig(bundle=Path("/b"), entrypoint=["tini", "--"], cmd=["start.sh"], env={},
                    cwd="/home/jovyan")  # fmt: skip


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["tini", "--", "start.sh"]),
        ({"args": ["lab"]}, ["tini", "--", "lab"]),
        ({"command": ["python3"]}, ["python3"]),  # the image's CMD goes with its ENTRYPOINT
        ({"command": ["python3"], "args": ["-V"]}, ["python3", "-V"]),
    ],
)
def test_command_and_args_follow_kubernetes_rules_against_the_image(container, argv):
    assert command_line(container, IMAGE) == argv


def test_the_sandbox_pins_the_built_notebook_image_into_its_channel(tmp_path):
    layout(tmp_path / "images", "notebook-cpu")
    layout(tmp_path / "images", "hub", digest="sha256:" + "ef" * 32)
    out = policy_with_images(ROOT / "examples" / "policy.yaml",
                             ImageStore.from_dir(tmp_path / "images"), tmp_path / "p.yaml")  # fmt: skip
    policy = load_policy(out).policy
    newest = policy.channels["datascience"].versions[-1]
    assert (newest.version, newest.image) == (
        "sandbox",
        f"localhost/sovereign-hub/notebook-cpu@{DIGEST}",
    )
    # No notebook-gpu was built: its channel is left as the policy has it.
    assert all("sovereign-hub" not in v.image for v in policy.channels["pytorch"].versions)


def test_secret_configmap_projected_and_downward_api_volumes_are_read_only_whatever_the_mount():
    spec = {"volumes": [{"name": n, kind: {}} for n, kind in (
        ("s", "secret"), ("c", "configMap"), ("p", "projected"), ("d", "downwardAPI"),
        ("e", "emptyDir"), ("h", "persistentVolumeClaim"))]}  # fmt: skip
    container = {"volumeMounts": [{"name": n, "mountPath": f"/{n}"} for n in "scpdeh"]
                 + [{"name": "e", "mountPath": "/ro", "readOnly": True}]}  # fmt: skip
    mounts = [(m["mountPath"], Path("/host") / m["name"]) for m in container["volumeMounts"]]
    binds, writable, empty_dirs = split_mounts(spec, container, mounts)
    assert sorted(binds) == ["/c", "/d", "/p", "/ro", "/s"]
    assert sorted(writable) == ["/e", "/h"]
    assert empty_dirs == {"/e", "/ro"}


def fake_image(tmp_path: Path) -> ImageConfig:
    """An unpacked image's run configuration, enough for what is refused before runc runs."""
    bundle = tmp_path / "image"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({
        "process": {"user": {"uid": 1000, "gid": 100}, "args": ["sh"], "env": [], "cwd": "/"},
        "root": {"path": "rootfs"}, "mounts": [], "linux": {"namespaces": []}}))  # fmt: skip
    return ImageConfig(bundle=bundle, entrypoint=[], cmd=["sh"], env={}, cwd="/")


@pytest.mark.parametrize(
    ("pod_fields", "security", "named"),
    [
        ({}, {"privileged": True}, "privileged"),
        ({"hostNetwork": True}, {}, "hostNetwork"),
        ({"hostPID": True, "hostIPC": True}, {}, "hostPID, hostIPC"),
        ({}, {"capabilities": {"add": ["NET_ADMIN"]}}, "capabilities.add ['NET_ADMIN']"),
        ({"securityContext": {"runAsUser": 0, "runAsNonRoot": True}}, {}, "runAsNonRoot"),
    ],
)
async def test_what_the_runtime_cannot_grant_is_refused_by_name(
    tmp_path, pod_fields, security, named
):
    runtime = OciRuntime(ImageStore([]), tmp_path / "cache")
    pod = {"spec": {"containers": [], **pod_fields}}
    with pytest.raises(ConfigError) as refused:
        await runtime.start(image=fake_image(tmp_path), pod=pod,
                            container={"securityContext": security}, argv=["sh"], env={},
                            mounts=[], pod_root=tmp_path / "pod", netns="none",
                            log_path=tmp_path / "log")  # fmt: skip
    assert refused.value.reason in ("CreateContainerError", "CreateContainerConfigError")
    assert named in str(refused.value)
    assert not (tmp_path / "pod").exists()


async def test_a_container_that_cannot_start_leaves_no_bundle_behind(tmp_path):
    runtime = OciRuntime(ImageStore([]), tmp_path / "cache")
    container = {"securityContext": {"readOnlyRootFilesystem": True}}
    with pytest.raises(FileNotFoundError):  # the log's folder does not exist
        await runtime.start(image=fake_image(tmp_path), pod={"spec": {}}, container=container,
                            argv=["sh"], env={}, mounts=[], pod_root=tmp_path / "pod",
                            netns="none", log_path=tmp_path / "absent" / "log")  # fmt: skip
    assert list((tmp_path / "pod" / "containers").iterdir()) == []

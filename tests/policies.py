"""Small policies for decision tests, built as text so they go through the real loader."""

from __future__ import annotations

from sovereign_hub.policy import Policy, parse_policy

D1 = "registry.example/ds@sha256:" + "1" * 64
D2 = "registry.example/ds@sha256:" + "2" * 64
D3 = "registry.example/ds@sha256:" + "3" * 64
DG = "registry.example/torch@sha256:" + "9" * 64

TEXT = f"""
regions:
  eu:
    displayName: EU
    nodeRegions: [eu-central-1, eu-west-1]
    storageClass: ssd-eu
    requireAttributes: {{country: [DE, FR, NL]}}
  us:
    displayName: US
    nodeRegions: [us-east-1]
    storageClass: ssd-us
gpuTypes:
  a100: {{displayName: A100, product: NVIDIA-A100}}
  mig: {{displayName: A100 slice, resource: nvidia.com/mig-1g.5gb, product: NVIDIA-A100}}
channels:
  ds:
    displayName: Data science
    maxPinAgeDays: 30
    versions:
      - {{version: "1", image: "{D1}", released: 2026-01-01}}
      - {{version: "2", image: "{D2}", released: 2026-02-01}}
      - {{version: "3", image: "{D3}", released: 2026-03-01}}
  torch:
    displayName: Torch
    versions:
      - {{version: "1", image: "{DG}", released: 2026-01-01}}
profiles:
  cpu:
    displayName: CPU
    channel: ds
    cpu: {{guarantee: 500m, limit: "2"}}
    memory: {{guarantee: 1Gi, limit: 2Gi}}
    regions: [eu, us]
  gpu2:
    displayName: Two GPUs
    channel: torch
    cpu: {{guarantee: "1", limit: "4"}}
    memory: {{guarantee: 4Gi, limit: 8Gi}}
    gpu: {{count: 2, type: a100}}
    regions: [eu, us]
  slice:
    displayName: Slice
    channel: torch
    cpu: {{guarantee: "1", limit: "2"}}
    memory: {{guarantee: 2Gi, limit: 4Gi}}
    gpu: {{count: 1, type: mig}}
    regions: [eu]
groups:
  eu-research:
    profiles: [cpu, gpu2, slice]
    regions: [eu]
    gpuQuota: 4
    perUserGpuLimit: 2
  us-analysts:
    profiles: [cpu]
    regions: [us]
  gpu-pool:
    profiles: [gpu2]
    regions: [eu, us]
    gpuQuota: 8
"""


def policy(text: str = TEXT) -> Policy:
    return parse_policy(text, "test-policy.yaml").policy


def datasets_section(*datasets: str) -> str:
    """A policy's ``datasets:`` section made of :func:`climate_dataset` and
    :func:`eu_object_store_dataset` blocks, to append to a policy's text."""
    return "\ndatasets:\n" + "".join(datasets)


def grants(readers: tuple[str, ...], writers: tuple[str, ...] = ()) -> str:
    """A dataset's ``access`` list: ``readers`` (the default mode, read-only), then ``writers``."""
    return "".join(f"      - group: {group}\n" for group in readers) + "".join(
        f"      - group: {group}\n        mode: read-write\n" for group in writers
    )


def climate_dataset(*readers: str, writers: tuple[str, ...] = ()) -> str:
    """``climate`` at /data/climate in eu (a PersistentVolumeClaim) and us (NFS), read by
    ``readers`` and written by ``writers``."""
    return (
        "  climate:\n"
        "    displayName: Climate reanalysis\n"
        "    mountPath: /data/climate\n"
        "    regions: [eu, us]\n"
        "    sources:\n"
        "      eu:\n"
        "        persistentVolumeClaim: {claimName: climate-eu}\n"
        "      us:\n"
        "        nfs: {server: nfs.us.internal, path: /exports/climate}\n"
        "    access:\n" + grants(readers, writers)
    )


def eu_object_store_dataset(name: str, display_name: str, *groups: str) -> str:
    """``name`` at /data/<name> in eu only: an S3 bucket through a CSI driver, read-only."""
    return (
        f"  {name}:\n"
        f"    displayName: {display_name}\n"
        f"    mountPath: /data/{name}\n"
        "    regions: [eu]\n"
        "    sources:\n"
        "      eu:\n"
        "        csi:\n"
        "          driver: s3.csi.aws.com\n"
        f"          volumeAttributes: {{bucketName: {name}-eu}}\n"
        f"          nodePublishSecretName: {name}-eu-credentials\n"
        "    access:\n" + grants(groups)
    )

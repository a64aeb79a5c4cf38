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

"""What each demo user of the sandbox may start, under a policy.

Until the full sandbox (emulated Kubernetes, hub, identity provider) lands,
``make sandbox`` runs this: the same decision the hub will make, for the
sandbox's demo users, printed with ``sovhub policy explain``.
"""

from __future__ import annotations

import sys

from sovereign_hub.cli import main as sovhub

DEMO_USERS: list[tuple[str, str, str, str | None]] = [
    ("ana", "eu-researchers", "EU researcher: GPUs, EU only", "gpu-a100"),
    ("bob", "us-analysts", "US analyst: CPU only, US only", "gpu-a100"),
    ("carol", "contractors", "no entitlement", "cpu-small"),
]


def main(argv: list[str]) -> int:
    policy = argv[0] if argv else "examples/policy.yaml"
    status = sovhub(["policy", "check", policy])
    if status:
        return status
    for user, groups, role, profile in DEMO_USERS:
        print(f"\n== {user} ({role})")
        args = ["policy", "explain", policy, "--user", user, "--groups", groups]
        sovhub([*args, "--profile", profile] if profile else args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

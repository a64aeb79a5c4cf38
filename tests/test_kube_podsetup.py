"""What the emulated kubelet gives a process in place of mounts and a network namespace:
paths and addresses translated (sandbox/kube/podsetup.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovereign_hub.sandbox.kube.podsetup import translate

MOUNTS = [
    ("/home/jovyan/data", Path("/s/claims/data")),
    ("/home/jovyan", Path("/s/home")),
]


@pytest.mark.parametrize(
    ("value", "isolated", "expected"),
    [
        ("--ip=0.0.0.0", False, "--ip=127.4.0.2"),
        ("--ip=0.0.0.0", True, "--ip=0.0.0.0"),  # a pod network gives a real namespace
        ("/home/jovyan/work", False, "/s/home/work"),
        ("--notebook-dir=/home/jovyan", False, "--notebook-dir=/s/home"),
        ("/home/jovyan/data/x.csv", False, "/s/claims/data/x.csv"),  # the longer mount wins
        ("/home/jovyanx", False, "/home/jovyanx"),  # a prefix of a name is not a path under it
        ("/opt/home/jovyan", False, "/opt/home/jovyan"),
    ],
)
def test_paths_under_a_mount_and_the_wildcard_address_are_translated(value, isolated, expected):
    assert translate(value, ip="127.4.0.2", mounts=MOUNTS, isolated=isolated) == expected

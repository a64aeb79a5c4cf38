"""cached_policy: read once, again only when the file changes, never caching a broken file."""

from __future__ import annotations

import os
import shutil

import pytest

from sovereign_hub.policy import PolicyError, cached_policy
from tests.conftest import ROOT


def touch_later(path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime + seconds, stat.st_mtime + seconds))


def test_the_same_file_is_served_from_the_cache(tmp_path):
    path = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "examples" / "policy.yaml", path)
    assert cached_policy(path) is cached_policy(path)


def test_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "examples" / "policy.yaml", path)
    first = cached_policy(path)
    path.write_text(path.read_text().replace("gpuQuota: 4", "gpuQuota: 6"))
    touch_later(path, 5)
    second = cached_policy(path)
    assert second is not first
    assert second.policy.groups["eu-researchers"].gpu_quota == 6


def test_a_broken_file_is_never_cached(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("regions: [\n")
    for _ in range(2):
        with pytest.raises(PolicyError):
            cached_policy(path)
    shutil.copy(ROOT / "examples" / "policy.yaml", path)
    touch_later(path, 5)
    assert cached_policy(path).policy.groups


def test_a_missing_file_is_a_policy_error_naming_it(tmp_path):
    path = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "examples" / "policy.yaml", path)
    assert cached_policy(path).policy.groups
    path.unlink()  # e.g. a ConfigMap unmounted: the cached copy must not be served
    with pytest.raises(PolicyError) as error:
        cached_policy(path)
    assert error.value.file == str(path)
    assert error.value.problems[0].message == "cannot read the file: No such file or directory"

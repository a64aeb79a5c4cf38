"""The YAML reader: the traps PyYAML leaves open, closed."""

from __future__ import annotations

import pytest

from sovereign_hub.policy import PolicyError, load_policy, parse_policy
from sovereign_hub.policy.yamlsource import MAX_BYTES, YamlProblems, read_yaml


def test_keys_are_text_as_written():
    data, _, problems = read_yaml("no: 1\n1: x\non: [yes]\n")
    assert data == {"no": 1, "1": "x", "on": (True,)}
    assert problems == []


def test_positions_point_at_keys_for_containers_and_values_for_scalars():
    _, source, _ = read_yaml("a:\n  b:\n    - x\n    - y\n")
    assert source.locate(("a", "b")) == (2, 3)
    assert source.locate(("a", "b", 1)) == (4, 7)
    assert source.locate(("a", "b", 9)) == (2, 3)  # nearest ancestor


def test_merge_keys_are_supported_and_explicit_keys_win():
    data, _, problems = read_yaml("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
    assert data["use"] == {"x": 1, "y": 3}
    assert problems == []


def test_duplicate_keys_are_reported_not_kept():
    data, _, problems = read_yaml("a: 1\nb: 2\na: 3\n")
    assert data == {"a": 1, "b": 2}
    assert [(p.path, p.line) for p in problems] == [(("a",), 3)]
    assert "first defined on line 1" in problems[0].message


def test_reasonable_aliases_are_fine():
    data, _, _ = read_yaml("r: &r [eu, us]\nx: *r\ny: *r\n")
    assert data["y"] == ("eu", "us")


def test_oversize_input_is_refused_before_parsing():
    with pytest.raises(YamlProblems, match=f"limited to {MAX_BYTES:,} bytes"):
        read_yaml("a: " + "x" * MAX_BYTES)


def test_oversize_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (MAX_BYTES + 10))
    with pytest.raises(PolicyError, match="limited to"):
        load_policy(big)


def test_non_utf8_is_refused():
    with pytest.raises(PolicyError, match="not UTF-8 text"):
        parse_policy(b"regions: \xff\xfe\n")


def test_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "missing.yaml")
    assert str(info.value).startswith(str(tmp_path / "missing.yaml"))
    assert "cannot read the file" in str(info.value)

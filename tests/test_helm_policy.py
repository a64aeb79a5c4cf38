"""The policy document through the chart, with the real Helm 3.18 and 4.1 binaries.

Helm parses a values mapping into Go maps, and ``toYaml`` writes their keys
sorted, so a policy given as a mapping reaches the hub with its profiles in
alphabetical order, and the spawn form lists them so. A policy given as text
(``--set-file policy=policy.yaml``) reaches the hub verbatim: the order its
admin wrote, and its comments. Each test renders the chart, reads the policy
ConfigMap back with the real policy loader, and asks the spawn form for the
order it shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from sovereign_hub.policy import Identity, Usage, parse_policy
from sovereign_hub.spawner.form import form_context
from tests.test_helm_chart import CHART, ROOT, by_kind, helm_binary, render, run

EXAMPLE = ROOT / "examples" / "policy.yaml"
# Not alphabetical: the GPU profiles first, as an admin of a GPU cluster may want them.
ORDER = ["gpu-slice", "gpu-a100", "cpu-small"]


@pytest.fixture
def policy_text(tmp_path) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["profiles"] = {name: doc["profiles"][name] for name in ORDER}
    path = tmp_path / "policy.yaml"
    path.write_text("# Our policy: GPU profiles first.\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def policy_configmap(docs: list[dict]) -> str:
    (configmap,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policy")
    ]
    return configmap["data"]["policy.yaml"]


def form_order(text: str) -> list[str]:
    policy = parse_policy(text, "policy.yaml").policy
    who = Identity("ana", frozenset({"eu-researchers"}), {"country": ("DE",)})
    context = form_context(who, policy, {}, Usage(), datetime.now(UTC), "no access")
    return [p["slug"] for p in context["profiles"]]


def test_the_policy_is_valid_and_entitles_ana_to_every_profile(policy_text):
    assert sorted(form_order(policy_text.read_text())) == sorted(ORDER)


@pytest.mark.parametrize("version", ["3.18", "4.1"])
def test_a_policy_given_as_text_reaches_the_hub_verbatim_and_keeps_the_form_order(
    version, policy_text
):
    docs = render(helm_binary(version), sets=(), files=(f"policy={policy_text}",))
    text = policy_configmap(docs)
    assert text == policy_text.read_text()  # comments included
    assert form_order(text) == ORDER


def test_a_policy_given_as_a_mapping_is_sorted_by_helm_and_the_chart_says_so(policy_text, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"policy": yaml.safe_load(policy_text.read_text())}))
    docs = render(helm_binary("4.1"), values)
    assert form_order(policy_configmap(docs)) == sorted(ORDER)  # what Helm can keep
    installed = run(
        helm_binary("4.1"), "install", "rel", str(CHART), "--dry-run=client", "-f", str(values),
        "--set", "allowUnreleasedImages=true",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "--set-file policy=policy.yaml" in installed.stdout
    as_text = run(
        helm_binary("4.1"), "install", "rel", str(CHART), "--dry-run=client",
        "--set-file", f"policy={policy_text}", "--set", "allowUnreleasedImages=true",
    )  # fmt: skip
    assert as_text.returncode == 0, as_text.stderr
    assert "--set-file policy=policy.yaml" not in as_text.stdout


def test_every_template_reads_a_policy_given_as_text_as_it_reads_a_mapping(policy_text, tmp_path):
    """Pre-puller channels, per-region egress, placeholders: only the ConfigMap's text
    and the hub's checksum of it differ."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"policy": yaml.safe_load(policy_text.read_text())}))
    full = Path(__file__).parent / "helm" / "full-values.yaml"
    as_map = render(helm_binary("4.1"), full, values)
    as_text = render(helm_binary("4.1"), full, files=(f"policy={policy_text}",))

    def comparable(docs: list[dict]) -> list[dict]:
        out = []
        for d in docs:
            d = yaml.safe_load(yaml.safe_dump(d))
            if d["metadata"]["name"].endswith("-policy"):
                # The same policy to the loader (text and mapping quote dates differently).
                d["data"]["policy.yaml"] = parse_policy(d["data"]["policy.yaml"]).policy
            annotations = d.get("spec", {}).get("template", {}).get("metadata", {})
            annotations.get("annotations", {}).pop("checksum/policy", None)
            out.append(d)
        return out

    assert comparable(as_text) == comparable(as_map)
    assert len(as_map) > 10


def test_policy_text_that_is_not_a_mapping_is_refused_with_the_value_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [unclosed\n")
    done = run(
        helm_binary("4.1"), "template", "rel", str(CHART), "--set", "allowUnreleasedImages=true",
        "--set-file", f"policy={bad}",
    )  # fmt: skip
    assert done.returncode != 0
    assert "policy: the text given is not a YAML mapping" in done.stderr


def test_a_migration_draft_given_as_text_is_refused_until_filled_in(tmp_path, policy_text):
    """As text the values schema does not check the policy, so the chart itself refuses
    the markers `sovhub migrate z2jh` leaves (the hub's loader would refuse them too)."""
    draft = tmp_path / "draft.yaml"
    draft.write_text(policy_text.read_text().replace("ssd-eu", "<fill in: storage class>"))
    done = run(
        helm_binary("4.1"), "template", "rel", str(CHART), "--set", "allowUnreleasedImages=true",
        "--set-file", f"policy={draft}",
    )  # fmt: skip
    assert done.returncode != 0
    assert "policy: the text still holds a <fill in: …> marker" in done.stderr

"""The spawn form's datasets: which a server would mount, per region, and how."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sovereign_hub.policy import Identity, Usage
from sovereign_hub.spawner.form import form_context, render_form
from tests.policies import TEXT, policy
from tests.test_policy_datasets import DATASETS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
P = policy(TEXT + DATASETS)


def context(*groups: str) -> dict:
    who = Identity("ana", frozenset(groups), {"country": ("DE",)})
    return form_context(who, P, {}, Usage(), NOW, "no access")


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'<div class="small mt-2" id="{element_id}">(.*?)</div>', html, re.S)
    assert found, html
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_each_profile_lists_the_datasets_of_each_region_it_may_run_in():
    profiles = {p["slug"]: p for p in context("eu-research", "us-analysts")["profiles"]}
    assert profiles["cpu"]["datasets"] == [
        {
            "region": "EU",
            "mounts": [
                {
                    "display_name": "Climate reanalysis",
                    "mount_path": "/data/climate",
                    "mode": "read-only",
                },
                {
                    "display_name": "Patient records (EU only)",
                    "mount_path": "/data/patients",
                    "mode": "read-only",
                },
            ],
        },
        {
            "region": "US",
            "mounts": [
                {
                    "display_name": "Climate reanalysis",
                    "mount_path": "/data/climate",
                    "mode": "read-only",
                }
            ],
        },
    ]


def test_the_rendered_form_names_region_dataset_path_and_mode():
    html = render_form(context("eu-research", "us-analysts"))
    assert text_of(html, "datasets-cpu") == (
        "Datasets mounted, by region "
        "EU: Climate reanalysis at /data/climate (read-only) "
        "EU: Patient records (EU only) at /data/patients (read-only) "
        "US: Climate reanalysis at /data/climate (read-only)"
    )
    # A single-region profile needs no region prefix.
    only_us = render_form(context("us-analysts"))
    assert text_of(only_us, "datasets-cpu") == (
        "Datasets mounted Climate reanalysis at /data/climate (read-only)"
    )
    # A read-write grant says so.
    pool = text_of(render_form(context("gpu-pool")), "datasets-gpu2")
    assert "US: Climate reanalysis at /data/climate (read-write)" in pool


def test_no_datasets_no_section():
    html = render_form(context("unrelated"))
    assert "Datasets mounted" not in html
    assert 'id="datasets-' not in render_form(
        form_context(
            Identity("ana", frozenset({"eu-research"}), {"country": ("DE",)}),
            policy(),
            {},
            Usage(),
            NOW,
            "no access",
        )
    )

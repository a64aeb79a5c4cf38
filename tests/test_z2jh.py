"""The Zero to JupyterHub → Sovereign Hub conversion, as a pure function.

Inputs are the values files in tests/data/z2jh/, written in the shapes Zero to
JupyterHub's documentation shows (profile lists with kubespawner_override and
profile_options, singleuser.storage, hub.config authenticators).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from sovereign_hub.policy import PolicyError, parse_policy
from sovereign_hub.z2jh import Inputs, convert, is_marker, slug

DATA = Path(__file__).parent / "data" / "z2jh"
DIGEST = "sha256:" + "ab" * 32
RELEASED = date(2026, 11, 29)


def load(name: str) -> dict:
    return yaml.safe_load((DATA / name).read_text())


def images_in(values: dict) -> list[str]:
    """Every image reference a z2jh values file names, as it names it."""
    single = values["singleuser"].get("image", {})
    found = [f"{single['name']}:{single['tag']}"] if single else []
    for profile in values["singleuser"].get("profileList", []):
        layers = [profile.get("kubespawner_override", {})]
        for option in profile.get("profile_options", {}).values():
            layers += [c.get("kubespawner_override", {}) for c in option["choices"].values()]
        found += [layer["image"] for layer in layers if "image" in layer]
    return found


def complete(name: str, **extra) -> Inputs:
    values = load(name)
    return Inputs(
        released=RELEASED,
        digests=dict.fromkeys(images_in(values), DIGEST),
        **extra,
    )


def paths(notes) -> set[str]:
    return {n.path for n in notes}


def test_profiles_with_overrides_gpus_and_choices_become_policy_profiles():
    name = "keycloak-gpu-profiles.yaml"
    migration = convert(load(name), complete(name, gpu_quota=2))
    policy = migration.policy
    assert migration.fill_in == ()
    assert list(policy["profiles"]) == [
        "minimal-environment", "datascience-environment", "gpu-t4", "pick-r", "pick-scipy",
    ]  # fmt: skip
    # The default profile's resources come from singleuser.cpu/memory; an override
    # replaces only the keys it names, as KubeSpawner applies it.
    assert policy["profiles"]["minimal-environment"]["cpu"] == {"guarantee": "0.5", "limit": "2"}
    assert policy["profiles"]["datascience-environment"]["memory"] == {
        "guarantee": "8G",
        "limit": "16G",
    }
    gpu = policy["profiles"]["gpu-t4"]
    assert gpu["cpu"] == {"guarantee": "0.5", "limit": "8"}
    assert gpu["gpu"] == {"count": 1, "type": "tesla-t4"}
    assert policy["gpuTypes"] == {
        "tesla-t4": {"displayName": "Tesla-T4", "resource": "nvidia.com/gpu", "product": "Tesla-T4"}
    }
    assert policy["scheduling"] == {
        "gpuProductLabel": "nvidia.com/gpu.product",
        "gpuTaints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    }
    # The region's node label value comes from the GPU profile's node selector,
    # the storage class from singleuser.storage.dynamic.
    assert policy["regions"]["default"]["nodeRegions"] == ["europe-west4"]
    assert policy["regions"]["default"]["storageClass"] == "fast-ssd"
    # Each choice of profile_options is a profile, the default choice first.
    assert policy["profiles"]["pick-r"]["displayName"] == "Pick an environment · R"
    channels = {p["channel"] for p in policy["profiles"].values()}
    assert channels == set(policy["channels"])
    assert policy["channels"]["pytorch-notebook"]["versions"] == [
        {
            "version": "cuda12-2024-05-20",
            "image": f"quay.io/jupyter/pytorch-notebook@{DIGEST}",
            "released": "2026-11-29",
        }
    ]
    # Docker Hub's short names are written out, as the policy requires.
    assert policy["channels"]["minimal-notebook"]["versions"][0]["image"] == (
        f"docker.io/jupyter/minimal-notebook@{DIGEST}"
    )
    assert policy["groups"]["researchers"] == {
        "profiles": list(policy["profiles"]),
        "regions": ["default"],
        "gpuQuota": 2,
    }
    parse_policy(yaml.safe_dump(policy), "policy.yaml")  # passes the hub's own loader


@pytest.mark.parametrize(
    ("name", "path", "reason"),
    [
        ("keycloak-gpu-profiles.yaml",
         "singleuser.profileList[1].kubespawner_override.lifecycle_hooks", "no counterpart"),
        ("keycloak-gpu-profiles.yaml",
         "singleuser.profileList[2].kubespawner_override.node_selector."
         "cloud.google.com/machine-family", "by region and GPU product only"),
        ("keycloak-gpu-profiles.yaml",
         "singleuser.profileList[3].profile_options.image.unlisted_choice", "free-text"),
        ("keycloak-gpu-profiles.yaml", "cull.users", "only their idle servers"),
        ("keycloak-gpu-profiles.yaml", "hub.extraConfig", "review each snippet"),
        ("keycloak-gpu-profiles.yaml", "hub.config.GenericOAuthenticator.login_service",
         "no counterpart"),
        ("azuread-postgres-static.yaml", "singleuser.storage.static", "per user and region"),
        ("azuread-postgres-static.yaml", "proxy.https.letsencrypt", "cert-manager"),
        ("azuread-postgres-static.yaml", "hub.config.AzureAdOAuthenticator.admin_users",
         "auth.adminGroups"),
        ("azuread-postgres-static.yaml", "singleuser.cmd", "start their own"),
        ("okta-no-storage.yaml", "singleuser.profileList[0].kubespawner_override.default_url",
         "no counterpart"),
        ("okta-no-storage.yaml", "singleuser.profileList[1].kubespawner_override.tolerations",
         "singleuser.extraTolerations"),
        ("okta-no-storage.yaml", "hub.config.GenericOAuthenticator.allow_all", "policy group"),
    ],
)  # fmt: skip
def test_what_cannot_be_carried_over_is_named_by_its_path_with_the_reason(name, path, reason):
    migration = convert(load(name), complete(name))
    by_path = {n.path: n.reason for n in migration.not_carried}
    assert path in by_path, sorted(by_path)
    assert reason in by_path[path]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_every_key_is_carried_or_reported_and_no_secret_is_copied(name):
    values = load(name)
    migration = convert(values, complete(name))
    reported = paths(migration.not_carried) | paths(migration.changed)
    text = yaml.safe_dump(migration.values)
    for section in ("GenericOAuthenticator", "AzureAdOAuthenticator"):
        settings = values["hub"]["config"].get(section, {})
        if "client_secret" in settings:
            assert settings["client_secret"] not in text
            assert f"hub.config.{section}.client_secret" in reported
    assert "hunter2" not in text  # the password in azuread's hub.db.url
    # Each report line names a section the input has.
    for note in (*migration.not_carried, *migration.changed):
        assert note.path.split(".")[0].split("[")[0] in values, note


def test_the_admin_is_told_exactly_what_to_fill_in_and_the_draft_fails_check_there():
    name = "azuread-postgres-static.yaml"
    migration = convert(load(name), Inputs(released=RELEASED))
    assert [f.path for f in migration.fill_in] == [
        "policy.channels.base.versions[0].image",
        "policy.regions.default.nodeRegions",
        "policy.regions.default.storageClass",
    ]
    assert "--digest registry.corp.example:5000/notebooks/base:2024.06=sha256:" in (
        migration.fill_in[0].what
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_dump(migration.policy), "policy.yaml")
    flagged = {".".join(map(str, p.path)) for p in caught.value.problems}
    assert flagged == {
        "channels.base.versions.0.image",
        "regions.default.nodeRegions.0",
        "regions.default.storageClass",
    }
    # The same file with what only the admin knows passes.
    done = convert(
        load(name),
        complete(name, node_regions=("westeurope",), storage_class="managed-csi"),
    )
    assert done.fill_in == ()
    parse_policy(yaml.safe_dump(done.policy), "policy.yaml")


def test_gpu_profiles_without_a_quota_leave_it_to_fill_in():
    name = "keycloak-gpu-profiles.yaml"
    migration = convert(load(name), complete(name))
    assert [f.path for f in migration.fill_in] == [
        "policy.groups.researchers.gpuQuota",
        "policy.groups.students.gpuQuota",
    ]
    assert is_marker(migration.policy["groups"]["students"]["gpuQuota"])


@pytest.mark.parametrize(
    ("name", "auth"),
    [
        ("keycloak-gpu-profiles.yaml", {
            "issuer": "https://sso.example.org/realms/science",
            "clientId": "jupyterhub",
            "clientSecret": {"existingSecret": "oidc-client", "key": "client-secret"},
            "callbackUrl": "https://hub.example.org/hub/oauth_callback",
            "scopes": ["openid", "profile", "email", "groups"],
            "usernameClaim": "preferred_username",
            "groupsClaim": "groups",
            "adminGroups": ["hub-admins"],
        }),
        ("azuread-postgres-static.yaml", {
            "issuer": "https://login.microsoftonline.com/0a1b2c3d-0000-4000-8000-000000000002/v2.0",
            "clientId": "6f1b2c3d-0000-4000-8000-000000000001",
            "clientSecret": {"existingSecret": "oidc-client", "key": "client-secret"},
            "callbackUrl": "https://notebooks.corp.example/hub/oauth_callback",
            "scopes": ["openid", "email", "profile"],
            "usernameClaim": "email",
        }),
        ("okta-no-storage.yaml", {
            "issuer": "https://corp.okta.com/oauth2/default",
            "clientId": "0oa1example",
            "clientSecret": {"existingSecret": "oidc-client", "key": "client-secret"},
            "scopes": ["openid", "profile", "email", "groups"],
            "usernameClaim": "preferred_username",
            "groupsClaim": "groups",
        }),
    ],
)  # fmt: skip
def test_authenticators_become_the_charts_oidc_settings(name, auth):
    assert convert(load(name), complete(name)).values["auth"] == auth


def test_hub_database_https_and_culling_carry_over():
    keycloak = convert(load("keycloak-gpu-profiles.yaml"), complete("keycloak-gpu-profiles.yaml"))
    assert keycloak.values["hub"] == {
        "db": {"type": "sqlite-pvc", "pvc": {"storage": "2Gi", "storageClassName": "standard-rwo"}}
    }
    assert keycloak.values["ingress"] == {
        "enabled": True,
        "hosts": ["hub.example.org"],
        "tls": [{"secretName": "hub-example-org-tls", "hosts": ["hub.example.org"]}],
    }
    assert keycloak.values["proxy"] == {"service": {"type": "ClusterIP"}}
    assert keycloak.values["cull"] == {"enabled": True, "timeout": 7200, "every": 300}
    assert keycloak.values["singleuser"] == {
        "startTimeout": 600, "extraEnv": {"EDITOR": "vim"}, "homeSize": "20Gi",
    }  # fmt: skip
    azure = convert(load("azuread-postgres-static.yaml"), complete("azuread-postgres-static.yaml"))
    # The SQLAlchemy URL loses its driver and its password (which goes in a Secret).
    assert azure.values["hub"]["db"] == {
        "type": "postgresql",
        "url": "postgresql://jhub@db.corp.example:5432/jupyterhub?sslmode=require",
        "passwordSecret": {"name": "hub-db", "key": "password"},
    }
    assert "hub.db" in paths(azure.changed)
    # The password (hunter2@prod) holds an '@': none of it is kept, and the admin is told.
    assert "prod" not in yaml.safe_dump(azure.values)
    assert "%40" in {n.path: n.reason for n in azure.changed}["hub.db.url"]


@pytest.mark.parametrize(
    ("url", "expected", "had_password"),
    [
        ("postgresql+psycopg2://jhub:p@ss:w@rd@db:5432/hub", "postgresql://jhub@db:5432/hub", True),
        ("postgresql://jhub:p%40ss@db/hub", "postgresql://jhub@db/hub", True),
        ("postgres://jhub@db/hub?password=x&sslmode=verify-full",
         "postgresql://jhub@db/hub?sslmode=verify-full", True),
        ("postgresql://jhub@[2001:db8::1]:5432/hub", "postgresql://jhub@[2001:db8::1]:5432/hub",
         False),
        ("postgresql://db.corp.example/hub", None, False),  # no user: left to fill in
        ("mysql://jhub:pw@db/hub", None, False),
    ],
)  # fmt: skip
def test_database_urls_are_parsed_and_the_whole_password_is_removed(url, expected, had_password):
    values = {"hub": {"db": {"type": "postgres", "url": url}}}
    migration = convert(values, Inputs(released=RELEASED))
    got = migration.values["hub"]["db"]["url"]
    assert (None if is_marker(got) else got) == expected
    assert ("hub.db" in paths(migration.changed)) is had_password
    for secret in ("p@ss", "w@rd", "p%40ss", "password=x", ":pw"):
        assert secret not in yaml.safe_dump(migration.values)


def test_no_home_storage_is_carried_as_the_charts_storage_type_none():
    name = "okta-no-storage.yaml"
    migration = convert(load(name), complete(name))
    assert migration.values["singleuser"]["storage"] == {"type": "none"}
    assert "adoptClaims" not in migration.policy["regions"]["default"]
    assert "singleuser.storage.type" not in paths(migration.changed)


def test_list_form_extra_env_is_carried_and_credentials_are_reported_not_copied():
    """z2jh's extraEnv as a Kubernetes env list, with credentials named and unnamed."""
    name = "okta-no-storage.yaml"
    migration = convert(load(name), complete(name))
    assert migration.values["singleuser"]["extraEnv"] == {
        "JUPYTER_ENABLE_LAB": "yes",
        "MLFLOW_TRACKING_URI": "https://mlflow.corp.example",
    }
    text = yaml.safe_dump(migration.values) + yaml.safe_dump(migration.policy)
    assert "hf-plaintext-token-value" not in text
    assert "ghp_4fR8" not in text
    changed = {n.path: n.reason for n in migration.changed}
    assert "its name contains TOKEN" in changed["singleuser.extraEnv[2]"]
    assert "GitHub Token" in changed["singleuser.extraEnv[3]"]
    for path, env in (("singleuser.extraEnv[2]", "HF_TOKEN"), ("singleuser.extraEnv[3]",
                                                               "NOTES_BACKUP")):  # fmt: skip
        assert (
            f"kubectl create secret generic singleuser-env --from-literal={env}=…"
            in (changed[path])
        )
    not_carried = {n.path: n.reason for n in migration.not_carried}
    assert "valueFrom" in not_carried["singleuser.extraEnv[4]"]


@pytest.mark.parametrize(
    ("name", "value", "copied"),
    [
        ("EDITOR", "vim", True),
        ("MONKEY_MODE", "on", True),  # KEY inside a word is not the word KEY
        ("API_KEY", "x", False),
        ("awsSecretAccessKey", "x", False),
        ("DB_PASSWORD", "", False),
        ("S3_URL", "https://user:pw123@s3.corp.example/bucket", False),
        ("ID", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVlLXg", False),
        ("NOTEBOOK_ARGS", "--no-browser", True),
        ("PORT", 8888, True),
    ],
)
def test_dict_form_extra_env_copies_only_what_does_not_look_like_a_credential(name, value, copied):
    values = {"singleuser": {"extraEnv": {name: value}}}
    migration = convert(values, Inputs(released=RELEASED))
    env = migration.values.get("singleuser", {}).get("extraEnv", {})
    assert (name in env) is copied
    if copied:
        assert env[name] == str(value)
    else:
        assert f"singleuser.extraEnv.{name}" in paths(migration.changed)


@pytest.mark.parametrize(
    ("name", "storage", "adopted"),
    [
        ("keycloak-gpu-profiles.yaml", None, "claim-{username}{servername}"),
        ("keycloak-gpu-profiles.yaml", {"dynamic": {"pvcNameTemplate": "home-{escaped_username}"}},
         "home-{escaped_username}"),
        ("azuread-postgres-static.yaml", None, None),  # static: one shared claim
        ("okta-no-storage.yaml", None, None),  # none: there are no claims to adopt
    ],
)  # fmt: skip
def test_existing_claims_are_adopted_in_the_region_when_z2jh_made_one_per_user(
    name, storage, adopted
):
    values = load(name)
    if storage:
        values["singleuser"]["storage"] = storage
    inputs = complete(name, node_regions=("x",), storage_class="sc", gpu_quota=1)
    migration = convert(values, inputs)
    assert migration.policy["regions"]["default"].get("adoptClaims") == adopted
    if adopted:
        notes = {n.path: n.reason for n in migration.changed}
        assert "are adopted as users' homes" in notes["singleuser.storage.dynamic.pvcNameTemplate"]
        parse_policy(yaml.safe_dump(migration.policy), "policy.yaml")


def test_unlimited_resources_are_left_to_fill_in_not_guessed():
    values = {"singleuser": {"image": {"name": "quay.io/jupyter/base-notebook", "tag": "x"}}}
    migration = convert(values, Inputs(released=RELEASED, digests={}))
    assert {f.path for f in migration.fill_in} >= {
        "policy.profiles.default.cpu.limit",
        "policy.profiles.default.memory.limit",
    }


def test_too_many_choice_combinations_are_reported_not_expanded():
    options = {
        f"o{i}": {"choices": {f"c{j}": {"display_name": str(j)} for j in range(4)}}
        for i in range(3)
    }
    values = {
        "singleuser": {
            "cpu": {"limit": 1},
            "memory": {"limit": "1G"},
            "profileList": [{"display_name": "Many", "profile_options": options}],
        }
    }
    migration = convert(values, Inputs(released=RELEASED))
    assert list(migration.policy["profiles"]) == ["many"]
    assert (
        "more than 50"
        in {n.path: n.reason for n in migration.not_carried}[
            "singleuser.profileList[0].profile_options"
        ]
    )


@pytest.mark.parametrize(
    ("text", "taken", "expected"),
    [("Datascience environment", set(), "datascience-environment"),
     ("GPU (one NVIDIA T4)", set(), "gpu-one-nvidia-t4"),
     ("r", {"r"}, "r-2"),
     ("x" * 50, set(), "x" * 40)],
)  # fmt: skip
def test_slug(text, taken, expected):
    assert slug(text, taken) == expected

"""Zero to JupyterHub values → this chart's values and a draft policy: a pure function.

:func:`convert` reads a parsed Zero to JupyterHub (z2jh) values file and returns
:class:`Migration`: the chart values, the policy document, and two lists for the
admin, what could not be carried over (each z2jh key by its path, and why) and
what they must fill in before the policy passes ``sovhub policy check``.

Nothing is invented. z2jh names images by tag and the policy pins them by
digest, so a digest comes from :attr:`Inputs.digests` (the command line's
``--digest`` or a registry lookup) or the image stays as written, which the
policy loader refuses; likewise for node regions, storage classes, GPU
products, CPU and memory limits and GPU quotas, which z2jh does not know or
leaves unlimited. Each such place holds the tag or a ``<fill in: …>`` marker,
so the draft fails ``policy check`` at that path until it is filled in.

Every key of the input is either read by a rule below or reported: the
:class:`_Source` marks what the rules read, and whatever is left at the end is
listed with the reason for its section (:data:`_REASONS`) or a general one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from .dburl import split_password
from .images.reference import DOCKER_HUB, ImageReferenceError, Reference
from .secretlike import secret_reason

Path = tuple[str | int, ...]

REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
"""Node-selector keys read as the region (the policy's default region label first)."""
GPU_PRODUCT_LABELS = (
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "k8s.amazonaws.com/accelerator",
)
"""Node-selector keys read as a GPU product label (NVIDIA GPU feature discovery, GKE, EKS)."""
_GPU_RESOURCE = re.compile(r"^(nvidia\.com/(gpu|mig-[-.a-z0-9]+)|amd\.com/gpu)$")
Z2JH_CLAIM_TEMPLATE = "claim-{username}{servername}"
"""Zero to JupyterHub's default ``singleuser.storage.dynamic.pvcNameTemplate``."""
_MAX_CHOICE_PROFILES = 50
"""Most profiles one z2jh profile's options may expand to (the product of their choices)."""

_OIDC_AUTHENTICATORS = {
    "generic-oauth": "GenericOAuthenticator",
    "generic": "GenericOAuthenticator",
    "oauthenticator.generic.GenericOAuthenticator": "GenericOAuthenticator",
    "oauthenticator.GenericOAuthenticator": "GenericOAuthenticator",
    "azuread": "AzureAdOAuthenticator",
    "oauthenticator.azuread.AzureAdOAuthenticator": "AzureAdOAuthenticator",
    "oauthenticator.AzureAdOAuthenticator": "AzureAdOAuthenticator",
}
# Where an OpenID provider's authorize endpoint sits under its issuer, per provider:
# Keycloak, Okta (custom and org authorization servers), Entra ID v2, Auth0.
_ISSUER_SUFFIXES = (
    ("/protocol/openid-connect/auth", ""),
    ("/v1/authorize", ""),
    ("/oauth2/v2.0/authorize", "/v2.0"),
    ("/authorize", "/"),
)

_SECRET = "not copied: it is a secret, and a values file is no place for one"  # noqa: S105
_REASONS: tuple[tuple[str, str], ...] = (
    (
        "hub.config.JupyterHub",
        "JupyterHub settings other than the authenticator are the "
        "chart's own; set any still needed in hub.extraConfig",
    ),
    ("hub.config", "no counterpart: the chart's authenticator is configured under auth"),
    (
        "hub.extraConfig",
        "not copied: Python written for Zero to JupyterHub's KubeSpawner may "
        "override what the policy decides; review each snippet and copy what still applies "
        "into hub.extraConfig",
    ),
    ("hub.image", "the hub runs this project's image (hub.image.digest)"),
    ("hub", "no counterpart in this chart's hub section"),
    ("proxy.secretToken", _SECRET + "; the chart generates the proxy token"),
    (
        "proxy.chp",
        "the proxy's resources and placement are proxy.resources, "
        "proxy.nodeSelector and proxy.tolerations; other CHP settings have no counterpart",
    ),
    ("proxy.traefik", "this chart terminates TLS at an Ingress, not in a Traefik pod"),
    ("proxy", "no counterpart in this chart's proxy section"),
    ("singleuser.cmd", "the policy's images start their own single-user server"),
    ("singleuser.image", "images come from the policy's channels, pinned by digest"),
    ("singleuser.profileList", "the policy's profiles set image, CPU, memory and GPUs only"),
    ("singleuser", "no counterpart in this chart's singleuser section"),
    (
        "scheduling",
        "user scheduling (user placeholders, the user scheduler, node "
        "affinities) is the policy's region and GPU placement here",
    ),
    ("prePuller", "the pre-puller pulls the policy's images; see prePuller.channels"),
    ("cull", "no counterpart in this chart's cull section"),
    ("debug", "set the hub's log level in hub.extraConfig"),
    ("rbac", "the chart always creates least-privilege RBAC"),
    ("global", "no counterpart"),
)


@dataclass(frozen=True)
class Inputs:
    """What z2jh does not say and only the admin knows; nothing here has a default guess."""

    released: date
    """The ``released`` date written on each migrated image version (usually today)."""
    digests: Mapping[str, str] = field(default_factory=dict)
    """Image reference as z2jh writes it (``name:tag``) → its digest (``sha256:…``)."""
    region: str = "default"
    """Name of the one region the draft policy has (z2jh has no regions)."""
    node_regions: tuple[str, ...] = ()
    """Values of the region node label for that region; empty: read from node selectors."""
    storage_class: str | None = None
    """Storage class of home volumes when z2jh names none (it used the cluster's default)."""
    gpu_quota: int | None = None
    """GPUs each allowed group may hold at once, when a profile has GPUs (z2jh has no quota)."""


@dataclass(frozen=True)
class Note:
    """A z2jh key and what became of it."""

    path: str
    """Where it is in the z2jh values, e.g. ``singleuser.profileList[1].kubespawner_override``."""
    reason: str
    """Why it was not carried over, or what changed on the way."""


@dataclass(frozen=True)
class FillIn:
    """A place in the output the admin must complete before the policy passes."""

    path: str
    """Where it is: ``policy.channels.x.versions[0].image``, ``values.auth.issuer``."""
    what: str
    """What to put there, and how to find it."""


@dataclass(frozen=True)
class Migration:
    values: dict[str, Any]
    """This chart's values, with the draft policy under ``policy`` (which replaces the
    chart's ``examplePolicy`` as a whole)."""
    policy: dict[str, Any]
    """The draft policy document (the same as ``values['policy']``)."""
    not_carried: tuple[Note, ...]
    """z2jh keys with no counterpart here, each with the reason."""
    changed: tuple[Note, ...]
    """z2jh keys carried over with a difference the admin should know about."""
    fill_in: tuple[FillIn, ...]
    """What to complete; empty when the draft policy is ready for ``policy check``."""


def marker(what: str) -> str:
    """A placeholder the policy loader and the chart schema refuse, so it cannot ship."""
    return f"<fill in: {what}>"


def is_marker(value: Any) -> bool:
    """Whether ``value`` is a :func:`marker` still waiting to be filled in."""
    return isinstance(value, str) and value.startswith("<fill in: ")


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def slug(text: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``text`` as a policy name (lowercase, digits, '-', at most 40), unique in ``taken``."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "x"
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name, n = base[: 40 - len(suffix)].rstrip("-") + suffix, n + 1
    return name


class _Source:
    """The z2jh values with a record of what the rules have read."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.read: set[Path] = set()
        self.not_carried: list[Note] = []

    def get(self, *path: str | int, default: Any = None) -> Any:
        """The value at ``path`` (marked as read with everything under it), or ``default``."""
        node: Any = self.values
        for part in path:
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    return default
            elif not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        self.read.add(path)
        return node

    def peek(self, *path: str | int) -> Any:
        read = set(self.read)
        value = self.get(*path)
        self.read = read
        return value

    def drop(self, path: Path, reason: str) -> None:
        """Report ``path`` as not carried over, with ``reason``, if it is in the values."""
        if self.peek(*path) is not None:
            self.get(*path)
            self.not_carried.append(Note(dotted(path), reason))

    def leftovers(self) -> Iterator[Note]:
        """Every key no rule read, at the shallowest level where nothing under it was read."""

        def walk(node: Any, path: Path) -> Iterator[Note]:
            if path in self.read:
                return
            inner = any(r[: len(path)] == path and len(r) > len(path) for r in self.read)
            if inner and isinstance(node, Mapping):
                for key, value in node.items():
                    yield from walk(value, (*path, key))
            elif inner and isinstance(node, list):
                for i, value in enumerate(node):
                    yield from walk(value, (*path, i))
            elif path:
                yield Note(dotted(path), _reason(dotted(path)))

        yield from walk(self.values, ())


def _reason(path: str) -> str:
    for prefix, reason in _REASONS:
        if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
            return reason
    return "no counterpart in this chart"


def _quantity(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass
class _Draft:
    """The policy and values under construction, with the admin's to-do list."""

    inputs: Inputs
    values: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel_of: dict[str, str] = field(default_factory=dict)
    gpu_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpu_taints: list[dict[str, Any]] = field(default_factory=list)
    gpu_product_label: str | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_regions: list[str] = field(default_factory=list)
    adopt_claims: str | None = None
    changed: list[Note] = field(default_factory=list)
    fill_in: list[FillIn] = field(default_factory=list)

    def todo(self, path: str, what: str) -> str:
        self.fill_in.append(FillIn(path, what))
        return marker(what)

    def channel(self, image: str | None, where: str) -> str:
        """The channel that runs ``image`` (one per distinct image reference)."""
        key = image or ""
        if key in self.channel_of:
            return self.channel_of[key]
        try:
            ref = Reference.parse(key) if image else None
        except ImageReferenceError as exc:
            ref, problem = None, str(exc)
        else:
            problem = ""
        repository = ref.repository.removeprefix("library/") if ref else (image or "")
        base = repository.rsplit("/", 1)[-1] or "default"
        name = slug(base, set(self.channels))
        self.channel_of[key] = name
        path = f"policy.channels.{name}.versions[0].image"
        # The policy wants the registry written out: Docker Hub's is docker.io.
        full = (
            f"{'docker.io' if ref and ref.registry == DOCKER_HUB else ref.registry}/"
            f"{ref.repository}"
            if ref
            else ""
        )
        digest = (ref.digest if ref else "") or self.inputs.digests.get(key, "")
        if not image:
            pinned = self.todo(
                path,
                f"the image for {where} (z2jh's default, which the values "
                "leave unset), as registry/repo@sha256:…",
            )
        elif problem:
            pinned = self.todo(path, f"an image for {where}: {problem}")
        elif digest:
            pinned = f"{full}@{digest}"
        else:
            pinned = image
            self.fill_in.append(
                FillIn(
                    path,
                    f"the digest of {image}: z2jh names images by "
                    "tag and the policy pins them by digest; rerun "
                    f"with --digest {image}=sha256:… or --resolve",
                )
            )
        tag = ref.tag if ref and not ref.digest else ""
        self.channels[name] = {
            "displayName": base,
            "versions": [
                {
                    "version": tag or (digest[7:19] if digest else "migrated"),
                    "image": pinned,
                    "released": self.inputs.released.isoformat(),
                }
            ],
        }
        return name


def _image_of(source: _Source, override: Mapping[str, Any], path: Path) -> str | None:
    if "image" in override:
        image = source.get(*path, "image")
        return str(image) if image else None
    name = source.get("singleuser", "image", "name")
    tag = source.get("singleuser", "image", "tag")
    if not name:
        return None
    return f"{name}:{tag}" if tag else str(name)


def _resources(
    source: _Source, draft: _Draft, merged: Mapping[str, Any], at: Any, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """CPU and memory of profile ``where``: its overrides, else ``singleuser.cpu/memory``."""
    out = []
    for kind, section, fallback in (("cpu", "cpu", None), ("mem", "memory", "1G")):
        found = {}
        for bound in ("limit", "guarantee"):
            key = f"{kind}_{bound}"
            found[bound] = _quantity(
                source.get(*at(key), key)
                if key in merged
                else source.get("singleuser", section, bound)
            )
        limit = found["limit"] or draft.todo(
            f"policy.profiles.{where}.{section}.limit",
            f"a {section} limit for {where}: z2jh left it unlimited and the policy caps "
            "every profile",
        )
        # Kubernetes makes a missing request equal to the limit; z2jh's chart
        # always sets a 1G memory guarantee unless told otherwise.
        out.append({"guarantee": found["guarantee"] or fallback or limit, "limit": limit})
    return out[0], out[1]


def _gpu(
    source: _Source, draft: _Draft, merged: Mapping[str, Any], at: Any, where: str
) -> dict[str, Any] | None:
    limits_at = (*at("extra_resource_limits"), "extra_resource_limits")
    limits = source.get(*limits_at) or {}
    gpus = {k: v for k, v in limits.items() if _GPU_RESOURCE.match(str(k))}
    guarantees_at = (*at("extra_resource_guarantees"), "extra_resource_guarantees")
    guarantees = source.get(*guarantees_at) or {}
    for path, names in ((limits_at, set(limits) - set(gpus)), (guarantees_at, guarantees)):
        for other in sorted(n for n in names if not _GPU_RESOURCE.match(str(n))):
            source.not_carried.append(Note(dotted((*path, other)), "the policy requests GPUs only"))
    if not gpus:
        return None
    if len(gpus) > 1:
        draft.changed.append(
            Note(dotted(limits_at), f"several GPU resources; only {sorted(gpus)[0]} kept")
        )
    resource = sorted(gpus)[0]
    count = int(gpus[resource])
    selector = merged.get("node_selector") or {}
    label = next((k for k in GPU_PRODUCT_LABELS if k in selector), None)
    if label and draft.gpu_product_label not in (None, label):
        draft.changed.append(
            Note(
                dotted((*at("node_selector"), "node_selector", label)),
                "profiles name GPU "
                f"products by two labels; the policy uses one ({draft.gpu_product_label})",
            )
        )
    elif label:
        draft.gpu_product_label = label
    product = selector.get(label) if label else None
    key = (resource, product)
    name = next(
        (n for n, t in draft.gpu_types.items() if (t["resource"], t["_product"]) == key), ""
    )
    if not name:
        name = slug(str(product or resource.rsplit("/", 1)[-1]), set(draft.gpu_types))
        draft.gpu_types[name] = {
            "displayName": str(product or resource),
            "resource": resource,
            "product": str(product)
            if product
            else draft.todo(
                f"policy.gpuTypes.{name}.product",
                f"the GPU product node label value of {resource} for {where} (z2jh's profile "
                "selects no product): the value of nvidia.com/gpu.product on those nodes",
            ),
            "_product": product,
        }
    tolerations_at = (*at("tolerations"), "tolerations")
    for i, toleration in enumerate(source.get(*tolerations_at) or []):
        taint = {"key": toleration.get("key")}
        if toleration.get("operator", "Equal") == "Equal" and toleration.get("value"):
            taint["value"] = toleration["value"]
        taint["effect"] = toleration.get("effect") or "NoSchedule"
        if not taint["key"]:
            draft.changed.append(
                Note(dotted((*tolerations_at, i)), "a toleration of every taint is not carried")
            )
        elif taint not in draft.gpu_taints:
            draft.gpu_taints.append(taint)
    return {"count": count, "type": name}


_PROFILE_KEYS = {
    "image",
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "tolerations",
}


def _profile(
    source: _Source,
    draft: _Draft,
    name: str,
    display: str,
    description: str,
    overrides: list[tuple[Path, Mapping[str, Any]]],
) -> None:
    """Add profile ``name`` built from z2jh's overrides (later ones win, as in KubeSpawner)."""
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path, override in overrides:
        for key in override:
            merged[key], origin[key] = override[key], path
    for key in sorted(set(merged) - _PROFILE_KEYS):
        source.drop(
            (*origin[key], key),
            "no counterpart: the policy's profiles set image, "
            "CPU, memory, GPUs and region; put settings for every server in the "
            "chart's singleuser section",
        )

    def at(key: str) -> Path:
        return origin.get(key, ("singleuser",))

    image = _image_of(source, merged, at("image"))
    cpu, memory = _resources(source, draft, merged, at, name)
    gpu = None
    if "extra_resource_limits" in merged or "extra_resource_guarantees" in merged:
        gpu = _gpu(source, draft, merged, at, name)
    if "tolerations" in merged and gpu is None:
        source.drop(
            (*at("tolerations"), "tolerations"),
            "the policy tolerates only the GPU "
            "taints, on GPU profiles; tolerations for every server go in "
            "singleuser.extraTolerations",
        )
    for key, value in (merged.get("node_selector") or {}).items():
        path = (*at("node_selector"), "node_selector", key)
        if key in REGION_LABELS:
            source.get(*path)
            if str(value) not in draft.node_regions:
                draft.node_regions.append(str(value))
            draft.changed.append(
                Note(
                    dotted(path),
                    f"region {value!r} is a node region of the "
                    f"policy's region {draft.inputs.region!r}",
                )
            )
        elif key in GPU_PRODUCT_LABELS and gpu is not None:
            source.get(*path)
        else:
            source.drop(path, "the policy places pods by region and GPU product only")
    profile: dict[str, Any] = {
        "displayName": display or name,
        "channel": draft.channel(image, f"profile {name}"),
        "cpu": cpu,
        "memory": memory,
        "regions": [draft.inputs.region],
    }
    if description:
        profile["description"] = description
    if gpu:
        profile["gpu"] = gpu
    draft.profiles[name] = profile


def _profiles(source: _Source, draft: _Draft) -> None:
    entries = source.get("singleuser", "profileList") or []
    if not entries:
        _profile(source, draft, "default", "Default", "", [])
        return
    ordered = sorted(range(len(entries)), key=lambda i: not entries[i].get("default"))
    if ordered[0] != 0:
        draft.changed.append(
            Note(
                f"singleuser.profileList[{ordered[0]}].default",
                "the default profile is listed first in policy.yaml",
            )
        )
    for i in ordered:
        here: Path = ("singleuser", "profileList", i)
        source.get(*here, "default")
        display = str(source.get(*here, "display_name") or f"Profile {i + 1}")
        description = str(source.get(*here, "description") or "")
        base = slug(str(source.get(*here, "slug") or display), set(draft.profiles))
        override = source.get(*here, "kubespawner_override") or {}
        layers = [((*here, "kubespawner_override"), override)] if override else []
        options = source.peek(*here, "profile_options") or {}
        axes = []
        for oname in options:
            opath = (*here, "profile_options", oname)
            source.get(*opath, "display_name")
            source.drop(
                (*opath, "unlisted_choice"),
                "a free-text choice has no counterpart: "
                "users choose among the policy's profiles only",
            )
            choices = source.get(*opath, "choices") or {}
            axis = []
            for cname, choice in choices.items():
                cpath = (*opath, "choices", cname)
                source.get(*cpath, "display_name")
                source.get(*cpath, "default")
                layer = source.get(*cpath, "kubespawner_override") or {}
                axis.append(
                    (
                        cname,
                        str(choice.get("display_name") or cname),
                        ((*cpath, "kubespawner_override"), layer),
                    )
                )
            axis.sort(key=lambda c: not choices[c[0]].get("default"))
            if axis:
                axes.append(axis)
        combos = list(itertools.product(*axes))
        if len(combos) > _MAX_CHOICE_PROFILES:
            source.drop(
                (*here, "profile_options"),
                f"its choices make {len(combos)} "
                f"profiles, more than {_MAX_CHOICE_PROFILES}; write the ones users "
                "need as profiles",
            )
            combos = [()]
        elif axes:
            draft.changed.append(
                Note(
                    dotted((*here, "profile_options")),
                    "each combination of choices is a profile of its own",
                )
            )
        for combo in combos:
            name = slug("-".join([base, *(c[0] for c in combo)]), set(draft.profiles))
            label = display + "".join(f" · {c[1]}" for c in combo)
            layered = [*layers, *(c[2] for c in combo if c[2][1])]
            _profile(source, draft, name, label, description, layered)


def _storage(source: _Source, draft: _Draft, singleuser: dict[str, Any]) -> str | None:
    """Home volume settings; returns the storage class z2jh names, if any."""
    kind = source.get("singleuser", "storage", "type") or "dynamic"
    here: Path = ("singleuser", "storage")
    storage: dict[str, Any] = {}
    if kind == "none":
        storage["type"] = "none"
    elif kind == "static":
        source.drop(
            (*here, "static"),
            "a shared claim with per-user subPaths has no "
            "counterpart: home volumes are per user and region; mount the claim with "
            "singleuser.storage.extraVolumes to copy data over",
        )
        draft.changed.append(
            Note(
                "singleuser.storage.type",
                "'static' becomes per-user home volumes (see singleuser.storage.static)",
            )
        )
    capacity = source.get(*here, "capacity")
    if capacity is not None:
        singleuser["homeSize"] = _quantity(capacity)
    mount = source.get(*here, "homeMountPath")
    if mount:
        singleuser["homeMountPath"] = str(mount)
    modes = source.get(*here, "dynamic", "storageAccessModes")
    if modes:
        storage["homeAccessModes"] = list(modes)
    for key in ("extraVolumes", "extraVolumeMounts"):
        value = source.get(*here, key)
        if isinstance(value, Mapping):  # z2jh 4 also takes a dict, named by key
            value = [{"name": k, **v} if key == "extraVolumes" else v for k, v in value.items()]
        if value:
            storage[key] = list(value)
    if storage:
        singleuser["storage"] = storage
    source.drop(
        (*here, "dynamic", "volumeNameTemplate"),
        "the home volume's name inside the pod is the chart's own",
    )
    if kind == "dynamic":
        template = str(source.get(*here, "dynamic", "pvcNameTemplate") or Z2JH_CLAIM_TEMPLATE)
        draft.adopt_claims = template
        draft.changed.append(
            Note(
                "singleuser.storage.dynamic.pvcNameTemplate",
                f"existing claims named {template} are adopted as users' homes in region "
                f"{draft.inputs.region!r} (adoptClaims); new users get home-<user>-<region>. "
                "Names are expanded with this hub's slug scheme: for user names other than "
                "lowercase letters and digits, check them against your claims (see the "
                "migration howto)",
            )
        )
    return source.get(*here, "dynamic", "storageClass") or None


def _extra_env(source: _Source, draft: _Draft) -> dict[str, str]:
    """``singleuser.extraEnv`` in either of z2jh's forms, plain values only.

    z2jh takes a dict (``NAME: value`` or ``NAME: {value|valueFrom: …}``) or a
    Kubernetes list (``- {name, value|valueFrom}``); this chart takes a dict of
    strings. A value that looks like a credential is never copied (see
    :mod:`.secretlike`); a ``valueFrom`` has no counterpart.
    """
    env = source.peek("singleuser", "extraEnv")
    entries: list[tuple[Path, str, Any]] = []
    if isinstance(env, Mapping):
        entries = [(("singleuser", "extraEnv", str(k)), str(k), v) for k, v in env.items()]
    elif isinstance(env, list):
        for i, item in enumerate(env):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str):
                source.drop(("singleuser", "extraEnv", i), "an entry without a name")
                continue
            rest = {k: v for k, v in item.items() if k != "name"}
            entries.append((("singleuser", "extraEnv", i), name, rest))
    elif env is not None:
        source.drop(("singleuser", "extraEnv"), "neither a dict nor a list of {name, value}")
    plain: dict[str, str] = {}
    for path, name, raw in entries:
        if isinstance(raw, Mapping) and set(raw) == {"value"}:
            raw = raw["value"]
        if isinstance(raw, Mapping):
            source.drop(
                path,
                f"{name}: only plain values are carried (singleuser.extraEnv takes strings); "
                "a valueFrom (Secret, ConfigMap or field reference) has no counterpart: mount "
                "the Secret or ConfigMap with singleuser.storage.extraVolumes instead",
            )
            continue
        if raw is None or isinstance(raw, list):
            source.drop(path, f"{name}: not a plain value")
            continue
        source.get(*path)
        value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        why = secret_reason(name, value)
        if why:
            draft.changed.append(
                Note(
                    dotted(path),
                    f"{name}: {_SECRET} ({why}): store it with `kubectl create secret "
                    f"generic singleuser-env --from-literal={name}=…` and mount that Secret "
                    "with singleuser.storage.extraVolumes and extraVolumeMounts",
                )
            )
            continue
        plain[name] = value
    return plain


def _singleuser(source: _Source, draft: _Draft) -> str | None:
    singleuser: dict[str, Any] = {}
    timeout = source.get("singleuser", "startTimeout")
    if timeout is not None:
        singleuser["startTimeout"] = int(timeout)
    plain = _extra_env(source, draft)
    if plain:
        singleuser["extraEnv"] = plain
    labels = source.get("singleuser", "extraLabels")
    if labels:
        singleuser["extraLabels"] = {str(k): str(v) for k, v in labels.items()}
    tolerations = source.get("singleuser", "extraTolerations")
    if tolerations:
        singleuser["extraTolerations"] = list(tolerations)
    source.get("singleuser", "cpu")
    source.get("singleuser", "memory")
    storage_class = _storage(source, draft, singleuser)
    if singleuser:
        draft.values["singleuser"] = singleuser
    return storage_class


def _issuer(authorize_url: str) -> str | None:
    for suffix, replacement in _ISSUER_SUFFIXES:
        if authorize_url.endswith(suffix):
            return authorize_url[: -len(suffix)] + replacement
    return None


def _auth(source: _Source, draft: _Draft) -> list[str]:
    """The chart's ``auth`` from ``hub.config``; returns the allowed groups."""
    cls = source.get("hub", "config", "JupyterHub", "authenticator_class")
    section = _OIDC_AUTHENTICATORS.get(str(cls)) if cls else None
    config = source.peek("hub", "config") or {}
    if section is None:
        section = next((s for s in set(_OIDC_AUTHENTICATORS.values()) if s in config), None)
    auth: dict[str, Any] = {}
    draft.values["auth"] = auth
    if section is None:
        if not cls:
            draft.changed.append(
                Note(
                    "hub.config.JupyterHub.authenticator_class",
                    "unset: z2jh's default "
                    "(dummy) authenticator is not carried; this chart signs users in with "
                    "OpenID Connect",
                )
            )
        else:
            draft.changed.append(
                Note(
                    "hub.config.JupyterHub.authenticator_class",
                    f"{cls!r} "
                    "is not carried: this chart signs users in with OpenID "
                    "Connect (GenericOAuthenticator and AzureAdOAuthenticator "
                    "are converted)",
                )
            )
        auth["issuer"] = draft.todo("values.auth.issuer", "your OpenID provider's issuer URL")
        return []
    here: Path = ("hub", "config", section)
    settings = {**(config.get("OAuthenticator") or {}), **(config.get(section) or {})}

    def take(key: str) -> Any:
        for sec in (section, "OAuthenticator"):
            if key in (config.get(sec) or {}):
                return source.get("hub", "config", sec, key)
        return None

    if section == "AzureAdOAuthenticator":
        tenant = take("tenant_id")
        auth["issuer"] = (
            f"https://login.microsoftonline.com/{tenant}/v2.0"
            if tenant
            else draft.todo(
                "values.auth.issuer",
                "https://login.microsoftonline.com/<tenant id>/v2.0 (tenant_id was not set)",
            )
        )
    else:
        authorize = take("authorize_url")
        issuer = _issuer(str(authorize)) if authorize else None
        if issuer:
            auth["issuer"] = issuer
            draft.changed.append(
                Note(
                    dotted((*here, "authorize_url")),
                    f"the issuer {issuer} is "
                    "derived from it: check that it serves /.well-known/openid-configuration",
                )
            )
        else:
            auth["issuer"] = draft.todo(
                "values.auth.issuer",
                "your OpenID provider's issuer URL (not derivable from authorize_url)",
            )
        for key in ("token_url", "userdata_url", "userdata_params", "userdata_method"):
            if take(key) is not None:
                draft.changed.append(
                    Note(
                        f"hub.config.{section}.{key}",
                        "found through the issuer's OpenID discovery document instead",
                    )
                )
    if (client_id := take("client_id")) is not None:
        auth["clientId"] = str(client_id)
    if take("client_secret") is not None:
        draft.changed.append(
            Note(
                f"hub.config.{section}.client_secret",
                _SECRET + ": store it "
                "with `kubectl create secret generic oidc-client --from-literal=client-secret=…`, "
                "which auth.clientSecret names",
            )
        )
    auth["clientSecret"] = {"existingSecret": "oidc-client", "key": "client-secret"}
    if (callback := take("oauth_callback_url")) is not None:
        auth["callbackUrl"] = str(callback)
    if (scope := take("scope")) is not None:
        auth["scopes"] = [str(s) for s in scope] if isinstance(scope, list) else str(scope).split()
    claim = take("username_claim") or take("username_key")
    if isinstance(claim, str):
        auth["usernameClaim"] = claim
    groups_claim = take("claim_groups_key")
    if isinstance(groups_claim, str):
        auth["groupsClaim"] = groups_claim
    if (admins := take("admin_groups")) is not None:
        auth["adminGroups"] = [str(g) for g in admins]
    manage = take("manage_groups")
    if manage is False:
        draft.changed.append(
            Note(
                f"hub.config.{section}.manage_groups",
                "groups always come from the groups claim at each login here",
            )
        )
    allowed = [str(g) for g in take("allowed_groups") or []]
    for key, why in (
        ("allowed_users", "users are entitled by group in the policy; add a group for them"),
        ("admin_users", "admins are auth.adminGroups members; add a group for them"),
        ("allow_all", "every signed-in user is entitled only through a policy group"),
        ("allow_existing_users", "entitlement is by policy group only"),
    ):
        if key in settings:
            for sec in (section, "OAuthenticator"):
                if key in (config.get(sec) or {}):
                    source.drop(("hub", "config", sec, key), why)
    if not allowed:
        draft.changed.append(
            Note(
                f"hub.config.{section}.allowed_groups",
                "no groups were allowed, so the draft entitles nobody: add groups to the policy",
            )
        )
    return allowed


def _database_url(url: str) -> tuple[str | None, bool]:
    """z2jh's SQLAlchemy URL (``postgresql+psycopg2://user:pw@host/db``) as the chart's
    ``postgresql://user@host/db``, and whether it held a password.

    :func:`.dburl.split_password` removes the password wherever libpq would read
    it (``user:pw@``, even holding ``@`` or ``:``, and ``password``/``sslpassword``
    query parameters). None when there is no user or host.
    """
    split = split_password(url)
    if split is None:
        return None, False
    if not split.user or not split.host:
        return None, bool(split.found)
    return split.url, bool(split.found)


def _hub(source: _Source, draft: _Draft) -> None:
    db: dict[str, Any] = {}
    kind = source.get("hub", "db", "type")
    if kind in (None, "sqlite-pvc"):
        pvc = {}
        for key, ours in (
            ("storage", "storage"),
            ("storageClassName", "storageClassName"),
            ("accessModes", "accessModes"),
        ):
            value = source.get("hub", "db", "pvc", key)
            if value is not None:
                pvc[ours] = value
        if pvc:
            db = {"type": "sqlite-pvc", "pvc": pvc}
    elif kind in ("postgres", "postgresql"):
        raw = str(source.get("hub", "db", "url") or "")
        url, had_password = _database_url(raw)
        if urlsplit(raw).netloc.count("@") > 1:
            draft.changed.append(
                Note(
                    "hub.db.url",
                    "it has more than one '@': everything before the last one was taken as "
                    "user and password, and the host is what follows it. SQLAlchemy splits at "
                    "the first '@', so write a password's '@' as %40",
                )
            )
        if url is None:
            url = draft.todo("values.hub.db.url", "postgresql://<user>@<host>:5432/<database>")
        db = {
            "type": "postgresql",
            "url": url,
            "passwordSecret": {"name": "hub-db", "key": "password"},
        }
        if had_password or source.get("hub", "db", "password") is not None:
            draft.changed.append(
                Note(
                    "hub.db",
                    "the database password is "
                    + _SECRET
                    + ": put it in the Secret hub-db (key password)",
                )
            )
    else:
        source.get("hub", "db", "type")
        draft.changed.append(
            Note(
                "hub.db.type",
                f"{kind!r} is not carried: the chart keeps "
                "the hub database in SQLite on a volume or in PostgreSQL",
            )
        )
    if db:
        draft.values["hub"] = {"db": db}


def _proxy_and_ingress(source: _Source, draft: _Draft) -> None:
    service_type = source.get("proxy", "service", "type")
    if service_type in ("ClusterIP", "NodePort", "LoadBalancer"):
        draft.values["proxy"] = {"service": {"type": service_type}}
    ingress: dict[str, Any] = {}
    if source.get("ingress", "enabled"):
        ingress["enabled"] = True
        if hosts := source.get("ingress", "hosts"):
            ingress["hosts"] = [str(h) for h in hosts]
        if cls := source.get("ingress", "ingressClassName"):
            ingress["className"] = str(cls)
        if annotations := source.get("ingress", "annotations"):
            ingress["annotations"] = {str(k): str(v) for k, v in annotations.items()}
        if tls := source.get("ingress", "tls"):
            ingress["tls"] = [
                {"secretName": t.get("secretName"), "hosts": t.get("hosts", [])} for t in tls
            ]
    https = ("proxy", "https")
    if source.get(*https, "enabled"):
        kind = source.get(*https, "type") or "letsencrypt"
        hosts = [str(h) for h in source.get(*https, "hosts") or []]
        ingress.setdefault("enabled", True)
        ingress["hosts"] = sorted({*ingress.get("hosts", []), *hosts})
        draft.values.setdefault("proxy", {})["service"] = {"type": "ClusterIP"}
        if kind == "secret":
            name = source.get(*https, "secret", "name")
            for key, usual in (("key", "tls.key"), ("crt", "tls.crt")):
                if source.get(*https, "secret", key) not in (None, usual):
                    draft.changed.append(
                        Note(
                            f"proxy.https.secret.{key}",
                            f"an Ingress reads {usual} only: "
                            "recreate the Secret as `kubectl create secret tls`",
                        )
                    )
            ingress["tls"] = [{"secretName": str(name), "hosts": hosts}]
            draft.changed.append(
                Note(
                    "proxy.https",
                    "TLS ends at the Ingress, with the same "
                    "Secret; the proxy Service becomes ClusterIP",
                )
            )
        elif kind == "letsencrypt":
            source.drop(
                (*https, "letsencrypt"),
                "the chart has no built-in Let's Encrypt: "
                "annotate the Ingress for cert-manager (cert-manager.io/cluster-issuer) "
                "and name its Secret in ingress.tls",
            )
            ingress["tls"] = [{"secretName": "hub-tls", "hosts": hosts}]
        elif kind == "manual":
            source.drop(
                (*https, "manual"),
                "the key and certificate are " + _SECRET + ": "
                "`kubectl create secret tls hub-tls --cert=… --key=…`, which ingress.tls "
                "names",
            )
            ingress["tls"] = [{"secretName": "hub-tls", "hosts": hosts}]
        else:
            draft.changed.append(
                Note(
                    "proxy.https.type",
                    f"{kind!r}: TLS is terminated before the Ingress; ingress.tls is left empty",
                )
            )
    if ingress.get("enabled") and not ingress.get("hosts"):
        ingress["hosts"] = [draft.todo("values.ingress.hosts", "the hub's host name")]
    if ingress:
        draft.values["ingress"] = ingress


def _cull(source: _Source, draft: _Draft) -> None:
    cull: dict[str, Any] = {}
    for key in ("enabled", "timeout", "every", "concurrency", "maxAge"):
        value = source.get("cull", key)
        if value is not None:
            cull[key] = value
    for key, why in (
        ("users", "users are not culled here, only their idle servers"),
        ("adminUsers", "admins' servers are culled like everyone's"),
        ("removeNamedServers", "the culler stops named servers and keeps them"),
    ):
        source.drop(("cull", key), why)
    if cull:
        draft.values["cull"] = cull


def convert(z2jh: Mapping[str, Any], inputs: Inputs) -> Migration:
    """This chart's values and a draft policy from Zero to JupyterHub's ``z2jh`` values."""
    source = _Source(z2jh)
    draft = _Draft(inputs)
    storage_class = _singleuser(source, draft)
    _profiles(source, draft)
    allowed = _auth(source, draft)
    _hub(source, draft)
    _proxy_and_ingress(source, draft)
    _cull(source, draft)

    node_regions = list(inputs.node_regions) or draft.node_regions
    if not node_regions:
        node_regions = [
            draft.todo(
                f"policy.regions.{inputs.region}.nodeRegions",
                "the value of topology.kubernetes.io/region on the nodes "
                "users' servers run on (or pass --node-region)",
            )
        ]
    region: dict[str, Any] = {
        "displayName": inputs.region,
        "nodeRegions": node_regions,
        "storageClass": storage_class
        or inputs.storage_class
        or draft.todo(
            f"policy.regions.{inputs.region}.storageClass",
            "the storage class of "
            "home volumes (z2jh used the cluster's default; or pass --storage-class)",
        ),
    }
    if draft.adopt_claims:
        region["adoptClaims"] = draft.adopt_claims
    policy: dict[str, Any] = {"version": 1}
    if draft.gpu_product_label or draft.gpu_taints:
        scheduling: dict[str, Any] = {}
        if draft.gpu_product_label:
            scheduling["gpuProductLabel"] = draft.gpu_product_label
        if draft.gpu_taints:
            scheduling["gpuTaints"] = draft.gpu_taints
        policy["scheduling"] = scheduling
    policy["regions"] = {inputs.region: region}
    if draft.gpu_types:
        policy["gpuTypes"] = {
            k: {x: y for x, y in v.items() if not x.startswith("_")}
            for k, v in draft.gpu_types.items()
        }
    policy["channels"] = draft.channels
    policy["profiles"] = draft.profiles
    needs_gpus = max((p.get("gpu", {}).get("count", 0) for p in draft.profiles.values()), default=0)
    groups: dict[str, Any] = {}
    for group in allowed:
        grant: dict[str, Any] = {"profiles": list(draft.profiles), "regions": [inputs.region]}
        if needs_gpus and inputs.gpu_quota is not None:
            grant["gpuQuota"] = inputs.gpu_quota
        elif needs_gpus:
            grant["gpuQuota"] = draft.todo(
                f"policy.groups.{group}.gpuQuota",
                f"how many GPUs group {group} may hold at once (z2jh had no quota; at least "
                f"{needs_gpus}; or pass --gpu-quota)",
            )
        groups[group] = grant
    policy["groups"] = groups
    draft.values["policy"] = policy

    leftovers = list(source.leftovers())
    return Migration(
        values=draft.values,
        policy=policy,
        not_carried=(*source.not_carried, *leftovers),
        changed=tuple(draft.changed),
        fill_in=tuple(draft.fill_in),
    )

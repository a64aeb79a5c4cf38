"""The policy document as typed, immutable objects.

These pydantic models are the single source of truth for the document's
shape: the loader validates against them and ``policy.schema.json`` (for
editors) is generated from them. Rules that relate one section to another
(a profile naming a channel) live in :mod:`.references`, because they must be
checked even when some other part of the document is malformed.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sovereign_hub.images.reference import PINNED, ImageReferenceError, require_pinned

from .base import PolicyModel
from .quantity import Quantity
from .sharing import Sharing

if TYPE_CHECKING:
    from .datasets import Dataset, RegionDatasets
    from .decision import NodeRequirement, Toleration

_SLUG = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _fail(kind: str, message: str) -> PydanticCustomError:
    # The message is formatted by the caller: pydantic only substitutes
    # ``{name}`` placeholders, and with no context it leaves text untouched.
    return PydanticCustomError(kind, message)


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise _fail(
            "name",
            f"{value!r} is not a valid name: use 1-40 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (it becomes part of Kubernetes names)",
        )
    return value


def _image(value: str) -> str:
    try:
        return require_pinned(value)
    except ImageReferenceError as exc:
        raise _fail(exc.kind, str(exc)) from None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise _fail("cidr", f"{value!r} is not a CIDR block such as 10.0.0.0/16 ({exc})") from None


def _iso_date(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _fail("date", f"{value!r} is not a date; write YYYY-MM-DD") from None
    return value


def _pattern(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.match(value):
            raise _fail("format", f"{value!r} is not a valid {what}")
        return value

    return AfterValidator(check)


Slug = Annotated[str, AfterValidator(_slug), Field(json_schema_extra={"pattern": _SLUG.pattern})]
ImageRef = Annotated[
    str, AfterValidator(_image), Field(json_schema_extra={"pattern": PINNED.pattern})
]
Cidr = Annotated[str, AfterValidator(_cidr)]
LabelValue = Annotated[str, _pattern(_LABEL_VALUE, "Kubernetes label value")]
LabelKey = Annotated[str, _pattern(_LABEL_KEY, "Kubernetes label key")]
ResourceName = Annotated[
    str, _pattern(_RESOURCE, "extended resource name (domain/name, e.g. nvidia.com/gpu)")
]
StorageClassName = Annotated[str, _pattern(_DNS_SUBDOMAIN, "storage class name")]
Text = Annotated[str, Field(min_length=1, max_length=1000)]
GroupName = Annotated[str, Field(min_length=1, max_length=256)]


_Model = PolicyModel


class Taint(_Model):
    """A node taint that GPU pods must tolerate."""

    key: LabelKey
    """Taint key, e.g. ``nvidia.com/gpu``."""
    value: LabelValue | None = None
    """Taint value; omitted means the toleration matches any value."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"
    """Taint effect to tolerate."""


class Scheduling(_Model):
    """Cluster conventions the plan uses; the defaults match most clouds and NVIDIA's operator."""

    region_label: LabelKey = "topology.kubernetes.io/region"
    """Node label whose values name a node's region."""
    gpu_product_label: LabelKey = "nvidia.com/gpu.product"
    """Node label whose value names the GPU model (set by NVIDIA's GPU feature discovery)."""
    gpu_taints: tuple[Taint, ...] = (Taint(key="nvidia.com/gpu"),)
    """Taints on GPU nodes that GPU pods tolerate (and other pods do not)."""


HUB_CLUSTER = "hub"
"""The cluster name of a region that names no cluster: the one the hub itself runs in."""


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise _fail("path", f"{value!r} is not an absolute path; write where the hub sees the file")
    return value


SecretName = Annotated[str, _pattern(_DNS_SUBDOMAIN, "Kubernetes Secret name")]
SecretKey = Annotated[str, _pattern(re.compile(r"^[-._a-zA-Z0-9]{1,253}$"), "Secret key")]


class SecretKeyRef(_Model):
    """One key of a Secret in the hub's namespace."""

    name: SecretName
    """The Secret's name."""
    key: SecretKey = "kubeconfig"
    """The key holding the kubeconfig."""


class TokenSecretRef(_Model):
    """A Secret in the hub's namespace with a bearer token for a cluster's API server and,
    optionally, the CA that signed the server's certificate: the keys a Kubernetes
    ``service-account-token`` Secret has."""

    name: SecretName
    """The Secret's name."""
    token_key: SecretKey = "token"  # noqa: S105 - the name of a key, not a token
    """The key holding the bearer token (re-read when the Secret changes)."""
    ca_key: SecretKey | None = "ca.crt"
    """The key holding the CA certificate (PEM); null to trust the hub's system CAs."""


def _https_url(value: str) -> str:
    parsed = urlsplit(value)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/"):
        raise _fail(
            "url",
            f"{value!r} is not an https URL of an API server (https://host[:port]); a bearer "
            "token is never sent in the clear",
        )
    return value.rstrip("/")


def _gateway_url(value: str) -> str:
    parsed = urlsplit(value)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/"):
        raise _fail(
            "url",
            f"{value!r} is not an https URL of a gateway (https://host[:port]); notebook "
            "traffic to another cluster is never sent in the clear",
        )
    return value.rstrip("/")


def _public_url(value: str) -> str:
    parsed = urlsplit(value)
    if (
        parsed.scheme != "https"
        or not parsed.hostname
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
    ):
        raise _fail(
            "url",
            f"{value!r} is not an https URL of a regional entry point (https://host[:port], no "
            "path): browsers send their notebook session and its cookies there",
        )
    return value.rstrip("/")


class Gateway(_Model):
    """The region's gateway (``sovereign-gateway``, deployed by the regional chart): the
    hub's proxy reaches the region's notebooks through it, over mutual TLS, instead of at
    their pod IPs. The hub's client certificate and the CA it trusts for gateways are the
    hub's settings (one for all gateways), not the policy's."""

    url: Annotated[str, AfterValidator(_gateway_url)]
    """The gateway's https URL as the hub's proxy reaches it, e.g. ``https://gw.us.example``."""
    public_url: Annotated[str, AfterValidator(_public_url)] | None = None
    """The region's entry point for browsers, e.g. ``https://us.hub.example``: the gateway's
    second listener, with no client certificate, where users of the region reach their
    servers directly, so their notebook traffic stays in the region (the server itself
    checks each request with the hub's OAuth). Omitted: browsers reach the region's servers
    through the hub's proxy. It must differ from ``url``, whose listener takes only the
    hub's proxy."""

    @model_validator(mode="after")
    def _two_listeners(self) -> Gateway:
        if self.public_url is not None and urlsplit(self.public_url)[:2] == urlsplit(self.url)[:2]:
            raise _fail(
                "gateway",
                f"publicUrl {self.public_url!r} is the gateway's url: the entry for browsers is "
                "a second listener (another host or port), since the url's takes only the "
                "hub's proxy with its client certificate",
            )
        return self


class Cluster(_Model):
    """The Kubernetes cluster a region's notebooks, home volumes and secrets live in.

    Give exactly one way to reach its API server: ``kubeconfigSecret`` (the chart
    mounts it into the hub), ``kubeconfig`` (a file the hub can read), or ``server``
    with ``tokenSecret`` (the chart mounts the Secret).
    """

    name: Slug
    """The cluster's name, recorded on every spawn event of the region; ``hub`` is reserved
    for the hub's own cluster."""
    kubeconfig_secret: SecretKeyRef | None = None
    """A Secret in the hub's namespace holding a kubeconfig for this cluster's API server."""
    kubeconfig: Annotated[str, AfterValidator(_absolute_path)] | None = None
    """Absolute path of a kubeconfig file the hub can read."""
    server: Annotated[str, AfterValidator(_https_url)] | None = None
    """The API server's https URL, with ``tokenSecret``."""
    token_secret: TokenSecretRef | None = None
    """A Secret with a bearer token (and CA) for ``server``."""
    scheduler_name: Annotated[str, _pattern(_DNS_SUBDOMAIN, "scheduler name")] | None = None
    """The scheduler that places this cluster's notebook pods (default: the cluster's
    default scheduler). The hub cluster's user scheduler is not used here: it runs only
    there."""
    priority_class_name: Annotated[str, _pattern(_DNS_SUBDOMAIN, "PriorityClass name")] | None = (
        None
    )
    """A PriorityClass of this cluster for its notebook pods (default: none). The hub
    cluster's class is not used here: a pod naming a class its cluster lacks is refused."""
    gateway: Gateway | None = None
    """The region's gateway; omitted means a flat network: the hub's proxy reaches pod
    IPs of this cluster directly."""

    @model_validator(mode="after")
    def _one_way_in(self) -> Cluster:
        if self.name == HUB_CLUSTER:
            raise _fail(
                "cluster",
                f"the cluster name {HUB_CLUSTER!r} is reserved for the hub's own cluster; "
                "omit `cluster` to run the region there, or choose another name",
            )
        ways = (
            ("kubeconfigSecret", self.kubeconfig_secret),
            ("kubeconfig", self.kubeconfig),
            ("tokenSecret", self.token_secret),
        )
        given = [alias for alias, value in ways if value is not None]
        if len(given) != 1:
            raise _fail(
                "cluster",
                f"cluster {self.name!r} gives {' and '.join(given) or 'no way in'}; give exactly "
                "one of: kubeconfigSecret, kubeconfig, tokenSecret (with server)",
            )
        if (self.server is None) != (self.token_secret is None):
            raise _fail(
                "cluster",
                f"cluster {self.name!r} gives {'server' if self.server else given[0]} without "
                f"{'tokenSecret' if self.server else 'server'}; server goes with tokenSecret "
                "(a kubeconfig names its own server)",
            )
        return self


_USER_FIELDS = frozenset({
    "username", "user_server", "safe_username", "safe_user_server", "escaped_username",
    "escaped_user_server", "unescaped_username", "userid",
})  # fmt: skip
"""KubeSpawner's template fields (``_expand_user_properties``) that name the user."""
_CLAIM_FIELDS = _USER_FIELDS | {
    "servername", "safe_servername", "escaped_servername", "unescaped_servername",
}  # fmt: skip
"""The fields an adopted claim's name may use: the user's, and the server's name."""


def _claim_template(value: str) -> str:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise _fail("claim_template", f"{value!r} is not a name template ({exc})") from None
    unknown = sorted(fields - _CLAIM_FIELDS)
    if unknown:
        raise _fail(
            "claim_template",
            f"{value!r} uses {', '.join('{' + f + '}' for f in unknown)}; a claim name may use "
            f"{', '.join('{' + f + '}' for f in sorted(_CLAIM_FIELDS))}",
        )
    if not fields & _USER_FIELDS:
        raise _fail(
            "claim_template",
            f"{value!r} names no user, so every user would share one volume; use e.g. "
            "claim-{username}",
        )
    return value


ClaimTemplate = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_claim_template)]


class Region(_Model):
    """A data-residency zone: where pods may run, where their data lives, what they reach."""

    display_name: Text
    """Name shown to users, e.g. ``European Union (Frankfurt)``."""
    node_regions: tuple[LabelValue, ...] = Field(min_length=1)
    """Values of the region node label (``scheduling.regionLabel``) that belong to this region."""
    storage_class: StorageClassName
    """Storage class for home volumes in this region."""
    egress_cidrs: tuple[Cidr, ...] = ()
    """Networks pods in this region may reach besides DNS and the hub; empty means none."""
    require_attributes: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Identity attributes a user must have to run here, e.g. ``{country: [DE, FR]}``;
    each listed attribute must have one of the listed values."""
    cluster: Cluster | None = None
    """The Kubernetes cluster this region's pods, home volumes and secrets are created in;
    omitted means the hub's own cluster."""
    adopt_claims: ClaimTemplate | None = None
    """Name template (KubeSpawner's fields) of claims that existed before this hub, e.g.
    ``claim-{username}`` from Zero to JupyterHub: a user whose claim of that name exists in
    this region's namespace gets it as their home volume here, instead of a new
    ``home-<user>-<region>`` claim. Only one region may adopt (a volume never follows its
    user to another region); omitted means none is adopted."""

    @property
    def cluster_name(self) -> str:
        """The name recorded for this region's cluster: its own, or ``hub``."""
        return self.cluster.name if self.cluster else HUB_CLUSTER


class GpuType(_Model):
    """A kind of GPU (or GPU slice) that profiles can request."""

    display_name: Text
    """Name shown to users, e.g. ``NVIDIA A100 40 GB``."""
    resource: ResourceName = "nvidia.com/gpu"
    """Extended resource requested, e.g. ``nvidia.com/gpu`` or ``nvidia.com/mig-1g.5gb``."""
    product: LabelValue
    """Value of the GPU product node label (``scheduling.gpuProductLabel``)."""


class ImageVersion(_Model):
    """One released version of a channel's image."""

    version: Text
    """Version name shown to users, e.g. ``2026.11``. Quote it: YAML reads 2026.10 as a number."""
    image: ImageRef
    """The image, pinned by digest: ``registry/repo@sha256:<64 hex>``."""
    released: Annotated[date, BeforeValidator(_iso_date)]
    """Release date (``YYYY-MM-DD``)."""
    revoked: Text | None = None
    """If set, the reason this version may no longer run (users are moved off it and told why)."""


class Channel(_Model):
    """A stream of image versions; users are pinned to one version of it."""

    display_name: Text
    """Name shown to users, e.g. ``Data science (CPU)``."""
    max_pin_age_days: int | None = Field(default=None, ge=1)
    """A user's pin older than this many days moves to the newest version at the next start;
    omitted means pins never expire."""
    versions: tuple[ImageVersion, ...] = Field(min_length=1)
    """Versions, oldest first; the last one that is not revoked is the newest."""

    @model_validator(mode="after")
    def _versions_are_usable(self) -> Channel:
        names = [v.version for v in self.versions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _fail("versions", f"version names repeat: {', '.join(duplicates)}")
        if all(v.revoked for v in self.versions):
            raise _fail("versions", "every version is revoked; add a version users can be moved to")
        return self

    @cached_property
    def position(self) -> dict[str, int]:
        """Each version's index in ``versions``, built once (the model is immutable)."""
        return {v.version: i for i, v in enumerate(self.versions)}

    @cached_property
    def newest(self) -> int:
        """Index of the newest version that is not revoked."""
        return max(i for i, v in enumerate(self.versions) if not v.revoked)


class Resources(_Model):
    """What a pod is guaranteed (request) and may use at most (limit)."""

    guarantee: Quantity
    """Amount reserved for the pod (Kubernetes request)."""
    limit: Quantity
    """Most the pod may use (Kubernetes limit)."""

    @model_validator(mode="after")
    def _guarantee_within_limit(self) -> Resources:
        if self.guarantee.value > self.limit.value:
            raise _fail("resources", f"guarantee {self.guarantee} is more than limit {self.limit}")
        return self


class MemoryResources(Resources):
    """Memory guarantee and limit, in bytes (``4Gi``, ``512Mi``)."""

    @model_validator(mode="after")
    def _plausible_bytes(self) -> MemoryResources:
        for name in ("guarantee", "limit"):
            quantity: Quantity = getattr(self, name)
            if quantity.value < 2**20:
                raise _fail(
                    "memory",
                    f"{name} {quantity} is {quantity.value:f} bytes, less than 1Mi; "
                    f"did you mean {quantity}Gi?",
                )
        return self


class GpuRequest(_Model):
    """GPUs a profile's pod gets."""

    count: int = Field(ge=1, le=64)
    """Number of GPUs (or slices)."""
    type: Slug
    """A key of ``gpuTypes``."""


class Profile(_Model):
    """A choice on the spawn form: image channel, size, GPUs and where it may run."""

    display_name: Text
    """Name shown on the spawn form."""
    description: Annotated[str, Field(max_length=2000)] = ""
    """One or two sentences shown under the name."""
    channel: Slug
    """A key of ``channels``: the images this profile runs."""
    cpu: Resources
    """CPU cores (``500m``, ``2``)."""
    memory: MemoryResources
    """Memory (``4Gi``)."""
    gpu: GpuRequest | None = None
    """GPUs; omitted means a CPU-only pod."""
    regions: tuple[Slug, ...] = Field(min_length=1)
    """Keys of ``regions`` this profile may run in."""


class Group(_Model):
    """What the members of one identity-provider group may run."""

    profiles: tuple[Slug, ...] = ()
    """Profiles the group's members may start."""
    regions: tuple[Slug, ...] = ()
    """Regions the group's members may run those profiles in."""
    gpu_quota: int = Field(default=0, ge=0)
    """GPUs the whole group may hold at once (across all members); 0 means none."""
    per_user_gpu_limit: int | None = Field(default=None, ge=1)
    """GPUs one member may hold at once from this group's quota; omitted means only the
    group quota applies."""


class GpuQueue(_Model):
    """How GPU spawns wait when no GPU is free, instead of being refused."""

    enabled: bool = True
    """Queue a GPU spawn that the group's quota or the cluster's free GPUs cannot admit now;
    ``false`` refuses it at once, as before the queue existed."""
    max_wait_minutes: int = Field(default=60, ge=1, le=1440)
    """Longest a spawn waits in the queue (1 to 1440 minutes); after it the spawn ends with a
    message saying so."""
    expected_session_minutes: int = Field(default=120, ge=1, le=10080)
    """How long a GPU server usually runs (1 to 10080 minutes): the wait estimate's starting
    point until the hub has seen servers stop."""
    max_queued_per_pool: int = Field(default=200, ge=1, le=10000)
    """Most spawns waiting for one GPU type in one region; later ones are refused."""

    @model_validator(mode="after")
    def _wait_fits_a_session(self) -> GpuQueue:
        if self.max_wait_minutes > self.expected_session_minutes * 12:
            raise _fail(
                "gpu_queue",
                f"maxWaitMinutes {self.max_wait_minutes} is more than 12 times "
                f"expectedSessionMinutes {self.expected_session_minutes}: users would wait "
                "through a dozen sessions; lower maxWaitMinutes or raise expectedSessionMinutes",
            )
        return self


class Policy(_Model):
    """A Sovereign Hub policy: regions, GPUs, image channels, profiles and group entitlements."""

    version: Literal[1] = 1
    """Format version of this document."""
    scheduling: Scheduling = Scheduling()
    """Node labels and taints of the cluster."""
    regions: dict[Slug, Region] = Field(min_length=1)
    """Data-residency regions, by name."""
    gpu_types: dict[Slug, GpuType] = Field(default_factory=dict)
    """GPU kinds, by name."""
    channels: dict[Slug, Channel] = Field(min_length=1)
    """Image channels, by name."""
    profiles: dict[Slug, Profile] = Field(min_length=1)
    """Profiles, by name, in the order the spawn form lists them."""
    gpu_queue: GpuQueue = GpuQueue()
    """The queue GPU spawns wait in when no GPU is free."""
    groups: dict[GroupName, Group] = Field(default_factory=dict)
    """Entitlements, by identity-provider group name. When several of a user's groups grant
    the same profile and region, a GPU spawn draws on the first such group in this order
    that has room."""
    datasets: dict[Slug, Dataset] = Field(default_factory=dict)
    """Datasets mounted into entitled groups' servers, by name (see :mod:`.datasets`)."""
    sharing: Sharing = Sharing()
    """Who may share a running server with whom, and for how long."""

    @cached_property
    def index(self) -> PolicyIndex:
        """Lookups decide() needs on every call, built once (the model is immutable)."""
        return PolicyIndex(
            group_rank={name: i for i, name in enumerate(self.groups)},
            grants={
                name: (frozenset(g.profiles), frozenset(g.regions))
                for name, g in self.groups.items()
            },
        )

    @cached_property
    def dataset_index(self) -> dict[str, RegionDatasets]:
        """Per region, which groups mount which datasets: built once, like ``index``."""
        from .datasets import index_datasets  # that module builds on this one

        return index_datasets(self)


@dataclass(frozen=True, slots=True)
class PolicyIndex:
    """Plain-dict indexes of a :class:`Policy`.

    Kept out of pydantic's private attributes, whose every read goes through
    ``__getattr__`` and dominated the cost of a decision.
    """

    group_rank: dict[str, int]
    """Position of each group in the document (quota precedence)."""
    grants: dict[str, tuple[frozenset[str], frozenset[str]]]
    """(profiles, regions) each group grants."""
    placements: dict[tuple[str | None, ...], Placement] = field(default_factory=dict)
    """Placements decide() has built, by profile, region, image and GPU type."""


@dataclass(frozen=True, slots=True)
class Placement:
    """The part of a pod plan that follows from profile, region, image and GPU type alone."""

    node_affinity: tuple[NodeRequirement, ...]
    tolerations: tuple[Toleration, ...]
    labels: Mapping[str, str]
    environment: Mapping[str, str]

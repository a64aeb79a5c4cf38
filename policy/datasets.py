"""Named datasets: where each lives per region, where it is mounted, and who may write it.

Three parts, kept apart so each stays small and pure:

- the typed ``datasets`` section of the policy document (:class:`Dataset`);
- the checks that relate it to ``regions`` and ``groups`` (:func:`check_datasets`),
  run on the raw document like :mod:`.references` so every problem is reported at once;
- the decision of what a spawn mounts (:func:`dataset_mounts`): no I/O, called by
  :func:`~sovereign_hub.policy.decide` for an allowed spawn.

A dataset is mounted only in a region it names, from that region's source, so a
dataset held in the EU is never mounted in a pod scheduled in the US.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from .model import _DNS_SUBDOMAIN, GroupName, Policy, Slug, Text, _fail, _Model, _pattern
from .problems import Path, Problem
from .references import unknown
from .yamlsource import SourceMap

Mode = Literal["read-only", "read-write"]
SOURCE_KINDS = ("persistentVolumeClaim", "nfs", "csi")
"""The keys of a source, exactly one of which each source sets."""


def _mount_path(value: str) -> str:
    if not value.startswith("/") or posixpath.normpath(value) != value or value == "/":
        raise _fail(
            "mount_path",
            f"{value!r} is not a mount path: write an absolute path such as /data/climate, "
            "without '..', '.', '//' or a trailing '/', and not '/' itself",
        )
    return value


def _export_path(value: str) -> str:
    if not value.startswith("/"):
        raise _fail("export_path", f"{value!r} is not an absolute export path such as /exports")
    return value


ObjectName = Annotated[str, _pattern(_DNS_SUBDOMAIN, "Kubernetes object name")]
MountPath = Annotated[str, Field(max_length=256), AfterValidator(_mount_path)]
ExportPath = Annotated[str, Field(max_length=1024), AfterValidator(_export_path)]


class ClaimSource(_Model):
    """An existing PersistentVolumeClaim in the namespace of the user pods."""

    claim_name: ObjectName
    """Name of the claim; the hub never creates, resizes or deletes it."""


class NfsSource(_Model):
    """An NFS export, mounted through the NFS CSI driver (``nfs.csi.k8s.io``) as an inline
    volume: the restricted Pod Security Standard forbids the ``nfs`` volume type."""

    server: Annotated[str, Field(min_length=1, max_length=253)]
    """Host name or address of the NFS server."""
    path: ExportPath
    """Exported path on the server, e.g. ``/exports/climate``."""


class CsiSource(_Model):
    """An inline CSI volume, e.g. an object-store bucket mounted by its CSI driver."""

    driver: ObjectName
    """The CSI driver's name, e.g. ``s3.csi.aws.com``; it must allow ephemeral inline volumes."""
    volume_attributes: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict
    )
    """The driver's settings for this volume (bucket, prefix…), passed as they are."""
    node_publish_secret_name: ObjectName | None = None
    """Secret (in the user pods' namespace) holding the driver's credentials; omitted means
    none. The secret's contents never enter the policy or the audit trail."""


class DatasetSource(_Model):
    """Where a dataset's data is in one region: set exactly one of the three."""

    persistent_volume_claim: ClaimSource | None = None
    """An existing claim."""
    nfs: NfsSource | None = None
    """An NFS export."""
    csi: CsiSource | None = None
    """An inline CSI volume."""

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetSource:
        if sum(v is not None for v in (self.persistent_volume_claim, self.nfs, self.csi)) != 1:
            raise _fail(
                "dataset_source",
                f"set exactly one of {', '.join(SOURCE_KINDS)} as the dataset's source here",
            )
        return self

    # Cached (the model is immutable): decide() reads both on every allowed spawn.
    @cached_property
    def kind(self) -> str:
        """The one key set: ``persistentVolumeClaim``, ``nfs`` or ``csi``."""
        return next(iter(self.model_dump(by_alias=True, exclude_none=True)))

    @cached_property
    def settings(self) -> Mapping[str, Any]:
        """The set source's fields, in the document's spelling (read-only)."""
        return MappingProxyType(self.model_dump(by_alias=True, exclude_none=True)[self.kind])


class DatasetAccess(_Model):
    """One group's access to a dataset."""

    group: GroupName
    """An identity-provider group named in ``groups``."""
    mode: Mode = "read-only"
    """``read-only`` (the default) or ``read-write``."""


class Dataset(_Model):
    """Data mounted into the servers of entitled groups, only in the regions it lives in."""

    display_name: Text
    """Name shown on the spawn form, e.g. ``Climate reanalysis (EU)``."""
    description: Annotated[str, Field(max_length=2000)] = ""
    """One sentence shown under the name."""
    mount_path: MountPath
    """Where the dataset appears in the notebook container, e.g. ``/data/climate``."""
    regions: tuple[Slug, ...] = Field(min_length=1)
    """Keys of ``regions`` the dataset is available in; each needs a source."""
    sources: dict[Slug, DatasetSource] = Field(min_length=1)
    """The dataset's source in each of its regions, by region."""
    access: tuple[DatasetAccess, ...] = Field(min_length=1)
    """Groups whose members get the dataset mounted, and how."""

    @cached_property
    def modes(self) -> dict[str, Mode]:
        """The widest mode granted to each group, built once (the model is immutable)."""
        out: dict[str, Mode] = {}
        for grant in self.access:
            if out.get(grant.group) != "read-write":
                out[grant.group] = grant.mode
        return out


# -- the decision ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetMount:
    """One dataset a spawn mounts, with the source of the spawn's region."""

    dataset: str
    region: str
    mount_path: str
    mode: Mode
    source_kind: str
    """``persistentVolumeClaim``, ``nfs`` or ``csi``."""
    source: Mapping[str, Any]
    """That source's settings, as the policy spells them."""

    @property
    def read_only(self) -> bool:
        return self.mode == "read-only"


@dataclass(frozen=True, slots=True)
class RegionDatasets:
    """The datasets of one region, indexed for :func:`dataset_mounts`."""

    by_group: Mapping[str, tuple[tuple[int, Mode], ...]]
    """For each group with access: (position in the document, mode) of each dataset."""
    mounts: tuple[Mapping[str, DatasetMount], ...]
    """By position: the mount of that dataset here, by mode (built once, shared by plans)."""


def index_datasets(policy: Policy) -> dict[str, RegionDatasets]:
    """Per region, who may mount what: :attr:`Policy.dataset_index` builds this once."""
    out: dict[str, RegionDatasets] = {}
    for region in policy.regions:
        by_group: dict[str, list[tuple[int, Mode]]] = {}
        mounts: list[Mapping[str, DatasetMount]] = []
        for name, dataset in policy.datasets.items():
            source = dataset.sources.get(region)
            if region not in dataset.regions or source is None:
                continue
            for group, mode in dataset.modes.items():
                by_group.setdefault(group, []).append((len(mounts), mode))
            mounts.append(
                MappingProxyType(
                    {
                        mode: DatasetMount(
                            name, region, dataset.mount_path, mode, source.kind, source.settings
                        )
                        for mode in ("read-only", "read-write")
                    }
                )
            )
        if mounts:
            frozen = {g: tuple(entries) for g, entries in by_group.items()}
            out[region] = RegionDatasets(MappingProxyType(frozen), tuple(mounts))
    return out


def dataset_mounts(policy: Policy, groups: Iterable[str], region: str) -> tuple[DatasetMount, ...]:
    """The datasets a spawn in ``region`` by a member of ``groups`` mounts, in document order.

    A group's access counts only in the regions the group grants (``groups.<g>.regions``);
    the most any counting group grants wins, so one read-write grant makes the mount
    writable. A dataset that does not name ``region`` is never mounted there.
    """
    here = policy.dataset_index.get(region)
    if here is None:
        return ()
    grants = policy.index.grants
    found: dict[int, Mode] = {}
    for group in groups:
        if group in grants and region in grants[group][1]:
            for position, mode in here.by_group.get(group, ()):
                if found.get(position) != "read-write":
                    found[position] = mode
    return tuple(here.mounts[p][found[p]] for p in sorted(found))


# -- checks across sections --------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> Iterator[tuple[int, str]]:
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield i, item


def _usable_regions(raw: Mapping[str, Any], group: dict[str, Any]) -> set[str]:
    """Regions where some profile the group grants may run (and the group grants)."""
    profiles = _mapping(raw.get("profiles"))
    granted = {r for _, r in _strings(group.get("regions"))}
    runnable = {
        r
        for _, p in _strings(group.get("profiles"))
        for _, r in _strings(_mapping(profiles.get(p)).get("regions"))
    }
    return granted & runnable


def check_datasets(raw: Mapping[str, Any], source: SourceMap) -> list[Problem]:
    """Every dataset that names nothing, lacks a source, or grants access that is never used."""
    problems: list[Problem] = []
    datasets = raw.get("datasets")
    if not isinstance(datasets, dict):
        return problems  # absent, or malformed and reported by the model
    regions = list(_mapping(raw.get("regions")))
    groups = _mapping(raw.get("groups"))
    paths: dict[tuple[str, str], str] = {}

    def say(path: Path, message: str, key: bool = False) -> None:
        problems.append(source.problem(path, message, key=key))

    for name, dataset in datasets.items():
        if not isinstance(dataset, dict):
            continue
        here: Path = ("datasets", name)
        named = [r for _, r in _strings(dataset.get("regions"))]
        sources = dataset.get("sources")
        for i, region in _strings(dataset.get("regions")):
            if region not in regions:
                listing = f"defined: {', '.join(regions) or 'none'}"
                say((*here, "regions", i), unknown("region", region, regions, listing))
            elif isinstance(sources, dict) and region not in sources:
                say(
                    (*here, "sources"),
                    f"has no source for region {region!r}, which the dataset names; add "
                    f"sources.{region} with one of {', '.join(SOURCE_KINDS)}, or remove "
                    f"{region!r} from regions",
                )
        for region in _mapping(sources):
            if region not in named:
                say(
                    (*here, "sources", region),
                    f"is a source for region {region!r}, which the dataset does not name in "
                    f"regions ({', '.join(named) or 'none'}); it would never be mounted",
                    key=True,
                )
        mount = dataset.get("mountPath")
        for region in named:
            other = paths.setdefault((region, str(mount)), name)
            if isinstance(mount, str) and other != name:
                say(
                    (*here, "mountPath"),
                    f"{mount} is also the mount path of dataset {other!r} in region {region!r}",
                )
                break
        access = dataset.get("access")
        seen: set[str] = set()
        for i, grant in enumerate(access if isinstance(access, list | tuple) else ()):
            group = grant.get("group") if isinstance(grant, dict) else None
            if not isinstance(group, str):
                continue
            where: Path = (*here, "access", i, "group")
            if group in seen:
                say(where, f"group {group!r} is listed twice")
            seen.add(group)
            if group not in groups:
                listing = ", ".join(groups) or "none (the groups section is empty)"
                say(where, unknown("group", group, list(groups), f"defined: {listing}"))
                continue
            usable = _usable_regions(raw, _mapping(groups[group]))
            if named and not usable & set(named):
                say(
                    where,
                    f"group {group!r} can run servers in "
                    f"{', '.join(sorted(usable)) or 'no region'}, and dataset {name!r} is only "
                    f"in {', '.join(named)}; the grant can never be used",
                )
    return problems


# The policy model names Dataset only for type checkers (this module imports the
# model's field types); resolve the forward reference now that Dataset exists.
Policy.model_rebuild()

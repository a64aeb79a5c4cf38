"""Checks that relate one part of a policy to another.

They run on the raw document rather than the typed model so that a broken
profile does not hide a group that names a region which does not exist: the
admin gets every problem in one run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from .problems import Path, Problem
from .yamlsource import SourceMap


def unknown(what: str, word: str, choices: list[str], listing: str) -> str:
    """``unknown region 'eu-wst'; did you mean 'eu-west'? defined: eu-west, us``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {what} {word!r}{hint} {listing}"


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    return value if isinstance(value, dict) else {}


def _entries(value: Any) -> Iterator[tuple[int, str]]:
    if isinstance(value, tuple | list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield i, item


def _gpu_count(profile: Any) -> int:
    gpu = profile.get("gpu") if isinstance(profile, dict) else None
    count = gpu.get("count") if isinstance(gpu, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


class _Checker:
    def __init__(self, raw: Mapping[str, Any], source: SourceMap) -> None:
        self.raw = raw
        self.source = source
        self.problems: list[Problem] = []

    def ref(self, path: Path, name: str, section: str, what: str, *, key: bool = False) -> bool:
        if not isinstance(self.raw.get(section, {}), dict):
            return False  # the section itself is malformed, and reported as such
        defined = list(_section(self.raw, section))
        if name in defined:
            return True
        listing = ", ".join(defined) if defined else f"none (the {section} section is empty)"
        self.problems.append(
            self.source.problem(path, unknown(what, name, defined, f"defined: {listing}"), key=key)
        )
        return False

    def run(self) -> list[Problem]:
        profiles = _section(self.raw, "profiles")
        for pname, profile in profiles.items():
            if not isinstance(profile, dict):
                continue
            here = ("profiles", pname)
            if isinstance(profile.get("channel"), str):
                self.ref((*here, "channel"), profile["channel"], "channels", "channel")
            gpu = profile.get("gpu")
            if isinstance(gpu, dict) and isinstance(gpu.get("type"), str):
                self.ref((*here, "gpu", "type"), gpu["type"], "gpuTypes", "GPU type")
            for i, region in _entries(profile.get("regions")):
                self.ref((*here, "regions", i), region, "regions", "region")
            self._no_repeats((*here, "regions"), profile.get("regions"))
        for gname, group in _section(self.raw, "groups").items():
            if isinstance(group, dict):
                self._group(gname, group, profiles)
        self._one_way_per_cluster()
        self._sharing()
        self._one_adopting_region()
        return self.problems

    def _sharing(self) -> None:
        # A rule for a group that does not exist gives no one the right to share, and a
        # recipient group that does not exist lets no one receive: both are typos.
        rules = _section(_section(self.raw, "sharing"), "groups")
        for gname, rule in rules.items():
            here: Path = ("sharing", "groups", gname)
            self.ref(here, gname, "groups", "group", key=True)
            if isinstance(rule, dict):
                for i, group in _entries(rule.get("withGroups")):
                    self.ref((*here, "withGroups", i), group, "groups", "group")
                self._no_repeats((*here, "withGroups"), rule.get("withGroups"))
                self._no_repeats((*here, "withUsers"), rule.get("withUsers"))

    def _one_adopting_region(self) -> None:
        # Adopted claims carry no region in their name: adopted in two regions, one volume
        # would follow its user from one region to the other.
        adopting = [
            name
            for name, region in _section(self.raw, "regions").items()
            if isinstance(region, dict) and region.get("adoptClaims") is not None
        ]
        for name in adopting[1:]:
            self.problems.append(
                self.source.problem(
                    ("regions", name, "adoptClaims"),
                    f"region {adopting[0]!r} already adopts existing claims; only one region "
                    "may, or a volume would follow its user from one region to another",
                )
            )

    def _one_way_per_cluster(self) -> None:
        # A cluster name is what the audit trail records and what keys the hub's reflectors:
        # two regions may share a cluster, but then it must be the same API server.
        first: dict[str, tuple[str, dict[str, Any]]] = {}
        for rname, region in _section(self.raw, "regions").items():
            cluster = region.get("cluster") if isinstance(region, dict) else None
            if not isinstance(cluster, dict) or not isinstance(cluster.get("name"), str):
                continue
            way = {
                k: cluster.get(k)
                for k in ("kubeconfigSecret", "kubeconfig", "server", "tokenSecret")
            }
            earlier, earlier_way = first.setdefault(cluster["name"], (rname, way))
            if earlier_way != way:
                self.problems.append(
                    self.source.problem(
                        ("regions", rname, "cluster"),
                        f"names cluster {cluster['name']!r} as region {earlier!r} does, but "
                        "reaches it differently; one cluster name means one API server: give "
                        "the same kubeconfigSecret, kubeconfig or server and tokenSecret, or "
                        "another name",
                    )
                )

    def _no_repeats(self, path: Path, value: Any) -> None:
        seen: set[str] = set()
        for i, item in _entries(value):
            if item in seen:
                self.problems.append(self.source.problem((*path, i), f"{item!r} is listed twice"))
            seen.add(item)

    def _group(self, gname: str, group: dict[str, Any], profiles: dict[str, Any]) -> None:
        here: Path = ("groups", gname)
        regions = {r for _, r in _entries(group.get("regions"))}
        for i, region in _entries(group.get("regions")):
            self.ref((*here, "regions", i), region, "regions", "region")
        self._no_repeats((*here, "regions"), group.get("regions"))
        self._no_repeats((*here, "profiles"), group.get("profiles"))
        quota = group.get("gpuQuota", 0)
        per_user = group.get("perUserGpuLimit")
        for i, pname in _entries(group.get("profiles")):
            if not self.ref((*here, "profiles", i), pname, "profiles", "profile"):
                continue
            profile = profiles[pname]
            if not isinstance(profile, dict):
                continue
            allowed = {r for _, r in _entries(profile.get("regions"))}
            if regions and allowed and not regions & allowed:
                self.problems.append(
                    self.source.problem(
                        (*here, "profiles", i),
                        f"profile {pname!r} may run only in {', '.join(sorted(allowed))}, none "
                        f"of which this group grants ({', '.join(sorted(regions))}); the grant "
                        "can never be used",
                    )
                )
            count = _gpu_count(profile)
            # Out-of-range numbers are the model's to report; only judge valid ones.
            if count and isinstance(quota, int) and 0 <= quota < count:
                self.problems.append(
                    self.source.problem(
                        (*here, "gpuQuota"),
                        f"is {quota} but granted profile {pname!r} needs {count} GPU(s); "
                        f"set gpuQuota to at least {count}",
                    )
                )
            if count and isinstance(per_user, int) and 1 <= per_user < count:
                self.problems.append(
                    self.source.problem(
                        (*here, "perUserGpuLimit"),
                        f"is {per_user} but granted profile {pname!r} needs {count} GPU(s)",
                    )
                )
        if group.get("profiles") and not regions:
            self.problems.append(
                self.source.problem(
                    (*here, "regions"), "grants profiles but no region to run them in"
                )
            )


def check_references(raw: Mapping[str, Any], source: SourceMap) -> list[Problem]:
    """Every reference in ``raw`` that names nothing, and every grant that cannot be used."""
    return _Checker(raw, source).run()

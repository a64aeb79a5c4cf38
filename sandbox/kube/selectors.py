"""Kubernetes label and field selectors: parsing and matching.

Follows apimachinery's grammar: equality (``a=b``, ``a==b``, ``a!=b``) and,
for labels, set-based requirements (``a in (x,y)``, ``a notin (x)``, ``a``,
``!a``). Field selectors support equality on the fields each resource
allows (:data:`FIELD_LABELS`, as each registry's ``GetAttrs`` lists them);
any other field is refused as a real API server refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_SET = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


class SelectorError(ValueError):
    """A selector the API server would reject with 400 Bad Request."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # in, notin, exists, !exists, =, !=
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin also match objects without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text:
        return ()
    out = []
    for part in _split(text):
        if m := _SET.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            out.append(Requirement(m["key"], m["op"], values))
        elif m := _EQ.match(part):
            out.append(
                Requirement(m["key"], "!=" if m["op"] == "!=" else "=", frozenset({m["value"]}))
            )
        elif m := _EXISTS.match(part):
            out.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
    return tuple(out)


def parse_field_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text:
        return ()
    out = []
    for part in _split(text):
        m = _EQ.match(part)
        if m is None:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        out.append(Requirement(m["key"], "!=" if m["op"] == "!=" else "=", frozenset({m["value"]})))
    return tuple(out)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    if path == "source":  # an Event's `source` field label is its source component
        path = "source.component"
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_META = frozenset({"metadata.name", "metadata.namespace"})
FIELD_LABELS: dict[str, frozenset[str]] = {
    "pods": _META
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "nodes": _META | {"spec.unschedulable"},
    "namespaces": _META | {"status.phase"},
    "secrets": _META | {"type"},
    "services": _META | {"spec.clusterIP", "spec.type"},
    "events": _META
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
}
"""Field selectors each resource supports; the rest support only ``metadata.*``."""


def check_field_labels(plural: str, fields: tuple[Requirement, ...]) -> None:
    allowed = FIELD_LABELS.get(plural, _META)
    for requirement in fields:
        if requirement.key not in allowed:
            raise SelectorError(f"field label not supported: {requirement.key}")


@dataclass(frozen=True, slots=True)
class Selector:
    """A compiled label plus field selector over whole objects."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None) -> Selector:
        return cls(parse_label_selector(label_selector), parse_field_selector(field_selector))

    def for_resource(self, plural: str) -> Selector:
        """This selector, checked against the field labels ``plural`` supports."""
        check_field_labels(plural, self.fields)
        return self

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        return all((field_value(obj, r.key) in r.values) == (r.op == "=") for r in self.fields)


Predicate = Callable[[Mapping[str, Any] | None], bool]

"""A container's environment, built as the kubelet builds it, from data handed in.

``env`` in order (each value may use ``$(VAR)`` of those before it), after
``envFrom`` with its prefixes; field references (``metadata.*``, labels and
annotations, ``spec.nodeName``, ``status.podIP``…), Secret and ConfigMap keys
(missing ones fail the container unless optional) and resource fields. The
only reading is through the ``read`` function passed in, so the rules are
testable without an API server.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
Reader = Callable[[str, str, str, bool], Awaitable[dict[str, bytes]]]
"""``read(kind, namespace, name, optional)``: a Secret's (kind "secret") or ConfigMap's
(kind "configmap") data, decoded; raises :class:`ConfigError` when it is missing and
not optional."""


class ConfigError(Exception):
    """The container cannot be started as configured (CreateContainerConfigError)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables expand, $$ escapes, the rest stays."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, text)


def field_value(pod: dict[str, Any], ip: str, path: str) -> str:
    """A ``fieldRef``'s value for a pod running at ``ip``."""
    meta = pod["metadata"]
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": ip,
        "status.hostIP": "127.0.0.1",
        "status.podIPs": ip,
    }
    return values.get(path, "")


async def container_env(
    pod: dict[str, Any], container: dict[str, Any], ip: str, read: Reader
) -> dict[str, str]:
    env: dict[str, str] = {}
    ns = pod["metadata"]["namespace"]
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if ref := source.get("secretRef"):
            data = await read("secret", ns, ref["name"], bool(ref.get("optional")))
        elif ref := source.get("configMapRef"):
            data = await read("configmap", ns, ref["name"], bool(ref.get("optional")))
        else:
            continue
        env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        source = var.get("valueFrom") or {}
        if ref := source.get("fieldRef"):
            env[name] = field_value(pod, ip, ref["fieldPath"])
        elif (ref := source.get("secretKeyRef")) or (ref := source.get("configMapKeyRef")):
            kind, label = (
                ("secret", "Secret") if "secretKeyRef" in source else ("configmap", "ConfigMap")
            )
            data = await read(kind, ns, ref["name"], bool(ref.get("optional")))
            if ref["key"] in data:
                env[name] = data[ref["key"]].decode()
            elif not ref.get("optional"):
                raise ConfigError(
                    "CreateContainerConfigError",
                    f"couldn't find key {ref['key']} in {label} {ns}/{ref['name']}",
                )
        elif source.get("resourceFieldRef"):
            resource = source["resourceFieldRef"]["resource"]
            kind, _, what = resource.partition(".")
            env[name] = str((container.get("resources") or {}).get(kind, {}).get(what, "0"))
        else:
            env[name] = ""
    return env

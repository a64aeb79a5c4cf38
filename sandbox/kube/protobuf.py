"""Request bodies in Kubernetes' protobuf encoding, for the kinds clients send that way.

client-go's typed clientsets write built-in kinds as
``application/vnd.kubernetes.protobuf`` (and accept JSON back). Helm stores its
releases through such a client, so a Secret (and a ConfigMap, with Helm's
ConfigMap driver) and the DeleteOptions of a delete arrive in protobuf. The
encoding is the ``k8s\\0`` magic and a ``runtime.Unknown`` envelope around the
object's message (``k8s.io/api/core/v1/generated.proto``,
``k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto``). This module reads the
protobuf wire format for exactly those messages and gives their JSON form; any
other kind, or an ObjectMeta field a client should not send, is refused with
415, naming what is missing, rather than guessed at. A body that is not valid
protobuf for its message (truncated, a field of the wrong wire type, a string
that is not UTF-8) is a 400, as the real server answers a body it cannot decode.
Answers are always JSON, which these clients accept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
Fields = dict[int, list[Any]]


class Unsupported(ValueError):
    """A protobuf body the emulator cannot read (answered 415)."""


class Malformed(ValueError):
    """A body that is not a valid protobuf message of its kind (answered 400)."""


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise Malformed("a protobuf field has the wrong wire type (a varint, not bytes)")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int):
        raise Malformed("a protobuf field has the wrong wire type (bytes, not a varint)")
    return value


def _str(value: Any) -> str:
    try:
        return _bytes(value).decode()
    except UnicodeDecodeError:
        raise Malformed("a protobuf string field is not valid UTF-8") from None


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise Malformed("a truncated protobuf varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def fields(data: bytes) -> Fields:
    """The wire-format fields of one message: number -> values (ints or bytes)."""
    out: Fields = {}
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, at = _varint(data, at)
        elif wire in (1, 2, 5):
            size = 8 if wire == 1 else 4 if wire == 5 else None
            if size is None:
                size, at = _varint(data, at)
            if at + size > len(data):
                raise Malformed(f"protobuf field {number} runs past the end of the body")
            value, at = data[at : at + size], at + size
        else:
            raise Malformed(f"protobuf wire type {wire} is not used by Kubernetes messages")
        out.setdefault(number, []).append(value)
    return out


def _text(f: Fields, n: int) -> str | None:
    """A string field; Go's protobuf writes empty strings that its JSON omits, so they are
    read as absent."""
    return (_str(f[n][-1]) or None) if n in f else None


def _map(f: Fields, n: int, value: Callable[[bytes], Any]) -> dict[str, Any]:
    entries = {}
    for raw in f.get(n, []):
        entry = fields(_bytes(raw))
        entries[_text(entry, 1) or ""] = value(_bytes(entry[2][-1]) if 2 in entry else b"")
    return entries


def _meta(raw: Any) -> dict[str, Any]:
    f = fields(_bytes(raw))
    refused = {13: "ownerReferences", 17: "managedFields"}
    if named := [name for n, name in refused.items() if n in f]:
        raise Unsupported(f"metadata.{named[0]} in protobuf is not read by the emulator; send JSON")
    meta: dict[str, Any] = {}
    for n, key in ((1, "name"), (2, "generateName"), (3, "namespace"), (6, "resourceVersion")):
        if (value := _text(f, n)) is not None:
            meta[key] = value
    for n, key in ((11, "labels"), (12, "annotations")):
        if n in f:
            meta[key] = _map(f, n, _str)
    if 14 in f:
        meta["finalizers"] = [_str(v) for v in f[14]]
    return meta


def _secret(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": _meta(f[1][-1]) if 1 in f else {}}
    if 2 in f:
        obj["data"] = _map(f, 2, lambda b: base64.b64encode(b).decode())
    if (kind := _text(f, 3)) is not None:
        obj["type"] = kind
    if 4 in f:
        obj["stringData"] = _map(f, 4, _str)
    if 5 in f:
        obj["immutable"] = bool(_int(f[5][-1]))
    return obj


def _config_map(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": _meta(f[1][-1]) if 1 in f else {}}
    if 2 in f:
        obj["data"] = _map(f, 2, _str)
    if 3 in f:
        obj["binaryData"] = _map(f, 3, lambda b: base64.b64encode(b).decode())
    if 4 in f:
        obj["immutable"] = bool(_int(f[4][-1]))
    return obj


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _delete_options(f: Fields) -> dict[str, Any]:
    options: dict[str, Any] = {"kind": "DeleteOptions"}
    if 1 in f:
        options["gracePeriodSeconds"] = _signed(_int(f[1][-1]))
    if 2 in f:
        pre = fields(_bytes(f[2][-1]))
        options["preconditions"] = {k: _text(pre, n) for n, k in ((1, "uid"),
                                    (2, "resourceVersion")) if n in pre}  # fmt: skip
    if 3 in f:
        options["orphanDependents"] = bool(_int(f[3][-1]))
    if (policy := _text(f, 4)) is not None:
        options["propagationPolicy"] = policy
    if 5 in f:
        options["dryRun"] = [_str(v) for v in f[5]]
    return options


_KINDS: dict[tuple[str, str], Callable[[Fields], dict[str, Any]]] = {
    ("v1", "Secret"): _secret,
    ("v1", "ConfigMap"): _config_map,
    ("meta.k8s.io/v1", "DeleteOptions"): _delete_options,
    ("v1", "DeleteOptions"): _delete_options,
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a kind in :data:`_KINDS`."""
    if not body.startswith(MAGIC):
        raise Malformed("a protobuf body must start with the k8s\\0 magic")
    envelope = fields(body[len(MAGIC) :])
    type_meta = fields(_bytes(envelope[1][-1])) if 1 in envelope else {}
    api_version, kind = _text(type_meta, 1) or "", _text(type_meta, 2) or ""
    if _text(envelope, 3):
        raise Unsupported(f"protobuf content encoding {_text(envelope, 3)!r} is not supported")
    reader = _KINDS.get((api_version, kind))
    if reader is None:
        raise Unsupported(
            f"the emulator reads protobuf only for Secrets, ConfigMaps and DeleteOptions, not "
            f"{api_version} {kind}; send application/json"
        )
    obj = reader(fields(_bytes(envelope[2][-1])) if 2 in envelope else {})
    if kind != "DeleteOptions":
        obj = {"apiVersion": api_version, "kind": kind, **obj}
    return obj

"""Load a policy file: every problem at once, each with file, line, path and remedy."""

from __future__ import annotations

import hashlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .datasets import check_datasets
from .model import Policy
from .problems import Path, PolicyError, Problem
from .references import check_references, unknown
from .yamlsource import MAX_BYTES, SourceMap, YamlProblems, read_yaml


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A valid policy with where it came from and the SHA-256 of its bytes (for audit)."""

    policy: Policy
    source: str
    sha256: str


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _model_at(loc: Path) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc``, if it is one."""
    tp: Any = Policy
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if part in (n, f.alias)), None)
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (tuple, list):
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, tuple | list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"the text {value!r}"
    return type(value).__name__


def _describe(error: ErrorDetails, source: SourceMap) -> Problem:
    loc: Path = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if loc and loc[-1] == "[key]":
        return source.problem(loc[:-1], error["msg"], key=True)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        allowed = [f.alias or n for n, f in model.model_fields.items()] if model else []
        return source.problem(
            loc, unknown("key", key, allowed, f"allowed here: {', '.join(allowed)}"), key=True
        )
    if kind == "missing":
        return source.problem(loc[:-1], f"required key {loc[-1]!r} is missing")
    if kind == "string_type":
        hint = ""
        if isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off/true/false as booleans: quote it)"
        elif isinstance(value, int | float):
            hint = ' (quote it, e.g. "2026.10": YAML reads it as a number)'
        return source.problem(loc, f"expected text, got {_kind(value)}{hint}")
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return source.problem(loc, f"expected a whole number, got {_kind(value)}")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return source.problem(loc, f"expected a mapping (key: value), got {_kind(value)}")
    if kind in ("tuple_type", "list_type"):
        return source.problem(loc, f"expected a list, got {_kind(value)}")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return source.problem(
            loc, f"{error['msg'].replace('Input should be', 'must be')}, got {value!r}"
        )
    if kind == "too_short":
        return source.problem(loc, "must not be empty")
    msg = error["msg"]
    if kind == "literal_error":
        msg = f"{msg.replace('Input should be', 'must be')}, got {value!r}"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    return source.problem(loc, msg)


def _echo(error: ErrorDetails, errors: list[ErrorDetails]) -> bool:
    """A length error on a list whose items failed: the item errors already say it."""
    loc = tuple(error["loc"])
    return error["type"] == "too_short" and any(
        len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors
    )


def parse_policy(data: str | bytes, file: str = "<policy>") -> LoadedPolicy:
    """Validate a policy document given as text; raise :class:`PolicyError` with every problem."""
    raw_bytes = data.encode() if isinstance(data, str) else data
    try:
        raw, source, problems = read_yaml(raw_bytes)
    except YamlProblems as exc:
        raise PolicyError(file, exc.problems) from None
    if not isinstance(raw, dict):
        raise PolicyError(
            file,
            [
                source.problem(
                    (),
                    f"the document is {_kind(raw)}; a policy is a mapping with the keys "
                    "regions, gpuTypes, channels, profiles and groups",
                )
            ],
        )
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems.extend(_describe(e, source) for e in errors if not _echo(e, errors))
    problems.extend(check_references(raw, source))
    problems.extend(check_datasets(raw, source))
    if problems or policy is None:
        raise PolicyError(file, problems)
    policy.index  # noqa: B018 - build the decision index at load, not on the first spawn
    policy.dataset_index  # noqa: B018 - and the datasets index
    return LoadedPolicy(policy, file, hashlib.sha256(raw_bytes).hexdigest())


def load_policy(path: str | FsPath) -> LoadedPolicy:
    """Read and validate the policy file at ``path``."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            # One byte past the limit is enough to say the file is too large.
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise PolicyError(name, [Problem((), f"cannot read the file: {exc.strerror}")]) from None
    return parse_policy(data, name)


_CACHE: dict[str, tuple[float, LoadedPolicy]] = {}


def cached_policy(path: str | FsPath) -> LoadedPolicy:
    """The policy at ``path``, read again only when the file changes.

    For code that consults the policy on every request (spawns, logins): the
    chart rolls the policy as a ConfigMap, so a new file means a new mtime.
    An invalid or unreadable file is never cached: every call raises its
    :class:`PolicyError`, the one error type callers need to catch.
    """
    key = str(path)
    try:
        mtime = FsPath(key).stat().st_mtime
    except OSError as exc:
        _CACHE.pop(key, None)
        raise PolicyError(key, [Problem((), f"cannot read the file: {exc.strerror}")]) from None
    cached = _CACHE.get(key)
    if cached is None or cached[0] != mtime:
        _CACHE[key] = (mtime, load_policy(key))
    return _CACHE[key][1]

"""A sink's options as typed fields, read from its constructor; checked before it is built.

The constructor's signature is the one definition of what a sink accepts: each
parameter that can be passed by name is an option, typed by its annotation,
required when it has no default. A subclass that passes ``**options`` on to
its base (Loki, OpenSearch and webhooks to ``HttpSink``) also accepts its base's.
Keyword-only parameters (after ``*``) are for code, not configuration.
Each option's meaning is in the class's ``option_help``, which the reference
page is generated from.

Like dask-gateway's user options, unknown keys are rejected first, then each
value is checked against its type; every error names the sink and the option,
and lists what is accepted. An error shows a value's type, never the value
(a mapping's offending key is named), so a secret never reaches a log. A
sink's own rules across options (a URL's scheme, files that must exist) stay
in its constructor.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

from .base import SinkConfigError

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a sink: its name, type (an annotation), default and meaning."""

    name: str
    kind: Any
    default: Any
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """The type in words, for errors and the reference."""
        return _describe(self.kind)

    def accepts(self, value: Any) -> bool:
        return _accepts(self.kind, value)


def _members(kind: Any) -> tuple[Any, ...]:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _describe(kind: Any) -> str:
    names = [_describe_one(k) for k in _members(kind) if k is not type(None)]
    return " or ".join(names) or "anything"


def _describe_one(kind: Any) -> str:
    if typing.get_origin(kind) is dict:
        key, value = (_describe(k) for k in typing.get_args(kind))
        return f"a mapping of {key} to {value}"
    return {
        str: "text",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }.get(kind, "anything")


def _accepts(kind: Any, value: Any) -> bool:
    return any(_accepts_one(k, value) for k in _members(kind))


def _accepts_one(kind: Any, value: Any) -> bool:
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:  # YAML's true is not a port number
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if typing.get_origin(kind) is dict:
        key, item = typing.get_args(kind)
        return isinstance(value, dict) and all(
            _accepts(key, k) and _accepts(item, v) for k, v in value.items()
        )
    return True  # an annotation we do not model (a third-party sink's own type)


def options_of(cls: type) -> list[Option]:
    """The options of sink class ``cls``, in signature order, its base's after its own."""
    found: dict[str, Option] = {}
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        helps.update(vars(klass).get("option_help", {}))
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        hints = typing.get_type_hints(init)
        more = False
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                more = True
            elif (
                parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                and parameter.name not in found
            ):
                found[parameter.name] = Option(
                    parameter.name,
                    hints.get(parameter.name, Any),
                    parameter.default,
                    " ".join(helps.get(parameter.name, "").split()),
                )
        if not more:
            break
    return list(found.values())


def check_options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``cls``'s typed fields; raises SinkConfigError naming the
    sink, the option, and what is accepted."""
    fields = {option.name: option for option in options_of(cls)}
    label = options.get("name") or getattr(cls, "name", cls.__name__)
    accepted = ", ".join(fields)
    for key in options:
        if key not in fields:
            raise SinkConfigError(
                f"audit sink {label}: unknown option {key!r}; {cls.__name__} accepts: {accepted}"
            )
    for option in fields.values():
        if option.required and option.name not in options:
            raise SinkConfigError(
                f"audit sink {label}: {option.name} is required ({option.describe()}); "
                f"{cls.__name__} accepts: {accepted}"
            )
    for key, value in options.items():
        option = fields[key]
        if not option.accepts(value):
            raise SinkConfigError(f"audit sink {label}: {_mismatch(key, option.kind, value)}")
    return dict(options)


def _mismatch(where: str, kind: Any, value: Any) -> str:
    """Where ``value`` fails ``kind`` and what it is, by type only: a wrong-typed option
    is often a secret in the wrong place (an API key beside a retry count in
    ``headers``), and configuration errors end up in logs. A mapping names the key."""
    if isinstance(value, dict):
        for member in _members(kind):
            if typing.get_origin(member) is not dict:
                continue
            key_kind, item_kind = typing.get_args(member)
            for key, item in value.items():
                if not _accepts(key_kind, key):
                    return (
                        f"{where}: expected {_describe(member)}, "
                        f"got a key of type {type(key).__name__}"
                    )
                if not _accepts(item_kind, item):
                    return _mismatch(f"{where}[{key!r}]", item_kind, item)
    return f"{where}: expected {_describe(kind)}, got {type(value).__name__}"

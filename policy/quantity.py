"""Kubernetes resource quantities (``500m``, ``4Gi``, ``1.5``) as exact decimals.

The grammar is the one in apimachinery's ``resource.Quantity``; values are kept
as :class:`~decimal.Decimal` so ``0.1 + 0.2`` style drift never reaches a pod
spec, and the admin's original spelling is kept for the manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
_RE = re.compile(PATTERN)
_EXAMPLES = "e.g. 500m, 2, 1.5 for CPU; 512Mi, 4Gi, 1G for memory"


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


@lru_cache(maxsize=1024)  # a policy names few quantities, and every spawn converts them
def parse_quantity(text: str) -> Decimal:
    """Return the value of a Kubernetes quantity string.

    Raises :class:`QuantityError` with an example of the accepted forms.
    """
    match = _RE.fullmatch(text.strip())
    if match is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity ({_EXAMPLES})")
    number, _, suffix = match.groups()
    sign = -1 if text.strip().startswith("-") else 1
    try:
        value = Decimal(number) * sign
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{text!r} is not a Kubernetes quantity ({_EXAMPLES})") from exc
    suffix = suffix or ""
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix in _DECIMAL:
        return value * _DECIMAL[suffix]
    return value.scaleb(int(suffix[1:]))


@dataclass(frozen=True, slots=True)
class Quantity:
    """A positive quantity as written (``text``) and as a number (``value``)."""

    text: str
    value: Decimal

    @classmethod
    def of(cls, raw: Any) -> Quantity:
        """Build from a YAML scalar: a quantity string or a plain number."""
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise PydanticCustomError(
                "quantity_type",
                f"expected a Kubernetes quantity ({_EXAMPLES}), got {_yaml_kind(raw)}",
            )
        text = raw if isinstance(raw, str) else repr(raw)
        try:
            value = parse_quantity(text)
        except QuantityError as exc:
            raise PydanticCustomError("quantity", str(exc)) from None
        if value <= 0:
            raise PydanticCustomError("quantity_positive", f"must be greater than zero, got {text}")
        return cls(text=text.strip(), value=value)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.of, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "string", "pattern": PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": f"A Kubernetes quantity ({_EXAMPLES}).",
        }


def _yaml_kind(value: Any) -> str:
    # Say what the admin wrote in YAML terms: the loader reads lists as tuples.
    names = {"tuple": "a list", "list": "a list", "dict": "a mapping", "NoneType": "null"}
    return names.get(type(value).__name__, type(value).__name__)

"""The conventions every section of the policy document follows, in one place.

camelCase document keys only (accepting field names too would let ``gpu_quota`` pass
validation yet be missed by the reference checks), frozen, strict, and each field's
docstring as its description in the generated schema. A module of its own so that every
section (model.py and the sections it imports) can use it without an import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class PolicyModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        populate_by_name=False,
        use_attribute_docstrings=True,
    )

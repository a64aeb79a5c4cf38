"""What a user may ask for, from the spawn form or the REST API, and nothing else.

``user_options`` is untrusted input. Only ``profile``, ``region`` and
``version`` are accepted, as short printable strings: control, zero-width,
bidirectional and other invisible characters and lone surrogates are refused,
so a look-alike name can neither select a profile nor reach the audit trail
as bytes a store cannot hold. Keys that would set KubeSpawner's
own settings (image, resources, placement, volumes…) are refused as
forbidden (403), and anything else malformed as a bad request (400), before
any decision is made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sovereign_hub.reporting import MAX_OPTION_LENGTH, OPTION_KEYS

ALLOWED = OPTION_KEYS
MAX_VALUE_LENGTH = MAX_OPTION_LENGTH
MAX_KEYS = 16
MAX_BYTES = 4096

# user_options keys that name KubeSpawner settings: someone trying to place or
# size their own pod rather than choose a profile.
KUBESPAWNER_OVERRIDES = frozenset(
    {
        "image",
        "image_pull_policy",
        "image_pull_secrets",
        "cmd",
        "args",
        "environment",
        "cpu_limit",
        "cpu_guarantee",
        "mem_limit",
        "mem_guarantee",
        "extra_resource_limits",
        "extra_resource_guarantees",
        "node_selector",
        "node_affinity_required",
        "node_affinity_preferred",
        "tolerations",
        "volumes",
        "volume_mounts",
        "storage_class",
        "storage_capacity",
        "pvc_name_template",
        "uid",
        "gid",
        "fs_gid",
        "privileged",
        "allow_privilege_escalation",
        "container_security_context",
        "pod_security_context",
        "extra_pod_config",
        "extra_container_config",
        "extra_containers",
        "init_containers",
        "service_account",
        "automount_service_account_token",
        "scheduler_name",
        "namespace",
        "kubespawner_override",
        "profile_list",
        "extra_labels",
        "extra_annotations",
        "lifecycle_hooks",
        "priority_class_name",
        "working_dir",
        "port",
        "ip",
    }
)


class OptionsError(Exception):
    """A refused ``user_options``: ``status`` is 400 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Choice:
    profile: str | None = None
    region: str | None = None
    version: str | None = None


def parse_user_options(options: Any) -> Choice:
    """Validate ``user_options``; raise :class:`OptionsError` naming the problem."""
    if options is None:
        return Choice()
    if not isinstance(options, Mapping):
        raise OptionsError(400, f"user_options must be an object, got {type(options).__name__}")
    if _well_formed(options):
        # What the spawn form and well-behaved clients send: short strings of allowed keys
        # only, small by construction. The full check would pass it unchanged; skipping it
        # spares a JSON encoding on every spawn.
        return Choice(**{k: v or None for k, v in options.items()})
    return checked_user_options(options)


def checked_user_options(options: Mapping[Any, Any]) -> Choice:
    """Every check of :func:`parse_user_options`, in order, with the message for each."""
    try:
        size = len(json.dumps(options, default=str))
    except (TypeError, ValueError):
        raise OptionsError(400, "user_options must be JSON data") from None
    if size > MAX_BYTES or len(options) > MAX_KEYS:
        raise OptionsError(400, f"user_options is too large ({size} bytes, {len(options)} keys)")
    forbidden = sorted(k for k in options if k in KUBESPAWNER_OVERRIDES)
    if forbidden:
        raise OptionsError(
            403,
            f"setting {', '.join(repr(k) for k in forbidden)} directly is not allowed: the image, "
            "resources and placement of your server come from the hub's policy; choose a "
            f"profile instead (allowed options: {', '.join(ALLOWED)})",
        )
    unknown = sorted(str(k) for k in options if k not in ALLOWED)
    if unknown:
        raise OptionsError(
            400,
            f"unknown option {', '.join(repr(k) for k in unknown)}; allowed: {', '.join(ALLOWED)}",
        )
    values: dict[str, str | None] = {}
    for key in ALLOWED:
        value = options.get(key)
        if value is None or value == "":
            values[key] = None
            continue
        if not isinstance(value, str):
            raise OptionsError(400, f"option {key!r} must be text, got {type(value).__name__}")
        if len(value) > MAX_VALUE_LENGTH:
            raise OptionsError(400, f"option {key!r} is longer than {MAX_VALUE_LENGTH} characters")
        if not value.isprintable():
            at, char = next((i, c) for i, c in enumerate(value) if not c.isprintable())
            raise OptionsError(
                400,
                f"option {key!r} contains a character that is not allowed (U+{ord(char):04X} at "
                f"position {at}); profile, region and version names are printable text",
            )
        values[key] = value
    return Choice(**values)


def _well_formed(options: Mapping[Any, Any]) -> bool:
    return all(
        key in ALLOWED
        and (
            value is None
            or (type(value) is str and len(value) <= MAX_VALUE_LENGTH and value.isprintable())
        )
        for key, value in options.items()
    )


def options_from_form_data(form: Mapping[str, list[str]]) -> dict[str, str]:
    """The spawn form's fields as user_options.

    The form names them ``profile``, ``region-<profile>`` and ``version-<profile>``, so
    only the chosen profile's region and version are taken.
    """

    def first(name: str) -> str | None:
        values = form.get(name) or []
        return values[0] if values else None

    profile = first("profile")
    out: dict[str, str] = {}
    if profile:
        out["profile"] = profile
        if region := first(f"region-{profile}"):
            out["region"] = region
        if version := first(f"version-{profile}"):
            out["version"] = version
    return out


def options_from_form(formdata: dict[str, list[str]], spawner: Any = None) -> dict[str, str]:
    """``Spawner.options_from_form``: JupyterHub calls it with the form data alone (and the
    spawner only when the signature names it), not as a bound method."""
    return options_from_form_data(formdata)

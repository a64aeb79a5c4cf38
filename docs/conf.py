"""Sphinx configuration: MyST Markdown, reference pages generated from code."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from sovereign_hub import __version__
from sovereign_hub.audit.schemas import schema_files
from sovereign_hub.audit.sinks import SINKS
from sovereign_hub.audit.sinks.options import options_of
from sovereign_hub.authenticator import SovereignAuthenticator
from sovereign_hub.cli import build_parser
from sovereign_hub.gateway.main import parser as gateway_parser
from sovereign_hub.policy.schema import reference_markdown
from sovereign_hub.spawner import SovereignSpawner

project = "Sovereign Hub"
author = "Sovereign Hub developers"
release = __version__
extensions = ["myst_parser"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.md"]
# The theme of JupyterHub's and Zero to JupyterHub's documentation, so the
# docs look like the ecosystem's; it bundles its assets (the build fetches nothing).
html_theme = "pydata_sphinx_theme"
html_title = "Sovereign Hub"
html_theme_options = {
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
}
html_static_path = ["_static"]


def switcher_version(release: str) -> str:
    """The version switcher's name for this build: ``dev`` for a development release,
    else ``major.minor`` (one docs site per minor release, as JupyterHub's)."""
    if ".dev" in release:
        return "dev"
    major, minor, *_ = release.split(".")
    return f"{major}.{minor}"


# The switcher lists the published versions from one JSON file that every
# version's pages fetch (docs/_static/switcher.json, published at the site's
# root). A site that publishes versions sets SOVEREIGN_DOCS_SWITCHER_URL to that
# file's URL; `make docs` names the repository's copy, so the theme checks it.
if switcher_url := os.environ.get("SOVEREIGN_DOCS_SWITCHER_URL"):
    html_theme_options["switcher"] = {
        "json_url": switcher_url,
        "version_match": switcher_version(release),
    }
    html_theme_options["navbar_end"] = ["version-switcher", *html_theme_options["navbar_end"]]
    # The theme would fetch an http(s) URL at build time; builds never reach out.
    html_theme_options["check_switcher"] = not switcher_url.startswith(("http:", "https:"))

_GENERATED = Path(__file__).parent / "_generated"


def _cli_help() -> str:
    parser = build_parser()
    sections = ["```text", parser.format_help().rstrip(), "```"]
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, group in commands.items():
        sub = group._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        for leaf, leaf_parser in sub.items():
            sections += ["", f"## `sovhub {name} {leaf}`", "", "```text"]
            sections += [leaf_parser.format_help().rstrip(), "```"]
    return "\n".join(sections) + "\n"


def _traits_table(cls: type) -> str:
    # The settings this project adds, including those of its mixins (RestrictedPods):
    # a trait's this_class names the class that defines it.
    ours = {
        name: trait
        for name, trait in cls.class_traits(config=True).items()
        if trait.this_class.__module__.startswith("sovereign_hub.")
    }
    rows = ["| setting | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, trait in sorted(ours.items()):
        help_text = " ".join((trait.help or "").split()).replace("|", "\\|")
        default = trait.default_value_repr() if not isinstance(trait.default_value, type) else ""
        rows.append(
            f"| `{cls.__name__}.{name}` | {type(trait).__name__} | `{default}` | {help_text} |"
        )
    return "\n".join(rows) + "\n"


def _audit_events() -> str:
    out = []
    for path in schema_files():
        schema = yaml.safe_load(path.read_text())
        required = set(schema.get("required", []))
        title = (
            schema["title"]
            if str(schema["version"]) == "1"
            else (f"{schema['title']} (version {schema['version']})")
        )
        out += [f"## {title}", "", f"`{schema['$id']}` (version {schema['version']})", ""]
        out += [
            " ".join(schema["description"].split()),
            "",
            "| field | type | required |",
            "| --- | --- | --- |",
        ]
        for name, spec in schema["properties"].items():
            kind = spec.get("type") or " \\| ".join(f"`{v}`" for v in spec.get("enum", []))
            out.append(f"| `{name}` | {kind} | {'yes' if name in required else ''} |")
        out.append("")
    return "\n".join(out)


def _audit_sinks() -> str:
    """Each built-in sink's options, from its constructor's typed fields and option_help."""
    out = []
    for kind, cls in SINKS.items():
        module_doc = sys.modules[cls.__module__].__doc__ or ""
        summary = " ".join(module_doc.split("\n\n")[0].split())
        out += [f"## `{kind}`", "", summary, "", "| option | type | default | meaning |"]
        out.append("| --- | --- | --- | --- |")
        for option in options_of(cls):
            default = "required" if option.required else f"`{json.dumps(option.default)}`"
            meaning = option.help.replace("|", "\\|")
            out.append(f"| `{option.name}` | {option.describe()} | {default} | {meaning} |")
        out.append("")
    return "\n".join(out)


def _values_reference(name: str = "sovereign-hub") -> str:
    """Every value of chart ``name`` from its values.schema.json, with its type, default and
    constraints."""
    import yaml

    chart = Path(__file__).parent.parent / "helm" / name
    schema = json.loads((chart / "values.schema.json").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    rows = ["| value | type | default | allowed |", "| --- | --- | --- | --- |"]

    def walk(node: dict, path: str, default: object) -> None:
        props = node.get("properties")
        if props and path not in ("policy", "examplePolicy"):
            for name, child in props.items():
                sub = default.get(name) if isinstance(default, dict) else None
                walk(child, f"{path}.{name}" if path else name, sub)
            return
        kind = node.get("type", "object" if "$ref" in node else "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        allowed = []
        if "enum" in node:
            allowed.append(", ".join(f"`{v}`" for v in node["enum"]))
        if "pattern" in node:
            allowed.append(f"pattern `{node['pattern']}`")
        for key in ("minimum", "minItems", "minLength"):
            if key in node:
                allowed.append(f"{key} {node[key]}")
        if path == "policy":
            allowed.append("the policy document (empty: `examplePolicy`): see {doc}`policy`")
        if path == "examplePolicy":
            allowed.append("the example policy used while `policy` is empty")
        shown = "" if default in (None, "", {}, []) else f"`{json.dumps(default)}`"
        if len(shown) > 60:
            shown = "(see values.yaml)"
        cell = "; ".join(allowed).replace("|", "\\|")
        rows.append(f"| `{path}` | {kind} | {shown.replace('|', '/')} | {cell} |")

    walk(schema, "", defaults)
    return "\n".join(rows) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


_GENERATED.mkdir(exist_ok=True)
_write_if_changed(_GENERATED / "policy-fields.md", reference_markdown())
_write_if_changed(_GENERATED / "cli.md", _cli_help())
_write_if_changed(
    _GENERATED / "gateway-cli.md",
    "```text\n" + gateway_parser().format_help().rstrip() + "\n```\n",
)
_write_if_changed(_GENERATED / "chart-values.md", _values_reference())
_write_if_changed(_GENERATED / "region-chart-values.md", _values_reference("sovereign-region"))
_write_if_changed(_GENERATED / "spawner-traits.md", _traits_table(SovereignSpawner))
_write_if_changed(_GENERATED / "audit-events.md", _audit_events())
_write_if_changed(_GENERATED / "audit-sinks.md", _audit_sinks())
_write_if_changed(_GENERATED / "authenticator-traits.md", _traits_table(SovereignAuthenticator))

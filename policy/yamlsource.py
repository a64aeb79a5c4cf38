"""Read a YAML document into plain data plus a map from document paths to lines.

PyYAML alone is not safe enough for a document that decides who runs what:
it keeps the last of two duplicate keys without a word, and expands alias
bombs ("billion laughs") into graphs that take exponential time to walk. This
module composes the node graph with libyaml when available, then walks it
itself so that both are caught, with the line and column of each problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from .problems import Path, Problem

MAX_BYTES = 1024 * 1024
"""Largest policy file accepted; real policies are a few kilobytes."""

MAX_NODES = 200_000
"""Largest number of YAML nodes visited, counting each alias expansion again."""

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a document stands in its file."""

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    containers: set[Path] = field(default_factory=set)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int] | None:
        """Line and column of ``path``, or of its nearest ancestor that exists.

        A mapping or list is located at its key (``ds:``), where a reader looks
        for it, rather than at its first item on the next line.
        """
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            here = path[:end]
            if here in self.containers and here in self.keys:
                return self.keys[here]
            found = self.values.get(here)
            if found is not None:
                return found
        return None

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        where = self.locate(path, key=key)
        return Problem(path, message, *(where or (None, None)))


class YamlProblems(Exception):
    """The text could not be read as one YAML mapping; ``problems`` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


@dataclass
class _Walker:
    loader: yaml.SafeLoader
    source: SourceMap = field(default_factory=SourceMap)
    problems: list[Problem] = field(default_factory=list)
    visited: int = 0
    active: set[int] = field(default_factory=set)

    def walk(self, node: yaml.Node, path: Path) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise YamlProblems(
                [
                    Problem(
                        (),
                        f"the document expands to more than {MAX_NODES:,} values through "
                        "anchors and aliases (a YAML alias bomb?); write it out plainly",
                        *_mark(node),
                    )
                ]
            )
        if id(node) in self.active:
            raise YamlProblems(
                [Problem(path, "an alias refers to a value that contains it", *_mark(node))]
            )
        self.source.values.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node)
            except ValueError:
                # An impossible timestamp such as 2026-13-01: hand on the text
                # and let the typed model say what it expected there.
                return str(node.value)
        self.source.containers.add(path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                # Tuples, because the typed model is immutable and validated strictly.
                return tuple(self.walk(child, (*path, i)) for i, child in enumerate(node.value))
            # What is left of a composed node: a mapping (scalars and sequences are above).
            return self._mapping(cast(yaml.MappingNode, node), path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        explicit = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        merged = self._merged(node, path) if len(explicit) != len(node.value) else {}
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in explicit:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(
                        path, "keys must be plain text, not lists or mappings", *_mark(key_node)
                    )
                )
                continue
            # Keys are taken as written: YAML 1.1 would turn a region called
            # `no` (Norway) into False and `1` into an int.
            key = str(key_node.value)
            here = (*path, key)
            if key in first_line:
                self.problems.append(
                    Problem(
                        here,
                        f"duplicate key {key!r} (first defined on line {first_line[key]}); "
                        "YAML would silently keep only the last one",
                        *_mark(key_node),
                    )
                )
                continue
            first_line[key] = _mark(key_node)[0]
            self.source.keys[here] = _mark(key_node)
            result[key] = self.walk(value_node, here)
        return {**{k: v for k, v in merged.items() if k not in result}, **result}

    def _merged(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                value = self.walk(source, path)
                if not isinstance(value, dict):
                    self.problems.append(
                        Problem(path, "a merge key (<<) must refer to a mapping", *_mark(source))
                    )
                    continue
                for key, item in value.items():
                    merged.setdefault(key, item)
        return merged


def _second_document(
    text: str, near: tuple[int, int] | tuple[None, None]
) -> tuple[int, int] | tuple[None, None]:
    """The ``---`` line that starts the second document (libyaml marks the end of the first)."""
    start = (near[0] or 1) - 1
    for number, line in enumerate(text.splitlines()[start:], start + 1):
        if line.startswith(("---", "...")):
            return number, 1
    return near


def read_yaml(text: str | bytes) -> tuple[Any, SourceMap, list[Problem]]:
    """Parse one YAML document.

    Returns the data, where each part of it stands, and the problems that do
    not stop reading (duplicate keys). Raises :class:`YamlProblems` for those
    that do: syntax errors, several documents, alias bombs, oversize input.
    """
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise YamlProblems(
            [
                Problem(
                    (),
                    f"the file is {size:,} bytes; policy documents are limited to "
                    f"{MAX_BYTES:,} bytes",
                )
            ]
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlProblems(
                [Problem((), f"the file is not UTF-8 text (byte {exc.start} is invalid)")]
            ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = f"not valid YAML: {exc.problem or exc.context}"
        if "expected a single document" in str(exc):
            message = "the file holds several YAML documents (---); a policy is one document"
            where = _second_document(text, where)
        raise YamlProblems([Problem((), message, *where)]) from None
    except yaml.YAMLError as exc:
        raise YamlProblems([Problem((), f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblems([Problem((), "the file is empty; a policy document is a YAML mapping")])
    walker = _Walker(loader)
    data = walker.walk(node, ())
    return data, walker.source, walker.problems

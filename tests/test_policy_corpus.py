"""Every broken document in ``policy_corpus/`` is rejected with exactly the problems it declares.

Each file's header lists ``# expect: LINE PATH :: TEXT`` lines: the set of
reported paths must equal the declared set (no missing, no extra problems),
each reported on LINE (``-`` when no line applies) with TEXT in its message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from sovereign_hub.policy import PolicyError, load_policy
from sovereign_hub.policy.model import Policy
from sovereign_hub.policy.problems import render_path
from sovereign_hub.policy.yamlsource import YamlProblems, read_yaml

CORPUS = sorted((Path(__file__).parent / "policy_corpus").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\S+) (.+?) :: (.+)$")


def _refusal_kinds() -> set[str]:
    """Every kind of refusal our own validators can raise, read from their source."""
    root = Path(__file__).parent.parent
    found: set[str] = set()
    for path, call in (
        ("policy/model.py", r"_fail"),
        ("policy/datasets.py", r"_fail"),
        ("policy/quantity.py", r"PydanticCustomError"),
        ("sovereign_hub/images/reference.py", r"ImageReferenceError"),
    ):
        text = (root / path).read_text()
        # The kind is the first string argument (model, quantity) or the last (reference).
        found |= set(re.findall(call + r'\(\s*"([a-z_]+)"', text))
        found |= set(re.findall(r'"(image_[a-z_]+)",?\s*\)', text))
    return found


def test_every_refusal_our_validators_make_is_pinned_by_a_corpus_document():
    """Each kind of problem the typed model can report is met by some broken document,
    so its message and position are held by the exact-problem test below."""
    seen: set[str] = set()
    for doc in CORPUS:
        try:
            raw, _, _ = read_yaml(doc.read_bytes())
            Policy.model_validate(raw)
        except YamlProblems:
            continue
        except ValidationError as exc:
            seen |= {error["type"] for error in exc.errors()}
    kinds = _refusal_kinds()
    assert {"cidr", "image_tag", "quantity", "versions"} <= kinds  # the scan reads the source
    assert kinds - seen == set(), "no corpus document exercises these refusals"


@pytest.mark.parametrize("doc", CORPUS, ids=lambda p: p.stem)
def test_broken_document_reports_exact_problems(doc: Path):
    expected = [
        EXPECT.match(line).groups()  # type: ignore[union-attr]
        for line in doc.read_text().splitlines()
        if line.startswith("# expect:")
    ]
    assert expected, f"{doc.name} declares no expectation"
    with pytest.raises(PolicyError) as info:
        load_policy(doc)
    problems = info.value.problems
    reported = {render_path(p.path): p for p in problems}
    assert sorted(render_path(p.path) for p in problems) == sorted(p for _, p, _ in expected), str(
        info.value
    )
    for line, path, text in expected:
        problem = reported[path]
        assert text in problem.message, str(info.value)
        assert problem.line == (None if line == "-" else int(line)), str(info.value)
    # The rendered error names the file for each problem.
    assert all(row.startswith(str(doc)) for row in str(info.value).splitlines())

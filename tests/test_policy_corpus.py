"""Every broken document in ``policy_corpus/`` is rejected with exactly the problems it declares.

Each file's header lists ``# expect: LINE PATH :: TEXT`` lines: the set of
reported paths must equal the declared set (no missing, no extra problems),
each reported on LINE (``-`` when no line applies) with TEXT in its message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sovereign_hub.policy import PolicyError, load_policy
from sovereign_hub.policy.problems import render_path

CORPUS = sorted((Path(__file__).parent / "policy_corpus").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\S+) (.+?) :: (.+)$")


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


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

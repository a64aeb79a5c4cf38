"""Every field of an audit record that can hold user data, filled with hostile text:
escaped in the viewer's HTML, never a formula in its CSV export.

Pure: the row template is rendered with the viewer's own loader settings and the CSV
rows built by the export's own function, so this runs in the fast lane; the HTTP
tests (CSP header, filters over SQLite and PostgreSQL) are in test_audit_viewer.py.
"""

from __future__ import annotations

import csv
import io

import pytest
from tornado.escape import url_escape
from tornado.template import Loader

from sovereign_hub.audit.viewer.app import TEMPLATES, csv_row, summary

XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "javascript:alert(1)",
    "<svg/onload=alert(1)>",
    "</td></tr><script>alert(1)</script>",
    "&lt;script&gt;",
    "\u202e<script>",
]
FORMULAS = [
    '=HYPERLINK("http://x","y")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
    "=1+1",
]
CORPUS = XSS + FORMULAS


def record(text: str) -> dict:
    """A spawn-denied record whose every user-data field is ``text``."""
    return {
        "time": "2026-11-29T10:00:00Z",
        "event": "spawn-denied",
        "id": "00000000-0000-0000-0000-000000000000",
        "data": {
            "actor": text,
            "subject": text,
            "server": text,
            "profile": text,
            "region": text,
            "groups": [text],
            "reasons": [{"code": "profile_not_entitled", "message": text}],
        },
    }


@pytest.mark.parametrize("text", CORPUS)
def test_the_timeline_row_shows_hostile_text_as_text(text):
    loader = Loader(str(TEMPLATES), autoescape="xhtml_escape")
    html = (
        loader.load("_row.html")
        .generate(r=record(text), base="/audit/", summary=summary, url_escape=url_escape)
        .decode()
    )
    for dangerous in ("<script", "<img", "<svg", "</td></tr><script"):
        assert dangerous not in html
    # An attribute value never ends early: quotes from the data are escaped.
    assert "onerror=alert(1)>" not in html
    assert "' onmouseover='" not in html
    assert "javascript:alert" not in html.split('href="')[1].split('"')[0]


@pytest.mark.parametrize("text", CORPUS)
def test_exported_cells_are_never_formulas(text):
    buffer = io.StringIO()
    csv.writer(buffer).writerow(csv_row(record(text)))
    (row,) = list(csv.reader(io.StringIO(buffer.getvalue())))
    for cell in row[2:7]:  # actor, subject, region, digest (empty), detail
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (text, cell)
        if cell:
            assert cell in (text, "'" + text)  # neutralised, not altered

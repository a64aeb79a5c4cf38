"""Charts as inline SVG, drawn on the server: no script, nothing fetched.

The viewer's Content-Security-Policy (``default-src 'none'``) allows neither
scripts nor images from anywhere, so a chart is markup in the page itself.
Every text is escaped here; each bar is a link (with an accessible name) to
the timeline filtered to the events it counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 320, 90, 14
COLOUR = "#1f5f8b"  # 7:1 against white: readable in both hub themes' page colours


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[int], links: Sequence[str]
) -> str:
    """A bar per label (days), each linking to ``links[i]``; the title names the chart."""
    top = max(values, default=0) or 1
    step = (WIDTH - 2 * PAD) / max(len(values), 1)
    bars = []
    for i, (label, value, href) in enumerate(zip(labels, values, links, strict=True)):
        h = (HEIGHT - 2 * PAD) * value / top
        x = PAD + i * step
        name = escape(f"{title}, {label}: {value}", quote=True)
        bars.append(
            f'<a href="{escape(href, quote=True)}" aria-label="{name}">'
            f"<title>{name}</title>"
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{max(h, 1 if value else 0):.1f}" fill="{COLOUR}"/></a>'
        )
    first, last = (escape(labels[0]), escape(labels[-1])) if labels else ("", "")
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="group" aria-label="{escape(title, quote=True)} per day">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#767676"/>'
        + "".join(bars)
        + f'<text x="{PAD}" y="{HEIGHT - 2}" font-size="9" fill="#333">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 2}" font-size="9" fill="#333" '
        f'text-anchor="end">{last}</text>'
        f'<text x="{PAD}" y="10" font-size="9" fill="#333">max {top}</text>'
        "</svg>"
    )

"""A refusal a person can act on: what was refused, why, who the hub saw, whom to ask.

The refusal is rendered here into the HTML JupyterHub shows in place of a
bare message (``jupyterhub_html_message``); the page templates around it add
the sign-out button, since only they know the hub's URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

_EMAIL = re.compile(r"^[^@\s/:]+@[^@\s/]+\.[^@\s/]+$")
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True, slots=True)
class Contact:
    """Whom a refused person should ask: a link and the text shown for it."""

    href: str
    text: str


def parse_contact(value: str, *, source: str = "support_contact") -> Contact | None:
    """The contact for ``value``: an http(s) URL, an e-mail address or ``mailto:``; "" is none.

    Raises ValueError naming ``source``, the value and what is allowed.
    """
    value = value.strip()
    if not value:
        return None
    if value.startswith(("https://", "http://")) and " " not in value:
        return Contact(href=value, text=value)
    address = value.removeprefix("mailto:")
    if _EMAIL.match(address):
        return Contact(href=f"mailto:{address}", text=address)
    raise ValueError(
        f"{source}: {value!r} is neither an http(s) URL nor an e-mail address; "
        "give e.g. 'https://help.example.com/jupyter' or 'platform-team@example.com', "
        "or '' for no contact"
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a refused person reads: a short heading, the reason once, and who the hub saw."""

    heading: str
    reason: str
    account: str
    groups: tuple[str, ...]
    contact: Contact | None = None


def render_refusal(refusal: Refusal) -> str:
    """The refusal as an HTML fragment (a ``section`` with an ``h1``), escaped."""
    return _env.get_template("_refusal.html").render(r=refusal)

"""The one error type the hub shows to a person: an HTTP status and a sentence they can act on."""

from __future__ import annotations

from tornado import web

from sovereign_hub.pages.refusal import Refusal, render_refusal


class Refused(web.HTTPError):
    """A refusal JupyterHub renders as is: on its error page and in REST API replies.

    JupyterHub shows ``jupyterhub_message`` instead of the status's stock text.
    ``log_message`` is passed as is: tornado itself escapes a ``%`` in a message that comes
    without format arguments (escaping it here too logged "50%%" for "50%").
    With a :class:`~sovereign_hub.pages.refusal.Refusal`, pages show its card
    (``jupyterhub_html_message``: heading, reason, account, groups, contact)
    and Sovereign Hub's templates add a sign-out button; API replies keep the
    one sentence.
    """

    def __init__(self, status: int, message: str, refusal: Refusal | None = None) -> None:
        super().__init__(status, message)
        self.jupyterhub_message = message
        self.sovereign_refusal = refusal
        if refusal is not None:
            self.jupyterhub_html_message = render_refusal(refusal)


class SpawnRefused(Refused):
    """A refused spawn: shown on the spawn form and returned by the REST API with its status."""

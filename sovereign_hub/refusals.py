"""The one error type the hub shows to a person: an HTTP status and a sentence they can act on."""

from __future__ import annotations

from tornado import web


class Refused(web.HTTPError):
    """A refusal JupyterHub renders as is: on its error page and in REST API replies.

    JupyterHub shows ``jupyterhub_message`` instead of the status's stock text;
    tornado would read ``%`` in ``log_message`` as a format directive, so it is escaped there.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message.replace("%", "%%"))
        self.jupyterhub_message = message


class SpawnRefused(Refused):
    """A refused spawn: shown on the spawn form and returned by the REST API with its status."""

"""Keep secrets in URLs out of the hub's log.

JupyterHub's access log scrubs ``code``, ``state``, ``token``… from logged
URLs, but tornado logs every refused request a second time
(``RequestHandler.log_exception`` on the ``tornado.general`` logger) with the
raw URI, so a refused OAuth callback wrote its authorization code and state to
the log, and a refused page request its ``?token=``. This filter rewrites those
query values to ``[secret]`` on tornado's loggers before any handler sees them, and the XSRF
token in the headers JupyterHub logs with a failed request.
"""

from __future__ import annotations

import logging
import re

# The same parameter names JupyterHub's access log scrubs (jupyterhub.log.SCRUB_PARAM_KEYS),
# plus password and secret.
_SECRET_PARAM = re.compile(
    r"([?&][^=&\s]*(?:token|auth|key|code|state|_xsrf|password|secret)[^=&\s]*=)[^&\s#]*",
    re.IGNORECASE,
)
# JupyterHub logs a failed request's headers as JSON, with Authorization and Cookie scrubbed
# but not the XSRF token header (nor a proxy's auth headers).
_SECRET_HEADER = re.compile(
    r'("(?:X-Xsrftoken|X-Csrftoken|X-Auth[^"]*|Proxy-Authorization)"\s*:\s*")[^"]*(")',
    re.IGNORECASE,
)
LOGGERS = ("tornado.general", "tornado.access", "tornado.application")


def scrub(text: str) -> str:
    """``text`` with the value of every secret-looking URL query parameter and logged
    header replaced."""
    return _SECRET_HEADER.sub(r"\1[secret]\2", _SECRET_PARAM.sub(r"\1[secret]", text))


class ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        return True


_FILTER = ScrubSecrets()


def install() -> None:
    """Add the filter to tornado's loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

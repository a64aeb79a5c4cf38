"""Keep secrets in URLs out of the hub's log.

JupyterHub's access log scrubs ``code``, ``state``, ``token``… from logged
URLs, but tornado logs every refused request a second time
(``RequestHandler.log_exception`` on the ``tornado.general`` logger) with the
raw URI, so a refused OAuth callback wrote its authorization code and state to
the log, and a refused page request its ``?token=``. This filter rewrites those
query values to ``[secret]`` on tornado's loggers before any handler sees them, and the XSRF
token in the headers JupyterHub logs with a failed request.

KubeSpawner logs a whole pod, environment included, when the API server refuses its
create (``_make_create_pod_request`` on a 429 or 5xx), and kubernetes_asyncio logs
response bodies at debug level: a server's ``JUPYTERHUB_API_TOKEN`` would reach the log.
Two defences, both applied by :func:`install_on_handlers` to every record the hub's
log handlers write, whichever logger it came from (a filter on a logger sees only the
records logged on that very logger):

- the values the spawner passes to :func:`remember` (each server's API token, every env value
  whose name looks secret) are replaced wherever they appear, in the message and in a
  logged traceback;
- an env entry whose name looks secret (``…TOKEN…``, ``…SECRET…``, ``…PASSWORD…``,
  ``…KEY``) has its value replaced in any pod dump, as KubeSpawner formats one.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import OrderedDict

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
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(?:OR)?D|CREDENTIAL|(?:^|_)(?:API_|PRIVATE_|ACCESS_)?KEY$", re.IGNORECASE
)
"""An environment variable whose value must never be logged, by its name."""
# An env entry in a pod dump: KubeSpawner's ``pod.to_str()`` (pprint, keys sorted, long
# strings split over lines) or a JSON body; ``name`` comes before ``value`` in both.
_QUOTED = r"""(?:'[^'\n]*'|"[^"\n]*")"""
_ENV_ENTRY = re.compile(
    r"""(['"]name['"]\s*:\s*['"](?P<name>[A-Za-z0-9_.-]*)['"]\s*,\s*['"]value['"]\s*:\s*)"""
    rf"(?P<value>{_QUOTED}(?:\s*{_QUOTED})*)"
)
# The password of a URL's user information (``postgresql://writer:pw@db/audit``), as an
# audit store's or a proxy's error text may carry it.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]*(@)")
LOGGERS = ("tornado.general", "tornado.access", "tornado.application")
MIN_SECRET_LENGTH = 8
"""Shorter values are not remembered: replacing them would garble ordinary text."""
MAX_REMEMBERED = 100_000
"""At most this many values are remembered (the oldest are forgotten first): a bound on
memory for a hub whose servers are never stopped through it."""

_remembered: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Never let ``value`` appear in a log line from now on."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _remembered[value] = None
        _remembered.move_to_end(value)
        while len(_remembered) > MAX_REMEMBERED:
            _remembered.popitem(last=False)


def _secret_env(match: re.Match[str]) -> str:
    if not SECRET_NAME.search(match["name"]):
        return match[0]
    quote = match["value"][0]
    return f"{match[1]}{quote}[secret]{quote}"


# Replacements are functions, not templates like r"\1[secret]": ``re`` compiles a template on
# first use by importing its Python half from C, and at interpreter shutdown (a finalizer
# that logs) that import fails with "sys.meta_path is None".
def _secret_after_prefix(match: re.Match[str]) -> str:
    return f"{match[1]}[secret]"


def _secret_between(match: re.Match[str]) -> str:
    return f"{match[1]}[secret]{match[2]}"


def scrub(text: str) -> str:
    """``text`` with the value of every secret-looking URL query parameter, logged
    header and env entry, every password in a URL and every remembered value, replaced."""
    text = _SECRET_HEADER.sub(_secret_between, _SECRET_PARAM.sub(_secret_after_prefix, text))
    text = _URL_PASSWORD.sub(_secret_between, _ENV_ENTRY.sub(_secret_env, text))
    with _lock:
        values = [v for v in _remembered if v in text]
    for value in values:
        text = text.replace(value, "[secret]")
    return text


def log_incident(logger: logging.Logger, what: str, detail: object) -> str:
    """Log ``what`` with ``detail`` (an error whose text may name stores, addresses or
    credentials) scrubbed, under a new correlation id, and return the id: the answer to
    the user carries the id, never the detail."""
    reference = uuid.uuid4().hex[:12]
    logger.error("%s [ref %s]: %s", what, reference, scrub(str(detail)))
    return reference


def _withhold(record: logging.LogRecord, exc: Exception) -> None:
    """Write that a record could not be scrubbed, instead of the record."""
    record.msg = f"[log record withheld: scrubbing failed: {type(exc).__name__}]"
    record.args, record.exc_info, record.exc_text, record.stack_info = (), None, None, None


class ScrubSecrets(logging.Filter):
    """Scrub a record's arguments (on tornado's loggers, where the record is made)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.msg, str):
                record.msg = scrub(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        except Exception as exc:  # a log call must never raise, nor leak what it could not scrub
            _withhold(record, exc)
        return True


class ScrubRecord(logging.Filter):
    """Scrub a whole record as a handler would write it: the formatted message (whatever
    its arguments' types: a pod object formats itself with its env) and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the formatter reports it
            return True
        try:
            record.msg, record.args = scrub(message), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub(record.exc_text)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info)
        except Exception as exc:  # a log call must never raise, nor leak what it could not scrub
            _withhold(record, exc)
        return True


_FILTER = ScrubSecrets()
_RECORD_FILTER = ScrubRecord()


def install() -> None:
    """Add the filter to tornado's loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def install_on_handlers(*loggers: logging.Logger) -> None:
    """Scrub every record written by the handlers of ``loggers``, of the root logger and
    logging's last-resort handler (idempotent). Records of any logger that propagate to
    them are scrubbed too; handlers added later are not covered."""
    handlers = [h for logger in (*loggers, logging.getLogger()) for h in logger.handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _RECORD_FILTER not in handler.filters:
            handler.addFilter(_RECORD_FILTER)

"""The idle culler (jupyterhub-idle-culler), with its own API token kept out of its log.

Tornado logs a callback that raised with the callback's repr, and the culler's
periodic callback is a ``functools.partial`` that carries the culler's API token.
Whenever the hub did not answer (a restart, a shutdown), the token was written
to the culler's output, which JupyterHub passes on to its own log. The hub runs
the culler through this module: every log record of the culler's process, from
any logger, is scrubbed of that token (and of what the hub's own log scrubs)
before a handler sees it.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from . import logscrub


def scrub_every_record() -> None:
    """Scrub each log record of this process as it is made (before any handler, including
    handlers set up later, as the culler's own ``Application`` does)."""
    make = logging.getLogRecordFactory()
    scrubber = logscrub.ScrubRecord()

    def scrubbed(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        scrubber.filter(record)
        return record

    logging.setLogRecordFactory(scrubbed)


def main() -> None:
    # JupyterHub stops a service with SIGINT first, and waits 10 s before SIGTERM. A process
    # started with SIGINT ignored (a background job of a non-interactive shell, as `cmd &`) passes
    # that on to the culler, and the hub's shutdown spent those 10 s: interrupt as Python does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logscrub.remember(os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    scrub_every_record()
    from jupyterhub_idle_culler import main as cull

    cull()


if __name__ == "__main__":
    main()

"""A Tornado application served on 127.0.0.1 from a thread of the test's process, for
tests that need a real HTTP server answering as a JupyterHub API does (a 429 with
``Retry-After``, an answer after a delay)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


@contextlib.contextmanager
def serving(handlers: list) -> Iterator[str]:
    """Serve ``handlers`` (Tornado's URL specs) until the block ends; yields the base URL."""
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        HTTPServer(web.Application(handlers)).add_sockets(sockets)
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

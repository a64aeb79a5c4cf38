"""Raw (undecoded) API calls that still raise on error statuses.

The generated client cannot deserialise some answers (a binding's
``Status``), and decoding into models is wasted work for code that wants
dicts, so these components ask for raw responses. With
``_preload_content=False`` the client no longer raises on 4xx/5xx; this
puts the raise back, with the server's ``Status`` body attached.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException


async def call(method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    response = await method(*args, _preload_content=False, **kwargs)
    body = await response.read()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body.decode(errors="replace")
        raise error
    return json.loads(body) if body else {}

"""What a polite client does with a 429: wait as long as ``Retry-After`` asks (bounded, with
jitter), then ask again, a bounded number of times.

JupyterHub answers a spawn request with 429 and a ``Retry-After`` of 30 to 60 s
(``spawn_throttle_retry_range``) once ``concurrent_spawn_limit`` spawns are
pending. A person clicks again after that; counting the 429 as a failed spawn
would blame the hub for a limit it announces. The retries are counted, so a run
reports how often the limit was met, apart from failures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a throttled request is asked again."""

    attempts: int = 6
    """Requests in all, the first included; after that the 429 is the answer."""
    cap_seconds: float = 60.0
    """The longest wait between two attempts, whatever ``Retry-After`` says."""
    jitter: float = 0.25
    """Each wait is lengthened by up to this fraction, so throttled clients spread out."""
    fallback_seconds: float = 1.0
    """The first wait when a 429 has no usable ``Retry-After`` (doubled each time)."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.cap_seconds <= 0 or self.fallback_seconds <= 0 or self.jitter < 0:
            raise ValueError(f"waits must be positive and jitter not negative: {self}")


def retry_after(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds the ``Retry-After`` header asks for (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def wait_for(
    response: requests.Response, retry: int, policy: RetryPolicy, rng: random.Random
) -> float:
    """How long to wait before attempt ``retry + 1`` after the 429 ``response``."""
    asked = retry_after(response)
    base = policy.fallback_seconds * 2**retry if asked is None else asked
    return min(policy.cap_seconds, base) * (1 + rng.uniform(0, policy.jitter))


def send_with_retry(
    send: Callable[[], requests.Response],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry_on: Collection[int] = (429,),
    retry_if: Callable[[requests.Response], bool] | None = None,
    waits: list[float] | None = None,
) -> tuple[requests.Response, list[float]]:
    """Call ``send`` until it answers a status not in ``retry_on`` (and for which
    ``retry_if``, when given, is false) or the attempts run out.

    Returns the last response and the waits taken (one per answer that was retried),
    appended to ``waits`` when given, so a caller still has them if ``send`` raises.
    """
    rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
    waits = [] if waits is None else waits

    def again(r: requests.Response) -> bool:
        return r.status_code in retry_on or (retry_if is not None and retry_if(r))

    response = send()
    while again(response) and len(waits) + 1 < policy.attempts:
        delay = wait_for(response, len(waits), policy, rng)
        waits.append(delay)
        sleep(delay)
        response = send()
    return response, waits

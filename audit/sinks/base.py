"""The contract every audit sink implements.

A shipper thread owns each sink: it batches records from the spool, calls
:meth:`Sink.deliver`, retries with back-off when it raises, and advances the
sink's cursor only after it returns. So a sink only has to write one batch,
atomically where its store allows, and raise on any failure. Delivery is at
least once: a sink whose store has a unique key on the event ``id`` should
ignore duplicates.

Subclasses implement:

- ``deliver(records)``: write the batch, or raise;
- optionally ``open()`` (connect; called before the first delivery and after a
  failure) and ``close()``;
- an ``__init__`` whose named, annotated parameters are the sink's options
  (see :mod:`.options`), with ``option_help`` saying what each means;
- ``head(hub, timeout)`` when their store can be read back (SQL stores): the
  last record of the hub's chain, which a hub that lost its spool names at
  the start of its new epoch.

Credentials come from files or the environment, never from the policy.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SinkConfigError(ValueError):
    """A sink configured wrongly: names the sink, the option and what is allowed."""


class StoreError(ValueError):
    """A store that cannot be read: missing, unreachable, or not an audit store."""


class Sink:
    name: str = "sink"
    option_help: ClassVar[dict[str, str]] = {
        "name": "The sink's name in metrics, logs and errors (default: its type).",
    }
    """Each option's meaning, by name (see :mod:`.options`); merged with the bases'."""

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Sink:
        """The sink configured by ``options``, checked first against the constructor's
        typed fields (:func:`.options.check_options`)."""
        from .options import check_options

        checked = check_options(cls, options)
        try:
            return cls(**checked)
        except TypeError as exc:
            raise SinkConfigError(f"audit sink {cls.__name__}: {exc}") from None

    def open(self) -> None:
        """Connect. Called before the first delivery and again after a failure."""

    def deliver(self, records: list[dict[str, Any]]) -> None:
        """Write ``records`` (in sequence order) or raise."""
        raise NotImplementedError

    def head(self, hub: str, timeout: float) -> dict[str, Any] | None:
        """``{epoch, seq, mac, time}`` of ``hub``'s last stored record (latest epoch),
        None when the store holds none; raise when the store cannot be read in
        ``timeout`` seconds. Write-only stores raise NotImplementedError."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

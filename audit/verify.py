"""Check a trail: which record was changed, dropped, inserted or reordered, and how much is proven.

Two kinds of evidence, usable apart or together:

- the **HMAC chain** (with the HMAC keys): every record's MAC, and each
  record's link to its predecessor;
- **signed checkpoints** (with the Ed25519 public keys only): each
  checkpoint's signature, the digest of the records it covers, and the chain
  of checkpoints. A record's ``prev`` must still equal its predecessor's
  ``mac`` as text, which needs no key.

Records are grouped by hub and epoch (see :mod:`.epoch`); each epoch is a
chain of its own, and the first record of an epoch names where the one before
ended, so a boundary is reported, and a removed epoch is found.

The verdict has three levels: **broken** (findings), **intact but not
proven complete** (caveats: records after the newest checkpoint, which a
truncation could have shortened, or a retention record whose signature was
not checked), and **proven** (neither).

With the public key alone, a hub's records from before its first signed
checkpoint (a release without a signing key, or before checkpoints existed)
are an **unsigned segment**: their links and checkpoint digests are checked,
but no signature covers them. They are reported apart
(:class:`UnsignedSegment`), never as a break, so an upgraded trail is
"intact, not provable by key before #n" rather than "broken". Such a segment
is a *prefix* (which ``--allow-unsigned-prefix`` accepts) only when something
signed ties it to the trail; records of the first signed epoch that no
checkpoint's digest covers are not, since only their links are checked. An unsigned
checkpoint *after* the hub's first signed one is still a finding: signing
does not silently stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .chain import GENESIS, Keyring, genuine
from .checkpoint import digest, family_of, fingerprint, leaf, signed_payload
from .signing import PublicKeys

DEFAULT_GRACE = 300.0
"""Seconds past a checkpoint's due time before a missing successor counts as truncation."""


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # changed, dropped, inserted, reordered, unknown-key, digest, signature,
    # unsigned, checkpoint-chain, missing-checkpoint, truncated, dropped-epoch, retention
    hub: str
    seq: int
    message: str
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class UnsignedSegment:
    """Records of one hub's epoch that no signature covers, from before signing began.

    ``signed_by`` is the sequence number of the first signed checkpoint of the
    same epoch, when the unsigned checkpoints chain into it (each names the
    fingerprint of the one before): their content is then bound to what the
    hub held when it first signed. ``prefix`` is true only when something
    signed ties the segment to the trail: that chain of checkpoints from the
    segment's first record, or, for an earlier epoch, a later epoch naming its
    last record. It is false when the hub never signed a checkpoint at all, and
    for records of the first signed epoch that no checkpoint covers
    (``uncovered_through``, the last of them): without the HMAC key nothing
    binds their content, only their links.
    """

    hub: str
    epoch: str
    first: int
    last: int
    signed_by: int | None
    signed_at: str
    prefix: bool
    unlinked: bool = False  # an earlier epoch no later one names as its predecessor
    uncovered_through: int = 0  # the signed epoch's records #first..#this no digest covers
    checkpointed: bool = True  # the store holds some checkpoint of this epoch (unsigned)

    def message(self) -> str:
        where = f"{_name(self.hub, self.epoch)} records #{self.first}..#{self.last}"
        text = f"unsigned segment: {where}, chain intact, not provable by key"
        if self.unlinked:
            return text + (
                " (an epoch from before signing that no later epoch names as its "
                "predecessor: nothing ties it to the signed trail, so it is not accepted "
                "as a prefix)"
            )
        if self.uncovered_through:
            which = (
                "these records"
                if self.uncovered_through == self.last
                else f"#{self.first}..#{self.uncovered_through}"
            )
            return text + (
                f" (no digest covers {which}: they precede every checkpoint of the epoch, "
                "so with the public key alone only their links are checked, not their "
                "content; they are not accepted as a prefix; the HMAC key proves them)"
            )
        if not self.prefix and self.signed_at:
            return text + (
                " (its checkpoints do not chain into the hub's first signed checkpoint, "
                "so they are not accepted as a prefix)"
            )
        if not self.prefix:
            return text + f" ({self.hub} has no signed checkpoint at all)"
        if self.signed_by is not None:
            return text + (
                f" (written before the hub had a signing key; signed checkpoint "
                f"#{self.signed_by} links to them, so they have not changed since it was "
                f"signed at {self.signed_at}; before that only the HMAC key proves them)"
            )
        if not self.checkpointed:
            # No checkpoint at all says nothing about the key: a hub that had one loses the
            # checkpoints it had not shipped when it loses its spool.
            return text + (
                " (an earlier epoch with no checkpoint in the store, so no signature covers "
                "it: its checkpoints were lost, as with a lost spool, or it predates "
                "checkpoints; a later epoch names its last record)"
            )
        return text + " (written before the hub had a signing key, in an earlier epoch)"

    def summary(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "epoch": self.epoch,
            "first": self.first,
            "last": self.last,
            "signedBy": self.signed_by,
            "prefix": self.prefix,
            "uncoveredThrough": self.uncovered_through or None,
            "message": self.message(),
        }


@dataclass
class Epoch:
    """What verification saw of one hub's epoch."""

    hub: str
    epoch: str
    first: int = 0
    last: int = 0
    last_mac: str = GENESIS
    records: int = 0
    checkpoints: int = 0
    sealed_through: int = 0
    final: bool = False
    start: dict[str, Any] | None = None
    retention: dict[str, Any] | None = None
    last_checkpoint: dict[str, Any] | None = None
    checkpoint_fp: str = ""
    leaves: list[tuple[int, bytes]] = field(default_factory=list)
    dirty: bool = False  # a finding in the range the next checkpoint covers
    vouched: bool = False  # a later epoch names this one's last record as its predecessor
    unsigned: list[tuple[int, int]] = field(default_factory=list)  # (seq, first_seq) unsigned
    first_signed: dict[str, Any] | None = None
    linked: bool = True  # every checkpoint named the one before it
    first_time: str = ""  # the time of its first record here (orders same-second epochs)

    def summary(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "epoch": self.epoch,
            "first": self.first,
            "last": self.last,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "sealedThrough": self.sealed_through,
            "final": self.final,
        }


@dataclass
class Report:
    records: int = 0
    verified_through: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    epochs: list[Epoch] = field(default_factory=list)
    unsigned: list[UnsignedSegment] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No record was changed, dropped, inserted or reordered, as far as the keys show."""
        return not self.findings

    @property
    def proven(self) -> bool:
        """Intact, complete up to a checkpoint that needs no successor yet, and every
        record covered by the evidence given (no unsigned segment)."""
        return self.ok and not self.caveats and not self.unsigned

    def proven_allowing(self, unsigned_prefix: bool) -> bool:
        """:attr:`proven`, or, with ``unsigned_prefix`` (``--allow-unsigned-prefix``),
        proven after signing began with every unsigned segment an accepted prefix."""
        if unsigned_prefix and self.unsigned_prefix_only:
            return self.ok and not self.caveats
        return self.proven

    @property
    def unsigned_prefix_only(self) -> bool:
        """Every unsigned segment predates its hub's first signed checkpoint."""
        return all(segment.prefix for segment in self.unsigned)

    @property
    def unsigned_records(self) -> int:
        return sum(s.last - s.first + 1 for s in self.unsigned)


def _name(hub: str, epoch: str) -> str:
    return f"{hub} epoch {epoch}" if epoch else hub


def _began(chain: Epoch) -> tuple[str, str, str, str]:
    """Where an epoch sorts: by hub, by the second its id names, then by the
    time of its first record (ids begun in the same second differ only by a random
    suffix), then by id. The epoch from before epochs ("") comes first."""
    stamp = chain.epoch.partition("-")[0]
    first = str(chain.start.get("time", "")) if chain.start else chain.first_time
    return (chain.hub, stamp, first if stamp else "", chain.epoch)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


class _Verifier:
    def __init__(self, keys: Keyring, public: PublicKeys, as_of: datetime, grace: float) -> None:
        self.keys, self.public, self.as_of, self.grace = keys, public, as_of, grace
        self.report = Report()
        self.chains: dict[tuple[str, str], Epoch] = {}

    def find(self, kind: str, chain: Epoch, seq: int, message: str) -> None:
        chain.dirty = True
        self.report.findings.append(Finding(kind, chain.hub, seq, message, chain.epoch))

    # -- one record at a time ---------------------------------------------------
    def record(self, record: dict[str, Any]) -> None:
        self.report.records += 1
        hub, epoch = str(record.get("hub", "?")), str(record.get("epoch", ""))
        chain = self.chains.get((hub, epoch))
        if chain is None:
            chain = self.chains[(hub, epoch)] = Epoch(hub, epoch)
        seq = int(record.get("seq", -1))
        where = f"{_name(hub, epoch)} #{seq}"
        family = family_of(record)
        if family == "retention":
            self.retention(chain, record)
            return
        chain.records += 1
        chain.first = chain.first or seq
        chain.first_time = chain.first_time or str(record.get("time", ""))
        if self.keys:
            key = self.keys.key_for(record)
            if key is None:
                self.find(
                    "unknown-key",
                    chain,
                    seq,
                    f"record {where} was sealed with HMAC key "
                    f"{record.get('kid')}, which is not among the keys given",
                )
                # Its links and checkpoints are still checked below.
            elif not genuine(record, key):
                kind = "changed" if seq > chain.last else "inserted"
                self.find(
                    kind,
                    chain,
                    seq,
                    f"record {where} (id {record.get('id')}) does not "
                    "match its MAC: it was altered or forged",
                )
                if seq > chain.last:
                    chain.last, chain.last_mac = seq, str(record.get("mac"))
                    chain.leaves.append((seq, leaf(record)))
                return
        if seq <= chain.last:
            self.find(
                "reordered",
                chain,
                seq,
                f"record {where} comes after #{chain.last}: records were reordered or duplicated",
            )
            return
        if seq > chain.last + 1:
            first = chain.last + 1
            missing = f"#{first}" if seq == first + 1 else f"#{first}..#{seq - 1}"
            self.find(
                "dropped",
                chain,
                first,
                f"records {_name(hub, epoch)}{missing} are missing before #{seq}",
            )
        elif record.get("prev") != chain.last_mac and (chain.last or record.get("prev") != GENESIS):
            self.find(
                "inserted",
                chain,
                seq,
                f"record {where} does not follow #{chain.last}: "
                "a record was inserted or replaced before it",
            )
        if family == "checkpoint":
            self.checkpoint(chain, record)
        else:
            chain.leaves.append((seq, leaf(record)))
        if seq == 1 and family == "epoch-started":
            chain.start = record
        chain.last, chain.last_mac = seq, str(record.get("mac"))

    def retention(self, chain: Epoch, record: dict[str, Any]) -> None:
        data = record.get("data", {})
        where = _name(chain.hub, chain.epoch)
        if chain.records:
            self.find(
                "retention",
                chain,
                0,
                f"the retention record of {where} comes after "
                "its records: it was moved or inserted",
            )
            return
        if self.public:
            problem = self.public.check(
                str(data.get("key_id", "")), signed_payload(record), str(data.get("signature"))
            )
            if problem:
                self.find(
                    "retention",
                    chain,
                    0,
                    f"the retention record of {where} claiming "
                    f"#1..#{data.get('through_seq')} were removed is {problem}",
                )
                return
        else:
            self.report.caveats.append(
                f"{where}: records #1..#{data.get('through_seq')} were removed by retention "
                f"({data.get('removed')} records before {data.get('before')}); the signed "
                "retention record was not checked: give --public-key"
            )
        chain.retention = record
        chain.last = int(data.get("through_seq", 0))
        chain.last_mac = str(data.get("last_mac", GENESIS))
        chain.checkpoint_fp = str(data.get("last_checkpoint", ""))
        chain.sealed_through = chain.last
        self.report.notes.append(
            f"{where}: records #1..#{chain.last} were removed by retention on "
            f"{record.get('time')} (older than {data.get('before')})"
        )

    def checkpoint(self, chain: Epoch, record: dict[str, Any]) -> None:
        data = record.get("data", {})
        seq = int(record["seq"])
        where = f"checkpoint {_name(chain.hub, chain.epoch)} #{seq}"
        if self.public:
            if not data.get("signature"):
                # Whether it predates signing is known only once the hub's epochs
                # are all read (finish → unsigned).
                chain.unsigned.append((seq, int(data.get("first_seq", 0))))
            else:
                problem = self.public.check(
                    str(data.get("key_id", "")), signed_payload(record), str(data["signature"])
                )
                if problem:
                    self.find("signature", chain, seq, f"{where} is {problem}")
                elif chain.first_signed is None:
                    chain.first_signed = record
        first, last = int(data.get("first_seq", 0)), int(data.get("last_seq", -1))
        if data.get("previous", "") != chain.checkpoint_fp or (
            chain.last_checkpoint is not None and first != int(chain.last_checkpoint["seq"]) + 1
        ):
            chain.linked = False
            self.find(
                "checkpoint-chain",
                chain,
                seq,
                f"{where} does not follow the previous "
                "checkpoint in the store: a checkpoint and the records it covered "
                "were removed or replaced",
            )
        covered = [h for s, h in chain.leaves if first <= s <= last]
        if not chain.dirty and (
            len(covered) != last - first + 1 or digest(covered) != data.get("digest")
        ):
            self.find(
                "digest",
                chain,
                seq,
                f"records #{first}..#{last} do not match the "
                f"digest {where} signed ({last - first + 1} records; {len(covered)} "
                "found): a record was changed, removed or inserted",
            )
        uncovered = [s for s, _ in chain.leaves if s < first]
        if uncovered and chain.last_checkpoint is None and chain.retention is None:
            self.report.notes.append(
                f"{_name(chain.hub, chain.epoch)}: records #{uncovered[0]}..#{uncovered[-1]} "
                "were written before checkpoints existed; only the HMAC chain covers them"
            )
        chain.last_checkpoint = record
        chain.checkpoint_fp = fingerprint(record)
        chain.checkpoints += 1
        chain.sealed_through = last
        chain.final = bool(data.get("final"))
        chain.leaves = []
        chain.dirty = False

    # -- the whole trail --------------------------------------------------------
    def finish(self) -> Report:
        hubs: dict[str, list[Epoch]] = {}
        for (hub, _), chain in sorted(self.chains.items(), key=lambda item: _began(item[1])):
            hubs.setdefault(hub, []).append(chain)
        for hub, chains in hubs.items():
            self.boundaries(hub, chains)
            if self.public:
                self.unsigned(hub, chains)
            for i, chain in enumerate(chains):
                self.tail(chain, later=i < len(chains) - 1)
            if all(f.hub != hub for f in self.report.findings):
                self.report.verified_through[hub] = chains[-1].last
            self.report.epochs.extend(chains)
        return self.report

    def boundaries(self, hub: str, chains: list[Epoch]) -> None:
        present = {c.epoch: c for c in chains}
        for chain in chains:
            if chain.start is None:
                continue
            data = chain.start.get("data", {})
            began = f"{_name(hub, chain.epoch)} began at {chain.start.get('time')}"
            state = data.get("previous_state")
            if state == "unknown":
                earlier = [c.epoch or "(before epochs)" for c in chains[: chains.index(chain)]]
                self.report.notes.append(
                    f"{began} without knowing where the chain before it ended "
                    f"({data.get('looked_in')})"
                    + (f"; earlier epochs here: {', '.join(earlier)}" if earlier else "")
                )
                continue
            if state == "none":
                older = chains[: chains.index(chain)]
                self.report.notes.append(
                    f"{began}; the store ({data.get('looked_in')}) then held no record of {hub}"
                    + (
                        f", yet {len(older)} earlier epoch(s) of it are here"
                        if older
                        else " (a new hub)"
                    )
                )
                continue
            previous, seq = str(data.get("previous_epoch", "")), int(data.get("previous_seq", 0))
            before = present.get(previous)
            self.report.notes.append(
                f"{began} (spool lost or new); the chain before it ended at "
                f"{_name(hub, previous)} #{seq}, as {data.get('looked_in')} showed"
            )
            if before is None:
                self.find(
                    "dropped-epoch",
                    chain,
                    1,
                    f"{began} after {_name(hub, previous)} "
                    f"#{seq}, but no record of that epoch is here: it was removed",
                )
            elif before.last < seq:
                self.find(
                    "dropped",
                    before,
                    before.last + 1,
                    f"records "
                    f"{_name(hub, previous)}#{before.last + 1}..#{seq} are missing: the "
                    f"store held them when {_name(hub, chain.epoch)} began",
                )
            elif before.last == seq and before.last_mac != data.get("previous_mac"):
                self.find(
                    "inserted",
                    before,
                    seq,
                    f"record {_name(hub, previous)} #{seq} is "
                    f"not the one {_name(hub, chain.epoch)} named as its predecessor: "
                    "it was replaced",
                )
            elif before.last > seq:
                self.report.notes.append(
                    f"{_name(hub, previous)} continued after #{seq} (to #{before.last}) once "
                    f"{_name(hub, chain.epoch)} had begun: two hubs share the name {hub}, or "
                    "a spool came back after it was given up"
                )
            else:
                before.vouched = True

    def unsigned(self, hub: str, chains: list[Epoch]) -> None:
        """Split each epoch at the hub's first signed checkpoint (epochs sort by start).

        Before it: an unsigned segment, reported apart. After it: an unsigned
        checkpoint is a finding (the key was removed, the release rolled back,
        or the checkpoint forged). With the HMAC key as well, every record's
        MAC is checked, so unsigned checkpoints are only noted.
        """
        signing = False
        for chain in chains:
            start = (int(chain.retention["data"]["through_seq"]) + 1) if chain.retention else 1
            signed = chain.first_signed
            if not signing:
                last = int(signed["data"]["first_seq"]) - 1 if signed else chain.last
                if last >= start and chain.records:
                    uncovered = 0
                    if signed is not None:
                        # Bound only if checkpoints cover the segment from its start and
                        # chain into the signed one. Records before the first of them
                        # have no digest: without the HMAC key their content is unbound
                        # (a later epoch naming this one's end does not change that).
                        before = [f for s, f in chain.unsigned if s < int(signed["seq"])]
                        covered_from = before[0] if before else int(signed["data"]["first_seq"])
                        anchored = chain.linked and covered_from == start
                        prefix = anchored
                        uncovered = min(covered_from - 1, last) if covered_from > start else 0
                    else:
                        # An earlier epoch is a prefix only if a later one names its end;
                        # otherwise anyone who can write the store could add one.
                        anchored = False
                        prefix = chain.vouched
                    segment = UnsignedSegment(
                        hub,
                        chain.epoch,
                        start,
                        last,
                        int(signed["seq"]) if anchored and signed else None,
                        str(signed.get("time", "")) if signed else "",
                        prefix=prefix,
                        unlinked=signed is None and not chain.vouched,
                        uncovered_through=uncovered,
                        checkpointed=bool(chain.unsigned) or signed is not None,
                    )
                    if self.keys:
                        self.report.notes.append(
                            f"{_name(hub, chain.epoch)} records #{start}..#{last} predate "
                            "signing: proven by the HMAC key, not by the public key"
                        )
                    else:
                        self.report.unsigned.append(segment)
                signing = signed is not None
                after = [s for s, _ in chain.unsigned if signed and s > int(signed["seq"])]
            else:
                after = [s for s, _ in chain.unsigned]
            for seq in after:
                self.find(
                    "unsigned",
                    chain,
                    seq,
                    f"checkpoint {_name(hub, chain.epoch)} #{seq} is not signed, although "
                    "the hub signed its checkpoints before it: the signing key was removed, "
                    "the release rolled back, or the checkpoint was forged",
                )
        if not signing:
            self.report.unsigned = [
                UnsignedSegment(s.hub, s.epoch, s.first, s.last, None, "", prefix=False)
                if s.hub == hub
                else s
                for s in self.report.unsigned
            ]  # a hub that never signed has no prefix: all of it is unsigned

    def tail(self, chain: Epoch, *, later: bool) -> None:
        name = _name(chain.hub, chain.epoch)
        tail = [s for s, _ in chain.leaves]
        checkpoint = chain.last_checkpoint
        if chain.vouched:
            return
        cut = f"#{int(checkpoint['seq'])}" if checkpoint else ""
        if checkpoint is None and chain.start is not None and chain.retention is None:
            # A young epoch: its first record says when the first checkpoint is due.
            checkpoint, cut = chain.start, "#1, the epoch's start"
            tail = tail[1:]  # the epoch's first record is the mark, not the tail
        if checkpoint is None:
            if chain.records and chain.retention is None:
                self.report.caveats.append(
                    f"{name}: no checkpoint (written before checkpoints existed, or with them "
                    f"off): nothing proves #{chain.last} is its last record"
                )
            elif tail:
                self.report.caveats.append(
                    f"{name}: records #{tail[0]}..#{tail[-1]} follow the retained part and no "
                    "checkpoint covers them yet"
                )
            return
        data = checkpoint["data"]
        if not tail and chain.final:
            return  # stopped cleanly, nothing after: complete
        every_records = int(data.get("every_records", 0))
        every_seconds = int(data.get("every_seconds", 0))
        if every_records and len(tail) > every_records:
            self.find(
                "missing-checkpoint",
                chain,
                tail[every_records],
                f"{len(tail)} records "
                f"follow the last checkpoint of {name} ({cut}), but one was due every "
                f"{every_records}: a checkpoint was removed",
            )
            return
        unsealed = (
            f"records #{tail[0]}..#{tail[-1]} after its last checkpoint ({cut})"
            if tail
            else f"anything after its last checkpoint ({cut}, not final)"
        )
        if not every_seconds:
            self.report.caveats.append(
                f"{name}: {unsealed} cannot be proven complete (checkpoints have no time limit)"
            )
            return
        due = _time(checkpoint["time"]) + timedelta(seconds=every_seconds)
        if self.as_of <= due + timedelta(seconds=self.grace):
            self.report.caveats.append(
                f"{name}: {unsealed} are not yet covered by a checkpoint; the next is due by "
                f"{due.isoformat(timespec='seconds')}, until when a truncated tail cannot be "
                "ruled out"
            )
        elif later:
            self.report.caveats.append(
                f"{name}: {unsealed} are not proven complete: the hub stopped without its "
                "final checkpoint and its next epoch could not say where this one ended"
            )
        else:
            self.find(
                "truncated",
                chain,
                tail[0] if tail else chain.last + 1,
                f"{name}: the "
                f"last checkpoint ({cut} at {checkpoint['time']}) is not final and the "
                f"next was due by {due.isoformat(timespec='seconds')}: records after "
                f"{cut} were removed, or the hub stopped without its final checkpoint "
                "and has not written since",
            )


def verify(
    records: Iterable[dict[str, Any]],
    keys: bytes | Keyring | None = None,
    public_keys: PublicKeys | None = None,
    *,
    as_of: datetime | None = None,
    grace: float = DEFAULT_GRACE,
) -> Report:
    """Walk each hub's epochs in the order given and report every break.

    - **changed**: the record's MAC does not match its content;
    - **dropped**: sequence numbers jump (or a previous epoch ends before where
      the next one says it did); the missing ones are named;
    - **inserted**: a record whose predecessor link does not match the record
      before it, or a record that cannot be genuine and repeats a sequence number;
    - **reordered**: a sequence number lower than one already seen;
    - **digest**, **signature**, **checkpoint-chain**: a checkpoint does not
      vouch for the records it covers, or is not genuine;
    - **unsigned**: a checkpoint without a signature after the hub's first
      signed one (before it, the records are an :class:`UnsignedSegment` in
      ``Report.unsigned``, not a finding);
    - **missing-checkpoint**, **truncated**: the tail is longer or older than
      the checkpoint interval allows;
    - **dropped-epoch**: an epoch names a predecessor that is not there.

    ``keys`` is one HMAC key or a :class:`Keyring`; ``public_keys`` the
    Ed25519 keys for checkpoints. Either may be omitted, not both. ``as_of``
    (default: now) and ``grace`` decide when a checkpoint is overdue.
    """
    keyring = Keyring([keys]) if isinstance(keys, bytes) else (keys or Keyring([]))
    public = public_keys or PublicKeys()
    if not keyring and not public:
        raise ValueError("verification needs an HMAC key or a public key")
    checker = _Verifier(keyring, public, as_of or datetime.now(UTC), grace)
    for record in records:
        checker.record(record)
    return checker.finish()


__all__ = ["DEFAULT_GRACE", "Epoch", "Finding", "Report", "UnsignedSegment", "verify"]

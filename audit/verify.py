"""Check a chain of records: which record was changed, dropped, inserted or reordered."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .chain import GENESIS, genuine


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # changed, dropped, inserted, reordered
    hub: str
    seq: int
    message: str


@dataclass
class Report:
    records: int = 0
    verified_through: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify(records: Iterable[dict[str, Any]], key: bytes) -> Report:
    """Walk each hub's chain in the order given and report every break.

    - **changed**: the record's MAC does not match its content;
    - **dropped**: sequence numbers jump; the missing ones are named;
    - **inserted**: a genuine-looking record whose predecessor link does not
      match the record before it, or a record that cannot be genuine and
      repeats a sequence number;
    - **reordered**: a sequence number lower than one already seen.
    """
    report = Report()
    last: dict[str, tuple[int, str]] = {}
    for record in records:
        report.records += 1
        hub = str(record.get("hub", "?"))
        seq = int(record.get("seq", -1))
        prev_seq, prev_mac = last.get(hub, (0, GENESIS))
        if not genuine(record, key):
            kind = "changed" if seq > prev_seq else "inserted"
            report.findings.append(
                Finding(
                    kind,
                    hub,
                    seq,
                    f"record {hub}#{seq} (id {record.get('id')}) does not match its MAC: "
                    "it was altered or forged",
                )
            )
            if seq > prev_seq:
                last[hub] = (seq, str(record.get("mac")))
            continue
        if seq <= prev_seq:
            report.findings.append(
                Finding(
                    "reordered",
                    hub,
                    seq,
                    f"record {hub}#{seq} comes after #{prev_seq}: "
                    "records were reordered or duplicated",
                )
            )
            continue
        if seq > prev_seq + 1:
            missing = f"#{prev_seq + 1}" if seq == prev_seq + 2 else f"#{prev_seq + 1}..#{seq - 1}"
            report.findings.append(
                Finding(
                    "dropped",
                    hub,
                    prev_seq + 1,
                    f"records {hub}{missing} are missing before #{seq}",
                )
            )
        elif record.get("prev") != prev_mac and (prev_seq or record.get("prev") != GENESIS):
            report.findings.append(
                Finding(
                    "inserted",
                    hub,
                    seq,
                    f"record {hub}#{seq} does not follow #{prev_seq}: "
                    "a record was inserted or replaced before it",
                )
            )
        if not report.findings or all(f.hub != hub for f in report.findings):
            report.verified_through[hub] = seq
        last[hub] = (seq, str(record["mac"]))
    return report

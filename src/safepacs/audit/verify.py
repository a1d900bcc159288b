"""Check a copy of the audit trail against its signed heads and witnesses.

Everything is recomputed from the entries: every leaf, and the root at every head's size.
Two heads whose roots both match the recomputed prefixes of one entry sequence are
consistent by construction, so this is the strongest form of the consistency check; a
witness head larger than the log proves truncation.  The first bad index is exact when the
damage is local (a row edited without its leaf hash, a missing index, a lookup column that
disagrees with its entry, a head of one entry); otherwise it is the start of the smallest
signed interval holding the damage, flagged ``exact=False``.  With ``sign_every=1`` (the
default of :class:`~safepacs.audit.log.AuditLog`) every interval is one entry.

Works offline from a JSON export and the public key alone.  Messages name indices and
sizes, never a value of an entry.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func, select

from safepacs.audit import merkle
from safepacs.audit.heads import SignedHead, head_is_signed
from safepacs.audit.models import AuditEntry, AuditHead

EXPORT_FORMAT = "safepacs-audit-export/v1"
MAX_PROBLEMS = 50


class StoredEntry(NamedTuple):
    idx: int
    entry: bytes
    leaf_hash: bytes | None = None
    patient: str | None = None  # lookup columns, when read from the database
    study_uid: str | None = None


@dataclass
class Report:
    size: int = 0
    heads_checked: int = 0
    witness_heads_checked: int = 0
    newest_head: int = 0
    first_bad_index: int | None = None
    exact: bool = True
    problems: list[str] = field(default_factory=list)  # the first MAX_PROBLEMS
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        if self.ok:
            return (f"OK: {self.size} entries, {self.heads_checked} signed heads and "
                    f"{self.witness_heads_checked} witnessed heads verified")
        where = "" if self.first_bad_index is None else (
            f"first bad index {self.first_bad_index}" + ("" if self.exact else " (or later, within its signed interval)")
        )
        return f"TAMPERED: {where}; " + "; ".join(self.problems[:5])


def verify(
    entries: Iterable[StoredEntry],
    heads: Iterable[SignedHead],
    public_key: Ed25519PublicKey,
    *,
    witness: Iterable[SignedHead] = (),
) -> Report:
    """Verify ``entries`` (in storage order) against signed ``heads`` and ``witness`` heads.

    Streams: ``heads`` may be an iterator in size order (a list is sorted here), so memory
    stays constant however long the trail is."""
    report = Report()
    if isinstance(heads, list | tuple):
        heads = sorted(heads, key=lambda h: h.size)
    head_iter = iter(heads)
    witnessed: dict[int, list[SignedHead]] = defaultdict(list)
    for h in witness:
        witnessed[h.size].append(h)
    state = {"trusted": 0, "first_bad": None, "exact": True, "max_head": max(witnessed, default=0),
             "forged_first": None, "forged_trusted": 0}

    def bad(index: int | None, exact: bool, message: str) -> None:
        if index is not None:
            cur = state["first_bad"]
            if cur is None or index < cur or (index == cur and exact and not state["exact"]):
                state["first_bad"], state["exact"] = index, exact
        report.problem_count += 1
        if len(report.problems) < MAX_PROBLEMS:
            report.problems.append(message)

    def check(h: SignedHead, root: bytes, what: str) -> None:
        size, trusted = h.size, state["trusted"]
        state["max_head"] = max(state["max_head"], size)
        if not head_is_signed(h, public_key):
            if state["forged_first"] is None:  # judged later: a valid head above may vouch
                state["forged_first"], state["forged_trusted"] = size, trusted
            else:
                bad(None, True, f"{what} at size {size} has a bad signature (wrong key?)")
        elif h.root != root:
            bad(trusted, size - trusted == 1, f"{what} at size {size} does not match the entries")
        else:
            state["trusted"] = max(trusted, size)
            if state["forged_first"] is not None and state["forged_first"] <= size:
                bad(None, True, f"a head at size {state['forged_first']} has a bad signature (wrong key?)")
                state["forged_first"] = None

    pending = next(head_iter, None)

    def heads_at(size: int, root: bytes) -> None:
        nonlocal pending
        while pending is not None and pending.size <= size:
            if pending.size == size:
                report.heads_checked += 1
                check(pending, root, "signed head")
            else:  # below a size already passed: heads out of order or duplicated
                bad(None, True, f"signed head at size {pending.size} is out of order")
            pending = next(head_iter, None)
        for h in witnessed.pop(size, []):
            report.witness_heads_checked += 1
            check(h, root, "witnessed head")

    frontier = merkle.Frontier()
    structure_ok = True
    heads_at(0, merkle.EMPTY_ROOT)
    for pos, e in enumerate(entries):
        if structure_ok and e.idx != pos:
            structure_ok = False
            bad(pos, True, f"index {pos} is missing or out of order")
        leaf = merkle.leaf_hash(e.entry)
        if e.leaf_hash is not None and e.leaf_hash != leaf:
            bad(pos, True, f"entry {pos} does not match its stored leaf hash")
        if e.patient is not None or e.study_uid is not None:
            try:
                doc = json.loads(e.entry)
                cols = (str(doc.get("patient", ""))[:64], str(doc.get("study_uid", ""))[:64])
            except (ValueError, AttributeError):
                cols = None
            if cols is None or (e.patient, e.study_uid) != cols:
                bad(pos, True, f"entry {pos}: lookup columns disagree with the entry")
        frontier.append(leaf)
        if (pending is not None and pending.size <= frontier.size) or frontier.size in witnessed:
            heads_at(frontier.size, frontier.root())
    report.size = n = frontier.size
    beyond = ([pending] if pending is not None else []) + list(head_iter)
    beyond += [(h) for size in sorted(witnessed) for h in witnessed[size]]
    for h in beyond:  # heads past the last entry: a valid one proves truncation
        state["max_head"] = max(state["max_head"], h.size)
        if head_is_signed(h, public_key):
            bad(n, True, f"a head at size {h.size} covers entries that are gone (truncated at {n})")
        else:
            bad(None, True, f"a head at size {h.size} has a bad signature and is beyond the log")
    trusted = state["trusted"]
    if state["forged_first"] is not None:
        size, below = state["forged_first"], state["forged_trusted"]
        bad(below, size - below == 1, f"a head at size {size} has a bad signature (wrong key?)")
    if trusted < n:
        # exact when nothing claims to sign those entries (rows added above the heads)
        bad(trusted, state["max_head"] <= trusted, f"entries from index {trusted} are not covered by any valid signed head")
    report.newest_head = trusted
    report.first_bad_index, report.exact = state["first_bad"], state["exact"]
    return report


# --- reading a trail: from the database, or from an export ---------------------------------


def db_entries(engine: Engine, *, below: int | None = None, batch: int = 5000) -> Iterator[StoredEntry]:
    """Every entry (index < ``below`` if given), in index order, read in pages (constant
    memory).  The first page has no lower bound, so rows with negative indices show up."""
    last: int | None = None
    with engine.connect() as conn:
        while True:
            q = select(AuditEntry.idx, AuditEntry.entry, AuditEntry.leaf_hash, AuditEntry.patient, AuditEntry.study_uid)
            if last is not None:
                q = q.where(AuditEntry.idx > last)
            if below is not None:
                q = q.where(AuditEntry.idx < below)
            rows = conn.execute(q.order_by(AuditEntry.idx).limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield StoredEntry(r[0], bytes(r[1]), bytes(r[2]), r[3], r[4])
            last = rows[-1][0]


_HEADS = select(
    AuditHead.size, AuditHead.root, AuditHead.timestamp, AuditHead.signature, AuditHead.key_id
).order_by(AuditHead.size)


def db_heads(engine: Engine, *, upto: int | None = None, batch: int = 5000) -> Iterator[SignedHead]:
    """Every signed head (size <= ``upto`` if given) in size order, read in pages."""
    last = -1
    with engine.connect() as conn:
        while True:
            q = _HEADS.where(AuditHead.size > last)
            if upto is not None:
                q = q.where(AuditHead.size <= upto)
            rows = conn.execute(q.limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield SignedHead(r[0], bytes(r[1]), r[2], bytes(r[3]), r[4])
            last = rows[-1][0]


def verify_database(engine: Engine, public_key: Ed25519PublicKey, *, witness: Iterable[SignedHead] = ()) -> Report:
    """Verify the trail as it stood when this call began (a live log keeps appending:
    entries and heads committed later are left for the next run)."""
    below, upto = _snapshot(engine)
    return verify(db_entries(engine, below=below), db_heads(engine, upto=upto), public_key, witness=witness)


def _snapshot(engine: Engine) -> tuple[int, int]:
    """(entries below this index, heads up to this size) as of one instant: one statement
    reads both, and the log commits entries with their heads."""
    with engine.connect() as conn:
        last_idx, last_head = conn.execute(select(
            select(func.max(AuditEntry.idx)).scalar_subquery(), select(func.max(AuditHead.size)).scalar_subquery()
        )).one()
    return (0 if last_idx is None else last_idx + 1), (last_head or 0)


def write_export(engine: Engine, out: IO[str]) -> int:
    """The whole trail as JSON (entries base64, heads as signed), streamed; returns the count.

    Bounded by one snapshot of the sizes, so entries and heads appended meanwhile are left
    for the next export and the file verifies on its own."""
    below, upto = _snapshot(engine)
    heads = [h.to_dict() for h in db_heads(engine, upto=upto)]  # small: one row per head
    out.write(f'{{"format":"{EXPORT_FORMAT}","heads":{json.dumps(heads)},"entries":[')
    n = 0
    for e in db_entries(engine, below=below):
        doc = {"index": e.idx, "entry": base64.b64encode(e.entry).decode("ascii"), "leaf_hash": (e.leaf_hash or b"").hex()}
        out.write(("," if n else "") + json.dumps(doc, separators=(",", ":")))
        n += 1
    out.write("]}\n")
    return n


class ExportError(ValueError):
    """The export file is not a safepacs audit export."""


def read_export(path: Path) -> tuple[list[StoredEntry], list[SignedHead]]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable export ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not a {EXPORT_FORMAT} file")
    try:
        entries = [
            StoredEntry(int(e["index"]), base64.b64decode(e["entry"], validate=True), bytes.fromhex(e["leaf_hash"]))
            for e in doc["entries"]
        ]
        heads = [SignedHead.from_dict(h) for h in doc["heads"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path}: malformed export ({exc.__class__.__name__})") from None
    return entries, heads

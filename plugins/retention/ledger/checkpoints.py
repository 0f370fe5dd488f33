"""Signed checkpoints of the ledger chain, published where a writer of the ledger database cannot reach.

The chain and its ``chain_head`` row live in one database: whoever can write to it can delete an event,
re-hash every later one and move the head, and the chain alone still verifies. A checkpoint is the chain's
last event as ``{seq, hash, at, kid}`` (``at`` read from the ledger database's clock, ``kid`` the signing
key's RFC 7638 thumbprint), signed with an Ed25519 key that is not in that database (a key file, mode
0600), and written once to a store outside it: a directory in the embedded stack, an S3 bucket under
Object Lock in COMPLIANCE mode in production (``checkpoint_stores``). ``verify`` finds such a rewrite at the
first checkpoint whose seq no longer carries the signed hash. Events appended after the last checkpoint are
vouched for by the chain alone: they can be removed undetected until the next checkpoint is published.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import rfc8785
from sqlalchemy import select

from retention.ledger.chain import VerifyResult, event_hash, iso_utc
from retention.ledger.checkpoint_stores import CheckpointError, CheckpointStore, configured_store
from retention.ledger.clock import db_now
from retention.ledger.models import ChainHead
from retention.ledger.store import Ledger
from retention.settings import Settings
from retention.signing_keys import KeySet, SigningKey, SigningKeyError, b64url, b64url_decode

_log = logging.getLogger(__name__)
PREFIX = "checkpoints/"  # one object per checkpoint, named by seq
KEYS_PREFIX = "keys/"  # the public half of every key that signed one, for auditors


class CheckpointInvalid(ValueError):
    """A published object is not a checkpoint signed by a known key."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str  # ISO-8601 UTC, the ledger database's clock
    kid: str

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.seq:020d}.json"  # zero-padded: names sort as seqs do

    def body(self) -> dict[str, int | str]:
        return {"seq": self.seq, "hash": self.hash, "at": self.at, "kid": self.kid}

    def signed(self, key: SigningKey) -> bytes:
        signature = key.sign(rfc8785.dumps(self.body()))
        return rfc8785.dumps({"checkpoint": self.body(), "signature": b64url(signature)})

    @classmethod
    def parse(cls, data: bytes, name: str, keys: KeySet) -> Checkpoint:
        """The checkpoint in ``data`` if it is well formed, named by its own seq and signed by a key in ``keys``."""
        try:
            document = json.loads(data)
            body, signature = document["checkpoint"], b64url_decode(document["signature"])
            checkpoint = cls(seq=body["seq"], hash=body["hash"], at=body["at"], kid=body["kid"])
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointInvalid(f"{name}: not a signed checkpoint ({type(exc).__name__}: {exc})") from None
        if set(body) != {"seq", "hash", "at", "kid"} or not _well_typed(checkpoint):
            raise CheckpointInvalid(f"{name}: not a checkpoint body (seq, hash, at, kid)")
        if not keys.verify(checkpoint.kid, signature, rfc8785.dumps(body)):
            known = "an unknown key" if keys.public_key(checkpoint.kid) is None else "its key"
            raise CheckpointInvalid(f"{name}: signature does not verify with {known} ({checkpoint.kid})")
        if name != checkpoint.name:  # a valid checkpoint copied under another seq's name
            raise CheckpointInvalid(f"{name}: the name does not match the signed seq {checkpoint.seq}")
        return checkpoint


def _well_typed(c: Checkpoint) -> bool:
    if not (type(c.seq) is int and 1 <= c.seq < 2**53 and isinstance(c.hash, str) and len(c.hash) == 64
            and isinstance(c.kid, str) and isinstance(c.at, str)):
        return False
    try:  # ``at`` exactly as iso_utc writes it, so times compare as text
        return c.at == iso_utc(datetime.fromisoformat(c.at))
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# The signing key: a file outside the ledger database, its public halves in a JWKS file beside it


def key_file(settings: Settings) -> Path:
    return settings.checkpoint_key_file or settings.home / "checkpoint-key.pem"


def jwks_file(settings: Settings) -> Path:
    return settings.checkpoint_jwks_file or key_file(settings).with_suffix(".jwks")


def load_key(path: Path) -> SigningKey:
    """The checkpoint signing key; refused unless the file is readable by its owner only."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"RETENTION_CHECKPOINT_KEY_FILE {path}: cannot read the checkpoint key "
                              f"({exc.strerror}); create one with `retention ledger checkpoint --new-key`") from None
    if stat.S_IMODE(mode) & 0o077:
        raise CheckpointError(f"RETENTION_CHECKPOINT_KEY_FILE {path}: mode {stat.S_IMODE(mode):04o} lets other "
                              "users read the key; make it 0600")
    try:
        return SigningKey.from_pem(pem, f"RETENTION_CHECKPOINT_KEY_FILE {path}")
    except SigningKeyError as exc:
        raise CheckpointError(str(exc)) from None


def create_key(path: Path, jwks: Path) -> SigningKey:
    """A new key in ``path`` (mode 0600, never over an existing file); its public half added to ``jwks``,
    where the earlier ones stay, so checkpoints they signed keep verifying."""
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CheckpointError(f"RETENTION_CHECKPOINT_KEY_FILE {path} exists already; it is kept") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key.to_pem())
    known = KeySet.read(jwks)
    KeySet(known.keys + (key.jwk,)).write(jwks)  # every earlier key stays trusted: it signed earlier checkpoints
    return key


def known_keys(settings: Settings) -> KeySet:
    try:
        return KeySet.read(jwks_file(settings))
    except SigningKeyError as exc:
        raise CheckpointError(f"RETENTION_CHECKPOINT_JWKS_FILE: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Publishing


def published(store: CheckpointStore, keys: KeySet) -> Iterator[tuple[str, Checkpoint | CheckpointInvalid]]:
    """Every published checkpoint object, parsed (or why it is invalid), in name order."""
    for name, data in store.read_all(PREFIX):
        try:
            yield name, Checkpoint.parse(data, name, keys)
        except CheckpointInvalid as exc:
            yield name, exc


def publish(ledger: Ledger, store: CheckpointStore, key: SigningKey, keys: KeySet) -> Checkpoint | None:
    """Sign and publish the chain's current head; the checkpoint published, or None for an empty ledger.

    Before signing, the ledger must still agree with the last valid checkpoint and link to it unbroken (the
    first checkpoint: the whole chain must verify), so a checkpoint never vouches for a rewrite; with no new
    event the last checkpoint is returned."""
    with ledger.session() as s:
        # The head's lock, held while the clock is read: no append slips in between, and a concurrent
        # publisher reads a later head only at a later time, so checkpoints' times rise with their seqs.
        head = s.execute(select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1).with_for_update()).one_or_none()
        now = db_now(s)
    if head is None or head.seq == 0:
        return None
    valid = [c for _, c in published(store, keys) if isinstance(c, Checkpoint)]
    last = max(valid, key=lambda c: c.seq, default=None)
    if last is None:  # the first checkpoint vouches for the whole chain: it must verify from genesis
        chain = ledger.verify()
        if not chain.ok:
            raise CheckpointError(f"no checkpoint published: {chain.reason}; run `retention ledger verify`")
    else:
        _check_continues(ledger, last, head.seq, head.hash, iso_utc(now))
        if last.seq == head.seq:
            return last
    checkpoint = Checkpoint(seq=head.seq, hash=head.hash, at=iso_utc(now), kid=key.kid)
    store.create(f"{KEYS_PREFIX}{key.kid}.json", json.dumps(key.jwk, sort_keys=True).encode())
    if not store.create(checkpoint.name, checkpoint.signed(key)):
        # Another publisher took this seq first: fine if it signed the same hash.
        theirs = [c for n, c in published(store, keys) if n == checkpoint.name and isinstance(c, Checkpoint)]
        if not theirs or any(c.hash != checkpoint.hash for c in theirs):
            raise CheckpointError(f"{store.where}: {checkpoint.name} exists with another hash than the ledger's "
                                  f"event {checkpoint.seq}: run `retention ledger verify`")
        return theirs[0]
    _log.info("ledger.checkpoint_published seq=%d hash=%s kid=%s where=%s", checkpoint.seq, checkpoint.hash,
              checkpoint.kid, store.where)
    return checkpoint


def _check_continues(ledger: Ledger, last: Checkpoint, head_seq: int, head_hash: str, now: str) -> None:
    """The ledger from ``last`` up to its head is the chain ``last`` signed, extended; else CheckpointError."""
    problem = None
    if head_seq < last.seq:
        problem = f"the chain head is at {head_seq}, before the last checkpoint at {last.seq}"
    elif now < last.at:
        problem = f"the ledger database's clock reads {now}, before the last checkpoint's {last.at}"
    else:
        prev_hash, expected = None, last.seq
        for ev in ledger.events(after_seq=last.seq - 1, limit=head_seq - last.seq + 1):
            if ev.seq != expected or (prev_hash is not None and ev.prev_hash != prev_hash) or event_hash(ev) != ev.hash:
                problem = f"event {expected} does not continue the chain from the last checkpoint"
                break
            if ev.seq == last.seq and ev.hash != last.hash:
                problem = f"event {last.seq} no longer has the hash its checkpoint signed"
                break
            prev_hash, expected = ev.hash, expected + 1
        if problem is None and (expected != head_seq + 1 or prev_hash != head_hash):
            problem = f"the events end at {expected - 1}, not at the chain head {head_seq}"
    if problem:
        raise CheckpointError(f"no checkpoint published: {problem}; run `retention ledger verify`")


def publish_configured(ledger: Ledger, settings: Settings | None = None) -> Checkpoint | None:
    """``publish`` with the key, the trusted keys and the store the settings name."""
    settings = settings or Settings.from_env()
    key = load_key(key_file(settings))
    keys = known_keys(settings)
    if keys.public_key(key.kid) is None:
        raise CheckpointError(f"RETENTION_CHECKPOINT_JWKS_FILE {jwks_file(settings)} lacks the key {key.kid}: "
                              "its checkpoints could not be verified")
    return publish(ledger, configured_store(settings), key, keys)


def publish_after_certificate(ledger: Ledger, certificate_id: str) -> None:
    """Publish right after a certificate's ledger event. A failure is logged as an error and not raised: the
    certificate is signed and recorded already and its caller must still save and return it; the daily
    ``ledger_checkpoint`` DAG publishes the next checkpoint, which covers this event too."""
    try:
        publish_configured(ledger)
    except Exception as exc:  # noqa: BLE001 - any failure here must not lose the certificate
        _log.error("ledger.checkpoint_failed after certificate=%s: %s: %s (the daily ledger_checkpoint DAG "
                   "publishes the next one)", certificate_id, type(exc).__name__, exc)


# ---------------------------------------------------------------------------------------------
# Verifying


@dataclass(frozen=True)
class CheckpointReport:
    ok: bool
    checkpoints_checked: int
    last_checkpoint_seq: int | None
    bad_checkpoint: str | None  # the first published object that is invalid or disagrees with the ledger
    first_bad_seq_from: int | None  # the first event that disagrees lies in this range (equal ends: that event)
    first_bad_seq_to: int | None
    reason: str

    def as_dict(self) -> dict[str, bool | int | str | None]:
        return {"ok": self.ok, "checkpoints_checked": self.checkpoints_checked,
                "last_checkpoint_seq": self.last_checkpoint_seq, "bad_checkpoint": self.bad_checkpoint,
                "first_bad_seq_from": self.first_bad_seq_from, "first_bad_seq_to": self.first_bad_seq_to,
                "reason": self.reason}


def verify(ledger: Ledger, store: CheckpointStore, keys: KeySet, chain: VerifyResult) -> CheckpointReport:
    """Check every published checkpoint against the ledger, in seq order.

    Each must be signed by a key in ``keys``, follow the one before it (a higher seq, a time not earlier),
    and name an event of the ledger carrying the signed hash. ``chain`` is the ledger's own chain
    verification, used to narrow down where the first altered event lies."""
    checkpoints: list[tuple[str, Checkpoint]] = []
    for name, parsed in published(store, keys):
        if isinstance(parsed, CheckpointInvalid):
            return _bad(len(checkpoints), name, None, None, f"checkpoint {parsed}")
        checkpoints.append((name, parsed))
    checkpoints.sort(key=lambda item: (item[1].seq, item[1].at))
    for (_, before), (name, after) in pairwise(checkpoints):
        if after.seq == before.seq or after.at < before.at:
            return _bad(0, name, None, None,
                        f"checkpoint {name} (seq {after.seq}, at {after.at}) does not follow checkpoint seq "
                        f"{before.seq} at {before.at}: seqs must rise and times must not go back")
    agreed = 0  # the highest seq a checkpoint vouches for: events 1..agreed are as they were signed
    for checked, (name, cp) in enumerate(checkpoints):
        event = next(iter(ledger.events(after_seq=cp.seq - 1, limit=1)), None)
        if event is not None and event.seq == cp.seq and event.hash == cp.hash:
            agreed = cp.seq
            continue
        found = "has no such event" if event is None or event.seq != cp.seq else f"has hash {event.hash[:16]}…"
        low, high = agreed + 1, cp.seq
        if chain.ok and (event is None or event.seq != cp.seq):
            high = min(high, ledger.head()[0] + 1)  # the chain is whole up to its head, so the next is missing
        if not chain.ok and chain.first_bad_seq is not None and chain.first_bad_seq <= high:
            low = high = chain.first_bad_seq  # the chain itself names the first event that breaks
        where = f"event {low}" if low == high else f"one of events {low}..{high}"
        return _bad(checked, name, low, high,
                    f"checkpoint {name} signed event {cp.seq} with hash {cp.hash[:16]}… at {cp.at}; the ledger "
                    f"{found}. The first event removed or altered is {where}"
                    + (f" (event {agreed} still carries the hash its checkpoint signed)" if agreed else ""))
    last = checkpoints[-1][1].seq if checkpoints else None
    if last is None:
        reason = (f"no checkpoint published in {store.where}: only the chain is checked, and a database writer "
                  "can remove an event and re-hash the rest undetected")
    else:
        reason = (f"{len(checkpoints)} checkpoint(s) in {store.where} match the ledger up to event {last}; "
                  f"events after {last} are vouched for by the chain only")
    return CheckpointReport(True, len(checkpoints), last, None, None, None, reason)


def _bad(checked: int, name: str, low: int | None, high: int | None, reason: str) -> CheckpointReport:
    return CheckpointReport(False, checked, None, name, low, high, reason)


def verify_configured(ledger: Ledger, chain: VerifyResult, settings: Settings | None = None) -> CheckpointReport:
    settings = settings or Settings.from_env()
    return verify(ledger, configured_store(settings), known_keys(settings), chain)


__all__ = ["Checkpoint", "CheckpointError", "CheckpointInvalid", "CheckpointReport", "create_key", "jwks_file",
           "key_file", "known_keys", "load_key", "publish", "publish_after_certificate", "publish_configured",
           "published", "verify", "verify_configured"]

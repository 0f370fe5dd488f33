"""Free text kept out of the chain and erasable: a reason, a reference, a ticket, by its salted digest."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from retention.ledger.chain import iso_utc
from retention.ledger.checks import check_free_text, check_kind, check_staff
from retention.ledger.clock import db_now
from retention.ledger.events import append_event, keep
from retention.ledger.models import ErasableText, LegalHoldRow
from retention.ledger.transactions import Transactions

ERASED = "(erased)"  # what a legal hold's reference reads once its text was erased


class TextErased(LookupError):
    """The text behind a digest was erased (``Ledger.erase_text``): only its digest remains, in the chain."""


class KeptTexts(Transactions):
    """Keeping, reading and erasing the free texts events refer to by digest."""

    def keep_text(self, text: str, purpose: str, *, session: Session | None = None) -> str:
        """Keep ``text`` in ``erasable_texts``; returns the digest an event may carry instead of the text."""
        text, purpose = check_free_text(text, "text"), check_kind(purpose, "purpose")
        with self._tx(session) as s:
            return keep(s, text, purpose)

    def text(self, sha256: str) -> str:
        """The text behind a digest; ``TextErased`` once erased, ``LookupError`` for an unknown digest."""
        with self._reader() as s:
            row = s.get(ErasableText, sha256)
        if row is None:
            raise LookupError(f"no kept text with digest {sha256!r}")
        if row.erased_at is not None or row.text is None:
            raise TextErased(f"the text with digest {sha256} was erased at {_when(row)}")
        return row.text

    def text_or(self, sha256: str | None, erased: str = ERASED) -> str | None:
        """The text behind a digest for a document or a page: ``erased`` when it was erased, None for None."""
        if sha256 is None:
            return None
        try:
            return self.text(sha256)
        except TextErased:
            return erased

    def erase_text(self, sha256: str, *, erased_by: str) -> None:
        """Erase a kept text (and its salt): the digest in the chain stays and still verifies, the words are
        gone. A legal hold whose reference it was shows ``(erased)`` from then on. Recorded as
        ``text.erased`` (the digest and the purpose only)."""
        erased_by = check_staff(erased_by, "erased_by")

        def write() -> None:
            with self.session() as s:
                row = s.get(ErasableText, sha256, with_for_update=True)
                if row is None:
                    raise LookupError(f"no kept text with digest {sha256!r}")
                if row.erased_at is not None:
                    raise ValueError(f"the text with digest {sha256} was already erased at {_when(row)}")
                row.text, row.salt, row.erased_at = None, None, db_now(s)
                s.execute(update(LegalHoldRow).where(LegalHoldRow.reference_sha256 == sha256)
                          .values(reference=ERASED))
                s.flush()
                append_event(s, kind="text.erased", actor=erased_by,
                             payload={"text_sha256": sha256, "purpose": row.purpose})
        self._retrying(write, "erase of a kept text")


def _when(row: ErasableText) -> str:
    return iso_utc(row.erased_at) if row.erased_at is not None else "an unrecorded time"

"""Append-only, hash-chained audit ledger (SQLite file by default, PostgreSQL in production).

No personal data may enter it: account ids, data class names, counts, hashes and staff ids only. Free text an
event is about (a reason, a reference, a ticket) is kept in the erasable ``erasable_texts`` table and the event
carries its digest (``Ledger.append(texts=...)``, ``Ledger.erase_text``).
"""

from retention.ledger.chain import (
    PayloadError,
    VerifyResult,
    canonical_json,
    compute_hash,
    event_hash,
    iso_utc,
    verify,
)
from retention.ledger.database import (
    MIGRATIONS_DIR,
    LedgerSchemaError,
    create_ledger_engine,
    current_revision,
    database_url,
    head_revision,
    migrate,
    normalize_url,
)
from retention.ledger.guard import PersonalDataError, looks_personal
from retention.ledger.holds import HoldRecord
from retention.ledger.models import (
    GENESIS_HASH,
    VERSION_TABLE,
    Base,
    Certificate,
    ChainHead,
    ErasableText,
    Event,
    LegalHoldRow,
    PlannedTask,
    Run,
)
from retention.ledger.store import Ledger
from retention.ledger.texts import TextErased

__all__ = [
    "GENESIS_HASH", "MIGRATIONS_DIR", "VERSION_TABLE", "Base", "Certificate", "ChainHead", "ErasableText", "Event",
    "HoldRecord", "Ledger", "LedgerSchemaError", "LegalHoldRow", "PayloadError", "PersonalDataError",
    "PlannedTask", "Run", "TextErased", "VerifyResult", "canonical_json", "compute_hash", "create_ledger_engine",
    "current_revision", "database_url", "event_hash", "head_revision", "iso_utc", "looks_personal",
    "migrate", "normalize_url", "verify",
]

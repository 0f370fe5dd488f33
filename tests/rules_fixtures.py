"""A minimal valid rule set that tests copy and break one field at a time."""

from __future__ import annotations

from pathlib import Path

DATA_CLASSES = """\
ccpa_categories:
  contact_data:
    statutory: [identifiers]
subprocessors: {}
data_classes:
  chat_transcripts:
    description: Chats
    category: service_data
    personal_data: true
    ccpa_category: contact_data
    sources: [chat]
    record_timestamps: [created_at]
    seed_reference: PP 2
"""

JURISDICTIONS = """\
jurisdictions:
  EEA: {name: European Economic Area, framework: GDPR, citation: DPA Annex 1}
  OTHER: {name: Other, framework: DPA, citation: DPA 7(b)}
"""

RULES = """\
rules:
  - id: chats-in-service
    data_class: chat_transcripts
    account_states: [trial, active, suspended]
    retain_for: P30D
    anchor: created_at
    action: delete
    basis: {kind: contract, citation: DPA 3, summary: default period, quote: "kept for 30 days"}
    override_bounds: {min: P1D, max: P90D}
  - id: chats-terminated
    data_class: chat_transcripts
    account_states: [terminated]
    retain_for: P30D
    anchor: terminated_at
    action: return_then_delete
    basis: {kind: contract, citation: DPA 7(b), summary: return or delete, quote: "30 days after termination"}
"""

OVERRIDES = "overrides: []\n"

# A Redis location, to append under ``locations:`` of a systems.yaml: an account's keys by pattern, each dated by
# its third ":" segment (a day).
PRESENCE = """\
  presence:
    kind: redis
    data_class: chat_transcripts
    conn_id: presence_cache
    key_pattern: "presence:{account_id}:*"
    timestamp: {key_segment: 2, format: "%Y-%m-%d"}
"""


class RulesDir:
    """A rules folder in tmp_path; ``write(rules=...)`` replaces one file's text."""

    def __init__(self, root: Path):
        self.root = root
        self.texts: dict[str, str] = {}
        self.write(data_classes=DATA_CLASSES, jurisdictions=JURISDICTIONS, rules=RULES, overrides=OVERRIDES)

    def write(self, **texts: str) -> RulesDir:
        for name, text in texts.items():
            self.texts[name] = text
            (self.root / f"{name}.yaml").write_text(text)
        return self

    def path(self, name: str) -> str:
        return str(self.root / f"{name}.yaml")

    def line_of(self, name: str, fragment: str) -> int:
        """1-based line of the first line containing ``fragment`` (plain text search, no YAML)."""
        for number, line in enumerate(self.texts[name].splitlines(), start=1):
            if fragment in line:
                return number
        raise AssertionError(f"{fragment!r} not in {name}.yaml")


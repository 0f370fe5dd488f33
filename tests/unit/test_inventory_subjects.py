"""systems.yaml ``subjects:``: where each kind of a person's identifiers is kept, refused (file:line:field) when a
column or key segment could not name a person, or a SQL lookup names no index."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.rules import RulesError, load_ruleset
from retention.rules.inventory import S3Location, SqlLocation, SubjectColumn, SubjectKeySegment, load_inventory

REPO = Path(__file__).resolve().parents[2]

SYSTEMS = """\
locations:
  chats:
    kind: sql
    data_class: chat_transcripts
    conn_id: app_db
    table: chat_conversations
    account_column: account_id
    timestamps: {created_at: created_at}
    subjects:
      email: {column: visitor_email, index: chats_email}
  attachments:
    kind: s3
    data_class: chat_transcripts
    conn_id: object_store
    bucket: chat-attachments
    key_template: "tenants/{account_id}/attachments/"
    timestamp: {key_segment: 3, format: "%Y-%m-%d"}
    subjects:
      visitor_id: {key_segment: 4}
"""


def load(rules_dir, text: str):
    path = rules_dir.root / "systems.yaml"
    path.write_text(text)
    return load_inventory(path, load_ruleset(rules_dir.root))


def only_issue(rules_dir, text: str):
    with pytest.raises(RulesError) as caught:
        load(rules_dir, text)
    assert len(caught.value.issues) == 1, caught.value
    return caught.value.issues[0]


def test_subject_columns_and_segments_load(rules_dir):
    systems = load(rules_dir, SYSTEMS)
    chats, attachments = systems.locations["chats"], systems.locations["attachments"]
    assert isinstance(chats, SqlLocation) and isinstance(attachments, S3Location)
    assert chats.subjects == {"email": SubjectColumn(column="visitor_email", index="chats_email")}
    assert attachments.subjects == {"visitor_id": SubjectKeySegment(key_segment=4)}
    assert chats.subject_kinds() == {"email"} and attachments.subject_kinds() == {"visitor_id"}


def test_the_shipped_inventory_names_each_persons_identifiers():
    systems = load_inventory(REPO / "retention_rules" / "systems.yaml", load_ruleset(REPO / "retention_rules"))
    kinds = {name: loc.subject_kinds() for name, loc in systems.locations.items()}
    assert kinds == {
        "chat_conversations": {"email", "visitor_id"}, "chat_attachments": {"visitor_id"}, "call_recordings": set(),
        "meetings": {"email"}, "visitors": {"visitor_id"}, "page_views": {"visitor_id"},
        "contacts": {"email", "phone"}, "crm_sync_queue": set(), "email_events": {"email"}, "app_users": {"email"},
        "invoices": {"email"}, "invoices_isolated": {"email"},  # the isolated copy keeps the same subjects
    }
    vault = systems.locations["invoices_isolated"]
    assert isinstance(vault, SqlLocation) and vault.table == "retention_vault.invoices"
    assert vault.subjects["email"] == SubjectColumn(column="billing_contact", index="invoices_billing_contact")


def test_a_subject_column_without_an_index_is_refused_naming_the_field(rules_dir):
    issue = only_issue(rules_dir, SYSTEMS.replace("{column: visitor_email, index: chats_email}",
                                                  "{column: visitor_email}"))
    assert (issue.line, issue.field) == (10, "locations.chats.subjects.email.index")


@pytest.mark.parametrize("column", ["account_id", "id"])
def test_the_account_or_key_column_is_not_a_subject_column(rules_dir, column):
    issue = only_issue(rules_dir, SYSTEMS.replace("column: visitor_email", f"column: {column}"))
    assert (issue.line, issue.field) == (10, "locations.chats.subjects.email.column")
    assert f"column {column!r} is the" in issue.message and "subjects.email" in issue.message


@pytest.mark.parametrize("segment", [1, 2])  # 0 is refused by the model already (key_segment >= 1)
def test_a_key_segment_inside_the_key_templates_prefix_is_refused(rules_dir, segment):
    issue = only_issue(rules_dir, SYSTEMS.replace("visitor_id: {key_segment: 4}",
                                                  f"visitor_id: {{key_segment: {segment}}}"))
    assert (issue.line, issue.field) == (19, "locations.attachments.subjects.visitor_id.key_segment")
    assert "lies in the key template's prefix" in issue.message and issue.hint == "name a segment from 3 on"


def test_the_first_segment_after_the_prefix_is_allowed(rules_dir):
    systems = load(rules_dir, SYSTEMS.replace("visitor_id: {key_segment: 4}", "visitor_id: {key_segment: 3}"))
    attachments = systems.locations["attachments"]
    assert isinstance(attachments, S3Location) and attachments.subjects["visitor_id"].key_segment == 3


def test_an_unknown_identifier_kind_is_refused(rules_dir):
    issue = only_issue(rules_dir, SYSTEMS.replace("      email: {column", "      e_mail: {column"))
    assert issue.field.startswith("locations.chats.subjects")

"""systems.yaml: where data lives, validated as strictly as the rules and cross-checked against them."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.rules import RulesError, load_ruleset
from retention.rules.inventory import S3Location, SqlLocation, load_inventory
from tests.rules_fixtures import PRESENCE

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
  attachments:
    kind: s3
    data_class: chat_transcripts
    conn_id: object_store
    bucket: chat-attachments
    key_template: "tenants/{account_id}/attachments/"
    timestamp: {key_segment: 3, format: "%Y-%m-%d"}
    versioned: true
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


def test_the_shipped_inventory_is_valid_and_covers_every_personal_data_class():
    ruleset = load_ruleset(REPO / "retention_rules")
    systems = load_inventory(REPO / "retention_rules" / "systems.yaml", ruleset)
    located = {loc.data_class for loc in systems.locations.values()} | set(systems.not_stored)
    personal = {name for name, dc in ruleset.data_classes.data_classes.items() if dc.personal_data}
    assert personal <= located


def test_a_minimal_inventory_loads_both_kinds(rules_dir):
    systems = load(rules_dir, SYSTEMS)
    assert isinstance(systems.locations["chats"], SqlLocation)
    attachments = systems.locations["attachments"]
    assert isinstance(attachments, S3Location) and attachments.prefix("acct_1") == "tenants/acct_1/attachments/"


def test_unknown_data_class_in_a_location_is_refused(rules_dir):
    with pytest.raises(RulesError) as caught:
        load(rules_dir, SYSTEMS.replace("data_class: chat_transcripts", "data_class: chat_transcript", 1))
    issue = next(i for i in caught.value.issues if i.field == "locations.chats.data_class")
    assert (issue.line, issue.message) == (4, "unknown data class 'chat_transcript'")


def test_missing_location_for_personal_data_names_the_class(rules_dir):
    text = "locations:\n  chats:\n" + "\n".join(SYSTEMS.splitlines()[2:8]) + "\n"
    rules_dir.write(data_classes=rules_dir.texts["data_classes"] + """\
  call_recordings:
    description: Calls
    category: service_data
    personal_data: true
    ccpa_category: contact_data
    sources: [voice_video]
    record_timestamps: [created_at]
    seed_reference: PP 2
""", rules=rules_dir.texts["rules"] + """\
  - id: calls-all
    data_class: call_recordings
    account_states: [trial, active, suspended, terminated]
    retain_for: P1Y
    anchor: created_at
    action: delete
    basis: {kind: policy, citation: x, summary: y}
""")
    issue = only_issue(rules_dir, text)
    assert (issue.line, issue.field) == (1, "locations")
    assert "personal data class 'call_recordings' has no location" in issue.message
    assert "not_stored" in issue.hint
    assert load(rules_dir, text + "not_stored:\n  call_recordings: only at Twilio\n").not_stored


def test_a_rule_anchor_the_table_has_no_column_for_is_refused(rules_dir):
    both = "[created_at, last_activity_at]"
    rules_dir.write(data_classes=rules_dir.texts["data_classes"].replace("[created_at]", both),
                    rules=rules_dir.texts["rules"].replace("anchor: created_at", "anchor: last_activity_at"))
    issue = only_issue(rules_dir, SYSTEMS.split("  attachments:")[0])
    assert (issue.line, issue.field) == (8, "locations.chats.timestamps")
    assert "'last_activity_at'" in issue.message


def test_anonymize_rule_needs_columns_to_clear(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("    action: delete\n", "    action: anonymize\n"))
    issue = only_issue(rules_dir, SYSTEMS.split("  attachments:")[0])
    assert issue.field == "locations.chats" and "anonymize" in issue.message


def test_an_object_store_cannot_be_anonymized(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("    action: delete\n", "    action: anonymize\n"))
    text = SYSTEMS.replace("    timestamps: {created_at: created_at}\n",
                           "    timestamps: {created_at: created_at}\n    anonymize: {set_null: [visitor_ip]}\n")
    issue = only_issue(rules_dir, text)
    assert issue.field == "locations.attachments.data_class" and "cannot be" in issue.message


def test_a_key_template_without_the_account_is_refused(rules_dir):
    issue = only_issue(rules_dir, SYSTEMS.replace('"tenants/{account_id}/attachments/"', '"tenants/attachments/"'))
    assert (issue.line, issue.field) == (14, "locations.attachments.key_template")


def test_unknown_key_in_a_location_names_the_allowed_ones(rules_dir):
    issue = only_issue(rules_dir, SYSTEMS.replace("    versioned: true", "    versoned: true"))
    assert (issue.line, issue.field, issue.message) == (16, "locations.attachments.versoned", "unknown key 'versoned'")
    assert "did you mean 'versioned'?" in issue.hint


def keep_chats_under_law(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("    action: delete\n", "    action: retain_isolated\n")
                    .replace("{kind: contract, citation: DPA 3,", "{kind: statute, citation: HGB 257,"))


def test_a_table_kept_isolated_under_law_must_name_where_it_goes(rules_dir):
    keep_chats_under_law(rules_dir)
    issue = only_issue(rules_dir, SYSTEMS.split("  attachments:")[0])
    assert (issue.line, issue.field) == (3, "locations.chats") and "isolated" in issue.message
    assert issue.hint == "add isolate_to: <schema.table>"


def test_the_isolated_table_becomes_a_location_of_its_own(rules_dir):
    keep_chats_under_law(rules_dir)
    systems = load(rules_dir, SYSTEMS.split("  attachments:")[0] + "    isolate_to: retention_vault.chats\n")
    isolated = systems.locations["chats_isolated"]
    assert (isolated.table, isolated.isolate_to, isolated.data_class) == \
        ("retention_vault.chats", None, "chat_transcripts")


def test_isolation_into_the_same_table_is_refused(rules_dir):
    issue = only_issue(rules_dir, SYSTEMS.split("  attachments:")[0] + "    isolate_to: chat_conversations\n")
    assert issue.field.startswith("locations.chats") and "another table" in issue.message


def test_an_object_store_cannot_keep_data_isolated(rules_dir):
    keep_chats_under_law(rules_dir)
    issue = only_issue(rules_dir, SYSTEMS.replace("    timestamps: {created_at: created_at}\n",
                                                  "    timestamps: {created_at: created_at}\n"
                                                  "    isolate_to: retention_vault.chats\n"))
    assert issue.field == "locations.attachments.data_class" and "SQL tables only" in issue.message


def test_a_redis_location_loads_with_its_pattern_and_key_time(rules_dir):
    from retention.rules.inventory import RedisLocation

    presence = load(rules_dir, SYSTEMS + PRESENCE).locations["presence"]
    assert isinstance(presence, RedisLocation) and presence.match("acme") == "presence:acme:*"
    assert presence.record_anchors() == {"created_at"}


@pytest.mark.parametrize("pattern", ["presence:{account_id}*", "presence:{account_id}", "presence:{account_id}2:*",
                                     "*:{account_id}:*", "presence:[ab]{account_id}:*", "presence:{account_id}?"])
def test_a_redis_pattern_that_could_match_another_account_is_refused_with_its_line(rules_dir, pattern):
    text = SYSTEMS + PRESENCE.replace('"presence:{account_id}:*"', f'"{pattern}"')
    if pattern == "presence:{account_id}":  # one key per account, the id at the end: nothing else can match
        assert load(rules_dir, text).locations["presence"].match("acme") == "presence:acme"
        return
    issue = only_issue(rules_dir, text)
    assert (issue.line, issue.field) == (21, "locations.presence.key_pattern")
    assert "another account" in issue.message or "acme2" in issue.message


def test_a_redis_location_without_a_key_time_cannot_serve_a_created_at_rule(rules_dir):
    undated = PRESENCE.replace('    timestamp: {key_segment: 2, format: "%Y-%m-%d"}\n', "")
    issue = only_issue(rules_dir, SYSTEMS + undated)
    assert issue.field == "locations.presence.data_class" and "anchors on created_at" in issue.message
    assert "timestamp" in issue.hint


def test_a_redis_location_cannot_be_anonymized(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("    action: delete\n", "    action: anonymize\n"))
    text = SYSTEMS.replace("    timestamps: {created_at: created_at}\n",
                           "    timestamps: {created_at: created_at}\n    anonymize: {set_null: [visitor_ip]}\n")
    with pytest.raises(RulesError) as caught:
        load(rules_dir, text + PRESENCE)
    redis = [i for i in caught.value.issues if i.field == "locations.presence.data_class"]
    assert len(redis) == 1 and "keys cannot be" in redis[0].message and "SQL tables only" in redis[0].message

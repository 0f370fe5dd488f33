"""Connector specs are refused whole, with file:line:field, when they are malformed or not aimed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from retention.rules.errors import RulesError
from retention.rules.loader import load_ruleset
from retention.subprocessors import load_spec, load_specs

RULES = Path(__file__).resolve().parents[2] / "retention_rules"

GOOD = """\
subprocessor: twilio
docs: [https://www.twilio.com/docs/voice/api/recording]
conn_id: twilio
base_url: https://api.twilio.com
auth: {kind: basic}
resources:
  recordings:
    data_class: call_recordings
    description: Call recordings.
    find:
      request: {method: GET, path: "/2010-04-01/Accounts/{account_id}/Recordings.json"}
      pagination: {style: next_url, field: next_page_uri}
      items: recordings
      id: sid
    delete:
      request: {method: DELETE, path: "/2010-04-01/Accounts/{account_id}/Recordings/{id}.json"}
    verify: {kind: find_empty}
    max_records: 100000
"""


RECORDING = '"/2010-04-01/Accounts/{account_id}/Recordings/{id}.json"'  # the delete's path, as GOOD writes it
RECORDINGS = '"/2010-04-01/Accounts/{account_id}/Recordings.json"'  # the find's


# Every API spec needs its credentials pre-flight; appended last, so the line numbers asserted below hold.
PREFLIGHT = "test_request: {method: GET, path: /2010-04-01/Accounts.json}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text) + PREFLIGHT)
    return path


def problems(tmp_path: Path, text: str) -> list:
    ruleset = load_ruleset(RULES)
    with pytest.raises(RulesError) as refused:
        load_spec(write(tmp_path, text), subprocessors=set(ruleset.data_classes.subprocessors),
                  data_classes=set(ruleset.data_classes.data_classes))
    return refused.value.issues


def test_the_minimal_spec_loads(tmp_path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.resources["recordings"].delete.batch == 1


def test_an_unknown_pagination_style_is_refused_at_its_line(tmp_path) -> None:
    issues = problems(tmp_path, GOOD.replace("style: next_url, field: next_page_uri", "style: infinite_scroll"))
    assert [(i.line, i.field) for i in issues] == [(12, "resources.recordings.find.pagination")]
    assert "infinite_scroll" in issues[0].message or "style" in issues[0].message
    assert str(issues[0]).startswith(f"{tmp_path / 'spec.yaml'}:12:")


def test_a_resource_without_a_delete_request_is_refused(tmp_path) -> None:
    text = GOOD.replace(f"      request: {{method: DELETE, path: {RECORDING}}}\n", "      batch: 1\n")
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [(16, "resources.recordings.delete.request")]
    assert "required" in issues[0].message.lower()


def test_a_tenant_delete_without_a_tenant_filter_is_refused(tmp_path) -> None:
    text = GOOD.replace(f"      request: {{method: DELETE, path: {RECORDING}}}",
                        '      scope: query\n      request: {method: POST, path: /v1/deletions, body: {query: "*"}}')
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [(17, "resources.recordings.delete.request")]
    assert "every customer" in issues[0].hint


def test_a_delete_all_switch_is_refused_wherever_it_appears(tmp_path) -> None:
    text = GOOD.replace(f"path: {RECORDING}}}", f'path: {RECORDING}, query: {{delete_all_contacts: "true"}}}}')
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [
        (16, "resources.recordings.delete.request.query.delete_all_contacts")]
    assert "delete everything" in issues[0].message


def test_a_record_delete_that_names_no_id_is_refused(tmp_path) -> None:
    issues = problems(tmp_path, GOOD.replace("/Recordings/{id}.json\"}", "/Recordings.json\"}"))
    assert [(i.line, i.field) for i in issues] == [(16, "resources.recordings.delete.request")]
    assert "{id}" in issues[0].message


def test_an_async_job_verified_by_record_ids_is_refused(tmp_path) -> None:
    # The task waits for a job in the triggerer; the record ids would have to wait in Airflow's database.
    job = ("    completion:\n      kind: async_job\n      job_id: job_id\n"
           "      status: {method: GET, path: \"/jobs/{job_id}\"}\n      status_field: status\n"
           "      done: [completed]\n      poll_every: PT2S\n      max_wait: PT1H\n")
    text = GOOD.replace("    verify: {kind: find_empty}\n", job + "    verify:\n      kind: get_absent\n"
                        f"      request: {{method: GET, path: {RECORDING}}}\n")
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [(26, "resources.recordings.verify.kind")]
    assert "find_empty" in issues[0].hint


def test_an_unknown_key_is_refused_with_the_keys_allowed_there(tmp_path) -> None:
    issues = problems(tmp_path, GOOD.replace("      id: sid\n", "      id: sid\n      sort: newest\n"))
    assert [(i.line, i.field) for i in issues] == [(15, "resources.recordings.find.sort")]
    # find is a union told apart by a callable (request or recorded): the hint lists the chosen member's keys
    assert issues[0].hint == "allowed keys: request, pagination, items, id, match, cap"


def test_an_unknown_key_under_a_fan_out_lists_the_listed_fan_outs_keys(tmp_path) -> None:
    fan_out = ("    fan_out:\n      request: {method: GET, path: /subaccounts, query: {name: \"{account_id}\"}}\n"
               "      pagination: {style: none}\n      bind: {sub: sid}\n      item: subaccounts\n")
    issues = problems(tmp_path, GOOD.replace("    find:\n", fan_out + "    find:\n", 1))
    assert [(i.line, i.field) for i in issues] == [(14, "resources.recordings.fan_out.item")]
    assert issues[0].hint == ("did you mean 'items'? "
                              "allowed keys: bind, match, headers, request, pagination, items")


def test_an_unknown_key_beside_recorded_ids_lists_the_recorded_finds_keys(tmp_path) -> None:
    listed = ("      request: {method: GET, path: " + RECORDINGS + "}\n"
              "      pagination: {style: next_url, field: next_page_uri}\n      items: recordings\n      id: sid\n")
    recorded = ("      recorded: {conn_id: app, table: recordings, id_column: sid, account_column: account_id}\n"
                "      recordd: yes\n")
    issues = problems(tmp_path, GOOD.replace(listed, recorded))
    assert [(i.line, i.field) for i in issues] == [(11, "resources.recordings.find.recordd")]
    assert issues[0].hint == "did you mean 'recorded'? allowed keys: recorded"


def test_unknown_placeholders_and_references_are_all_reported_at_once(tmp_path) -> None:
    text = (GOOD.replace("subprocessor: twilio", "subprocessor: twillio")
            .replace("data_class: call_recordings", "data_class: recordings")
            .replace("Recordings.json\"}", "Recordings.json\", query: {Owner: \"{customer}\"}}"))
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [
        (1, "subprocessor"), (8, "resources.recordings.data_class"),
        (11, "resources.recordings.find.request.query.Owner")]
    assert "twilio" in issues[0].hint and "{account_id}" in issues[2].hint


def test_every_shipped_spec_loads_against_the_shipped_rules() -> None:
    ruleset = load_ruleset(RULES)
    specs = load_specs(RULES / "subprocessors", subprocessors=set(ruleset.data_classes.subprocessors),
                       data_classes=set(ruleset.data_classes.data_classes))
    assert {"twilio", "sixsense", "clearbit", "coralogix"} <= set(specs)
    assert all(specs[name].manual is not None for name in ("sixsense", "clearbit", "coralogix"))


def test_a_record_delete_without_max_records_is_refused_at_its_resource(tmp_path) -> None:
    issues = problems(tmp_path, GOOD.replace("    max_records: 100000\n", ""))
    assert [(i.line, i.field) for i in issues] == [(7, "resources.recordings.max_records")]
    assert "record delete needs max_records" in issues[0].message


def test_a_subject_delete_without_max_records_is_refused(tmp_path) -> None:
    text = (GOOD.replace("    max_records: 100000\n", "")
            .replace("    delete:\n", "    delete:\n      scope: subject\n"))
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [(7, "resources.recordings.max_records")]


def test_a_tenant_delete_needs_no_max_records(tmp_path) -> None:
    text = (GOOD.replace("    max_records: 100000\n", "")
            .replace('/Recordings/{id}.json"}', '/Recordings.json"}\n      scope: tenant'))
    assert load_spec(write(tmp_path, text)).resources["recordings"].max_records is None


def test_a_find_aimed_at_no_tenant_is_refused_at_its_line(tmp_path) -> None:
    # Every customer's recordings would be listed, and the deletes follow the find.
    text = GOOD.replace(f"path: {RECORDINGS}}}", "path: /2010-04-01/Recordings.json}")
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [(11, "resources.recordings.find.request")]
    assert "not aimed at one tenant" in issues[0].message and "{account_id}" in issues[0].message
    assert str(issues[0]).startswith(f"{tmp_path / 'spec.yaml'}:11:")


def test_a_match_that_names_no_tenant_does_not_aim_a_find(tmp_path) -> None:
    text = GOOD.replace(f"path: {RECORDINGS}}}", "path: /2010-04-01/Recordings.json}")
    issues = problems(tmp_path, text.replace("      id: sid\n", "      id: sid\n      match: {status: completed}\n"))
    assert [(i.line, i.field) for i in issues] == [(11, "resources.recordings.find.request")]


def test_a_find_aimed_by_a_match_or_a_fan_out_header_loads(tmp_path) -> None:
    unfiltered = GOOD.replace('path: "/2010-04-01/Accounts/{account_id}/Recordings.json"}',
                              "path: /2010-04-01/Recordings.json}")
    matched = unfiltered.replace("      id: sid\n", '      id: sid\n      match: {account_sid: "{account_id}"}\n')
    assert load_spec(write(tmp_path, matched)).resources["recordings"].find.match == {"account_sid": "{account_id}"}
    fan_out = ("    fan_out:\n      request: {method: GET, path: /subaccounts, query: {name: \"{account_id}\"}}\n"
               "      pagination: {style: none}\n      bind: {sub: sid}\n      headers: {On-Behalf-Of: \"{sub}\"}\n")
    behalf = unfiltered.replace("    find:\n", fan_out + "    find:\n", 1)
    assert load_spec(write(tmp_path, behalf)).resources["recordings"].fan_out.bind == {"sub": "sid"}


def test_a_fan_out_aimed_at_no_account_is_refused(tmp_path) -> None:
    fan_out = ("    fan_out:\n      request: {method: GET, path: /subaccounts}\n"
               "      pagination: {style: none}\n      bind: {sub: sid}\n")
    text = GOOD.replace("    find:\n", fan_out + "    find:\n", 1)
    issues = problems(tmp_path, text)
    assert [(i.line, i.field) for i in issues] == [(11, "resources.recordings.fan_out.request")]
    assert "not aimed at one account" in issues[0].message


# -- assumptions -----------------------------------------------------------------------------------

UNPOLLABLE = GOOD.replace("    verify: {kind: find_empty}\n", """\
    completion: {kind: async_unpollable, assume_done_after: P30D}
    verify: {kind: after_completion}
""")


def test_a_completion_period_nobody_documents_must_be_declared_an_assumption(tmp_path) -> None:
    issues = problems(tmp_path, UNPOLLABLE)
    assert [i.field for i in issues] == ["resources.recordings.completion.assume_done_after"]
    assert "our assumption" in issues[0].message


def test_a_completion_period_with_its_source_or_an_assumption_loads(tmp_path) -> None:
    sourced = UNPOLLABLE.replace("assume_done_after: P30D}",
                                 "assume_done_after: P30D, source: 'Provider docs, Deletion'}")
    assert load_spec(write(tmp_path, sourced)).resources["recordings"].completion.source
    assumed = UNPOLLABLE + """\
    assumptions:
      - {key: done_in_30_days, fact: The job is done in 30 days., why: The provider states no time.}
"""
    spec = load_spec(write(tmp_path, assumed))
    assert [(a.key, a.bears_on) for a in spec.resources["recordings"].assumptions] == [("done_in_30_days", "outcome")]


def test_an_operational_assumption_does_not_stand_for_a_completion_period(tmp_path) -> None:
    text = UNPOLLABLE + """\
    assumptions:
      - {key: retry_after, fact: 429 carries Retry-After., why: Undocumented., bears_on: operation}
"""
    assert [i.field for i in problems(tmp_path, text)] == ["resources.recordings.completion.assume_done_after"]


def test_assumption_keys_are_short_fixed_identifiers_and_unique(tmp_path) -> None:
    """The ledger names an assumption by its key alone: one key, one assumption, no free text."""
    text = GOOD.replace("    max_records: 100000\n", "    max_records: 100000\n    assumptions:\n"
                        "      - {key: same, fact: Two., why: Two.}\n")
    text += "assumptions:\n  - {key: same, fact: One., why: One.}\n"
    assert [i.field for i in problems(tmp_path, text)] == ["resources.recordings.assumptions[0].key"]
    free_text = GOOD + "assumptions:\n  - {key: 'Twilio sends Retry-After', fact: x, why: y}\n"
    assert problems(tmp_path, free_text)[0].field.startswith("assumptions")


def test_a_job_listing_needs_pagination_and_a_single_job_status_needs_its_id(tmp_path) -> None:
    listed = GOOD.replace("    verify: {kind: find_empty}\n", """\
    completion:
      kind: async_job
      job_id: data.id
      status: {method: GET, path: /v2/jobs}
      items: data
      status_field: attributes.status
      done: [completed]
      poll_every: PT1H
      max_wait: P12D
    verify: {kind: find_empty}
""")
    assert [i.field for i in problems(tmp_path, listed)] == ["resources.recordings.completion.items"]
    single = listed.replace("      items: data\n", "")
    assert [i.field for i in problems(tmp_path, single)] == ["resources.recordings.completion.status"]
    paged = listed.replace("      items: data\n", "      items: data\n      pagination: {style: none}\n")
    assert load_spec(write(tmp_path, paged)).resources["recordings"].completion.items == "data"

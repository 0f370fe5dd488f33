"""Stores answering a data subject's selector, on the demo schema and the shipped inventory: real PostgreSQL,
moto's S3 over HTTP, a real redis-server.

What is pinned down: a subject selects only its account's records whose subject columns (key segments) hold one
of its values, never another account's and never the whole account; children go first; anonymize touches only
the person's rows; a location keeping none of the subject's kinds selects nothing; lookups go through indexes the
catalog confirms; identity expansion finds the identifiers on the same records, bounded; account-wide counts
(tally) refuse a subject.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention import embedded
from retention.rules import load_ruleset
from retention.rules.inventory import RedisLocation, S3Location, SqlLocation, SystemsFile, load_inventory
from retention.rules.subjects import Subject
from retention.stores.base import Due, PendingBatch, Selector, SubjectFinding, SubjectLookupError
from retention.stores.redis import RedisStore
from retention.stores.s3 import S3Store
from retention.stores.sql import SqlStore

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
A, B = "acct_a", "acct_b"
ACCOUNTS = [A, B]
PER_AGE = 1  # one person per (account, age): ten people per account


@pytest.fixture(scope="module")
def systems() -> SystemsFile:
    return load_inventory(REPO / "retention_rules" / "systems.yaml", load_ruleset(REPO / "retention_rules"))


@pytest.fixture
def demo(postgres_url: str, s3_endpoint: str, s3_client) -> sa.Engine:
    """The demo application database and buckets, seeded for accounts A and B."""
    urllib.request.urlopen(urllib.request.Request(f"{s3_endpoint}/moto-api/reset", method="POST")).close()
    embedded.seed(postgres_url, embedded.s3_client(s3_endpoint), ACCOUNTS, pendulum.now("UTC"), per_age=PER_AGE)
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()


def sql_store(systems: SystemsFile, engine: sa.Engine, location_id: str) -> SqlStore:
    spec = systems.locations[location_id]
    assert isinstance(spec, SqlLocation)
    return SqlStore(location_id, spec, engine)


def s3_store(systems: SystemsFile, client, location_id: str) -> S3Store:
    spec = systems.locations[location_id]
    assert isinstance(spec, S3Location)
    return S3Store(location_id, spec, client)


def person(account: str = A, age: int = embedded.AGES[0]) -> embedded.Person:
    return embedded.person(ACCOUNTS, account, age, per_age=PER_AGE)


def by_email(*people: embedded.Person) -> Subject:
    return Subject.of({"email": [p.email for p in people]})


def run_deletion(store: SqlStore | S3Store, selector: Selector) -> int:
    affected = 0
    for batch in store.batches(selector):
        affected += store.delete(batch).affected
    return affected


def rows(engine: sa.Engine, table: str, **where: str) -> list[sa.Row]:
    t = embedded.APP.tables[table]
    with engine.connect() as conn:
        return list(conn.execute(sa.select(t).where(*(t.c[k] == v for k, v in where.items())).order_by(t.c.id)))


def counts(engine: sa.Engine) -> dict[tuple[str, str], int]:
    out = {}
    with engine.connect() as conn:
        for name, table in embedded.APP.tables.items():
            if "account_id" in table.c and table.schema is None:
                for account, n in conn.execute(sa.select(table.c.account_id, sa.func.count())
                                               .group_by(table.c.account_id)):
                    out[(name, account)] = n
    return out


def give_b_the_same_email(engine: sa.Engine, who: embedded.Person) -> None:
    """Account B's own record of someone with A's person's e-mail address (another customer's data subject)."""
    at = pendulum.now("UTC")
    with engine.begin() as conn:
        conn.execute(embedded.APP.tables["contacts"].insert(), {"account_id": B, "created_at": at, "email": who.email,
                                                                "phone": "+15550000001"})
        conn.execute(embedded.APP.tables["chat_conversations"].insert(),
                     {"account_id": B, "created_at": at, "last_message_at": at, "visitor_email": who.email,
                      "visitor_id": "v-someone-else"})


# -- the seed ---------------------------------------------------------------------------------------------------

def test_each_seeded_record_group_is_one_person_with_derived_identifiers(demo, s3_client):
    who = person()
    assert who == embedded.Person.of(who.email) and who.visitor_id.startswith("v-") and who.phone.startswith("+1555")
    assert Subject.of({"email": [who.email], "phone": [who.phone], "visitor_id": [who.visitor_id]}).size == 3
    (contact,) = rows(demo, "contacts", email=who.email)
    assert (contact.account_id, contact.phone) == (A, who.phone)
    (chat,) = rows(demo, "chat_conversations", visitor_email=who.email)
    assert chat.visitor_id == who.visitor_id
    assert [v.account_id for v in rows(demo, "visitors", cookie_id=who.visitor_id)] == [A]
    assert [v.account_id for v in rows(demo, "page_views", visitor_id=who.visitor_id)] == [A]
    day = pendulum.now("UTC").subtract(days=embedded.AGES[0]).to_date_string()
    listed = s3_client.list_objects_v2(Bucket="chat-attachments", Prefix=f"tenants/{A}/attachments/{day}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"tenants/{A}/attachments/{day}/{who.visitor_id}/file-0.png"]
    assert len({p.email for p in embedded.people(ACCOUNTS, PER_AGE).values()}) == len(ACCOUNTS) * len(embedded.AGES)


# -- SQL --------------------------------------------------------------------------------------------------------

def test_a_subject_counts_deletes_and_exports_only_its_accounts_rows(demo, systems, tmp_path):
    who = person()
    give_b_the_same_email(demo, who)
    contacts = sql_store(systems, demo, "contacts")
    subject = by_email(who)
    assert contacts.count(Selector(A, subject=subject)) == 1
    assert contacts.count(Selector(B, subject=subject)) == 1

    exported = contacts.export(Selector(A, subject=subject), tmp_path / "export")
    lines = [json.loads(line) for line in (tmp_path / "export" / "contacts.jsonl").read_text().splitlines()]
    assert exported == 1 and [(r["account_id"], r["email"], r["phone"]) for r in lines] == [(A, who.email, who.phone)]

    before = counts(demo)
    assert run_deletion(contacts, Selector(A, subject=subject)) == 1
    after = counts(demo)
    assert after[("contacts", A)] == before[("contacts", A)] - 1
    assert {k: v for k, v in after.items() if k != ("contacts", A)} == \
        {k: v for k, v in before.items() if k != ("contacts", A)}
    assert rows(demo, "contacts", email=who.email)[0].account_id == B  # B's record of the same address stays
    assert contacts.verify(Selector(A, subject=subject)).clean
    assert contacts.count(Selector(B, subject=subject)) == 1


def test_a_subjects_conversation_takes_its_messages_first_and_export_includes_them(demo, systems, tmp_path):
    who = person()
    chats = sql_store(systems, demo, "chat_conversations")
    selector = Selector(A, subject=Subject.of({"visitor_id": [who.visitor_id]}))
    (conversation,) = rows(demo, "chat_conversations", visitor_id=who.visitor_id)

    assert chats.export(selector, tmp_path) == 1
    messages = (tmp_path / "chat_messages.jsonl").read_text().splitlines()
    assert [json.loads(m)["conversation_id"] for m in messages] == [conversation.id, conversation.id]

    with demo.connect() as conn:
        all_messages = conn.execute(sa.text("SELECT count(*) FROM chat_messages")).scalar_one()
    outcome_rows = children = 0
    for batch in chats.batches(selector):
        outcome = chats.delete(batch)
        outcome_rows, children = outcome_rows + outcome.affected, children + outcome.child_rows
    assert (outcome_rows, children) == (1, 2)
    with demo.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM chat_messages")).scalar_one() == all_messages - 2
        assert conn.execute(sa.text("SELECT count(*) FROM chat_messages WHERE conversation_id = :id"),
                            {"id": conversation.id}).scalar_one() == 0
    residue = chats.verify(selector)
    assert residue.clean and residue.remaining == 0 and sum(residue.children.values()) == 0


def test_anonymize_with_a_subject_changes_only_the_persons_rows(demo, systems):
    who, other = person(), person(age=embedded.AGES[1])
    users = sql_store(systems, demo, "app_users")
    selector = Selector(A, subject=by_email(who))
    before = {r.id: r for r in rows(demo, "app_users")}
    assert users.count(selector, pending_anonymize=True) == 1
    done = sum(users.anonymize(b).affected for b in users.batches(selector, pending_anonymize=True))
    assert done == 1
    after = {r.id: r for r in rows(demo, "app_users")}
    changed = [i for i in before if before[i] != after[i]]
    assert len(changed) == 1 and before[changed[0]].email == who.email
    assert after[changed[0]].email != who.email and after[changed[0]].last_login_ip is None
    assert [r.email for r in rows(demo, "app_users", email=other.email)] == [other.email]
    assert users.verify(selector, pending_anonymize=True).clean
    assert users.count(selector) == 0  # the hashed address no longer names the person


@pytest.mark.parametrize(("location_id", "kinds"), [("crm_sync_queue", {"email", "visitor_id", "phone"}),
                                                    ("visitors", {"email", "phone"}),
                                                    ("contacts", {"visitor_id"})])
def test_a_location_keeping_none_of_the_subjects_kinds_selects_nothing(demo, systems, location_id, kinds):
    who = person()
    identifiers = {"email": [who.email], "phone": [who.phone], "visitor_id": [who.visitor_id]}
    subject = Subject.of({kind: identifiers[kind] for kind in kinds})
    store = sql_store(systems, demo, location_id)
    before = counts(demo)
    selector = Selector(A, subject=subject)
    assert store.count(selector) == 0 and store.count(Selector(A)) > 0
    assert list(store.batches(selector)) == []
    assert store.verify(selector).remaining == 0
    assert store.linked(A, subject, limit=10) is None
    assert counts(demo) == before


def test_every_subject_lookup_of_the_demo_goes_through_its_index(demo, systems):
    checked = []
    for location_id, spec in systems.locations.items():
        if isinstance(spec, SqlLocation) and spec.subjects:
            store = sql_store(systems, demo, location_id)
            assert isinstance(store, SubjectFinding)
            store.check_subject_lookups()
            checked.append(location_id)
    assert "invoices_isolated" in checked and len(checked) == 9


def test_a_missing_index_or_one_led_by_another_column_is_refused(demo, systems):
    contacts = sql_store(systems, demo, "contacts")
    with demo.begin() as conn:
        conn.execute(sa.text("DROP INDEX contacts_phone"))
    with pytest.raises(SubjectLookupError, match=r"location contacts: subjects.phone: column contacts.phone, "
                                                 r"index contacts_phone: no such index on contacts"):
        contacts.check_subject_lookups()
    with demo.begin() as conn:
        conn.execute(sa.text("CREATE INDEX contacts_phone ON contacts (account_id, phone)"))
    with pytest.raises(SubjectLookupError, match=r"index contacts_phone: the index leads with account_id, not phone"):
        contacts.check_subject_lookups()
    with demo.begin() as conn:  # an index of that name on another table is not this table's index
        conn.execute(sa.text("DROP INDEX contacts_phone"))
        conn.execute(sa.text("CREATE INDEX contacts_phone ON meetings (attendee_email)"))
    with pytest.raises(SubjectLookupError, match="no such index"):
        contacts.check_subject_lookups()
    vault = sql_store(systems, demo, "invoices_isolated")
    with demo.begin() as conn:
        conn.execute(sa.text(f"DROP INDEX {embedded.VAULT}.invoices_billing_contact"))
    with pytest.raises(SubjectLookupError, match="index invoices_billing_contact: no such index"):
        vault.check_subject_lookups()
    sql_store(systems, demo, "invoices").check_subject_lookups()  # the application's own index is still there


def test_linked_finds_the_identifiers_on_the_same_rows_bounded(demo, systems):
    who = person()
    give_b_the_same_email(demo, who)
    chats = sql_store(systems, demo, "chat_conversations")
    found = chats.linked(A, by_email(who), limit=10)
    assert found == Subject.of({"email": [who.email], "visitor_id": [who.visitor_id]})  # not B's "v-someone-else"
    contacts = sql_store(systems, demo, "contacts")
    assert contacts.linked(A, Subject.of({"phone": [who.phone]}), limit=10) == \
        Subject.of({"email": [who.email], "phone": [who.phone]})

    three = [person(age=age) for age in embedded.AGES[:3]]
    bounded = chats.linked(A, by_email(*three), limit=2)
    assert bounded is not None and bounded.size == 3  # limit + 1 read: the caller sees it was bounded
    everything = chats.linked(A, by_email(*three), limit=100)
    assert everything is not None and everything.size == 6
    # in B only B's own record of the shared address, with B's visitor id
    assert chats.linked(B, by_email(*three), limit=100) == \
        Subject.of({"email": [who.email], "visitor_id": ["v-someone-else"]})
    assert chats.linked(B, by_email(*three[1:]), limit=100) is None


def test_linked_skips_values_that_are_not_identifiers(demo, systems):
    who = person()
    with demo.begin() as conn:
        conn.execute(sa.text("UPDATE chat_conversations SET visitor_id = 'not an id!' WHERE visitor_email = :e"),
                     {"e": who.email})
    chats = sql_store(systems, demo, "chat_conversations")
    assert chats.linked(A, by_email(who), limit=10) == by_email(who)


def test_tally_refuses_a_subject_selector(demo, systems, s3_client):
    selector = Selector(A, subject=by_email(person()))
    with pytest.raises(ValueError, match="a tally counts whole accounts"):
        sql_store(systems, demo, "contacts").tally([A], [Due(selector)])
    with pytest.raises(ValueError, match="a tally counts whole accounts"):
        s3_store(systems, s3_client, "chat_attachments").tally([A], [Due(selector)])


# -- S3 ---------------------------------------------------------------------------------------------------------

def test_s3_selects_only_the_persons_keys(demo, systems, s3_client, tmp_path):
    who, other = person(), person(B)
    attachments = s3_store(systems, s3_client, "chat_attachments")
    selector = Selector(A, subject=Subject.of({"visitor_id": [who.visitor_id]}))
    assert attachments.count(selector) == 1
    assert attachments.count(Selector(B, subject=Subject.of({"visitor_id": [who.visitor_id]}))) == 0
    assert attachments.count(Selector(A, subject=by_email(who))) == 0  # no e-mail segment: nothing
    assert attachments.export(selector, tmp_path) == 1
    assert [p.name for p in tmp_path.rglob("*.png")] == ["file-0.png"]
    assert attachments.linked(A, Subject.of({"visitor_id": [who.visitor_id]}), limit=5) == \
        Subject.of({"visitor_id": [who.visitor_id]})

    listed = lambda account: {o["Key"] for o in s3_client.list_objects_v2(  # noqa: E731
        Bucket="chat-attachments", Prefix=f"tenants/{account}/").get("Contents", ())}
    before_a, before_b = listed(A), listed(B)
    assert run_deletion(attachments, selector) == 1
    gone = before_a - listed(A)
    assert len(gone) == 1 and who.visitor_id in next(iter(gone)).split("/")
    assert listed(B) == before_b
    assert attachments.verify(selector).clean and attachments.count(selector) == 0
    assert attachments.count(Selector(B, subject=Subject.of({"visitor_id": [other.visitor_id]}))) == 1


def test_s3_a_subject_takes_every_version_of_its_keys_only(s3_client, make_bucket):
    bucket = make_bucket(versioned=True)
    spec = S3Location(kind="s3", data_class="chat_transcripts", conn_id="object_store", bucket=bucket,
                      key_template="tenants/{account_id}/files/", versioned=True,
                      subjects={"visitor_id": {"key_segment": 3}, "email": {"key_segment": 4}})
    mine, theirs = f"tenants/{A}/files/v-1/ann@example.org/a.bin", f"tenants/{A}/files/v-2/bob@example.org/b.bin"
    for key in (mine, theirs):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"1")
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"2")
    s3_client.delete_object(Bucket=bucket, Key=mine)  # a delete marker on top of two versions
    s3_client.put_object(Bucket=bucket, Key=f"tenants/{B}/files/v-1/ann@example.org/c.bin", Body=b"B's")
    s3_client.put_object(Bucket=bucket, Key=f"tenants/{A}/files/v-1", Body=b"too short to name an e-mail")
    store = S3Store("files", spec, s3_client)
    ann = Selector(A, subject=Subject.of({"email": ["Ann@Example.org"]}))

    assert store.count(ann) == 3
    assert store.linked(A, Subject.of({"email": ["ann@example.org"]}), limit=10) == \
        Subject.of({"email": ["ann@example.org"], "visitor_id": ["v-1"]})
    batches: list[PendingBatch] = list(store.batches(ann))
    assert sum(store.delete(b).affected for b in batches) == 3
    listed = s3_client.list_object_versions(Bucket=bucket)
    left = sorted(v["Key"] for v in [*listed.get("Versions", ()), *listed.get("DeleteMarkers", ())])
    assert left == sorted([theirs, theirs, f"tenants/{A}/files/v-1", f"tenants/{B}/files/v-1/ann@example.org/c.bin"])
    assert store.verify(ann).clean and store.count(ann) == 0
    # the key "…/files/v-1" holds v-1 in its visitor segment: a visitor_id subject takes it (it names v-1)
    assert store.count(Selector(A, subject=Subject.of({"visitor_id": ["v-1"]}))) == 1


# -- Redis ------------------------------------------------------------------------------------------------------

def test_redis_keys_name_no_person_so_a_subject_selects_none(redis_client):
    spec = RedisLocation(kind="redis", data_class="chat_transcripts", conn_id="presence_cache",
                         key_pattern="presence:{account_id}:*")
    for i in range(3):
        redis_client.set(f"presence:{A}:{i}", "x")
    store = RedisStore("presence", spec, redis_client)
    selector = Selector(A, subject=Subject.of({"visitor_id": ["0"]}))
    assert store.count(selector) == 0 and list(store.batches(selector)) == []
    assert store.verify(selector).clean and store.verify(selector).remaining == 0
    assert store.count(Selector(A)) == 3 and len(redis_client.keys("presence:*")) == 3
    with pytest.raises(ValueError, match="a tally counts whole accounts"):
        store.tally([A], [Due(selector)])


# -- property: a subject's count is exactly its rows in its account ----------------------------------------------

PEOPLE = sa.MetaData()
_people = sa.Table("people_rows", PEOPLE, sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
                   sa.Column("account_id", sa.Text, nullable=False), sa.Column("email", sa.Text),
                   sa.Column("visitor", sa.Text), sa.Column("created_at", sa.DateTime(timezone=True)),
                   sa.Index("people_rows_email", "email"), sa.Index("people_rows_visitor", "visitor"))
PEOPLE_SPEC = SqlLocation.model_validate({
    "kind": "sql", "data_class": "contact_records", "conn_id": "app_db", "table": "people_rows",
    "account_column": "account_id", "timestamps": {"created_at": "created_at"},
    "subjects": {"email": {"column": "email", "index": "people_rows_email"},
                 "visitor_id": {"column": "visitor", "index": "people_rows_visitor"}}})

_emails = st.sampled_from([f"p{i}@example.org" for i in range(5)])
_visitors = st.sampled_from([f"v-{i}" for i in range(5)])
_row = st.tuples(st.sampled_from(ACCOUNTS), st.none() | _emails, st.none() | _visitors)


@pytest.fixture
def people_engine(postgres_url: str) -> sa.Engine:
    engine = sa.create_engine(postgres_url)
    PEOPLE.create_all(engine)
    yield engine
    engine.dispose()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.lists(_row, max_size=30), emails=st.sets(_emails, max_size=3), visitors=st.sets(_visitors, max_size=2),
       account=st.sampled_from(ACCOUNTS))
def test_a_subjects_count_is_exactly_its_rows_in_its_account(people_engine, table, emails, visitors, account):
    if not emails and not visitors:
        visitors = {"v-0"}
    with people_engine.begin() as conn:
        conn.execute(_people.delete())
        if table:
            conn.execute(_people.insert(), [{"account_id": a, "email": e, "visitor": v} for a, e, v in table])
    store = SqlStore("people", PEOPLE_SPEC, people_engine)
    subject = Subject.of({"email": emails, "visitor_id": visitors})
    expected = sum(1 for a, e, v in table if a == account and (e in emails or v in visitors))
    assert store.count(Selector(account, subject=subject)) == expected
    assert sum(b.count for b in store.batches(Selector(account, subject=subject))) == expected
    email_only = Subject.of({"email": emails}) if emails else None
    if email_only is not None:
        assert store.count(Selector(account, subject=email_only)) == \
            sum(1 for a, e, _ in table if a == account and e in emails)

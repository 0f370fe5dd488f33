"""The schema of the rules files in ``retention_rules/``. Unknown keys are errors everywhere."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StrictBool, model_validator

from retention.ids import ACCOUNT_ID
from retention.rules.durations import IsoDuration


class AccountState(StrEnum):
    TRIAL = "trial"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Anchor(StrEnum):
    """The event a retention period counts from."""

    CREATED_AT = "created_at"  # of the record
    LAST_ACTIVITY_AT = "last_activity_at"  # of the record (a visitor's last visit, a thread's last message)
    TERMINATED_AT = "terminated_at"  # of the account
    CONTRACT_END = "contract_end"  # of the account

    @property
    def is_account_event(self) -> bool:
        return self in (Anchor.TERMINATED_AT, Anchor.CONTRACT_END)


class Action(StrEnum):
    DELETE = "delete"
    ANONYMIZE = "anonymize"
    RETURN_THEN_DELETE = "return_then_delete"  # DPA 7(b): return first if the customer elected return
    RETAIN_ISOLATED = "retain_isolated"  # kept under law, isolated from processing, deleted at the cutoff


class Election(StrEnum):
    DELETE = "delete"
    RETURN = "return"


def _duration(value: object) -> IsoDuration:
    if isinstance(value, IsoDuration):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 duration string such as P30D, got {type(value).__name__}")
    return IsoDuration.parse(value)


def _period(value: object) -> IsoDuration:
    """A retention period: a duration longer than zero. A zero period (a typo such as ``P0D`` for ``P90D``)
    would make every record of the class due at once, so it is refused wherever a period is written."""
    duration = _duration(value)
    if not duration.is_positive:
        raise ValueError(f"{duration} is zero: a retention period must be longer than zero "
                         "(a zero period would make every record due the moment it exists)")
    return duration


def _expiry(value: object) -> IsoDuration | Literal["session"]:
    # A cookie's expiry is a fact from the cookie tables, not a retention period: "0 days" (_gid) is allowed.
    return "session" if value == "session" else _duration(value)


Duration = Annotated[IsoDuration, BeforeValidator(_period), PlainSerializer(str)]  # positive: every period
CookieExpiry = Annotated[IsoDuration | Literal["session"], BeforeValidator(_expiry), PlainSerializer(str)]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]
Text = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# --- data_classes.yaml -------------------------------------------------------------------------

class CcpaCategory(Strict):
    """One row of the DPA's CCPA table: a kind of personal information and its statutory categories."""

    statutory: list[Identifier] = Field(min_length=1)
    sold_or_shared_with: list[Text] = Field(default_factory=list)


class Cookie(Strict):
    name: Text
    host: Text
    party: Literal["first", "third"]
    expiry: CookieExpiry  # a duration, or "session" for a cookie that ends with the browser session
    purpose: Text


Source = Literal[
    "chat", "voice_video", "meetings", "visitor_tracking", "log_data", "error_reports",
    "email_delivery", "crm_sync", "enrichment", "ai_conversations", "backups", "billing",
    "account_admin",
    "marketing_site", "newsletter", "surveys",  # the processor's own website and marketing (processor_data)
]


class DataClass(Strict):
    """A kind of personal data. ``owner`` says whose it is: ``customer_account`` for everything the service holds
    for, or about, one customer's account (its Service Data, and the Customer Data of its users and invoices);
    ``processor`` for the processor's own marketing data (website cookies, newsletter and survey contacts), which
    it holds as controller about no customer account. The two live in separate sections of data_classes.yaml
    (``data_classes`` / ``processor_data``), so code that iterates a customer's data never meets the other."""

    owner: Literal["customer_account", "processor"] = "customer_account"
    description: Text
    category: Literal["customer_data", "service_data"]
    personal_data: StrictBool
    ccpa_category: Identifier | None = None
    sources: list[Source] = Field(min_length=1)
    record_timestamps: list[Literal["created_at", "last_activity_at"]] = Field(min_length=1)
    subprocessors: list[Identifier] = Field(default_factory=list)
    cookies: list[Cookie] = Field(default_factory=list)
    seed_reference: Text

    @property
    def is_processor_data(self) -> bool:
        """The processor's own (controller) marketing data: never part of a customer's sweep, offboarding or
        certificate."""
        return self.owner == "processor"

    @model_validator(mode="after")
    def _personal_data_has_ccpa_category(self) -> DataClass:
        if self.personal_data and self.ccpa_category is None:
            raise ValueError("a data class with personal data needs a ccpa_category (a row of ccpa_categories)")
        return self


class Subprocessor(Strict):
    name: Text
    location: Text
    service: Text


class DataClassesFile(Strict):
    ccpa_categories: dict[Identifier, CcpaCategory]
    subprocessors: dict[Identifier, Subprocessor]
    data_classes: dict[Identifier, DataClass] = Field(min_length=1)  # of, or about, a customer's account
    processor_data: dict[Identifier, DataClass] = Field(default_factory=dict)  # the processor's own


# --- jurisdictions.yaml ------------------------------------------------------------------------

class Jurisdiction(Strict):
    name: Text
    framework: Text
    citation: Text


class JurisdictionsFile(Strict):
    jurisdictions: dict[Annotated[str, Field(pattern=r"^[A-Z][A-Z-]*$")], Jurisdiction] = Field(min_length=1)


# --- rules.yaml --------------------------------------------------------------------------------

# Where a rule's period comes from, as `retention rules explain` says it. A customer's instruction (the account
# registry) is not a rule basis: it replaces the period per account, within the rule's override_bounds.
PERIOD_SOURCES = {"statute": "law", "contract": "contract", "processor policy": "processor's default"}


def _basis_kind(value: object) -> object:
    return "processor policy" if value == "policy" else value  # the earlier spelling, which meant the same


class Basis(Strict):
    """Why a rule keeps data as long as it says. ``kind`` names the source of the *period*: ``statute`` (a law),
    ``contract`` (the contract states the period: ``quote`` must give its words), or ``processor policy`` (no
    contract or law the rule cites states it: the processor's default, which counsel must confirm). ``citation``
    names the passages the rule rests on; ``quote`` holds their words verbatim, and ``summary`` says no more than
    they do."""

    kind: Annotated[Literal["statute", "contract", "processor policy"], BeforeValidator(_basis_kind)]
    citation: Text
    summary: Text
    quote: Text | None = None

    @model_validator(mode="after")
    def _a_contract_period_quotes_the_contract(self) -> Basis:
        if self.kind == "contract" and self.quote is None:
            raise ValueError("kind: contract says the contract sets this period, but no quote gives its words\n"
                             "hint: quote the contract's words that state the period; if no contract or law states "
                             "it, it is the processor's default: kind: processor policy")
        return self

    @property
    def period_source(self) -> str:
        """law, contract or processor's default."""
        return PERIOD_SOURCES[self.kind]


class OverrideBounds(Strict):
    min: Duration
    max: Duration


class Rule(Strict):
    id: RuleId
    data_class: Identifier
    account_states: list[AccountState] = Field(min_length=1)
    jurisdictions: list[str] | None = Field(default=None, min_length=1)
    retain_for: Duration
    anchor: Anchor
    action: Action
    basis: Basis
    override_bounds: OverrideBounds | None = None

    def outcome(self) -> tuple[str, Anchor, Action]:
        return (str(self.retain_for), self.anchor, self.action)


class ProcessorDataRule(Strict):
    """A rule for the processor's own data: it belongs to no account, so there is no account state, no
    jurisdiction of an account, no return and no account event; the period runs from the record's own time."""

    id: RuleId
    data_class: Identifier
    retain_for: Duration
    anchor: Literal[Anchor.CREATED_AT, Anchor.LAST_ACTIVITY_AT]
    action: Literal[Action.DELETE, Action.ANONYMIZE]
    basis: Basis


class RulesFile(Strict):
    rules: list[Rule] = Field(min_length=1)  # customers' accounts' data
    processor_data_rules: list[ProcessorDataRule] = Field(default_factory=list)  # the processor's own data


# --- overrides.yaml ----------------------------------------------------------------------------

class Override(Strict):
    """A retention period a customer's contract sets for one account, within the rule's bounds."""

    id: RuleId
    account_id: Annotated[str, Field(pattern=ACCOUNT_ID)]  # the one account-id rule, as the registry reads ids
    data_class: Identifier
    retain_for: Duration
    contract_reference: Text


class OverridesFile(Strict):
    overrides: list[Override] = Field(default_factory=list)


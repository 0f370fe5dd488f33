"""Refuse text that looks like personal data before it can enter the ledger.

The ledger may hold account ids, data class names, counts, hashes and staff ids only. A hash-chained
event can never be erased, so an email address or phone number that slipped in would be kept
forever. Free text (reasons, references, ticket numbers) never goes into an event: it is kept in the
erasable side table (``Ledger.keep_text``) and the event carries its digest. This guard is the second
line: whatever string still reaches an event is checked here.

Text is NFKC-normalized before matching, so fullwidth or styled characters (``alice＠example.com``)
match as their plain forms. The patterns are deliberately tight and backed by checksums where one
exists (IBAN mod-97, card Luhn, a parseable IP address): ISO timestamps, uuids, sha256 hex, ISO
durations, S3 keys and ids like ``acct_1001`` must pass. Names cannot be recognized by a pattern;
that is why free text goes to the side table, and structured fields have strict shapes
(``retention.ledger.fields``). Error messages name where the value was, never the value.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Any

from retention.ledger import fields

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Each shape stands alone: no letter, digit, underscore (nor for digit runs '-', '.', '+') may touch it, so
# it is not part of an id, a uuid, a version or a hex string.
_B, _E = r"(?<![\w+])", r"(?![\w])"
_PHONES = (
    # +1 415 555 0100, +14155550100, +44 (0)20 7946 0958
    re.compile(_B + r"\+\d[\d ().-]{6,18}\d" + _E),
    # (415) 555-0100, (020) 7946 0958
    re.compile(_B + r"\(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,2}" + _E),
    # 415-555-0100, 415.555.0100, 415 555 0100
    re.compile(r"(?<![\w.-])\d{3}([ .-])\d{3}\1\d{4}(?![\w.-])"),
    # national trunk prefix with spaces: 020 7946 0958, 06 12 34 56 78
    re.compile(_B + r"0\d{1,4}(?: \d{2,4}){2,4}" + _E),
    # national trunk prefix, area code and number: 030 1234567, 030/1234567, 030-1234567
    re.compile(r"(?<![\w.+/-])0\d{1,4}[ /-]\d{4,9}(?![\w./-])"),
    # national mobile or landline as one run: 0612345678, 03012345678 (a leading 0: never a count). Not after
    # ':' or before it: an AWS account id in an ARN (arn:aws:kms:eu-west-1:012345678901:key/...) may start with 0.
    re.compile(r"(?<![\w.+/:-])0[1-9]\d{8,10}(?![\w./:-])"),
)
# 13 to 19 digits, grouped by single spaces or dashes or not at all; confirmed by the Luhn checksum.
_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w.-])")
# Country code, check digits, 11 to 30 letters or digits, compact or in groups of four, upper case (ISO 13616's
# electronic and print forms); confirmed by the country's IBAN length and mod-97. The length and the case are what
# keep the product's own ids out: 1 in 97 of random hex ids (uuid4().hex) passes mod-97 alone.
_IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w-])")
# Each country's IBAN length, from the SWIFT IBAN registry.
_IBAN_LENGTHS = dict(
    (entry[:2], int(entry[2:])) for entry in """
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29
    ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20
    LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29
    PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20
    YE30""".split())
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*[0-9A-Fa-f])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Dates as people write them (14.03.1985, 14/03/1985, 3/14/1985, 14 March 1985, March 14, 1985): the product
# writes ISO dates only, so a date in any other form was typed by a person, and may be a date of birth.
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
          r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|januar|februar|märz|mai|juni|juli|oktober|dezember)")
_WRITTEN_DATES = (
    re.compile(r"(?<![\w./-])\d{1,2}[./-]\d{1,2}[./-](?:19|20)\d{2}(?![\w./-])"),
    re.compile(r"\b\d{1,2}\.? " + _MONTH + r"\.? (?:19|20)\d{2}\b", re.IGNORECASE),
    re.compile(r"\b" + _MONTH + r"\.? \d{1,2}(?:st|nd|rd|th)?,? (?:19|20)\d{2}\b", re.IGNORECASE),
)
# An ISO date passes (timestamps are everywhere in events), unless words about birth stand before it.
_BIRTH = re.compile(r"\b(?:born|birth(?:day|date)?|d\.?o\.?b\.?|geb(?:oren|\.)|née?)\W{0,3}(?:on\W+)?"
                    r"(?:\d{4}-\d{2}-\d{2}|\d{1,2}\W)", re.IGNORECASE)
# A street and house number: "Musterstraße 12", "221B Baker Street", "10 Downing St".
_STREET_WORDS = r"(?:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr|way|court|ct|place|pl)"
_ADDRESSES = (
    re.compile(r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|allee|platz|damm)\s+\d{1,4}[a-z]?\b"),
    re.compile(r"\b\d{1,5}[A-Za-z]?\s+(?:[A-Z][a-z]+\s+){1,3}(?i:" + _STREET_WORDS + r")\b"),
)


class PersonalDataError(ValueError):
    """Text bound for the ledger looks like personal data, or a structured field does not have its shape."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def looks_personal(text: str) -> str | None:
    """What ``text`` looks like ("an email address", "a phone number", ...), or None."""
    text = unicodedata.normalize("NFKC", text)
    if _EMAIL.search(text):
        return "an email address"
    if any(_iban(m.group()) for m in _IBAN.finditer(text)):
        return "a bank account number (IBAN)"
    if any(_luhn(re.sub(r"\D", "", m.group())) for m in _CARD.finditer(text)):
        return "a payment card number"
    for pattern in _PHONES:
        for match in pattern.finditer(text):
            if 7 <= sum(c.isdigit() for c in match.group()) <= 15:
                return "a phone number"
    if any(_ip(m.group()) for m in (*_IPV4.finditer(text), *_IPV6.finditer(text))):
        return "an IP address"
    if _BIRTH.search(text) or any(p.search(text) for p in _WRITTEN_DATES):
        return "a date a person wrote (a date of birth?)"
    if any(p.search(text) for p in _ADDRESSES):
        return "a postal address"
    return None


# Event fields whose shape is known: a value of another shape is refused whatever it contains.
_SHAPES = {"confirmed_on": lambda v, where: fields.check_iso_date(v, where),
           "reference": fields.check_ticket_reference,  # an offboarding's ticket (a hold's is kept apart)
           "requested_by": fields.check_staff_id, "approver_id": fields.check_staff_id,
           "attested_by_user_id": fields.check_staff_id}


def _check_shape(key: str, item: Any, where: str) -> None:
    if not isinstance(item, str) or item == "":
        return
    try:
        if key.endswith("_sha256"):
            fields.check_sha256(item, where)
        elif key in _SHAPES:
            _SHAPES[key](item, where)
    except fields.FieldError as exc:
        raise PersonalDataError(str(exc)) from None


def refuse_personal_data(value: Any, where: str) -> None:
    """Raise PersonalDataError if any string in ``value`` (keys included, any depth) looks personal, or a
    field with a known shape (``*_sha256``, ``confirmed_on``, staff ids) does not have it."""
    if isinstance(value, str):
        found = looks_personal(value)
        if found:
            raise PersonalDataError(f"{where} looks like {found}; the ledger must not hold personal "
                                    "data (use account ids, data class names, counts, hashes)")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_personal_data(key, f"a key of {where}")
            if isinstance(key, str):
                _check_shape(key, item, f"{where}[{key!r}]")
            refuse_personal_data(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            refuse_personal_data(item, f"{where}[{i}]")

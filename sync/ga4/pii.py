"""Is this text an email address or a phone number? GA4 forbids both in params (ga4-mp.md).

Raw personal data in params, user properties or user_id can get the Google Analytics account
terminated, so a value that looks like one is refused before it is sent. CRM text arrives in
many disguises: percent-encoded by a web form (`john.doe%40example.com`), typed on a phone
keyboard in full width (`john.doe＠example.com`), HTML-escaped (`&#64;`), with a zero-width
space pasted in the middle, or as a phone inside a sentence (`Phone: +1 415 555 0100`,
`tel:+14155550100`). Each value is matched as it is and once normalised (percent-decoding,
HTML entities, Unicode NFKC, invisible format characters removed), so a disguise does not get
through. What is *not* PII matters as much: a false match blocks a real conversion, so order
numbers, dates, versions, amounts, ISBNs, SKUs, IP addresses and `logo@2x.png` stay allowed;
tests/data/pii_corpus.yaml holds both sides with the reason for each tricky one.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote

EMAIL_LIKE = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*\.([^\W\d_]{2,})")
FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp avif bmp ico tif tiff pdf css js html htm php json xml txt".split()  # noqa: SIM905
)
"""`logo@2x.png` matches the email shape; no email domain ends in an image or file type."""
_PHONE_CHARS = re.compile(r"\+?[0-9 ().\-]{7,25}")
_PLUS_PHONE = re.compile(r"\+ ?[0-9][0-9 ().\-]*")
_AREA_CODE = re.compile(r"\(\s*[0-9]{1,5}\s*\)")
_GROUP_SEP = re.compile(r"[ .\-]")
_DATE_SHAPES = re.compile(
    r"[0-9]{4}[-./ ][0-9]{1,2}[-./ ][0-9]{1,2}"  # 2026-03-01, 2026.03.01
    r"|[0-9]{1,2}[-./ ][0-9]{1,2}[-./ ][0-9]{2,4}"  # 01-03-2026, 03.01.26
)
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_LOCAL_NUMBER = re.compile(r"[0-9]{3}[ \-][0-9]{4}")
"""`555-0199`: a number without its area code is still a phone (`123.4567` is an amount)."""
_DOTTED_THOUSANDS = re.compile(r"[1-9][0-9]{0,2}(?:\.[0-9]{3})+")
"""`1.234.567` is an amount written the European way, not a phone."""
_NANP_WITH_COUNTRY = re.compile(r"1[2-9][0-9]{2}[2-9][0-9]{6}")
"""`14155550100`: a North American number with its country code, written without spaces. An
area code and an exchange never start with 0 or 1, which keeps most 11-digit ids out."""
_LABELLED_PHONE = re.compile(
    r"(?:\btel|\bphone|\bmobile|\bcell|\bfax|\bwhatsapp)\s*(?:no\.?|number|#)?\s*[:.#=]?\s*"
    r"(\+?[0-9][0-9 ().\-]{5,24}[0-9])",
    re.IGNORECASE,
)
"""`Phone: 415 555 0100`, `tel:+14155550100`: a label says what the digits are."""
_EMBEDDED_PLUS = re.compile(r"(?<![\w+])\+ ?[0-9][0-9 ().\-]{6,22}[0-9](?![\w.])")
"""`call +44 20 7123 4567 today`: an international number inside a sentence."""
_EMBEDDED_NANP = re.compile(
    r"(?<![\w.\-])(?:\([0-9]{3}\) ?|[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?![\w.\-])"
)
"""`call (415) 555-0100 or 415.555.0100`: the 3-3-4 grouping no date, version or amount has."""
_ISBN = re.compile(r"(?:97[89][- ])?[0-9]{1,5}[- ][0-9]{1,7}[- ][0-9]{1,7}[- ][0-9X]")
"""`978-3-16-148410-0`: four or five hyphenated groups, checked by its check digit too."""
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
"""Soft hyphen, zero-width spaces and joiners, word joiner, BOM: invisible, so pasted in
the middle of an address they hide it from a plain match."""


def normalised(text: str) -> str:
    """The text as a person would read it: percent-escapes and HTML entities decoded (twice,
    for text encoded twice), compatibility forms folded (NFKC: `＠` -> `@`, `１` -> `1`),
    invisible characters removed."""
    out = text
    for _ in range(2):
        out = html.unescape(unquote(out, errors="replace"))
    out = unicodedata.normalize("NFKC", out)
    return _INVISIBLE.sub("", out)


def looks_like_pii(value: object, *, identifier: bool = False) -> bool:
    """An email address or phone number, as written or once normalised.

    `identifier` is set for params that carry record ids by their name (`transaction_id`,
    `deal_id`): there a bare run of digits is the record's id, never a phone number.
    """
    if not isinstance(value, str) or _plainly_not_pii(value):
        return False
    return _looks_like_pii_in_any_form(value, identifier=identifier)


def _looks_like_pii_in_any_form(value: str, *, identifier: bool) -> bool:
    return any(
        looks_like_email(text) or looks_like_phone(text, identifier=identifier)
        for text in {value, normalised(value)}
    )


def _plainly_not_pii(value: str) -> bool:
    """ASCII with no `@` and fewer than 7 digits, and nothing that decodes to more (no `%`
    escape, no `&` entity): no email (it needs an `@`) and no phone (each shape needs 7 digits
    or more), as written or normalised (NFKC leaves ASCII as it is). Most param values are
    such (`USD`, stage names, short codes), and this spares them the full check, twice per
    event (capture and delivery)."""
    return (
        value.isascii()
        and "@" not in value
        and "%" not in value
        and "&" not in value
        and sum(c.isdigit() for c in value) < 7
    )


def looks_like_email(value: object) -> bool:
    """`name@domain.tld` anywhere in the text (a URL or a note can carry one too)."""
    if not isinstance(value, str):
        return False
    return any(m.group(1).lower() not in FILE_EXTENSIONS for m in EMAIL_LIKE.finditer(value))


def looks_like_phone(value: object, *, identifier: bool = False) -> bool:
    """Phone-shaped text, tuned so real conversions are not blocked.

    A phone number is refused when it is written the way people write phones: an
    international `+` prefix (`+44 20 7123 4567`), an area code in brackets
    (`(555) 010-9999`), three or more digit groups (`555-010-9999`, `020 7123 4567`), a
    local number (`555-0199`), a trunk `0` and two groups (`07911 123456`), a North American
    number with its country code (`14155550100`), or any of these inside a sentence after a
    label (`Phone: 415 555 0100`, `tel:...`) or with a `+` or the 3-3-4 grouping. Plain digit
    runs (`006000000000123`, order and CRM ids), two-group ids (`2024-000123`), dates
    (`2026-03-01`, `03-01-2026`), IPv4 addresses and amounts (`1250.00`, `123.4567`,
    `-1234567`, `1.234.567`) are not phones.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _whole_value_is_phone(text, identifier=identifier):
        return True
    if any(_digit_count(m.group(1)) >= 7 for m in _LABELLED_PHONE.finditer(text)):
        return True
    if any(8 <= _digit_count(m.group(0)) <= 15 for m in _EMBEDDED_PLUS.finditer(text)):
        return True
    return _EMBEDDED_NANP.search(text) is not None


def _digit_count(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _whole_value_is_phone(text: str, *, identifier: bool) -> bool:
    if not _PHONE_CHARS.fullmatch(text):
        return False
    digits = re.sub(r"[^0-9]", "", text)
    if not 7 <= len(digits) <= 15:
        return False
    if _PLUS_PHONE.fullmatch(text) or _AREA_CODE.search(text):
        return True
    if any(p.fullmatch(text) for p in (_DATE_SHAPES, _IPV4, _DOTTED_THOUSANDS)):
        return False
    if _ISBN.fullmatch(text) and _isbn_check_digit_holds(text):
        return False
    groups = [g for g in _GROUP_SEP.split(text) if g]
    if not all(g.isdigit() for g in groups):
        return False
    if len(groups) == 1:
        return not identifier and _NANP_WITH_COUNTRY.fullmatch(text) is not None
    if len(groups) >= 3:
        return True
    if _LOCAL_NUMBER.fullmatch(text):
        return True
    return text.startswith("0") and len(digits) >= 9


def _isbn_check_digit_holds(text: str) -> bool:
    """ISBN-10 (weights 10..1, X is 10) or ISBN-13 (weights 1,3,...): a phone number that
    happens to be grouped like an ISBN almost never also carries a valid check digit."""
    chars = [c for c in text if c.isdigit() or c == "X"]
    if len(chars) == 10:
        values = [10 if c == "X" else int(c) for c in chars]
        return sum(v * w for v, w in zip(values, range(10, 0, -1), strict=True)) % 11 == 0
    if len(chars) == 13 and "X" not in chars:
        return sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(chars)) % 10 == 0
    return False

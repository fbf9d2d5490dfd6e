"""Client ids and hashed user-provided data, normalised the way Google documents (ga4-mp.md)."""

from __future__ import annotations

import hashlib
import re

_CLIENT_ID = re.compile(r"[0-9]+\.[0-9]+")
_COOKIE = re.compile(r"GA[0-9]+\.[0-9]+\.([0-9]+\.[0-9]+)", re.IGNORECASE)
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


def normalize_client_id(raw: object) -> str | None:
    """`GA1.1.123.456` (the `_ga` cookie) -> `123.456`; None when it is not a client id."""
    if raw is None:
        return None
    if isinstance(raw, float):
        return None  # a float has lost digits already; a client id is never a number
    text = str(raw).strip()
    m = _COOKIE.fullmatch(text)
    if m:
        text = m.group(1)
    return text if _CLIENT_ID.fullmatch(text) else None


def looks_like_email(value: object) -> bool:
    """`name@domain.tld` anywhere in the text (a URL or a note can carry one too)."""
    if not isinstance(value, str):
        return False
    return any(m.group(1).lower() not in FILE_EXTENSIONS for m in EMAIL_LIKE.finditer(value))


def looks_like_phone(value: object) -> bool:
    """Phone-shaped text, tuned so real conversions are not blocked.

    A phone number is refused when it is written the way people write phones: an
    international `+` prefix (`+44 20 7123 4567`), an area code in brackets
    (`(555) 010-9999`), three or more digit groups (`555-010-9999`, `020 7123 4567`), a
    local number (`555-0199`), or a trunk `0` and two groups (`07911 123456`). Plain digit
    runs (`006000000000123`, order and CRM ids), two-group ids (`2024-000123`), dates
    (`2026-03-01`, `03-01-2026`), IPv4 addresses and amounts (`1250.00`, `123.4567`,
    `-1234567`, `1.234.567`) are not phones.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not _PHONE_CHARS.fullmatch(text):
        return False
    digits = re.sub(r"[^0-9]", "", text)
    if not 7 <= len(digits) <= 15:
        return False
    if _PLUS_PHONE.fullmatch(text) or _AREA_CODE.search(text):
        return True
    if any(p.fullmatch(text) for p in (_DATE_SHAPES, _IPV4, _DOTTED_THOUSANDS)):
        return False
    groups = [g for g in _GROUP_SEP.split(text) if g]
    if not all(g.isdigit() for g in groups):
        return False
    if len(groups) >= 3:
        return True
    if len(groups) == 2 and _LOCAL_NUMBER.fullmatch(text):
        return True
    return len(groups) == 2 and text.startswith("0") and len(digits) >= 9


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_email(email: str) -> str:
    e = re.sub(r"\s+", "", email).lower()
    local, sep, domain = e.partition("@")
    if sep and domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
    return f"{local}{sep}{domain}"


def hash_email(email: str) -> str:
    return _sha256(normalize_email(email))


def normalize_phone(phone: str) -> str | None:
    """E.164: a leading + and digits only. None when it cannot be a phone number.

    The number must already carry its country code (`+44 20 ...` or `0044 20 ...`); a
    national number cannot be turned into E.164 without knowing the country.
    """
    text = phone.strip()
    if text.startswith("00"):
        text = text[2:]
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15:
        return None
    return "+" + digits


def hash_phone(phone: str) -> str | None:
    normalized = normalize_phone(phone)
    return _sha256(normalized) if normalized else None


def normalize_name(name: str) -> str:
    """First/last name, city, region: digits and symbols removed, lowercase, trimmed."""
    return re.sub(r"[^\w\s]|\d|_", "", name).strip().lower()


def hash_name(name: str) -> str:
    return _sha256(normalize_name(name))


def normalize_street(street: str) -> str:
    """Street: symbols removed (digits stay), lowercase, trimmed."""
    return re.sub(r"[^\w\s]|_", "", street).strip().lower()


def normalize_postal_code(code: str) -> str:
    """Postal code: only `.` and `~` removed (Google's rule), trimmed."""
    return re.sub(r"[.~]", "", code).strip()


def normalize_country(country: str) -> str | None:
    """ISO 3166-1 alpha-2 (`US`); None when it is not two letters."""
    text = country.strip().upper()
    return text if re.fullmatch(r"[A-Z]{2}", text, re.ASCII) else None


def address_user_data(
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    street: str | None = None,
    city: str | None = None,
    region: str | None = None,
    postal_code: str | None = None,
    country: str | None = None,
) -> dict[str, str]:
    """One `user_data.address` entry: names and street hashed, the rest normalised in clear."""
    out: dict[str, str] = {}
    if first_name:
        out["sha256_first_name"] = hash_name(first_name)
    if last_name:
        out["sha256_last_name"] = hash_name(last_name)
    if street:
        out["sha256_street"] = _sha256(normalize_street(street))
    if city:
        out["city"] = normalize_name(city)
    if region:
        out["region"] = normalize_name(region)
    if postal_code:
        out["postal_code"] = normalize_postal_code(postal_code)
    if country and normalize_country(country):
        out["country"] = str(normalize_country(country))
    return out


def strip_cookie_prefix(cid: str) -> str:
    """`GA1.1.123.456` -> `123.456`; anything else unchanged (the validator judges it)."""
    m = _COOKIE.fullmatch(cid.strip())
    return m.group(1) if m else cid

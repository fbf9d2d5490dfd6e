"""Client ids and hashed user-provided data, normalised the way Google documents (ga4-mp.md)."""

from __future__ import annotations

import hashlib
import re

from ga4sync.ga4.limits import CLIENT_ID

_COOKIE = re.compile(r"GA[0-9]+\.[0-9]+\.([0-9]+\.[0-9]+)", re.IGNORECASE)


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
    return text if CLIENT_ID.match(text) else None


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

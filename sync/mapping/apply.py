"""transition -> GA4 event | Skipped(reason) | Invalid(rule): pure, no I/O (DESIGN.md)."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from typing import Any

from ga4sync.core.model import (
    Ga4Event,
    Identity,
    Invalid,
    MappedEvent,
    MappingResult,
    Skipped,
    StageTransition,
)
from ga4sync.ga4.control_chars import strip_control_characters
from ga4sync.ga4.field_rules import is_currency_code, is_identifier_param
from ga4sync.ga4.identity import hash_email, hash_phone, normalize_client_id
from ga4sync.ga4.pii import looks_like_email, looks_like_pii, normalised
from ga4sync.mapping.load import LoadedMapping
from ga4sync.mapping.model import FieldParam, LiteralParam, MappingFile, Rule, param_literal


class ParamError(ValueError):
    pass


def _matches(patterns: list[str], value: str | None) -> bool:
    for p in patterns:
        if p == "*":
            return True
        if value is not None and p.strip().lower() == value.strip().lower():
            return True
    return False


def find_rule(mapping: LoadedMapping, t: StageTransition) -> tuple[int, Rule] | None:
    record = dict(t.fields)
    for i, rule in enumerate(mapping.model.rules):
        if not _matches(rule.to_values(), t.to_value):
            continue
        if rule.from_values() != ["*"] and not _matches(rule.from_values(), t.from_value):
            continue
        if all(c.holds(record) for c in mapping.conditions[i] if mapping.conditions):
            return i, rule
    return None


def apply_mapping(mapping: LoadedMapping, t: StageTransition) -> MappingResult:
    found = find_rule(mapping, t)
    if found is None:
        return Skipped("no_rule", f"no rule matches {t.from_value or '(new)'} -> {t.to_value}")
    index, rule = found
    label = rule.label(index)
    m = mapping.model
    record = dict(t.fields)
    if t.field == m.stage_field and t.to_value:
        # The record is read after the fact: by then its stage may have moved on. A param that
        # reads the stage field means the stage of this move, not the record's latest one.
        record[m.stage_field] = t.to_value
    raw_cid = record.get(m.client_id_field)
    if raw_cid is None or str(raw_cid).strip() == "":
        return Skipped("no_client_id", f"field {m.client_id_field} is empty")
    client_id = normalize_client_id(raw_cid)
    if client_id is None:
        shown = "(looks like an email address)" if looks_like_email(raw_cid) else repr(raw_cid)[:60]
        return Skipped(
            "bad_client_id",
            f"field {m.client_id_field} holds {shown}, not a GA client id like 123.456",
        )
    try:
        params = _params(m, rule, record)
        user_properties = _user_properties(m, record)
    except ParamError as exc:
        return Invalid(label, str(exc))
    session_id = _text(record.get(m.session_id_field)) if m.session_id_field else None
    if session_id:
        params.setdefault("session_id", session_id)
        params.setdefault("engagement_time_msec", 1)
    user_id = _text(record.get(m.user_id_field)) if m.user_id_field else None
    if user_id and looks_like_pii(user_id):
        return Invalid(
            label,
            f"user_id field {m.user_id_field} holds an email or phone number; "
            "GA4 forbids PII in user_id",
        )
    identity = Identity(
        client_id=client_id,
        user_id=user_id,
        session_id=session_id,
        consent=_consent(m, record),
        user_data=_user_data(m, record),
        user_properties=user_properties,
    )
    event = Ga4Event(name=rule.event, params=params, timestamp=t.changed_at)
    return MappedEvent(
        rule=label,
        event=event,
        identity=identity,
        once_per_record=rule.sends_once(),
        resend_if_unknown=rule.resend_if_unknown,
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = strip_control_characters(str(value)).strip()
    return text or None


def _clean(value: Any) -> Any:
    """CRM text as GA4 may get it: no control characters (control_chars.py says why)."""
    return strip_control_characters(value) if isinstance(value, str) else value


def _params(m: MappingFile, rule: Rule, record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in rule.params.items():
        if isinstance(spec, FieldParam):
            raw = record.get(spec.field)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if spec.default is None:
                    if spec.type == "currency" and m.currency:
                        out[name] = m.currency
                    continue
                raw = spec.default
            out[name] = _clean(_convert(f"param {name}", spec, raw))
        elif isinstance(spec, LiteralParam):
            out[name] = _clean(spec.value)
        else:
            out[name] = _clean(spec)
        value = out.get(name)
        if looks_like_pii(value, identifier=is_identifier_param(name)):
            where = f"field {spec.field}" if isinstance(spec, FieldParam) else "a literal"
            raise ParamError(
                f"param {name} ({where}) looks like an email address or phone number; GA4 "
                "forbids PII in params (use email_field/phone_field for hashed user_data)"
            )
    if "value" in out and "currency" not in out and m.currency:
        out["currency"] = m.currency
    return out


def _user_properties(m: MappingFile, record: dict[str, Any]) -> str | None:
    """GA4 `user_properties` as canonical JSON; empty fields without a default are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in m.user_properties.items():
        if isinstance(spec, FieldParam):
            raw = record.get(spec.field)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if spec.default is None:
                    continue
                raw = spec.default
            value = _clean(_convert(f"user property {name}", spec, raw))
        else:
            value = _clean(param_literal(spec))
        if looks_like_pii(value):
            raise ParamError(
                f"user property {name} looks like an email address or phone number; GA4 "
                "forbids PII in user properties"
            )
        out[name] = {"value": value}
    return json.dumps(out, sort_keys=True) if out else None


_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _number_text(text: str) -> float:
    """`1,234.50` is a number; `19,90` is refused rather than read as 1990.

    A comma is dropped only where it groups thousands: a decimal comma would otherwise turn
    a 19.90 deal into a 1990 conversion, silently.
    """
    text = text.strip()
    if "," in text:
        if not _THOUSANDS.match(text):
            raise ValueError(text)
        text = text.replace(",", "")
    if not _PLAIN_NUMBER.match(text):
        raise ValueError(text)  # NaN, inf, 1_000: float() takes them, GA4 must not get them
    return float(text)


def _convert(name: str, spec: FieldParam, raw: Any) -> Any:
    if spec.type == "number":
        try:
            number = raw if isinstance(raw, int | float) else _number_text(str(raw))
        except ValueError:
            raise ParamError(
                f"{name}: field {spec.field} holds {str(raw)[:40]!r}, not a number"
                " (write it as 1234.56; a comma is only accepted as a thousands separator)"
            ) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ParamError(
                f"{name}: field {spec.field} holds {str(raw)[:40]!r}, a number too large for "
                "GA4 (or not a number at all)"
            )
        if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
            return int(number) if not isinstance(raw, float) else number
        return number
    if spec.type == "currency":
        code = strip_control_characters(str(raw)).strip().upper()
        if not is_currency_code(code):
            raise ParamError(
                f"{name}: field {spec.field} holds {str(raw)[:20]!r}, not an ISO 4217 "
                "currency code like USD"
            )
        return code
    if spec.type == "date":
        if isinstance(raw, datetime | date):
            return raw.isoformat()[:10]
        text = str(raw).strip()
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            raise ParamError(
                f"{name}: field {spec.field} holds {text[:30]!r}, not a date"
            ) from None
    text = str(raw)
    return text


def _consent(m: MappingFile, record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if not m.consent:
        return ()
    out: list[tuple[str, str]] = []
    for key, fname in (
        ("ad_user_data", m.consent.ad_user_data_field),
        ("ad_personalization", m.consent.ad_personalization_field),
    ):
        value = _text(record.get(fname)) if fname else None
        if value is not None:
            granted = value.lower() in ("granted", "true", "yes", "1", "opt-in", "opted in")
            out.append((key, "GRANTED" if granted else "DENIED"))
        elif m.consent.default:
            out.append((key, m.consent.default))
    return tuple(out)


def _user_data(m: MappingFile, record: dict[str, Any]) -> str | None:
    data: dict[str, list[str]] = {}
    email = _text(record.get(m.email_field)) if m.email_field else None
    email = normalised(email) if email else None  # `john%40example.com` is john@example.com
    if email and looks_like_email(email):
        data["sha256_email_address"] = [hash_email(email)]
    phone = _text(record.get(m.phone_field)) if m.phone_field else None
    hashed_phone = hash_phone(phone) if phone else None
    if hashed_phone:
        data["sha256_phone_number"] = [hashed_phone]
    return json.dumps(data, sort_keys=True) if data else None

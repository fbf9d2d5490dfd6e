"""Client ids, the PII guard and `user_data` hashing with Google's normalisation rules.

Hash vectors: the normalised string is what Google's "User-provided data" rules prescribe;
the digest is plain SHA-256 (lowercase hex) of it, computed independently with `sha256sum`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from ga4sync.ga4.control_chars import strip_control_characters
from ga4sync.ga4.identity import (
    address_user_data,
    hash_email,
    hash_name,
    hash_phone,
    normalize_client_id,
    normalize_email,
    normalize_phone,
    normalize_postal_code,
    strip_cookie_prefix,
)
from ga4sync.ga4.pii import (
    _looks_like_pii_in_any_form,
    looks_like_email,
    looks_like_phone,
    looks_like_pii,
)

JANEDOE_GMAIL = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
JANE_DOE_EXAMPLE = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
PHONE_US = "d6793cafee143dab64595a0d6ef1f17cd3e7e39c1b87fdd338410e4c71cc4aaf"
PHONE_UK = "9957211890c7199877363cf0513d44429683408bb094930d048f9182abf73232"
JANE = "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2"
OCONNOR = "7a0fbfdf40cbeb97429bdb88f512cecd27f0d44b7e57986ab578423bb61936ac"
STREET = "22b7e2d69b91e0ef4a88e81a73d897b92fd9c93ccfbe0a860f77db16c26f662e"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("1857116524.1675709798", "1857116524.1675709798"),
        ("GA1.1.1857116524.1675709798", "1857116524.1675709798"),
        ("ga1.2.1857116524.1675709798", "1857116524.1675709798"),
        ("  GA1.1.123.456 ", "123.456"),
        ("18", None),
        ("order-1001", None),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", None),
        ("jane@example.com", None),
        ("١٢٣.٤٥٦", None),  # Arabic-Indic digits are not <number>.<number>
        (1857116524.1675709798, None),
        (None, None),
    ],
)
def test_client_id_normalisation(raw: object, expected: str | None) -> None:
    assert normalize_client_id(raw) == expected


def test_strip_cookie_prefix_leaves_other_values_alone() -> None:
    assert strip_cookie_prefix("GA1.1.12.34") == "12.34"
    assert strip_cookie_prefix("order-1") == "order-1"


@pytest.mark.parametrize(
    "raw,normalised,digest",
    [
        ("Jane.Doe@Gmail.com", "janedoe@gmail.com", JANEDOE_GMAIL),
        ("  jane.doe@googlemail.com", "janedoe@googlemail.com", None),
        (" Jane . Doe@gmail.com ", "janedoe@gmail.com", JANEDOE_GMAIL),
        ("Jane.Doe@Example.com ", "jane.doe@example.com", JANE_DOE_EXAMPLE),
    ],
)
def test_email_normalisation_and_hash(raw: str, normalised: str, digest: str | None) -> None:
    assert normalize_email(raw) == normalised
    if digest:
        assert hash_email(raw) == digest


@pytest.mark.parametrize(
    "raw,normalised,digest",
    [
        ("+1 (555) 010-9999", "+15550109999", PHONE_US),
        ("+1.555.010.9999", "+15550109999", PHONE_US),
        ("0044 20 7123 4567", "+442071234567", PHONE_UK),
        ("+44 (20) 7123-4567", "+442071234567", PHONE_UK),
        ("12", None, None),
    ],
)
def test_phone_to_e164_and_hash(raw: str, normalised: str | None, digest: str | None) -> None:
    assert normalize_phone(raw) == normalised
    assert hash_phone(raw) == digest


def test_names_lose_digits_and_symbols() -> None:
    assert hash_name("  Jane ") == JANE
    assert hash_name("JANE2") == JANE
    assert hash_name("O'Connor") == OCONNOR


def test_address_entry_hashes_names_and_street_keeps_the_rest_clear() -> None:
    entry = address_user_data(
        first_name="Jane",
        last_name="O'Connor",
        street="1600 Amphitheatre Pkwy.",
        city="Mountain View 1",
        region="C.A.",
        postal_code="94043~1351",
        country="us",
    )
    assert entry == {
        "sha256_first_name": JANE,
        "sha256_last_name": OCONNOR,
        "sha256_street": STREET,
        "city": "mountain view",
        "region": "ca",
        "postal_code": "940431351",
        "country": "US",
    }
    assert normalize_postal_code(" SW1A.1AA ") == "SW1A1AA"


CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "pii_corpus.yaml").read_text("utf-8"))


def test_pii_corpus_is_big_enough_on_both_sides() -> None:
    assert len(CORPUS["email"]) + len(CORPUS["phone"]) >= 50
    assert len(CORPUS["not_pii"]) >= 50


@pytest.mark.parametrize("value", CORPUS["email"])
def test_emails_in_every_disguise_are_pii(value: str) -> None:
    assert looks_like_pii(value)
    assert looks_like_pii(value, identifier=True)  # an id param holds no address either


@pytest.mark.parametrize("value", CORPUS["phone"])
def test_phones_in_every_disguise_are_pii(value: str) -> None:
    assert looks_like_pii(value)


@pytest.mark.parametrize("value", CORPUS["not_pii"])
def test_look_alikes_are_not_pii(value: str) -> None:
    assert not looks_like_pii(value)


@pytest.mark.parametrize("value", CORPUS["id_digits"])
def test_bare_digit_runs_are_phones_except_in_id_params(value: str) -> None:
    assert looks_like_pii(value)
    assert not looks_like_pii(value, identifier=True)


def test_the_shortcut_for_plain_values_answers_as_the_full_check_does() -> None:
    """`looks_like_pii` skips the full check for plain ASCII with few digits; on the corpus and
    on many random strings built from what phones and addresses are made of, both agree."""
    rng = random.Random(15)
    alphabet = "0123456789" * 3 + " +-().#:/@%&;abcdetlphonTELx"
    values = [v for side in CORPUS.values() for v in side]
    values += ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(5000)]
    for value in values:
        for identifier in (False, True):
            full = _looks_like_pii_in_any_form(value, identifier=identifier)
            assert looks_like_pii(value, identifier=identifier) == full, (value, identifier)


@pytest.mark.parametrize(
    "value,email,phone",
    [
        ("jane.doe@example.com", True, False),
        ("+1 (555) 010-9999", False, True),
        ("Closed Won", False, False),
        (1234567890, False, False),  # not text: numbers are never PII here
    ],
)
def test_email_and_phone_are_told_apart(value: object, email: bool, phone: bool) -> None:
    assert looks_like_email(value) is email
    assert looks_like_phone(value) is phone


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("Closed Won", "Closed Won"),
        ("Closed\r\nWon", "Closed Won"),  # a line break is a gap between words
        ("a\tb", "a b"),
        ("Won\x1b[31m!", "Won!"),  # a whole colour escape, not just the ESC
        ("\x1b]0;owned\x07Won", "Won"),  # OSC: would set the terminal title
        ("ring\x07bell\x00nul", "ringbellnul"),  # BEL, NUL
        ("del\x7f", "del"),
        ("c1\x85next\x9b2Jline", "c1 nextline"),  # NEL is a line break; C1 CSI "clear screen"
        ("\u202eevil", "evil"),  # right-to-left override
        ("naïve café 東京 😀", "naïve café 東京 😀"),  # ordinary text is untouched
    ],
)
def test_control_characters_are_stripped(raw: str, clean: str) -> None:
    assert strip_control_characters(raw) == clean

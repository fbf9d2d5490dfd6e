"""GA4 Measurement Protocol limits and reserved names (ga4-mp.md), as plain data.

Every other module of the GA4 rules reads its numbers and name tables from here, so a limit
Google changes is changed once; this module imports nothing of ga4sync, so it can sit under
all of them without an import cycle.
"""

from __future__ import annotations

import re
from datetime import timedelta

MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME = 40
MAX_PARAM_VALUE = 100
MAX_USER_PROPERTIES = 25
MAX_USER_PROPERTY_NAME = 24
MAX_USER_PROPERTY_VALUE = 36
MAX_ITEMS = 200
MAX_ITEM_CUSTOM_PARAMS = 10
MAX_BODY_BYTES = 130_000
"""The body must be smaller than this (130,000 bytes is already too big)."""
MAX_USER_ID = 256
MAX_HASHED_EMAILS = 3
MAX_HASHED_PHONES = 3
MAX_ADDRESSES = 2
BACKDATE_WINDOW = timedelta(hours=72)
"""GA4 accepts `timestamp_micros` at most 72 h in the past."""
FUTURE_TOLERANCE = timedelta(minutes=1)

# \Z, not $: `$` also matches before a trailing newline, and "purchase\n" is not a name.
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\Z")
CLIENT_ID = re.compile(r"^[0-9]+\.[0-9]+\Z")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
CURRENCY = re.compile(r"^[A-Z]{3}\Z")

RESERVED_EVENTS = frozenset(
    """ad_activeview ad_click ad_exposure ad_query ad_reward adunit_exposure app_clear_data
    app_exception app_install app_remove app_store_refund app_update app_upgrade
    dynamic_link_app_open dynamic_link_app_update dynamic_link_first_open error firebase_campaign
    firebase_in_app_message_action firebase_in_app_message_dismiss
    firebase_in_app_message_impression first_open first_visit notification_dismiss
    notification_foreground notification_open notification_receive notification_send os_update
    session_start user_engagement ad_impression in_app_purchase screen_view""".split()  # noqa: SIM905
)
RESERVED_PARAM_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_PARAMS = frozenset({"firebase_conversion"})
RESERVED_USER_PROPERTIES = frozenset(
    {
        "first_open_time",
        "first_visit_time",
        "last_deep_link_referrer",
        "user_id",
        "first_open_after_install",
    }
)
RESERVED_USER_PROPERTY_PREFIXES = ("_", "firebase_", "ga_", "google_")
TOP_LEVEL_KEYS = frozenset(
    """client_id app_instance_id user_id timestamp_micros user_properties consent
    non_personalized_ads user_data user_location ip_override device user_agent events
    validation_behavior""".split()  # noqa: SIM905
)
EVENT_KEYS = frozenset({"name", "params", "timestamp_micros"})
CONSENT_KEYS = frozenset({"ad_user_data", "ad_personalization"})
USER_DATA_KEYS = frozenset({"sha256_email_address", "sha256_phone_number", "address"})
ADDRESS_KEYS = frozenset(
    """sha256_first_name sha256_last_name sha256_street city region postal_code
    country""".split()  # noqa: SIM905
)
ITEM_STANDARD_KEYS = frozenset(
    """item_id item_name affiliation coupon discount index item_brand item_category
    item_category2 item_category3 item_category4 item_category5 item_list_id item_list_name
    item_variant location_id price quantity promotion_id promotion_name creative_name
    creative_slot""".split()  # noqa: SIM905
)

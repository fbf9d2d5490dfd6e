"""The mapping file model. Sales ops edit these; pydantic refuses anything ambiguous.

Nothing in a mapping executes: params are field references or literals, conditions are
`Field op literal` triples. That keeps a typo from ever running code inside the daemon.
GA4 naming rules and cross-rule checks (duplicates, unreachable rules) live in `checks.py`,
so that one broken rule does not hide the problems of the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    field_validator,
    model_serializer,
)

ParamType = Literal["number", "string", "currency", "date"]

CONVERSION_EVENTS = frozenset({"purchase", "close_convert_lead", "generate_lead", "qualify_lead"})
"""Events sent once per record unless the rule says otherwise (DESIGN.md, once_per_record)."""


def _stage_list(value: Any) -> Any:
    """`Closed Won`, `12345` or `[A, B]` -> a list of stage texts; HubSpot ids may be numbers."""
    if isinstance(value, bool) or (
        isinstance(value, list) and any(isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            "a stage reads as true/false: YAML turns an unquoted yes/no/on/off into true/false; "
            'put the stage name in quotes, e.g. "Yes"'
        )
    if isinstance(value, bool) or value is None or isinstance(value, float | dict):
        raise ValueError(
            "expected a stage name or id, `*`, or a list of them, e.g. `Closed Won` or "
            f"`[Qualification, Needs Analysis]`; got {_shown(value)}"
        )
    if isinstance(value, str | int):
        value = [value]
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            if isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            out.append(item.strip() if isinstance(item, str) else item)
        if not out:
            raise ValueError("the list of stages is empty; name at least one stage or use `*`")
        return out
    return value


def _text_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "a block of keys"
    return f"`{value}`"


StageValues = Annotated[
    list[str],
    BeforeValidator(_stage_list, json_schema_input_type=str | int | list[str | int]),
]
Conditions = Annotated[
    list[str], BeforeValidator(_text_list, json_schema_input_type=str | list[str])
]
FieldName = Annotated[str, Field(min_length=1)]


class FieldParam(BaseModel):
    """A value taken from a CRM record field, converted to a type."""

    model_config = ConfigDict(extra="forbid")

    field: FieldName = Field(description="CRM field (API name) to read, e.g. Amount.")
    type: ParamType = Field(
        default="string",
        description="How to convert the field value: number, string, currency (ISO 4217 code, "
        "e.g. USD) or date (YYYY-MM-DD).",
    )
    default: str | float | int | None = Field(
        default=None, description="Used when the field is empty; without it the param is left out."
    )
    optional: bool = Field(
        default=False,
        description="The field may not exist in every org (Salesforce's CurrencyIsoCode exists "
        "only in multi-currency orgs): where the CRM has no such field, or the integration user "
        "cannot see it, the param is read as empty (its default, or the mapping's currency) "
        "instead of failing the run.",
    )

    @model_serializer(mode="wrap")
    def _without_default_optional(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        """`optional: false` is left out of the dump, so the digest of every mapping written
        before the flag existed stays the same (a changed digest re-reads CSV imports)."""
        dumped: dict[str, Any] = handler(self)
        if not self.optional:
            dumped.pop("optional", None)
        return dumped


class LiteralParam(BaseModel):
    """A fixed value, the same for every record."""

    model_config = ConfigDict(extra="forbid")

    value: str | float | int = Field(description="A fixed value sent as is.")


def _param_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "fixed value" if "value" in value and "field" not in value else "field read"
    if isinstance(value, FieldParam):
        return "field read"
    if isinstance(value, LiteralParam):
        return "fixed value"
    return "bare value"


ParamSpec = Annotated[
    Annotated[FieldParam, Tag("field read")]
    | Annotated[LiteralParam, Tag("fixed value")]
    | Annotated[str | int | float, Tag("bare value")],
    Discriminator(_param_kind),
]
"""`{field: Amount, type: number}`, `{value: web}` or a bare literal such as `web` or `1`."""


class Rule(BaseModel):
    """One stage move -> one GA4 event. The first rule that matches a move wins."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(
        default=None, description="Label used in reports and errors, e.g. `won`."
    )
    from_: StageValues = Field(
        default_factory=lambda: ["*"],
        alias="from",
        description="Stage(s) moved from, by label or id; a list matches any of them; `*` (the "
        "default) matches any stage, including a new record's first stage.",
    )
    to: StageValues = Field(
        description="Stage(s) moved to, by label or id; a list matches any of them; `*` any.",
    )
    event: str = Field(
        min_length=1,
        description="GA4 event name, e.g. purchase, qualify_lead, close_convert_lead.",
    )
    params: dict[str, ParamSpec] = Field(
        default_factory=dict,
        description="Event params: `{field: Amount, type: number}` reads the record; "
        "`{value: web}` or a bare value is sent as is.",
    )
    when: Conditions = Field(
        default_factory=list,
        description="Conditions that must all hold, e.g. `Amount > 0` or "
        "`LeadSource in [Web, Phone]`.",
    )
    once_per_record: bool | None = Field(
        default=None,
        description="Send this event at most once per record, even if the stage goes back and "
        "forth (default: on for purchase, generate_lead, qualify_lead, close_convert_lead).",
    )
    resend_if_unknown: bool = Field(
        default=False,
        description="Resend when GA4's answer never came; only for purchase with a "
        "transaction_id param (GA4 deduplicates only those).",
    )

    def from_values(self) -> list[str]:
        return list(self.from_)

    def to_values(self) -> list[str]:
        return list(self.to)

    def label(self, index: int) -> str:
        return self.name or f"rule {index + 1} ({self.event})"

    def sends_once(self) -> bool:
        if self.once_per_record is not None:
            return self.once_per_record
        return self.event in CONVERSION_EVENTS


class ConsentSpec(BaseModel):
    """Where the record keeps the person's ad consent (GA4 `consent`)."""

    model_config = ConfigDict(extra="forbid")

    ad_user_data_field: FieldName | None = Field(
        default=None, description="Field saying whether ad_user_data is granted."
    )
    ad_personalization_field: FieldName | None = Field(
        default=None, description="Field saying whether ad_personalization is granted."
    )
    default: Literal["GRANTED", "DENIED"] | None = Field(
        default=None, description="Consent sent when the fields are empty."
    )


class CsvColumns(BaseModel):
    """For `type: csv` connectors: which columns name the record and the time of each row.

    The other columns are named by the usual keys (`stage_field` is the column holding the
    stage or conversion type, `client_id_field` the client id column, params read columns).
    """

    model_config = ConfigDict(extra="forbid")

    record_id_column: FieldName = Field(
        description="Column with the id of the order, call or lead, e.g. order_id; with the "
        "stage and time it makes each row's key, so a file read twice sends nothing new."
    )
    time_column: FieldName = Field(
        description="Column with when the conversion happened, e.g. sold_at."
    )
    time_format: str | None = Field(
        default=None,
        description="strptime format of the time column, e.g. `%d.%m.%Y %H:%M`; default ISO "
        "8601 (2026-03-01 14:30, 2026-03-01T14:30:00+01:00, ...Z).",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of times written without a UTC offset, e.g. Europe/Berlin. "
        "Required when the file's times have no offset: ga4sync never guesses.",
    )
    from_column: FieldName | None = Field(
        default=None,
        description="Column with the stage before this one, when the file has it (for `from:`).",
    )

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, v: str | None) -> str | None:
        """Checked here, not only when the connector starts, so `mappings validate` says so."""
        if v is None or v.upper() == "UTC":
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"`{v}` is not an IANA time zone; write it like Europe/Berlin, "
                "America/New_York or UTC"
            ) from None
        return v

    @field_validator("time_format")
    @classmethod
    def _reads_a_date(cls, v: str | None) -> str | None:
        """A format that cannot read back the date it writes would refuse every row."""
        if v is None:
            return v
        sample = datetime(2026, 3, 14, 15, 9, 26)
        try:
            back = datetime.strptime(sample.strftime(v), v)
        except ValueError:
            back = None
        if back is None or back.date() != sample.date():
            raise ValueError(
                f"`{v}` is not a strptime format that reads a date; write it like "
                "`%d.%m.%Y %H:%M` (for 01.03.2026 14:30) or `%m/%d/%Y %I:%M %p`"
            )
        return v


class MappingFile(BaseModel):
    """One file per connector object: which field to watch and what each move means in GA4."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        title="ga4sync mapping file",
        json_schema_extra={"$comment": "Generated by `ga4sync mappings schema`; do not edit."},
    )

    schema_: str | None = Field(
        default=None, alias="$schema", description="JSON Schema URL, for editors only."
    )
    object: str = Field(
        min_length=1,
        max_length=128,
        description="CRM object, e.g. Opportunity, Lead, deals, contacts.",
    )
    stage_field: FieldName = Field(
        max_length=128,
        description="The field whose changes are watched, e.g. StageName, Status, dealstage.",
    )
    detection: Literal["auto", "history", "snapshot"] = Field(
        default="auto",
        description="How moves are found: CRM field history (every move, true times) or "
        "snapshot diff (last value seen; moves between two polls can be missed). `auto` uses "
        "history where the CRM keeps it.",
    )
    history_object: str | None = Field(
        default=None,
        description="Salesforce history object to read, e.g. LeadHistory or Custom__History; "
        "default: derived from `object`.",
    )
    client_id_field: FieldName = Field(
        description="Field holding the GA client id your web form saved (the _ga cookie; "
        "GA1.1.123.456 is accepted and shortened to 123.456), e.g. GA_Client_ID__c."
    )
    session_id_field: FieldName | None = Field(
        default=None,
        description="Field holding the GA session id, so the conversion joins the web session.",
    )
    user_id_field: FieldName | None = Field(
        default=None, description="Field holding your own user id (never an email or phone)."
    )
    email_field: FieldName | None = Field(
        default=None, description="Email field, sent only SHA-256 hashed in user_data."
    )
    phone_field: FieldName | None = Field(
        default=None, description="Phone field, sent only SHA-256 hashed (E.164) in user_data."
    )
    consent: ConsentSpec | None = Field(default=None, description="Ad consent fields.")
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Default ISO 4217 currency in capitals, e.g. USD; used when a value has no "
        "currency of its own.",
    )
    user_properties: dict[str, ParamSpec] = Field(
        default_factory=dict,
        description="GA4 user properties sent with every event: `{field: Industry}` or a literal.",
    )
    rules: list[Rule] = Field(
        min_length=1, description="Stage moves and the GA4 event each one sends."
    )
    csv: CsvColumns | None = Field(
        default=None,
        description="CSV files only: the record id and time columns, time format and zone.",
    )

    def optional_fields(self) -> list[str]:
        """Fields read only through `optional: true` params: a CRM without them is no error.

        A field also read by a plain param, or as an identity field, stays required."""
        specs = [*self.user_properties.values()]
        for rule in self.rules:
            specs.extend(rule.params.values())
        reads = [s for s in specs if isinstance(s, FieldParam)]
        optional = {s.field for s in reads if s.optional}
        plain = {s.field for s in reads if not s.optional}
        identity = set(self.record_fields()) - {s.field for s in reads}
        return sorted(optional - plain - identity)

    def record_fields(self) -> list[str]:
        """Every CRM field the mapping reads: connectors fetch only these."""
        names: list[str] = [self.stage_field, self.client_id_field]
        for opt in (self.session_id_field, self.user_id_field, self.email_field, self.phone_field):
            if opt:
                names.append(opt)
        if self.consent:
            for opt in (self.consent.ad_user_data_field, self.consent.ad_personalization_field):
                if opt:
                    names.append(opt)
        for spec in self.user_properties.values():
            if isinstance(spec, FieldParam):
                names.append(spec.field)
        for rule in self.rules:
            for spec in rule.params.values():
                if isinstance(spec, FieldParam):
                    names.append(spec.field)
            for cond in rule.when:
                if cond.split():
                    names.append(cond.split()[0])
        return list(dict.fromkeys(names))


def param_literal(spec: Any) -> Any:
    return spec.value if isinstance(spec, LiteralParam) else spec

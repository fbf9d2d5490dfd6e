"""Whether the integration user sees every record of an object, or only its own and shared ones.

Salesforce applies sharing to every API query: with an object's organization-wide default at
Private (or Controlled by Parent), a user sees the records it owns, those above it in the role
hierarchy and those shared with it, unless it has "View All" on the object or the system
permission "View All Data" ("Modify All" / "Modify All Data" include them). Nothing in a query
answer says records were left out, so a run for such a user succeeds while missing every stage
move of records other people own. An API user can find out, in this order (each step ends the
check when it answers "sees all"):

1. `EntityDefinition.InternalSharingModel` of the object: Read, ReadWrite, ReadWriteTransfer or
   FullAccess (Public Read Only / Read/Write) means every internal user sees every record. If
   EntityDefinition does not answer, `Organization.Default<Object>Access` does for the standard
   objects that have one (None is Private, Edit is Read/Write).
2. `UserPermissionAccess` (the running user's own system permissions, no setup rights needed):
   `PermissionsViewAllData` / `PermissionsModifyAllData`.
3. The user's id (`GET /services/oauth2/userinfo`), its `PermissionSetAssignment`s (the profile's
   own permission set included) and their `ObjectPermissions` on the object:
   `PermissionsViewAllRecords` / `PermissionsModifyAllRecords`.

Step 3 needs "View Setup and Configuration"; a user without it gets INVALID_TYPE, and the answer
is then "could not check", said as such, never an error.
(Salesforce: Object Reference for ObjectPermissions, PermissionSetAssignment, UserPermissionAccess,
EntityDefinition; Help, "Sample queries for troubleshooting access".)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ga4sync.connectors.salesforce_soql import soql_quote

PUBLIC_MODELS = frozenset({"Read", "ReadWrite", "ReadWriteTransfer", "FullAccess"})
ORG_DEFAULT = {
    "Opportunity": "DefaultOpportunityAccess",
    "Lead": "DefaultLeadAccess",
    "Account": "DefaultAccountAccess",
    "Contact": "DefaultContactAccess",
    "Case": "DefaultCaseAccess",
}
ORG_MODEL = {
    "None": "Private",
    "Read": "Read",
    "Edit": "ReadWrite",
    "ReadEditTransfer": "ReadWriteTransfer",
    "ControlledByParent": "ControlledByParent",
}
"""Organization's Default<Object>Access values in InternalSharingModel's words."""
MODEL_WORDS = {"Private": "Private", "ControlledByParent": "Controlled by Parent"}
PLURAL = {"Opportunity": "Opportunities", "Lead": "Leads", "Account": "Accounts"}


class CannotCheck(Exception):
    """Salesforce refused a query the check needs (the user may not read setup): the answer
    is "could not check", not a failure of the run."""


@dataclass(frozen=True)
class Visibility:
    sees_all: bool | None
    """True: every record; False: only its own and shared ones; None: could not check."""
    sharing_model: str | None = None
    reason: str = ""
    """Why it could not check (Salesforce's refusal), when `sees_all` is None."""


Query = Callable[[str], list[dict[str, Any]]]


def check_visibility(obj: str, query: Query, user_id: Callable[[], str | None]) -> Visibility:
    """The steps of the module docstring. `query` returns a query's records and raises
    CannotCheck on a refusal; anything else it raises (quota, outage) propagates."""
    model = sharing_model(obj, query)
    try:
        if model in PUBLIC_MODELS:
            return Visibility(True, model)
        granted = query(
            "SELECT PermissionsViewAllData, PermissionsModifyAllData FROM UserPermissionAccess"
        )
        perms = granted[0] if granted else {}
        if perms.get("PermissionsViewAllData") is True or perms.get("PermissionsModifyAllData"):
            return Visibility(True, model)
        user = user_id()
        if not user:
            return Visibility(None, model, "Salesforce did not say who the integration user is")
        sets = [
            str(r["PermissionSetId"])
            for r in query(
                "SELECT PermissionSetId FROM PermissionSetAssignment "
                f"WHERE AssigneeId = {soql_quote(user)}"
            )
            if r.get("PermissionSetId")
        ]
        if sets:
            grants = query(
                "SELECT ParentId, PermissionsViewAllRecords, PermissionsModifyAllRecords FROM "
                f"ObjectPermissions WHERE SobjectType = {soql_quote(obj)} AND ParentId IN "
                f"({', '.join(soql_quote(s) for s in sets)})"
            )
            if any(
                g.get("PermissionsViewAllRecords") is True
                or g.get("PermissionsModifyAllRecords") is True
                for g in grants
            ):
                return Visibility(True, model)
    except CannotCheck as exc:
        return Visibility(None, model, str(exc))
    return Visibility(False, model)


def sharing_model(obj: str, query: Query) -> str | None:
    """The object's organization-wide default for internal users, or None if neither
    EntityDefinition nor Organization tells."""
    try:
        rows = query(
            "SELECT QualifiedApiName, InternalSharingModel FROM EntityDefinition "
            f"WHERE QualifiedApiName = {soql_quote(obj)}"
        )
        found = rows[0].get("InternalSharingModel") if rows else None
        if isinstance(found, str) and found:
            return found
    except CannotCheck:
        pass
    field = ORG_DEFAULT.get(obj)
    if field is None:
        return None
    try:
        rows = query(f"SELECT {field} FROM Organization")
    except CannotCheck:
        return None
    value = rows[0].get(field) if rows else None
    return ORG_MODEL.get(value) if isinstance(value, str) else None


def visibility_warning(obj: str, seen: Visibility) -> str | None:
    """What to tell a sales-ops person, or None when every record is seen."""
    if seen.sees_all is True:
        return None
    records = PLURAL.get(obj, f"{obj} records")
    grant = (
        f'give the integration user "View All" on {records} (Setup > Permission Sets > the '
        f"user's permission set > Object Settings > {records} > Edit > View All), or the system "
        'permission "View All Data"'
    )
    if seen.sees_all is None:
        return (
            f"could not check whether the integration user sees every {obj} ({seen.reason}): "
            f"Salesforce leaves records that sharing hides from the user out of every answer "
            f"without saying so; if {obj} sharing is Private, {grant}. To let ga4sync check, "
            'give the user "View Setup and Configuration"'
        )
    model = MODEL_WORDS.get(seen.sharing_model or "", seen.sharing_model or "not public")
    return (
        f"the integration user sees only the {records} it owns or that are shared with it "
        f'({obj} sharing is {model}, and the user has neither "View All" on {records} nor '
        '"View All Data"): stage moves of records other users own are not read, and the run '
        f"cannot tell how many; {grant}"
    )

"""Who the integration user is and which records sharing lets it see, as a Salesforce org decides.

In a real org a query returns only the records the running user may see: with an object's
organization-wide default at Private, that is the records it owns or that are shared with it,
unless a permission set or the profile grants "View All" on the object or the system permission
"View All Data". Nothing in the answer says records were left out. The sandbox imitates that
(and the history rows of hidden records go with them), and answers the metadata queries an API
user can ask to find out: `EntityDefinition.InternalSharingModel`, `UserPermissionAccess`,
`PermissionSetAssignment` and `ObjectPermissions` (and `Organization`'s defaults), plus
`GET /services/oauth2/userinfo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INTEGRATION_USER = "005000000000001AAA"
"""The user every sandbox login answers for (the `id` of an OAuth token answer)."""
PROFILE_PERMISSION_SET = "0PSSBX000000001AAA"
"""Every profile has a permission set of its own; PermissionSetAssignment lists it."""

PUBLIC_MODELS = frozenset({"Read", "ReadWrite", "ReadWriteTransfer", "FullAccess"})
"""InternalSharingModel values under which every internal user sees every record."""

HISTORY_PARENT = {
    "OpportunityHistory": ("Opportunity", "OpportunityId"),
    "LeadHistory": ("Lead", "LeadId"),
}

METADATA_FIELDS = {
    "EntityDefinition": {"Id", "QualifiedApiName", "InternalSharingModel"},
    "Organization": {"Id", *(f"Default{o}Access" for o in ("Opportunity", "Lead", "Account"))},
    "UserPermissionAccess": {"Id", "PermissionsViewAllData", "PermissionsModifyAllData"},
    "PermissionSetAssignment": {"Id", "AssigneeId", "PermissionSetId"},
    "ObjectPermissions": {
        "Id",
        "ParentId",
        "SobjectType",
        "PermissionsRead",
        "PermissionsViewAllRecords",
        "PermissionsModifyAllRecords",
    },
}
SETUP_OBJECTS = frozenset({"PermissionSetAssignment", "ObjectPermissions"})
"""Queryable only with "View Setup and Configuration" (or a permission-managing one)."""


@dataclass
class OrgAccess:
    """The integration user's record access. The default is a user with "View All Data", so
    every record is seen, as in the sandbox before sharing was imitated."""

    view_all_data: bool = True
    view_all: set[str] = field(default_factory=set)
    """Objects on which the user's permission sets grant "View All"."""
    sharing: dict[str, str] = field(default_factory=dict)
    """InternalSharingModel per object (organization-wide default); `ReadWrite` if unset."""
    setup_readable: bool = True
    """Whether the user may query PermissionSetAssignment and ObjectPermissions."""
    refused: set[str] = field(default_factory=set)
    """Further objects this user may not query (INVALID_TYPE), e.g. EntityDefinition."""
    user_id: str = INTEGRATION_USER

    def restrict(self, obj: str) -> None:
        """An org where `obj` is Private and the user has neither View All nor View All
        Data: records other users own disappear from its queries."""
        self.view_all_data = False
        self.view_all.discard(obj)
        self.sharing[obj] = "Private"

    def sharing_model(self, obj: str) -> str:
        return self.sharing.get(obj, "ReadWrite")

    def sees_all(self, obj: str) -> bool:
        return (
            self.view_all_data or obj in self.view_all or self.sharing_model(obj) in PUBLIC_MODELS
        )

    def visible(self, obj: str, row: dict[str, Any], parent_of: Any) -> bool:
        """Whether a row of `obj` reaches this user. `parent_of(obj, id)` finds the record a
        history row belongs to; a record without an owner counts as the user's own."""
        if obj in HISTORY_PARENT or obj.endswith("__History"):
            parent_obj, parent_field = HISTORY_PARENT.get(
                obj, (obj[: -len("__History")] + "__c", "ParentId")
            )
            if self.sees_all(parent_obj):
                return True
            parent = parent_of(parent_obj, row.get(parent_field))
            return parent is None or self.visible(parent_obj, parent, parent_of)
        if self.sees_all(obj):
            return True
        return row.get("OwnerId") in (None, self.user_id)

    def metadata_rows(self, obj: str, objects: list[str]) -> list[dict[str, Any]]:
        """Rows of the metadata objects above; `objects` are the org's object names."""
        if obj == "EntityDefinition":
            return [
                {
                    "Id": name,
                    "QualifiedApiName": name,
                    "InternalSharingModel": self.sharing_model(name),
                }
                for name in objects
            ]
        if obj == "Organization":
            org_words = {"Private": "None", "Read": "Read", "ReadWrite": "Edit"}
            org_words["ReadWriteTransfer"] = "ReadEditTransfer"
            return [
                {
                    "Id": "00DSBX",
                    **{
                        f"Default{o}Access": org_words.get(self.sharing_model(o), "Edit")
                        for o in ("Opportunity", "Lead", "Account")
                    },
                }
            ]
        if obj == "UserPermissionAccess":
            return [
                {
                    "Id": "UPA",
                    "PermissionsViewAllData": self.view_all_data,
                    "PermissionsModifyAllData": False,
                }
            ]
        if obj == "PermissionSetAssignment":
            return [
                {
                    "Id": "0PaSBX1",
                    "AssigneeId": self.user_id,
                    "PermissionSetId": PROFILE_PERMISSION_SET,
                }
            ]
        if obj == "ObjectPermissions":
            return [
                {
                    "Id": f"110SBX{i:03d}",
                    "ParentId": PROFILE_PERMISSION_SET,
                    "SobjectType": name,
                    "PermissionsRead": True,
                    "PermissionsViewAllRecords": name in self.view_all,
                    "PermissionsModifyAllRecords": False,
                }
                for i, name in enumerate(objects)
            ]
        return []

    def userinfo(self, instance: str) -> dict[str, Any]:
        """The OpenID Connect userinfo answer, the fields ga4sync reads and a few around them."""
        return {
            "sub": f"{instance}/id/00DSBX/{self.user_id}",
            "user_id": self.user_id,
            "organization_id": "00DSBX",
            "preferred_username": "integration@example.com",
            "user_type": "STANDARD",
        }

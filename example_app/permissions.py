"""Who may do what: each role's permissions, and who may see an organization.

The extension's guards (``permission_required``, ``org_access_required``) ask these
loaders about the user Flask-Login loaded; the views only name what they need.
"""

from __future__ import annotations

from collections.abc import Mapping

from .extensions import resilience
from .models import Role, User

ROLE_PERMISSIONS: Mapping[Role, frozenset[str]] = {
    # resilience:health opens /health/detailed, the metrics and the dashboard.
    Role.ADMIN: frozenset({"documents:read", "documents:write", "stats:read", "resilience:health"}),
    Role.MEMBER: frozenset({"documents:read", "documents:write", "stats:read"}),
    Role.VIEWER: frozenset({"documents:read", "stats:read"}),
}


@resilience.permission_loader
def permissions_of(user: User) -> frozenset[str]:
    return ROLE_PERMISSIONS[user.role]


@resilience.org_access_loader
def belongs_to(user: User, org_id: int) -> bool:
    # One organization per user; a membership table would be asked here instead.
    return user.organization_id == org_id

"""The caller: who a request is from, as its bearer token says (plain: no framework)."""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.core.errors import Forbidden

ROLES = ("resident", "worker", "operator", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    role: str
    community_ids: frozenset[int] = frozenset()

    def can_operate(self, community_id: int) -> bool:
        """Admins operate everywhere; operators only in their communities."""
        return self.role == "admin" or (
            self.role == "operator" and community_id in self.community_ids
        )

    def require_operator_of(self, community_id: int) -> None:
        """403 `not_yours` unless the caller operates the community."""
        if not self.can_operate(community_id):
            raise Forbidden("not an operator of this community", code="not_yours")

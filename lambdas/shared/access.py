"""Who owns a study, and who may see it: a clinical system its own studies, a person their groups'.

A study records its owner when it is created: `client:<IAM principal>` for a clinical system,
`group:<Cognito group>` for a person (their first group by name; a person in no group may create
nothing). Reads, lists and feedback are scoped to it; a study outside the caller's scope is
answered as if it did not exist.
"""

from __future__ import annotations

from lambdas.shared.identity import CLIENT, Caller

UNASSIGNED = "unassigned"  # studies put straight into S3 by an operator: no API caller sees them


class NoGroup(Exception):
    def __init__(self, caller: Caller):
        super().__init__(f"{caller.id} belongs to no group: an administrator must add them to one "
                         "(aws cognito-idp admin-add-user-to-group)")


def owners(caller: Caller) -> tuple[str, ...]:
    """Every owner whose studies the caller may see."""
    if caller.kind == CLIENT:
        return (f"client:{caller.id}",)
    return tuple(f"group:{g}" for g in caller.groups)


def owner_of(caller: Caller) -> str:
    """The owner recorded on a study the caller creates (and whose list they see)."""
    scope = owners(caller)
    if not scope:
        raise NoGroup(caller)
    return min(scope)  # a person in several groups: the first by name, whatever order the token lists them


def may_access(caller: Caller, study: dict) -> bool:
    return study.get("owner") in owners(caller)

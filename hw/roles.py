"""The role map: which interface is the WAN and which are the LAN, from a profile and the NICs seen.

Pure and deterministic (interfaces are taken in path order, then name order), so `sbc-hw` writing
networkd `.link` files and the management API showing roles always agree.

Per interface: the first profile rule that matches decides (a role or "ignore"). An interface no
rule matches that already carries a role name (`wan0`, `lan1`, or a name a rule gives) keeps that
role: udev renamed it on an earlier pass and its old kernel name is gone. The rest follow the
profile's `unmatched` policy. Names: a rule's `name`; else the current name if it already is a name
of that role; else the role's next free `<role><N>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hw.nics import Nic, PortRole
from hw.profile import HardwareProfile, Unmatched

_ROLE_NAME = re.compile(r"^(wan|lan)(\d+)$")


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    nic: Nic
    role: PortRole
    name: str  # the name the interface has or gets (networkd matches it)
    reason: str  # why: "ports[0] path=pci-0000:00:03.0", "unmatched, in order", "already named"

    @property
    def needs_rename(self) -> bool:
        return self.nic.name != self.name


@dataclass(frozen=True, slots=True)
class RoleMap:
    profile: str
    assignments: tuple[RoleAssignment, ...]
    ignored: tuple[Nic, ...]
    missing: tuple[PortRole, ...]  # required roles with no interface

    def by_role(self, role: PortRole) -> list[RoleAssignment]:
        return [a for a in self.assignments if a.role is role]

    def for_interface(self, name: str) -> RoleAssignment | None:
        """The assignment of the interface called `name` now, or that will be called `name`."""
        for a in self.assignments:
            if a.nic.name == name or a.name == name:
                return a
        return None


def _sort_key(nic: Nic) -> tuple[str, str]:
    return (nic.path or "~", nic.name)  # interfaces without a path after those with one


def _fits(name: str, role: PortRole) -> bool:
    m = _ROLE_NAME.match(name)
    return m is not None and m[1] == role.value


def assign_roles(profile: HardwareProfile, nics: list[Nic]) -> RoleMap:
    candidates = sorted((n for n in nics if n.physical or profile.include_virtual), key=_sort_key)
    candidates = [n for n in candidates if n.name != "lo"]
    explicit = profile.explicit_names()
    decided: list[tuple[Nic, PortRole, str | None, str]] = []  # nic, role, fixed name, reason
    ignored: list[Nic] = []
    unmatched: list[Nic] = []
    for nic in candidates:
        for index, rule in enumerate(profile.ports):
            if rule.match.matches(nic):
                if rule.role is None:
                    ignored.append(nic)
                else:
                    decided.append((nic, rule.role, rule.name, f"ports[{index}] {rule.match.describe()}"))
                break
        else:
            named = _ROLE_NAME.match(nic.name)
            if nic.name in explicit:
                decided.append((nic, explicit[nic.name], nic.name, "already named"))
            elif named:
                decided.append((nic, PortRole(named[1]), None, "already named"))
            else:
                unmatched.append(nic)
    if profile.unmatched is Unmatched.IN_ORDER:
        for nic in unmatched:
            has_wan = any(role is PortRole.WAN for _, role, _, _ in decided)
            decided.append((nic, PortRole.LAN if has_wan else PortRole.WAN, None, "unmatched, in order"))
    else:
        ignored.extend(unmatched)
    taken = {fixed for _, _, fixed, _ in decided if fixed is not None} | set(explicit)
    names: dict[int, str] = {}
    # Keep names that already fit their role first, so a re-run never shuffles lan0 and lan1.
    used: set[str] = set()
    for i, (nic, role, fixed, _) in enumerate(decided):
        if fixed is not None and fixed not in used:  # a named rule that matches twice names the first
            names[i] = fixed
            used.add(fixed)
        elif fixed is None and _fits(nic.name, role) and nic.name not in taken:
            names[i] = nic.name
            taken.add(nic.name)
    for i, (_, role, _, _) in enumerate(decided):
        if i not in names:
            n = 0
            while f"{role.value}{n}" in taken:
                n += 1
            names[i] = f"{role.value}{n}"
            taken.add(names[i])
    assignments = tuple(RoleAssignment(nic, role, names[i], reason) for i, (nic, role, _, reason) in enumerate(decided))
    present = {a.role for a in assignments}
    missing = tuple(r for r in profile.required if r not in present)
    return RoleMap(profile=profile.name, assignments=assignments, ignored=tuple(ignored), missing=missing)

"""Which parts of a config change only an admin may make.

`management:` decides who can reach and run the management plane: the users file, its state
directory, the HTTPS and SNMP bind addresses, SNMP users and communities, the audit log's retention.
An operator who could change it could lock every admin out or expose the UI, so a change that
touches it needs the admin role. `sbc.state_dir` counts too: with no `management.state_dir` the
users file and revisions live there.

The comparison is of the parsed YAML, not of the validated model: spelling out a default, or
removing one, is a change to the section as well (refusing it is the safe side).
"""

from __future__ import annotations

from typing import Any

import yaml

ADMIN_ONLY_PATHS: tuple[tuple[str, ...], ...] = (("management",), ("sbc", "state_dir"))
_MAX_DEPTH = 32  # config YAML is a few levels deep; a bound against a pathological document
_MISSING = object()


def admin_only_changes(old_text: str, new_text: str) -> list[str]:
    """The dotted paths under the admin-only parts whose values differ between two config texts."""
    old, new = _parse(old_text), _parse(new_text)
    changed: list[str] = []
    for path in ADMIN_ONLY_PATHS:
        _diff(_lookup(old, path), _lookup(new, path), ".".join(path), changed, 0)
    return changed


def _parse(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # the store's validation reports it; here it only compares


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _diff(old: Any, new: Any, where: str, out: list[str], depth: int) -> None:
    # An absent section compares like an empty one: each key added to it is named on its own.
    old = {} if old is _MISSING and isinstance(new, dict) else old
    new = {} if new is _MISSING and isinstance(old, dict) else new
    if isinstance(old, dict) and isinstance(new, dict) and depth < _MAX_DEPTH:
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{where}.{key}", out, depth + 1)
    elif old != new:
        out.append(where)

"""Which config changes need the admin role: any value under `management:` and `sbc.state_dir`."""

from __future__ import annotations

from mgmt.admin_only import admin_only_changes
from tests.unit.mgmt.conftest import BASE_CONFIG, with_rule

SNMP = BASE_CONFIG + "management:\n  snmp:\n    v3_users: [{name: ops, auth_key: aaaaaaaa, priv_key: bbbbbbbb}]\n"


def test_changes_outside_the_admin_parts_are_not_named() -> None:
    assert admin_only_changes(BASE_CONFIG, with_rule()) == []
    assert admin_only_changes(SNMP, with_rule() + SNMP[len(BASE_CONFIG) :]) == []
    assert admin_only_changes(BASE_CONFIG, BASE_CONFIG + "management: {}\n") == []


def test_each_changed_management_value_is_named() -> None:
    assert admin_only_changes(BASE_CONFIG, SNMP) == ["management.snmp.v3_users"]
    assert admin_only_changes(SNMP, BASE_CONFIG) == ["management.snmp.v3_users"]
    moved = SNMP + "  state_dir: /var/tmp/x\n  users_file: /var/tmp/u.json\n"
    assert admin_only_changes(SNMP, moved) == ["management.state_dir", "management.users_file"]
    state = BASE_CONFIG.replace("user_agent: TestSBC", "user_agent: TestSBC\n  state_dir: /etc")
    assert admin_only_changes(BASE_CONFIG, state) == ["sbc.state_dir"]


def test_a_text_that_is_not_yaml_is_compared_as_empty() -> None:
    assert admin_only_changes(BASE_CONFIG, "realms: [") == []  # the store refuses it as invalid anyway
    assert admin_only_changes("realms: [", SNMP) == ["management.snmp.v3_users"]

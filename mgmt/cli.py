"""The installed `sbc` command: the SBC's own commands (sbc/cli.py) plus `sbc mgmt`, the management plane,
and `sbc audit-verify`, its audit log check.

It lives here, in the layer above both, because `sbc` must not import `mgmt` (tests/unit/test_layers.py);
`sbc run`, `sbc status` and the rest are passed to the SBC's command table unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sbc import cli as sbc_cli


def main(argv: list[str] | None = None) -> int:
    parser, sub = sbc_cli.build_parser()
    mgmt = sub.add_parser("mgmt", help="run the management plane: REST API, web UI, config store (HTTPS)")
    mgmt.add_argument("--config", type=Path, required=True, help="the SBC's YAML config file (the active one)")
    audit = sub.add_parser("audit-verify", help="check the management audit log's hash chain (exit 1 at a break)")
    audit.add_argument("--config", type=Path, required=True, help="the SBC's YAML config file (the active one)")
    args = parser.parse_args(argv)
    if args.command == "mgmt":
        from mgmt.app import run as run_mgmt

        return run_mgmt(args.config)
    if args.command == "audit-verify":
        from mgmt.audit import verify_command

        return verify_command(args.config)
    return sbc_cli.dispatch(args)


if __name__ == "__main__":
    sys.exit(main())

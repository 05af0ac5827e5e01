"""The installed `sbc` command: the SBC's own commands (sbc/cli.py) plus `sbc mgmt`, the management plane.

It lives here, in the layer above both, because `sbc` must not import `mgmt` (tests/unit/test_layers.py);
`sbc run`, `sbc status` and the rest are passed to the SBC's command table unchanged.
"""

from __future__ import annotations

from pathlib import Path

from sbc import cli as sbc_cli


def main(argv: list[str] | None = None) -> int:
    parser, sub = sbc_cli.build_parser()
    mgmt = sub.add_parser("mgmt", help="run the management plane: REST API, web UI, config store (HTTPS)")
    mgmt.add_argument("--config", type=Path, required=True, help="the SBC's YAML config file (the active one)")
    args = parser.parse_args(argv)
    if args.command == "mgmt":
        from mgmt.app import run as run_mgmt

        return run_mgmt(args.config)
    return sbc_cli.dispatch(args)

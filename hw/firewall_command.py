"""`sbc-hw firewall render|apply|counters`: the host firewall from the command line and its unit.

    sbc-hw firewall render [--config FILE ...]    print the nft script the config gives
    sbc-hw firewall apply [--config FILE ...]     check it (nft -c) and load it in one transaction
    sbc-hw firewall counters [--json]             the named counters of table inet sbc_filter

With several `--config`, the first that exists is used: sbc-firewall.service names the committed
config and then the image's default, which is all there is before the first boot provisions one.
Without `--config`: the embedded default config.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from hw.firewall_apply import FirewallRefused, apply_firewall, firewall_script
from hw.firewall_counters import CountersUnreadable, read_counters
from sbc.config.loader import load_config
from sbc.config.model import SbcConfig

Emit = Callable[..., None]


def add_firewall_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("firewall", help="render, apply or count the host firewall (nftables)")
    parser.add_argument("action", choices=("render", "apply", "counters"))
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="SBC config (repeatable: the first that exists; default: the embedded one)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="counters: print JSON")


def run_firewall(args: argparse.Namespace, emit: Emit) -> int:
    """Exit status: 0 done, 1 nft refused (the old ruleset stays) or cannot be read. ConfigError propagates."""
    if args.action == "counters":
        return _counters(args.json)
    path = _first_existing(args.config)
    if args.config and path is None:
        print(f"sbc-hw firewall: none of {', '.join(map(str, args.config))} exists", file=sys.stderr)
        return 1
    config = load_config(path)
    if args.action == "render":
        sys.stdout.write(firewall_script(config))
        return 0
    return _apply(config, emit)


def _first_existing(paths: list[Path]) -> Path | None:
    return next((path for path in paths if path.exists()), None)


def _apply(config: SbcConfig, emit: Emit) -> int:
    try:
        applied = apply_firewall(config)
    except FirewallRefused as exc:
        emit("error", "firewall.refused", config=config.source, error=str(exc), kept="the ruleset in force")
        return 1
    emit("info", "firewall.applied" if applied.enabled else "firewall.removed", config=config.source,
         rules=applied.script.count("\n"))  # fmt: skip
    return 0


def _counters(as_json: bool) -> int:
    try:
        counters = read_counters()
    except (CountersUnreadable, RuntimeError) as exc:
        print(f"sbc-hw firewall counters: {exc}", file=sys.stderr)
        return 1
    figures = counters.as_json()
    if as_json:
        print(json.dumps(figures, indent=2))
        return 0
    for name, reading in figures.items():
        print(f"  {name:<16} {reading['packets']:>12} packets {reading['bytes']:>14} bytes")
    return 0

"""The SBC's commands: run, check-config, status, calls, registrations, reload.

The installed `sbc` command is mgmt/cli.py: it adds `sbc mgmt` to these, since `sbc` (the SIP and media
plane) must not import the management plane above it (tests/unit/test_layers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sbc import __version__


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """The parser and its subcommand table, for the top layer to add its own commands to."""
    parser = argparse.ArgumentParser(prog="sbc", description="Edge session border controller")
    parser.add_argument("--version", action="version", version=f"sbc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the SBC in the foreground")
    run.add_argument("--config", type=Path, help="YAML config (default: the embedded default config)")
    check = sub.add_parser("check-config", help="validate a config file: exit 0, or 2 with every error")
    check.add_argument("file", type=Path)
    for name, help_text in (
        ("status", "version, uptime, realms, counters of the running SBC"),
        ("calls", "active calls with both legs' Call-IDs and media figures"),
        ("registrations", "registrations relayed upstream"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, help="config of the SBC to ask (for its control socket path)")
        p.add_argument("--socket", type=Path, help="control socket path")
        p.add_argument("--json", action="store_true", help="print the raw JSON")
    reload = sub.add_parser("reload", help="make the running SBC re-read its config (live calls stay up)")
    reload.add_argument("file", type=Path, nargs="?", help="config to load (default: the one it runs on)")
    reload.add_argument("--config", type=Path, help="config of the SBC to ask (for its control socket path)")
    reload.add_argument("--socket", type=Path, help="control socket path")
    reload.add_argument("--json", action="store_true", help="print the raw JSON")
    return parser, sub


def dispatch(args: argparse.Namespace) -> int:
    """Runs one of the commands `build_parser` defines."""
    if args.command == "run":
        return _run(args.config)
    if args.command == "check-config":
        return _check(args.file)
    if args.command == "reload":
        return _reload(args)
    return _query(args.command, args)


def main(argv: list[str] | None = None) -> int:
    parser, _ = build_parser()
    return dispatch(parser.parse_args(argv))


def _load(path: Path | None) -> Any:
    from sbc.config.loader import load_config

    return load_config(path)


def _check(path: Path) -> int:
    from sbc.config.loader import ConfigError

    try:
        config = _load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print(f"{path}: {len(exc.problems)} error(s)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    counts = f"{len(config.realms)} realms, {len(config.routes)} routes, {len(config.header_rules)} header rules"
    print(f"{path}: OK ({counts})")
    return 0


def _run(path: Path | None) -> int:
    from sbc.app import SbcApp, setup_logging
    from sbc.config.loader import ConfigError

    try:
        config = _load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print("refusing to start: the configuration has errors", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    try:
        asyncio.run(SbcApp(config).run_forever())
    except OSError as exc:
        print(f"sbc: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _query(command: str, args: argparse.Namespace) -> int:
    from sbc.control.client import ControlError, control_request

    sock = args.socket
    if sock is None:
        sock = _load(args.config).control_path
    try:
        result = control_request(sock, command)
    except ControlError as exc:
        print(f"sbc {command}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(_format(command, result))
    return 0


def _reload(args: argparse.Namespace) -> int:
    """Exit 0 when the new config applies, 2 when it is refused (the running one stays), 1 when only
    a restart can apply it or the SBC cannot be reached."""
    from sbc.config.loader import ConfigError
    from sbc.control.client import ControlError, control_request

    sock = args.socket
    if sock is None:
        try:
            sock = _load(args.config or args.file).control_path
        except ConfigError as exc:
            # The running SBC would refuse this file too; it is not even asked.
            for problem in exc.problems:
                print(str(problem), file=sys.stderr)
            print("sbc reload: refused, the running configuration stays", file=sys.stderr)
            return 2
    request = {"path": str(args.file.resolve())} if args.file is not None else {}
    try:
        result = control_request(sock, "reload", request, timeout=30.0)
    except ControlError as exc:
        print(f"sbc reload: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["problems"]:
        for problem in result["problems"]:
            print(problem, file=sys.stderr)
        print("sbc reload: refused, the running configuration stays", file=sys.stderr)
    elif result["applied"]:
        print("sbc reload: applied")
    else:
        print("sbc reload: nothing applied; a restart is needed", file=sys.stderr)
    for what in result["restart_required"]:
        print(f"  waits for a restart: {what}", file=sys.stderr)
    if result["problems"]:
        return 2
    return 0 if result["applied"] else 1


def _format(command: str, result: dict[str, Any]) -> str:
    if command == "status":
        lines = [
            f"sbc {result['version']}  up {result['uptime_s']} s  config {result['config']}",
            f"dataplane: {result['dataplane']}"
            + (f" ({result['dataplane_note']})" if result.get("dataplane_note") else ""),
            f"active calls: {result['active_calls']}  registrations: {result['registrations']}",
            "realms:",
        ]
        for r in result["realms"]:
            lines.append(f"  {r['name']:<10} {r['address']:<16} {', '.join(r['listen'])}  media {r['media']}")
        for t in result.get("trunks") or []:
            rtt = f" rtt {t['last_rtt_ms']} ms" if t.get("last_rtt_ms") is not None else ""
            lines.append(f"trunk {t['name']:<10} {t['address']:<24} {t['state']}{rtt}")
        relay = result.get("relay") or {}
        if relay:
            relayed, dropped = relay.get("relayed_packets", 0), relay.get("dropped_packets", 0)
            kernel = (relay.get("kernel") or {}).get("relayed")
            slow = (relay.get("slow_path") or {}).get("relayed_packets")
            split = f" (kernel {kernel}, userspace {slow})" if kernel is not None else ""
            reasons = ", ".join(f"{k} {v}" for k, v in (relay.get("dropped") or {}).items() if v)
            lines.append(
                f"media: relayed {relayed} packets{split}, dropped {dropped}" + (f" ({reasons})" if reasons else "")
            )
        lines.append("counters: " + ", ".join(f"{k}={v}" for k, v in result["counters"].items()))
        return "\n".join(lines)
    if command == "calls":
        calls = result["calls"]
        if not calls:
            return "no active calls"
        lines = [f"{len(calls)} active call(s)"]
        for c in calls:
            lines.append(
                f"  {c['call']} {c['state']:<9} {c['a_realm']}->{c['b_realm']} age {c['age_s']} s "
                f"media {c['media_mode']}{' hairpin' if c.get('hairpin') else ''}"
            )
            lines.append(f"    a-leg Call-ID: {c['a_call_id']}")
            lines.append(f"    b-leg Call-ID: {c['b_call_id']}")
            for i, stream in enumerate(c["streams"]):
                flags = [f"flow {stream.get('flow', '?')}"]
                flags += [name for key, name in _STREAM_FLAGS if stream.get(key)]
                if stream.get("one_way_events"):
                    flags.append(f"one-way seen {stream['one_way_events']}x")
                if "a" not in stream and "b" not in stream:
                    flags.append("no media (port 0)")
                lines.append(f"    stream {i}: {', '.join(flags)}")
                for leg in ("a", "b"):
                    s = stream.get(leg)
                    if not isinstance(s, dict):
                        continue
                    mos = f" mos {s['mos']}" if s.get("mos") is not None else ""
                    kernel = " [xdp]" if s.get("in_kernel") else ""
                    held = f" held {s['not_sent_hold']}" if s.get("not_sent_hold") else ""
                    timed_out = " MEDIA TIMEOUT" if s.get("timed_out") else ""
                    lines.append(
                        f"      {leg}: anchor {s['anchor']} from {s['source'] or '-'} {s.get('direction') or '-'} "
                        f"in {s['packets_in']} out {s['packets_out']} lost {s['lost']} ({s['loss_pct']}%) "
                        f"jitter {s['jitter_ms']} ms{mos} spoofed {s['dropped_spoofed']}{held}{kernel}{timed_out}"
                    )
        return "\n".join(lines)
    regs = result["registrations"]
    if not regs:
        return "no registrations"
    return "\n".join(f"  {r['aor']} -> {r['contact']} via {r['flow']} expires in {r['expires_in_s']} s" for r in regs)


_STREAM_FLAGS = (("one_way", "ONE-WAY AUDIO"), ("hairpin", "hairpin"), ("rtcp_mux", "rtcp-mux"))


if __name__ == "__main__":
    sys.exit(main())

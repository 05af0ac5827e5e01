"""The SBC's commands: run, check-config, status, calls, registrations, reload, prepare-dataplane.

The installed `sbc` command is mgmt/cli.py: it adds `sbc mgmt` and `sbc audit-verify` to these, since
`sbc` (the SIP and media plane) must not import the management plane above it (tests/unit/test_layers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, assert_never

from sbc import __version__
from sbc.control.contract import (
    Answer,
    CallList,
    RegistrationList,
    ReloadReport,
    StatusReport,
    StreamFigures,
    TransportReport,
    encode,
)


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """The parser and its subcommand table, for the top layer to add its own commands to."""
    parser = argparse.ArgumentParser(prog="sbc", description="Edge session border controller")
    parser.add_argument("--version", action="version", version=f"sbc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the SBC in the foreground")
    run.add_argument("--config", type=Path, help="YAML config (default: the embedded default config)")
    check = sub.add_parser("check-config", help="validate a config file: exit 0, or 2 with every error")
    check.add_argument("file", type=Path)
    prep = sub.add_parser(
        "prepare-dataplane", help="as root: load, pin and attach the XDP relay for `sbc run` (loader: external)"
    )
    prep.add_argument("--config", type=Path, help="YAML config (default: the embedded default config)")
    prep.add_argument("--group", help="group that may open the pinned maps (the SBC's; default: root only)")
    prep.add_argument("--reload", action="store_true", help="load the object again, keeping the pinned maps")
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
    if args.command == "prepare-dataplane":
        from sbc.prepare_dataplane import main as prepare_dataplane

        return prepare_dataplane(args.config, args.group, args.reload)
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
    from sbc.app import SbcApp, confine_bpf, setup_logging, tune_garbage_collector
    from sbc.config.loader import ConfigError

    try:
        config = _load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print("refusing to start: the configuration has errors", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    tune_garbage_collector()
    try:
        confine_bpf(config)
        asyncio.run(SbcApp(config).run_forever())
    except OSError as exc:
        print(f"sbc: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _query(command: str, args: argparse.Namespace) -> int:
    from sbc.control.client import ControlError, control_request
    from sbc.control.contract import ANSWERS, ContractError, decode

    sock = args.socket
    if sock is None:
        sock = _load(args.config).control_path
    try:
        result = control_request(sock, command)
        answer = decode(ANSWERS[command], result)
    except (ControlError, ContractError) as exc:
        print(f"sbc {command}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(_format(answer))
    return 0


def _reload(args: argparse.Namespace) -> int:
    """Exit 0 when the new config applies, 2 when it is refused (the running one stays), 1 when only
    a restart can apply it or the SBC cannot be reached."""
    from sbc.config.loader import ConfigError
    from sbc.control.client import ControlError, control_request
    from sbc.control.contract import ContractError, ReloadReport, decode

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
        report = decode(ReloadReport, result)
    except (ControlError, ContractError) as exc:
        print(f"sbc reload: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    elif report.problems:
        for text in report.problems:
            print(text, file=sys.stderr)
        print("sbc reload: refused, the running configuration stays", file=sys.stderr)
    elif report.applied:
        print("sbc reload: applied")
    else:
        print("sbc reload: nothing applied; a restart is needed", file=sys.stderr)
    for what in report.restart_required:
        print(f"  waits for a restart: {what}", file=sys.stderr)
    if report.problems:
        return 2
    return 0 if report.applied else 1


def _format(answer: Answer) -> str:
    match answer:
        case StatusReport():
            return _format_status(answer)
        case CallList():
            return _format_calls(answer)
        case RegistrationList(registrations=()):
            return "no registrations"
        case RegistrationList():
            return "\n".join(
                f"  {r.aor} -> {r.contact} via {r.flow} expires in {r.expires_in_s} s" for r in answer.registrations
            )
        case ReloadReport():
            return f"applied: {answer.applied}"
        case _:
            assert_never(answer)


def _format_status(status: StatusReport) -> str:
    lines = [
        f"sbc {status.version}  up {status.uptime_s} s  config {status.config}",
        f"dataplane: {status.dataplane}" + (f" ({status.dataplane_note})" if status.dataplane_note else ""),
        f"active calls: {status.active_calls}  registrations: {status.registrations}",
        "realms:",
    ]
    for r in status.realms:
        calls = f"calls in {r.calls_in} out {r.calls_out}"
        lines.append(f"  {r.name:<10} {r.address:<16} {', '.join(r.listen)}  media {r.media}  {calls}")
    for t in status.trunks:
        rtt = f" rtt {t.last_rtt_ms} ms" if t.last_rtt_ms is not None else ""
        lines.append(f"trunk {t.name:<10} {t.address:<24} {t.state}{rtt}")
    relay = status.relay
    kernel = relay.kernel.get("relayed")
    split = f" (kernel {kernel}, userspace {relay.slow_path.get('relayed_packets')})" if kernel is not None else ""
    reasons = ", ".join(f"{k} {v}" for k, v in relay.dropped.items() if v)
    lines.append(
        f"media: relayed {relay.relayed_packets} packets{split}, dropped {relay.dropped_packets}"
        + (f" ({reasons})" if reasons else "")
    )
    if status.transport is not None:
        lines += _transport_lines(status.transport)
    counters = encode(status.counters)
    lines.append("counters: " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    return "\n".join(lines)


def _transport_lines(transport: TransportReport) -> list[str]:
    """TCP/TLS: connections now, the limits reached (those never reached left out), refused TLS peers."""
    reached = ", ".join(f"{k} {v}" for k, v in transport.limits.items() if v)
    lines = [
        f"tcp/tls: {transport.connections} connections (peak {transport.connections_peak}), "
        f"limits reached: {reached or 'none'}"
    ]
    for peer in transport.tls_peers:
        if not peer.verified:
            lines.append(f"tls peer {peer.peer} ({peer.server_name}) REFUSED: {peer.reason}")
    return lines


def _format_calls(answer: CallList) -> str:
    if not answer.calls:
        return "no active calls"
    lines = [f"{len(answer.calls)} active call(s)"]
    for c in answer.calls:
        lines.append(
            f"  {c.call} {c.state:<9} {c.a_realm}->{c.b_realm} age {c.age_s} s "
            f"media {c.media_mode}{' hairpin' if c.hairpin else ''}"
        )
        lines.append(f"    a-leg Call-ID: {c.a_call_id}")
        lines.append(f"    b-leg Call-ID: {c.b_call_id}")
        for i, stream in enumerate(c.streams):
            flags = [f"flow {stream.flow}"]
            flags += [name for name, on in _stream_flags(stream) if on]
            if stream.one_way_events:
                flags.append(f"one-way seen {stream.one_way_events}x")
            if stream.a is None and stream.b is None:
                flags.append("no media (port 0)")
            lines.append(f"    stream {i}: {', '.join(flags)}")
            for name, s in (("a", stream.a), ("b", stream.b)):
                if s is None:
                    continue
                mos = f" mos {s.mos}" if s.mos is not None else ""
                kernel = " [xdp]" if s.in_kernel else ""
                held = f" held {s.not_sent_hold}" if s.not_sent_hold else ""
                timed_out = " MEDIA TIMEOUT" if s.timed_out else ""
                lines.append(
                    f"      {name}: anchor {s.anchor} from {s.source or '-'} {s.direction or '-'} "
                    f"in {s.packets_in} out {s.packets_out} lost {s.lost} ({s.loss_pct}%) "
                    f"jitter {s.jitter_ms} ms{mos} spoofed {s.dropped_spoofed}{held}{kernel}{timed_out}"
                )
    return "\n".join(lines)


def _stream_flags(stream: StreamFigures) -> tuple[tuple[str, bool], ...]:
    return (("ONE-WAY AUDIO", stream.one_way), ("hairpin", stream.hairpin), ("rtcp-mux", stream.rtcp_mux))


if __name__ == "__main__":
    sys.exit(main())

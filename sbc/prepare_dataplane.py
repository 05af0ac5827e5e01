"""`sbc prepare-dataplane`: the privileged step that loads, pins and attaches the XDP relay for an
`sbc run` that may not (`dataplane.loader: external`; sbc-dataplane.service in the image, as root,
before sbc.service). The config says where: the realms' media addresses and the `dataplane:`
section (the environment overrides it, as for `sbc run`); `dataplane.xdp.prepare` does the work.

Exit 0: prepared, or nothing to prepare (the userspace relay is chosen, or `relay: auto` and XDP
cannot run here: `sbc run` falls back and says why). Exit 1: it failed, or XDP cannot run and the
config says `relay: xdp`. Exit 2: the config has errors.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import sys
from pathlib import Path

from dataplane.select import xdp_unavailable
from dataplane.settings import BpfLoader, RelayChoice, with_environment
from sbc.config.loader import load_config
from sbc.yamlsource import ConfigError

PROG = "sbc prepare-dataplane"


def main(config_path: Path | None, group_name: str | None, reload: bool) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return 2
    try:
        chosen = with_environment(config.dataplane, os.environ)
        group = grp.getgrnam(group_name).gr_gid if group_name is not None else None
    except (ValueError, KeyError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    settings = chosen.settings
    if settings.relay is RelayChoice.USERSPACE:
        print(f"{PROG}: nothing to prepare ({chosen.origin('relay')})")
        return 0
    addresses = list(dict.fromkeys(realm.media.address for realm in config.realms))
    # what this step needs is what `sbc run` needs to load the program itself
    as_loader = dataclasses.replace(chosen, settings=dataclasses.replace(settings, loader=BpfLoader.SELF))
    reason = xdp_unavailable(addresses, as_loader)
    if reason is not None:
        forced = settings.relay is RelayChoice.XDP
        print(f"{PROG}: XDP cannot run here: {reason}" + (f" ({chosen.origin('relay')})" if forced else ""))
        return 1 if forced else 0
    from dataplane.xdp.attach import AttachError
    from dataplane.xdp.loader import AbiMismatch
    from dataplane.xdp.prepare import prepare
    from dataplane.xdp.tool import ToolError

    try:
        prepared = prepare(
            addresses,
            pin_dir=settings.pin_dir,
            xdp_mode=settings.xdp_mode,
            mode_origin=chosen.origin("xdp_mode"),
            group=group,
            reload=reload,
        )
    except (OSError, AttachError, AbiMismatch, ToolError) as exc:
        print(f"{PROG}: failed: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: {prepared.describe()}")
    return 0

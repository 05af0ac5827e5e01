"""Loading the host firewall: check the rendered script with `nft -c`, then load it in one transaction.

nft applies a file as one transaction: the old table is deleted and the new one created together,
or, when anything in it is refused, nothing changes and the old ruleset keeps filtering.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dataplane.xdp.tool import ToolError, run
from hw.firewall import render_removal, render_replacement
from sbc.config.model import SbcConfig


class FirewallRefused(RuntimeError):
    """nft refused the ruleset; the one loaded before is still in force."""


@dataclass(frozen=True, slots=True)
class Applied:
    script: str
    enabled: bool  # False: the config disables the firewall and the table was removed


def firewall_script(config: SbcConfig) -> str:
    return render_replacement(config) if config.firewall.enabled else render_removal()


def check_script(script: str, nft: Sequence[str] = ("nft",)) -> None:
    """Raise FirewallRefused when nft would refuse the script (nothing is changed either way)."""
    _nft_file(script, [*nft, "-c"])


def load_script(script: str, nft: Sequence[str] = ("nft",)) -> None:
    """Check, then load the script in one transaction; FirewallRefused leaves the old ruleset."""
    check_script(script, nft)
    _nft_file(script, list(nft))


def apply_firewall(config: SbcConfig, nft: Sequence[str] = ("nft",)) -> Applied:
    """Render the config's firewall and load it; `nft` may be prefixed (`ip netns exec NS nft`)."""
    script = firewall_script(config)
    load_script(script, nft)
    return Applied(script=script, enabled=config.firewall.enabled)


def _nft_file(script: str, argv: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="sbc-firewall-") as directory:
        path = Path(directory) / "ruleset.nft"
        path.write_text(script, encoding="utf-8")
        try:
            run([*argv, "-f", str(path)], hint="the ruleset in force is unchanged")
        except ToolError as exc:
            raise FirewallRefused(str(exc)) from None

"""`python -m hw.appliance COMMAND`: the root services of the firmware image (see rootfs/).

Factory reset is hw/'s (`sbc-hw factory-reset`, `sbc-hw factory-reset-apply`, the reset button).

    firstboot              provision a fresh state partition, or re-apply the hostname
    health [--timeout S]   the boot health check; blesses the boot or falls back (see health.py)
    install-update         take the request in the update spool and install it (sbc-update.service)
    console                the console's commands, in place of a login prompt
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.appliance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("firstboot")
    health = sub.add_parser("health")
    health.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for everything to be up")
    sub.add_parser("install-update")
    sub.add_parser("console")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)

    if args.command == "firstboot":
        from hw.appliance.firstboot import FirstBoot

        FirstBoot().run()
        return 0
    if args.command == "health":
        from hw.appliance.health import run_health_check

        return run_health_check(args.timeout)
    if args.command == "install-update":
        from hw.appliance.update import install_requested

        return install_requested()
    from hw.appliance.console_menu import run_console

    return run_console()


if __name__ == "__main__":
    sys.exit(main())

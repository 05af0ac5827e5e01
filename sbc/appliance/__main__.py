"""`python -m sbc.appliance COMMAND`: the root services of the firmware image (see rootfs/).

    firstboot              provision a fresh state partition, or re-apply the hostname
    health [--timeout S]   the boot health check; blesses the boot or falls back (see health.py)
    install-update         take the request in the update spool and install it (sbc-update.service)
    factory-reset [--yes]  wipe the state partition at the next boot, and reboot
    apply-factory-reset    early boot: carry out a pending factory reset
    test-agent             the image tests' control channel (virtio-serial)
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sbc.appliance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("firstboot")
    health = sub.add_parser("health")
    health.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for everything to be up")
    sub.add_parser("install-update")
    reset = sub.add_parser("factory-reset")
    reset.add_argument("--yes", action="store_true", help="do not ask")
    reset.add_argument("--no-reboot", action="store_true", help="only mark it; the reset happens at the next boot")
    sub.add_parser("apply-factory-reset")
    sub.add_parser("test-agent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)

    if args.command == "firstboot":
        from sbc.appliance.firstboot import FirstBoot

        FirstBoot().run()
        return 0
    if args.command == "health":
        from sbc.appliance.health import run_health_check

        return run_health_check(args.timeout)
    if args.command == "install-update":
        from sbc.appliance.update import install_requested

        return install_requested()
    if args.command == "factory-reset":
        return factory_reset_command(yes=args.yes, reboot=not args.no_reboot)
    if args.command == "apply-factory-reset":
        from sbc.appliance.factory_reset import apply_factory_reset

        apply_factory_reset()
        return 0
    from sbc.appliance.testagent import serve

    serve()
    return 0


def factory_reset_command(*, yes: bool, reboot: bool) -> int:
    """The console command: asks for the hostname as confirmation unless --yes."""
    import os
    import socket

    from sbc.appliance.factory_reset import request_factory_reset

    if os.geteuid() != 0:
        print("factory-reset: needs root (on the console, or through the management API)", file=sys.stderr)
        return 1
    if not yes:
        name = socket.gethostname()
        print("This erases the configuration, users, certificates and logs; the firmware stays.")
        answer = input(f"Type the hostname ({name}) to confirm: ").strip()
        if answer != name:
            print("not confirmed: nothing was changed")
            return 1
    request_factory_reset(reboot=reboot)
    print("factory reset: the state partition is wiped at the next boot" + ("; rebooting" if reboot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

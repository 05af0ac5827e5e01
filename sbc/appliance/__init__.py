"""The firmware image's own life cycle on the box: first boot, health check and boot blessing,
signed update bundles handed to systemd-sysupdate, and the test agent (factory reset is hw/'s).

These run as small root services around `sbc.service` and `sbc-mgmt.service` (see rootfs/); the
management API reaches them only through request files that systemd path units watch, so the
unprivileged management process never needs root.
"""

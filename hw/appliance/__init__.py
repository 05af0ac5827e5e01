"""The firmware image's own life cycle on the box: first boot, health check and boot blessing, installing
signed update bundles through systemd-sysupdate, and the console (factory reset is hw/'s).

These run as small root services around `sbc.service` and `sbc-mgmt.service` (see rootfs/); the
management API reaches them only through request files that systemd path units watch (the update spool,
hw/firmware/spool.py), so the unprivileged management process never needs root.

This is the top layer: first boot provisions the SBC's config (`sbc.config`), management's TLS
certificate and first account (`mgmt.tls`, `mgmt.auth`) and the box itself; nothing imports it back
(tests/unit/test_layers.py).
"""

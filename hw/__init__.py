"""The box's own integration: NICs and their roles, link alarms, systemd over D-Bus, reset button and
factory reset, the firmware's update formats (`hw.firmware`) and the box's life cycle (`hw.appliance`).
The hardware parts are each an interface (a `typing.Protocol`) with a real implementation and an
in-memory fake for unit tests:

- `hw.nics.NicInventory` (real: `hw.udev_nics.UdevNicInventory`, pyudev over /sys), roles from a
  hardware profile (`hw.profile`, `hw.machine`, `hw.roles`), `.link` files for networkd (`hw.networkd`).
- `hw.system`: `UnitControl` (start/stop/restart units, reboot, power off, firmware update trigger),
  `HostnameControl`, `TimeControl`; real over D-Bus (`hw.dbus_client.SystemBus` shared by
  `hw.systemd_units`, `hw.hostnamed`, `hw.timedated`), fakes in `hw.fakes`.
- `hw.links.AlarmSink` (mgmt's AlarmTable has its shape): link-down / nic-missing alarms from
  `hw.links.LinkTracker`; `hw.monitor.NicMonitor` watches netlink and udev; `hw.hw_state` publishes
  roles, links and alarms in /run/sbc-hw/state.json for the management plane.
- `hw.reset_button` (evdev, long press) and `hw.factory_reset` (marker, then wipe at boot).
- `hw.cli`: the `sbc-hw` command (run, links, roles, factory-reset, factory-reset-apply).
- `hw.firmware`: signed update bundles, version order, the booted OS, the update spool (shared with mgmt).
- `hw.appliance`: first boot, health check, update install, console: the root services that compose
  the SBC's config, management's certificate and first account, and the hardware (the top layer).
"""

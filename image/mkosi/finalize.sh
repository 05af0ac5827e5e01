#!/bin/bash
# mkosi finalize script (runs on the host with the image root at $BUILDROOT): drop what an appliance
# never uses so the root slot stays small.
set -euo pipefail
root="${BUILDROOT:?}"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
rm -rf "$root"/usr/share/python-wheels "$root"/var/cache/apt "$root"/var/lib/apt/lists
find "$root/usr/lib/sbc/venv" -name '*.pyi' -type f -delete

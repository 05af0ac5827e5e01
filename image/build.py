#!/usr/bin/env python3
"""Build the firmware image: wheels and BPF object for the target architecture, then mkosi.

    image/build.py                 # x86-64, into build/
    image/build.py --arch arm64    # ARM64 (needs qemu-user-static and binfmt_misc)
    image/build.py --if-needed     # skip when build/ is newer than every input (the tests use this)
    image/build.py --version 0.1.1 # another version of the same image (update tests)
    image/build.py --extra-tree DIR  # lay DIR over the image too (site files; the tests' variant)

Without --extra-tree this is the production image (`make image`): the image tests build their own
variant, which adds the VM test agent from tests/image/agent-tree; the production image has none.

Besides the disk image, each build writes the signed update bundle of its version,
`sbc_<version>_<arch>.sbcupdate` (see hw/firmware/bundle.py), signed with the build's Ed25519 key
(SBC_SIGNING_KEY, default build/keys/update-signing.pem, made on the first build; an encrypted PEM
is read with the passphrase in SBC_SIGNING_KEY_PASSPHRASE, and a key made with that variable set is
written encrypted); the image trusts that key's public half. Keep the key: images built with another
key refuse bundles signed by it. SBC_PROVISIONING_KEY names an Ed25519 public key (PEM) the image
then requires provisioned configs to be signed with (hw/appliance/provisioning.py).

Every external tool runs through `run(argv)`: no shell, the command line is logged so it can be
pasted, and a failure names the tool and a hint. The mkosi caches live outside the repository
(SBC_MKOSI_CACHE, default /var/cache/sbc-mkosi) so a second build reuses the downloaded packages and
the incremental image and takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
CACHE = Path(os.environ.get("SBC_MKOSI_CACHE", "/var/cache/sbc-mkosi"))
SIGNING_KEY = Path(os.environ.get("SBC_SIGNING_KEY", str(BUILD / "keys" / "update-signing.pem")))
PROVISIONING_KEY = os.environ.get("SBC_PROVISIONING_KEY")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hw.firmware import bundle  # noqa: E402 - after the path set-up above

# Debian architecture names mkosi uses -> wheel platform tags (bookworm: glibc 2.36, CPython 3.11).
PLATFORMS = {"x86-64": "x86_64", "arm64": "aarch64"}
PYTHON_VERSION = "3.11"
# manylinux tags a bookworm system (glibc 2.36) accepts; pip does not widen a single --platform.
MANYLINUX = ("manylinux_2_36", "manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014")

PACKAGES = ("sbc", "dataplane", "mgmt", "hw")
# Everything the image is made of: newer than the image means it must be rebuilt.
INPUTS = (
    "mkosi.conf",
    "mkosi.conf.d",
    "mkosi.pkgmngr",
    "rootfs",
    "image/repart",
    "image/mkosi",
    "image/initrd",
    "image/requirements-image.txt",
    "pyproject.toml",
    "sbc",
    "dataplane",
    "mgmt",
    "hw",
)


class BuildError(RuntimeError):
    pass


# The system's tools first: mkosi runs ukify with the `python3` it finds, which must be Debian's (with
# python3-pefile), not a pyenv or venv interpreter earlier on PATH.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(
    argv: list[str], *, hint: str = "", cwd: Path = ROOT, capture: bool = False, env: dict[str, str] | None = None
) -> str:
    """Run one tool without a shell; log it copy-pasteable; turn a failure into a readable error."""
    print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            argv, cwd=cwd, check=False, text=True, stdout=subprocess.PIPE if capture else None,
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
    except FileNotFoundError:
        raise BuildError(f"{argv[0]} is not installed" + (f": {hint}" if hint else "")) from None
    if done.returncode != 0:
        raise BuildError(f"{argv[0]} failed with exit status {done.returncode}" + (f"; {hint}" if hint else ""))
    return done.stdout or ""


@dataclass(frozen=True, slots=True)
class Target:
    arch: str  # mkosi's name: x86-64, arm64
    version: str
    output_dir: Path
    extra_trees: tuple[Path, ...] = ()

    @property
    def inputs_dir(self) -> Path:
        return BUILD / "image-inputs" / self.arch

    @property
    def image(self) -> Path:
        return self.output_dir / "image.raw"

    @property
    def bundle(self) -> Path:
        return self.output_dir / f"sbc_{self.version}_{self.arch}.sbcupdate"


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]  # type: ignore[no-any-return]


def requirements() -> list[str]:
    """The pinned runtime dependencies: pyproject's, plus the image's own (hw: pyudev, dbus-fast)."""
    deps = [str(d) for d in project()["dependencies"]]  # type: ignore[attr-defined]
    extra = ROOT / "image/requirements-image.txt"
    if extra.exists():
        for line in extra.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not any(d.split("==")[0].lower() == line.split("==")[0].lower() for d in deps):
                deps.append(line)
    return deps


def prepare_wheels(target: Target) -> None:
    """Project wheel + binary wheels of every pinned dependency for the target, and requirements.txt."""
    wheels = target.inputs_dir / "wheels"
    if wheels.exists():
        shutil.rmtree(wheels)
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    # From a fresh copy of the package sources: setuptools builds in <source>/build/{lib,bdist.*}, which in
    # the tree itself would keep removed modules in the wheel and race with a build for the other arch.
    with tempfile.TemporaryDirectory(prefix="sbc-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", *PACKAGES):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.o"))
            elif src.exists():
                shutil.copy2(src, source / name)
        run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(source)],
            hint="building the SBC wheel")  # fmt: skip
    deps = requirements()
    unpinned = [d for d in deps if "==" not in d]
    if unpinned:
        raise BuildError(f"the image installs pinned versions only; pin {', '.join(unpinned)}")
    run(
        [
            *pip, "download", "--quiet", "--dest", str(wheels), "--only-binary=:all:",
            "--implementation", "cp", "--python-version", PYTHON_VERSION,
            *(arg for tag in MANYLINUX for arg in ("--platform", f"{tag}_{PLATFORMS[target.arch]}")),
            *deps,
        ],
        hint="downloading the pinned wheels needs PyPI (or a wheel mirror) on the build host",
    )  # fmt: skip
    name = str(project()["name"])
    version = str(project()["version"])
    (wheels / "requirements.txt").write_text("\n".join([f"{name}=={version}", *deps]) + "\n")


def build_bpf(target: Target) -> None:
    """The XDP object, compiled on the build host: BPF bytecode is the same for both little-endian
    targets, so one clang serves x86-64 and ARM64 and the image needs no compiler."""
    src = ROOT / "dataplane/bpf/relay.c"
    out = target.inputs_dir / "relay.o"
    if not src.exists():
        print(f"note: {src.relative_to(ROOT)} is missing; the image falls back to the userspace relay", file=sys.stderr)
        out.unlink(missing_ok=True)
        return
    host_include = Path(f"/usr/include/{os.uname().machine}-linux-gnu")
    run(
        ["clang", "-target", "bpfel", "-g", "-O2", "-Wall", "-I", str(ROOT / "dataplane/include"),
         "-I", str(host_include), "-c", str(src), "-o", str(out)],
        hint="install clang (and libbpf-dev for the bpf headers)",
    )  # fmt: skip


# mkosi 24.3's default initrd asks apt for `?exact-name(systemd-cryptsetup)`. Bookworm has no such package
# (systemd 254 from bookworm-backports still carries systemd-cryptsetup inside `systemd`), but
# bookworm-backports' dracut-core names it, and apt then refuses the pattern instead of ignoring it.
# An empty package of that name that depends on systemd 254 says exactly that, and lets the initrd build.
PLACEHOLDER_DEBS = {
    "systemd-cryptsetup": ("254", "systemd (>= 254)", "systemd 254 ships systemd-cryptsetup in the systemd package"),
}


def prepare_local_debs(target: Target) -> Path:
    debs = target.inputs_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for name, (version, depends, why) in PLACEHOLDER_DEBS.items():
        deb = debs / f"{name}_{version}-sbc1_all.deb"
        if deb.exists():
            continue
        tree = target.inputs_dir / "deb-tree" / name
        (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (tree / "DEBIAN/control").write_text(
            f"Package: {name}\nVersion: {version}-sbc1\nArchitecture: all\nMaintainer: Edge SBC <sbc@localhost>\n"
            f"Depends: {depends}\nSection: admin\nPriority: optional\nDescription: placeholder: {why}\n"
        )
        run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], hint="dpkg-deb comes with dpkg")
    return debs


def signing_passphrase() -> bytes | None:
    """The signing key's passphrase, from the environment (never from the tree or the command line)."""
    value = os.environ.get("SBC_SIGNING_KEY_PASSPHRASE")
    return value.encode() if value else None


def prepare_keys(target: Target) -> None:
    """The public half of the signing key, for install-sbc.chroot to put under /usr/lib/sbc/update-keys,
    and the operator's provisioning key (SBC_PROVISIONING_KEY) for /usr/lib/sbc/provisioning-keys."""
    try:
        key = bundle.ensure_signing_key(SIGNING_KEY, signing_passphrase())
    except bundle.BundleError as exc:
        raise BuildError(f"the signing key: {exc}") from None
    keys = target.inputs_dir / "update-keys"
    if keys.exists():
        shutil.rmtree(keys)
    keys.mkdir(parents=True)
    (keys / f"{bundle.fingerprint(key.public_key())}.pem").write_bytes(bundle.public_pem(key))
    provisioning = target.inputs_dir / "provisioning-keys"
    if provisioning.exists():
        shutil.rmtree(provisioning)
    provisioning.mkdir(parents=True)
    if PROVISIONING_KEY:
        from hw.appliance.provisioning import ProvisioningError, load_public_keys

        pem = Path(PROVISIONING_KEY).read_bytes()
        try:
            load_public_keys([pem])
        except ProvisioningError as exc:
            raise BuildError(f"SBC_PROVISIONING_KEY={PROVISIONING_KEY}: {exc}") from None
        (provisioning / "provisioning.pem").write_bytes(pem)


def make_bundle(target: Target) -> Path:
    """The signed update bundle: the root file system (gzip) and the UKI of this build."""
    root_name, uki_name = bundle.payload_names(target.version)
    root_raw = target.output_dir / "image.root.raw"
    uki = target.output_dir / "image.efi"
    root_gz = target.output_dir / root_name
    # gzip, not zstd: systemd-sysupdate 254 (systemd-import) decompresses xz, gzip and bzip2 only, and
    # gzip is the fastest of them to unpack on a small box.
    with root_gz.open("wb") as out:
        print(f"+ gzip -6 -c {root_raw} > {root_gz}", file=sys.stderr, flush=True)
        done = subprocess.run(["gzip", "-6", "-c", str(root_raw)], stdout=out, check=False)
    if done.returncode != 0:
        raise BuildError(f"gzip failed with exit status {done.returncode}")
    uki_copy = target.output_dir / uki_name
    shutil.copyfile(uki, uki_copy)
    try:
        bundle.write_bundle(target.bundle, target.version, target.arch, [root_gz, uki_copy],
                            bundle.load_private_key(SIGNING_KEY, signing_passphrase()))  # fmt: skip
    finally:
        root_gz.unlink(missing_ok=True)
        uki_copy.unlink(missing_ok=True)
    return target.bundle


def mkosi(target: Target, *, clean: bool) -> None:
    cache = CACHE / target.arch
    (cache / "incremental").mkdir(parents=True, exist_ok=True)
    (cache / "packages").mkdir(parents=True, exist_ok=True)
    target.output_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "mkosi",
        "--directory", str(ROOT),
        "--architecture", target.arch,
        "--image-version", target.version,
        "--output-dir", str(target.output_dir),
        "--cache-dir", str(cache / "incremental"),
        "--package-cache-dir", str(cache / "packages"),
        "--incremental=yes",
        f"--package-directory={prepare_local_debs(target)}",
        f"--unified-kernel-image-format=sbc_{target.version}",
        "--force",
    ]  # fmt: skip
    argv += [f"--extra-tree={tree}" for tree in target.extra_trees]
    if clean:
        argv.append("--force")  # twice: drop the incremental image too
    argv.append("build")
    run(argv, env={"PATH": SYSTEM_PATH},
        hint="mkosi 24 from bookworm-backports is needed (`make image-deps`); rerun with --clean after "
             "changing the package list if the incremental cache is stale")  # fmt: skip


def newest_in(tree: Path) -> float:
    return max((f.stat().st_mtime for f in tree.rglob("*") if f.is_file()), default=0.0)


def newest_input() -> float:
    newest = 0.0
    for name in INPUTS:
        path = ROOT / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for f in path.rglob("*"):
                if f.is_file() and "__pycache__" not in f.parts:
                    newest = max(newest, f.stat().st_mtime)
    return newest


def up_to_date(target: Target) -> bool:
    return (
        target.image.exists()
        and target.bundle.exists()
        and target.image.stat().st_mtime >= max([newest_input(), *(newest_in(t) for t in target.extra_trees)])
    )


def report(target: Target, seconds: float | None) -> dict[str, object]:
    """Sizes of the image (apparent and allocated: it is sparse) and of the update artifacts."""
    st = target.image.stat()
    artifacts = {
        p.name: p.stat().st_size
        for p in sorted(target.output_dir.iterdir())
        if p.is_file() and ((p.name.startswith("image") and p.name != "image.raw") or p.suffix == ".sbcupdate")
    }
    info: dict[str, object] = {
        "version": target.version,
        "arch": target.arch,
        "image": str(target.image),
        "size_bytes": st.st_size,
        "allocated_bytes": st.st_blocks * 512,
        "artifacts": artifacts,
        "bundle": str(target.bundle),
        "build_seconds": None if seconds is None else round(seconds, 1),
    }
    (target.output_dir / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    mib = 1 << 20
    print(
        f"image {target.image}: {st.st_size / mib:.0f} MiB disk, {st.st_blocks * 512 / mib:.0f} MiB allocated"
        + (f", built in {seconds:.0f} s" if seconds is not None else " (up to date)")
    )
    for name, size in artifacts.items():
        print(f"  {name}: {size / mib:.1f} MiB")
    return info


def build(target: Target, *, clean: bool = False, if_needed: bool = False) -> dict[str, object]:
    if if_needed and up_to_date(target):
        return report(target, None)
    started = time.monotonic()
    target.inputs_dir.mkdir(parents=True, exist_ok=True)
    prepare_wheels(target)
    build_bpf(target)
    prepare_keys(target)
    mkosi(target, clean=clean)
    make_bundle(target)
    return report(target, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=os.environ.get("ARCH", "x86-64"), help="x86-64 (default) or arm64")
    parser.add_argument("--version", help="image version (default: the project's version)")
    parser.add_argument("--output-dir", type=Path, help="default: build/ (x86-64) or build/arm64/")
    parser.add_argument("--extra-tree", type=Path, action="append", default=[],
                        help="a directory laid over the image root as well (repeatable)")
    parser.add_argument("--clean", action="store_true", help="rebuild the incremental cache image too")
    parser.add_argument("--if-needed", action="store_true", help="do nothing when the image is newer than its inputs")
    args = parser.parse_args(argv)
    arch = {"amd64": "x86-64", "x86_64": "x86-64", "aarch64": "arm64"}.get(args.arch, args.arch)
    if arch not in PLATFORMS:
        parser.error(f"unknown architecture {args.arch!r}: x86-64 or arm64")
    version = args.version or str(project()["version"])
    out = args.output_dir or (BUILD if arch == "x86-64" else BUILD / arch)
    try:
        trees = tuple(t.resolve() for t in args.extra_tree)
        build(Target(arch, version, out.resolve(), trees), clean=args.clean, if_needed=args.if_needed)
    except BuildError as exc:
        print(f"image build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The versioned config store: stage, validate, diff, commit (optionally confirmed), roll back.

One YAML file is the active configuration the SBC runs (`sbc run --config FILE`). Every change that
reaches it is a numbered revision under `<state_dir>/config/revisions/` (`000001.yaml` with its
metadata in `000001.json`: author, time, comment, what kind of change, what the SBC said). Changes are
first staged as the candidate (`candidate.yaml`), which must validate with the very loader the SBC
uses; a commit writes the active file atomically and asks the SBC to `reload` it.

A commit-confirmed (Junos' `commit confirmed`) records a deadline in `pending.json`; when `expire(now)`
runs after it without a `confirm()`, the previous revision is put back by itself, so a change that
cut the operator off heals. The deadline is wall-clock time on disk, so a restart of `sbc mgmt`
keeps it: `expire` at start-up reverts a commit whose deadline passed while nothing ran.

No asyncio and no clock here: the caller passes `now` (seconds since the epoch) and a `Reloader`
that talks to the SBC; it schedules `expire` at `next_deadline()`. Methods are synchronous and not
thread-safe: the API serialises them.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mgmt.admin_only import admin_only_changes
from sbc.config.loader import load_config_text
from sbc.config.model import SbcConfig
from sbc.yamlsource import ConfigError, ConfigProblem

MAX_CONFIG_BYTES = 2 * 1024 * 1024  # a config with thousands of rules is a few hundred KiB
_REVISION_RE = re.compile(r"^(\d{6})\.yaml$")


class RevisionKind(StrEnum):
    INITIAL = "initial"  # the file found at first start
    COMMIT = "commit"
    ROLLBACK = "rollback"  # an operator put an older revision back
    AUTO_ROLLBACK = "auto-rollback"  # a commit-confirmed was not confirmed in time
    EXTERNAL = "external"  # the file changed outside the management plane


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What the SBC said to `reload`; `error` set: it could not be asked (not running, socket gone)."""

    applied: bool
    restart_required: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "restart_required": list(self.restart_required),
            "problems": list(self.problems),
            "error": self.error,
        }


Reloader = Callable[[Path], ReloadResult]


@dataclass(frozen=True, slots=True)
class Revision:
    number: int
    author: str
    time: float
    comment: str
    kind: RevisionKind
    sha256: str
    restart_required: tuple[str, ...] = ()
    confirm_deadline: float | None = None  # set on a commit-confirmed
    rolled_back_to: int | None = None  # the revision whose text this one restored

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["restart_required"] = list(self.restart_required)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Revision:
        return cls(
            number=int(raw["number"]),
            author=str(raw["author"]),
            time=float(raw["time"]),
            comment=str(raw["comment"]),
            kind=RevisionKind(raw["kind"]),
            sha256=str(raw["sha256"]),
            restart_required=tuple(str(x) for x in raw.get("restart_required") or ()),
            confirm_deadline=raw.get("confirm_deadline"),
            rolled_back_to=raw.get("rolled_back_to"),
        )


@dataclass(frozen=True, slots=True)
class PendingConfirm:
    revision: int
    previous: int  # what an expiry puts back
    deadline: float
    timeout_s: int
    author: str


@dataclass(frozen=True, slots=True)
class Candidate:
    text: str
    author: str
    time: float
    base_revision: int  # the active revision it was staged against


@dataclass(frozen=True, slots=True)
class CommitResult:
    revision: Revision
    reload: ReloadResult
    pending: PendingConfirm | None


class StoreError(Exception):
    """A refused operation, with the HTTP status the API answers (409 conflict, 404, 502)."""

    status = 409
    title = "Conflict"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(StoreError):
    status = 404
    title = "Not found"


class InvalidConfig(StoreError):
    """The text does not validate; `problems` carry the line of each."""

    status = 422
    title = "Invalid configuration"

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__(f"the configuration has {len(problems)} problem(s); nothing was changed")
        self.problems = problems


class AdminOnly(StoreError):
    """The change touches what only an admin may change (`management:`, see mgmt.admin_only)."""

    status = 403
    title = "Forbidden"


class SbcRefused(StoreError):
    """The SBC would not apply a config the loader accepted; the previous file was put back."""

    status = 502
    title = "The SBC refused the configuration"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name)
    )


def atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    """Write-then-rename in the same directory, both fsynced: a crash leaves the old file or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ConfigStore:
    def __init__(
        self,
        active: Path,
        root: Path,
        reloader: Reloader,
        *,
        on_auto_rollback: Callable[[Revision, PendingConfirm], None] | None = None,
        is_admin: Callable[[str], bool] | None = None,
    ) -> None:
        """`is_admin(author)`: may this author change `management:`? None: every author may (no users)."""
        self.active = active
        self.is_admin = is_admin
        self.root = root
        self.revisions_dir = root / "revisions"
        self.reloader = reloader
        self.on_auto_rollback = on_auto_rollback
        self._pending_path = root / "pending.json"
        self._candidate_path = root / "candidate.yaml"
        self._candidate_meta = root / "candidate.json"

    # ---- start-up ------------------------------------------------------------------------------
    def open(self, now: float) -> None:
        """Create the directories and record the active file as a revision if it is new to the store."""
        self.revisions_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = self.active_text()
        latest = self.latest()
        if latest is None:
            self._record(text, "system", now, "configuration found at first start", RevisionKind.INITIAL)
        elif latest.sha256 != sha256_text(text):
            comment = "the file was changed outside the management plane"
            self._record(text, "system", now, comment, RevisionKind.EXTERNAL)

    # ---- reading -------------------------------------------------------------------------------
    def active_text(self) -> str:
        return self.active.read_text(encoding="utf-8")

    def validate(self, text: str) -> SbcConfig:
        """The loader the SBC itself uses; relative paths in the text resolve beside the active file."""
        if len(text.encode()) > MAX_CONFIG_BYTES:
            raise StoreError(f"the configuration is larger than {MAX_CONFIG_BYTES} bytes", field="text")
        try:
            return load_config_text(text, self.active.name, base_dir=self.active.parent)
        except ConfigError as exc:
            raise InvalidConfig(exc.problems) from None

    def revisions(self) -> list[Revision]:
        out = []
        for path in sorted(self.revisions_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                out.append(Revision.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        return sorted(out, key=lambda r: r.number)

    def latest(self) -> Revision | None:
        numbers = [int(m[1]) for p in self.revisions_dir.glob("*.yaml") if (m := _REVISION_RE.match(p.name))]
        return self.revision(max(numbers))[0] if numbers else None

    def active_revision(self) -> int:
        latest = self.latest()
        return latest.number if latest else 0

    def revision(self, number: int) -> tuple[Revision, str]:
        base = self.revisions_dir / f"{number:06d}"
        try:
            meta = Revision.from_dict(json.loads(base.with_suffix(".json").read_text(encoding="utf-8")))
            text = base.with_suffix(".yaml").read_text(encoding="utf-8")
        except (OSError, ValueError, KeyError):
            raise NotFound(f"there is no revision {number}", field="revision") from None
        return meta, text

    def candidate(self) -> Candidate | None:
        try:
            meta = json.loads(self._candidate_meta.read_text(encoding="utf-8"))
            text = self._candidate_path.read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None
        return Candidate(text, str(meta["author"]), float(meta["time"]), int(meta["base_revision"]))

    def pending(self) -> PendingConfirm | None:
        try:
            raw = json.loads(self._pending_path.read_text(encoding="utf-8"))
            return PendingConfirm(**raw)
        except (OSError, ValueError, TypeError):
            return None

    def next_deadline(self) -> float | None:
        pending = self.pending()
        return pending.deadline if pending else None

    def diff(self, old: int | None = None, new: int | None = None) -> str:
        """Revision `old` (default: active) against revision `new` (default: the candidate)."""
        old_text, old_name = (self.active_text(), "active") if old is None else (self.revision(old)[1], f"r{old}")
        if new is None:
            cand = self.candidate()
            if cand is None:
                raise NotFound("nothing is staged to compare with", field="to")
            new_text, new_name = cand.text, "candidate"
        else:
            new_text, new_name = self.revision(new)[1], f"r{new}"
        return unified_diff(old_text, new_text, old_name, new_name)

    # ---- changing ------------------------------------------------------------------------------
    def stage(self, text: str, author: str, now: float) -> SbcConfig:
        """Validate and keep as the candidate; an invalid text leaves the previous candidate as it was."""
        config = self.validate(text)
        self._check_author(author, text)
        atomic_write(self._candidate_path, text, 0o600)
        meta = {"author": author, "time": now, "base_revision": self.active_revision()}
        atomic_write(self._candidate_meta, json.dumps(meta), 0o600)
        return config

    def discard(self) -> None:
        for path in (self._candidate_meta, self._candidate_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def commit(self, author: str, now: float, comment: str, confirm_timeout_s: int | None = None) -> CommitResult:
        if self.pending() is not None:
            raise StoreError("a commit is waiting for confirmation: confirm it or roll back first")
        cand = self.candidate()
        if cand is None:
            raise StoreError("nothing is staged: stage a candidate first")
        if cand.base_revision != self.active_revision():
            raise StoreError(
                f"the candidate was staged against revision {cand.base_revision}, "
                f"but revision {self.active_revision()} is active now: stage it again"
            )
        self.validate(cand.text)  # again: files it names (TLS keys) may have gone since staging
        self._check_author(author, cand.text)  # whoever staged it, the one who commits needs the right
        if sha256_text(cand.text) == sha256_text(self.active_text()):
            raise StoreError("the candidate is identical to the active configuration")
        result = self._apply(cand.text, author, now, comment, RevisionKind.COMMIT, confirm_timeout_s=confirm_timeout_s)
        self.discard()
        return result

    def confirm(self) -> Revision:
        pending = self.pending()
        if pending is None:
            raise StoreError("no commit is waiting for confirmation")
        self._pending_path.unlink()
        return self.revision(pending.revision)[0]

    def rollback(
        self, number: int, author: str, now: float, comment: str = "", confirm_timeout_s: int | None = None
    ) -> CommitResult:
        """Make revision `number` active again, as a new revision. Clears a pending confirmation."""
        _, text = self.revision(number)
        self.validate(text)  # the loader may have grown stricter since that revision
        self._check_author(author, text)
        with contextlib.suppress(FileNotFoundError):
            self._pending_path.unlink()
        return self._apply(
            text,
            author,
            now,
            comment or f"rollback to revision {number}",
            RevisionKind.ROLLBACK,
            rolled_back_to=number,
            confirm_timeout_s=confirm_timeout_s,
        )

    def expire(self, now: float) -> Revision | None:
        """Put the previous revision back if a commit-confirmed ran out of time; None if nothing to do."""
        pending = self.pending()
        if pending is None or now < pending.deadline:
            return None
        _, text = self.revision(pending.previous)
        comment = (
            f"automatic rollback: revision {pending.revision} (by {pending.author}) was not confirmed "
            f"within {pending.timeout_s} s"
        )
        result = self._apply(text, "system", now, comment, RevisionKind.AUTO_ROLLBACK, rolled_back_to=pending.previous)
        # Only now: if putting the old revision back failed, the deadline stays and the timer tries again.
        self._pending_path.unlink()
        if self.on_auto_rollback is not None:
            self.on_auto_rollback(result.revision, pending)
        return result.revision

    def _check_author(self, author: str, text: str) -> None:
        if self.is_admin is None or self.is_admin(author):
            return
        changed = admin_only_changes(self.active_text(), text)
        if changed:
            raise AdminOnly(
                f"only an admin may change {', '.join(changed)}; {author} is not an admin", field=changed[0]
            )

    def _apply(
        self,
        text: str,
        author: str,
        now: float,
        comment: str,
        kind: RevisionKind,
        *,
        rolled_back_to: int | None = None,
        confirm_timeout_s: int | None = None,
    ) -> CommitResult:
        previous_text = self.active_text()
        previous = self.active_revision()
        atomic_write(self.active, text)
        reload = self.reloader(self.active)
        if reload.error is None and not reload.applied and reload.problems:
            atomic_write(self.active, previous_text)  # the running SBC still has the old one
            raise SbcRefused("; ".join(reload.problems))
        deadline = now + confirm_timeout_s if confirm_timeout_s else None
        revision = self._record(
            text,
            author,
            now,
            comment,
            kind,
            restart_required=reload.restart_required,
            confirm_deadline=deadline,
            rolled_back_to=rolled_back_to,
        )
        pending = None
        if deadline is not None and confirm_timeout_s is not None:
            pending = PendingConfirm(revision.number, previous, deadline, confirm_timeout_s, author)
            atomic_write(self._pending_path, json.dumps(asdict(pending)), 0o600)
        return CommitResult(revision, reload, pending)

    def _record(self, text: str, author: str, now: float, comment: str, kind: RevisionKind, **extra: Any) -> Revision:
        latest = self.latest()
        number = (latest.number if latest else 0) + 1
        revision = Revision(number, author, now, comment, kind, sha256_text(text), **extra)
        base = self.revisions_dir / f"{number:06d}"
        # The metadata first: a revision counts once its .yaml exists (see latest()).
        atomic_write(base.with_suffix(".json"), json.dumps(revision.as_dict(), indent=1), 0o600)
        atomic_write(base.with_suffix(".yaml"), text, 0o600)
        return revision

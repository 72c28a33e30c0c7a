"""Output paths never name a file the run must keep: checked before anything happens.

A file a command writes (`--report`, `--metrics-file`, `audit verify --report`) must
not be the audit log, its lock, torn-line, rotation-state or resume sidecar, a policy
file being loaded, or another output of the same command. Writing one would overwrite the
record of deletions, or a policy. Two paths name the same file when they resolve to
the same name (`os.path.realpath`: symlinks, `.` and `..`) or, for files that exist,
have the same device and inode (hard links). Both sides are compared that way, and
both spellings of the audit log's sidecars (of the name as given and as resolved).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from retention.audit.resume import resume_path
from retention.audit.segments import state_path
from retention.audit.writer import lock_path, resolve_log, torn_path
from retention.errors import UserError


class OutputPathError(UserError):
    """An output path names the audit log, its lock or torn file, a policy, or another
    output (exit 2)."""


_Identity = tuple[str, tuple[int, int] | None]


def _identity(path: Path) -> _Identity:
    """The resolved name, and (device, inode) when the file exists."""
    resolved = os.path.realpath(path)
    try:
        info = os.stat(resolved)
    except OSError:
        return resolved, None
    return resolved, (info.st_dev, info.st_ino)


def _same(a: _Identity, b: _Identity) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _kept_files(
    audit_log: Path, policies: Iterable[Path], keep: Iterable[tuple[str, Path]] = ()
) -> list[tuple[str, _Identity]]:
    """Every file an output must not overwrite, with what to call it."""
    named = [
        (f"the audit log {audit_log}", audit_log),
        (f"the audit log's lock file {lock_path(audit_log)}", lock_path(audit_log)),
        (f"the audit log's torn-line file {torn_path(audit_log)}", torn_path(audit_log)),
        (
            f"the audit log's rotation state {state_path(resolve_log(audit_log))}",
            state_path(resolve_log(audit_log)),
        ),
        (
            f"the audit log's resume point {resume_path(resolve_log(audit_log))}",
            resume_path(resolve_log(audit_log)),
        ),
    ]
    # The sidecars of the name as given, too (an older version locked that one).
    for suffix, what in ((".lock", "lock file"), (".torn", "torn-line file")):
        given = audit_log.with_name(audit_log.name + suffix)
        named.append((f"the audit log's {what} {given}", given))
    named += [(f"the policy file {policy}", policy) for policy in policies]
    named += list(keep)
    return [(label, _identity(path)) for label, path in named]


def check_outputs(
    audit_log: Path,
    outputs: Mapping[str, Path | None],
    *,
    policies: Iterable[Path] = (),
    keep: Iterable[tuple[str, Path]] = (),
) -> None:
    """Refuse (exit 2, naming the flag) an output that names a file the run must keep.

    `outputs` maps each output flag (e.g. `"--report"`) to its path, or None when not
    given; `policies` are the policy files being loaded; `keep` other files that must
    survive, each with what to call it (a signing key). Touches nothing on disk.
    """
    kept = _kept_files(audit_log, policies, keep)
    seen: list[tuple[str, _Identity]] = []
    for flag, path in outputs.items():
        if path is None:
            continue
        identity = _identity(path)
        for label, other in kept:
            if _same(identity, other):
                raise OutputPathError(
                    f"names {label}; writing it would destroy what must be kept, pick another file",
                    where=f"{flag} {path}",
                )
        for other_flag, other in seen:
            if _same(identity, other):
                raise OutputPathError(
                    f"names the same file as {other_flag}; give each output its own file",
                    where=f"{flag} {path}",
                )
        seen.append((flag, identity))

"""`retention plan` and `retention apply`: both are `retention run` with one hook.

`plan` is a dry run whose due calls also go into a plan file (`PlanWriter`); `apply`
is a run whose pipeline deletes a due call only when the plan holds it
(`Pipeline.plan`). Everything else (intent first, recovery, lock, signals, exit
codes, reports, metrics) is the run's, unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import click
import httpx

from retention import defaults
from retention.audit.events import Outcome
from retention.durable import MissingFile, SmallFileError, fsync_dir, read_small_file
from retention.errors import UserError
from retention.plan.store import FORMAT, Plan, PlanError, PlanWriter, open_plan
from retention.run.command import RunSettings, run_command
from retention.run.flags import settings_from_flags
from retention.run.stats import RunStats
from retention.timestamps import rfc3339

DEFAULT_MAX_PLAN_AGE: Final = defaults.MAX_PLAN_AGE
_AGE = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_age(text: str, where: str = "--max-plan-age") -> timedelta:
    found = _AGE.fullmatch(text)
    if found is None:
        raise UserError(f"`{text}` is not a duration such as 7d, 36h or 2w", where=where)
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def _base_url(url: str) -> str:
    return str(httpx.URL(url).copy_with(username=None, password=None, query=None))


def _stamp(moment: datetime) -> str:
    return rfc3339(moment, "seconds")


# -- plan ------------------------------------------------------------------------


PLAN_SUFFIX: Final = ".plan"
MAX_APPROVAL_BYTES: Final = 64 << 10  # a digest and a name; anything larger is not an approval
APPROVAL_SUFFIX: Final = ".sha256"  # beside the plan: `<digest>  <name>`, as sha256sum writes


def plan_from_flags(flags: dict[str, Any], out: Path | None, review_dir: Path | None) -> int:
    """`--out PLAN`, or `--review-dir DIR` (created if missing): DIR/plan-<UTC time>.plan,
    and its report beside it (`.html`) unless --report names another."""
    if (out is None) == (review_dir is None):
        raise UserError("give exactly one of --out PLAN and --review-dir DIR", where="--out")
    if review_dir is not None:
        try:  # created on the first night (its parent must exist): the volume's root
            review_dir.mkdir(mode=0o750, exist_ok=True)
        except OSError as err:
            raise PlanError(
                f"cannot create it ({err.strerror or err})", where=f"--review-dir {review_dir}"
            ) from None
        name = datetime.now(UTC).strftime("plan-%Y%m%dT%H%M%SZ")
        out = review_dir / f"{name}{PLAN_SUFFIX}"
        flags = {**flags, "report": flags.get("report") or review_dir / f"{name}.html"}
    assert out is not None
    settings = settings_from_flags(**{**flags, "execute": False, "max_deletes": None})
    return run_command(dataclasses.replace(settings, planner=PlanWriter(out), publish=publish_plan))


def approval_path(plan: Path) -> Path:
    return plan.with_name(plan.name + APPROVAL_SUFFIX)


def read_approval(plan: Path) -> str | None:
    """The digest a reviewer pinned in PLAN.sha256, or None when there is none."""
    path = approval_path(plan)
    try:
        text = read_small_file(path, MAX_APPROVAL_BYTES).decode("ascii", errors="replace")
    except MissingFile:
        return None
    except SmallFileError as err:
        raise PlanError(f"cannot read the approval ({err})", where=str(path)) from None
    digest = (text.split() or [""])[0].lower()
    if not _HEX64.fullmatch(digest):
        raise PlanError("not an approval: expected a sha256 digest first", where=str(path))
    return digest


def newest_plan(review_dir: Path) -> Path:
    """The plan of DIR whose name sorts last (--review-dir names are UTC times)."""
    if not review_dir.is_dir():
        raise PlanError("no such directory", where=f"--review-dir {review_dir}")
    plans = sorted(p for p in review_dir.glob(f"*{PLAN_SUFFIX}") if not p.name.startswith("."))
    if not plans:
        raise PlanError("holds no plan: nothing to apply", where=f"--review-dir {review_dir}")
    return plans[-1]


def approve_plan(plan_path: Path) -> int:
    """`retention approve PLAN`: check the plan, show what it deletes, pin its digest."""
    plan = open_plan(plan_path)
    try:
        header = plan.header
        click.echo(f"plan {plan_path}: {plan.total} calls, made {header.get('created')}")
        click.echo(f"ages from {header.get('now')}, against {header.get('base_url')}")
        for name, count in sorted(dict(header.get("by_policy") or {}).items()):
            click.echo(f"  {count:>10}  {name}")
        for source in header.get("policies") or []:
            click.echo(f"policy file {source.get('path')} sha256 {source.get('sha256')}")
        target = approval_path(plan_path)
        line = f"{plan.sha256}  {plan_path.name}\n"
        try:
            with target.open("x", encoding="ascii") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            target.chmod(0o444)
        except FileExistsError:
            raise PlanError(
                "already approved: an approval is never replaced", where=str(target)
            ) from None
        except OSError as err:
            raise PlanError(f"cannot write ({err.strerror or err})", where=str(target)) from None
        fsync_dir(target.parent)
    finally:
        plan.close()
    click.echo(f"approved: {target} pins sha256 {plan.sha256}")
    return 0


def publish_plan(settings: RunSettings, stats: RunStats, run_id: str, code: int) -> int:
    """After a `plan` run: store the header, publish the file, print its digest."""
    writer = settings.planner
    assert writer is not None
    if code != 0:
        writer.discard()
        click.echo(f"retention: no plan written (the run ended with exit {code})", err=True)
        return code
    header = {
        "format": FORMAT,
        "plan_id": uuid.uuid4().hex,
        "run_id": run_id,
        "created": _stamp(datetime.now(UTC)),
        "now": _stamp(settings.now),
        "base_url": _base_url(settings.base_url),
        "shard": str(settings.shard) if settings.shard else None,
        "policies": [{"path": s.path, "sha256": s.sha256} for s in settings.policies.sources],
        # Each rule with its annotations (legal basis, category, request, case): the
        # record a reviewer reads with the plan; never per call.
        "rules": [
            {
                "name": p.name,
                "kind": p.kind.value,
                "duration": p.duration_text,
                **dict(p.annotations),
            }
            for p in settings.policies.policies
        ],
        "by_policy": _planned(stats.by_policy),
        "by_agent": _planned(stats.by_agent),
        "by_region": _planned(stats.by_region),
        "scanned": stats.scanned,
        "forecast": stats.upcoming.summary(),
    }
    try:
        digest = writer.commit(header)
    except OSError as err:
        writer.discard()
        raise PlanError(f"cannot write the plan ({err.strerror or err})", where="--out") from None
    click.echo(f"plan {writer.target}: {writer.rows} calls due")
    click.echo(f"sha256 {digest}")
    total = stats.upcoming.summary()["total"]
    if any(total.values()):
        click.echo(
            "becoming due: "
            + ", ".join(f"{count} within {window}" for window, count in total.items())
        )
    click.echo(
        f"review it, then: retention apply {writer.target} --execute --expect-sha256 {digest}"
    )
    return code


def _planned(table: dict[str, Any]) -> dict[str, int]:
    acted = Outcome.WOULD_DELETE
    return {key: int(c[acted]) for key, c in sorted(table.items()) if c[acted]}


# -- apply -----------------------------------------------------------------------


def apply_from_flags(
    flags: dict[str, Any],
    plan_path: Path | None,
    expect_sha256: str | None,
    max_plan_age: str,
    review_dir: Path | None = None,
) -> int:
    """Check the plan and its pin before anything else, then run with it as the filter.

    The pin: --expect-sha256, or the approval PLAN.sha256 a reviewer wrote (`retention
    approve`); both, they must agree. An execute apply with no pin is refused (exit 2)."""
    age = parse_age(max_plan_age)
    if expect_sha256 is not None:
        expect_sha256 = expect_sha256.strip().lower().removeprefix("sha256:")
        if not _HEX64.fullmatch(expect_sha256):
            raise UserError("expected 64 hexadecimal digits", where="--expect-sha256")
    if (plan_path is None) == (review_dir is None):
        raise UserError("give exactly one of PLAN and --review-dir DIR", where="PLAN, --review-dir")
    if review_dir is not None:
        plan_path = newest_plan(review_dir)
    assert plan_path is not None
    approved = read_approval(plan_path) if plan_path.is_file() else None
    if expect_sha256 is not None and approved is not None and approved != expect_sha256:
        raise PlanError(
            f"--expect-sha256 {expect_sha256} disagrees with the approval "
            f"{approval_path(plan_path)} ({approved})",
            where=str(plan_path),
        )
    pin = expect_sha256 or approved
    if pin is None and flags.get("execute"):
        raise PlanError(
            "nobody pinned this plan: approve it (`retention approve PLAN` writes "
            f"{approval_path(plan_path).name}) or pass --expect-sha256 DIGEST; nothing deleted",
            where=str(plan_path),
        )
    plan = open_plan(plan_path)
    try:
        if pin is not None and plan.sha256 != pin:
            raise PlanError(
                f"its sha256 is {plan.sha256}, not the {pin} approved; "
                "apply only the plan that was reviewed",
                where=str(plan_path),
            )
        settings = settings_from_flags(**flags)
        check_plan(plan, settings, age)
        if pin is None:
            print(
                f"retention: warning: {plan_path} is not pinned (a dry run deletes nothing); "
                f"its sha256 is {plan.sha256}",
                file=sys.stderr,
            )
        return run_command(dataclasses.replace(settings, plan=plan))
    finally:
        plan.close()


def check_plan(plan: Plan, settings: RunSettings, max_age: timedelta) -> None:
    """The plan must be recent, for the same API, under byte-identical policy files."""
    where = str(plan.path)
    age = settings.now - plan.created
    if age > max_age:
        raise PlanError(
            f"the plan is {age.days} days {age.seconds // 3600} hours old, older than "
            f"--max-plan-age; make and review a new plan",
            where=where,
        )
    planned_url = str(plan.header.get("base_url", ""))
    if planned_url != _base_url(settings.base_url):
        raise PlanError(
            f"the plan was made against {planned_url}, not {_base_url(settings.base_url)}",
            where=where,
        )
    if (plan.header.get("shard") or None) != (str(settings.shard) if settings.shard else None):
        raise PlanError("the plan was made for another shard", where=where)
    planned = {str(p["path"]): str(p["sha256"]) for p in plan.header.get("policies", [])}
    current = {source.path: source.sha256 for source in settings.policies.sources}
    changed = sorted(
        path for path in planned.keys() | current.keys() if planned.get(path) != current.get(path)
    )
    if changed:
        raise PlanError(
            "policy files changed since the plan (or were added or removed): "
            + ", ".join(changed)
            + "; make and review a new plan",
            where=where,
        )

"""Nobody's plan is applied: `apply --execute` needs a pin, either --expect-sha256 or the
approval PLAN.sha256 a reviewer writes with `retention approve`; and the two-step
schedule (`plan --review-dir`, then `apply --review-dir`) end to end against the sandbox.
Expected deletions come from the dataset by hand (tests.e2e.support)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from retention.plan.command import MAX_APPROVAL_BYTES, approval_path, read_approval
from retention.plan.store import PlanError
from retention.sandbox import SandboxApp
from tests.e2e.support import Workspace, deletes_sent, expected_deletions, workspace
from tests.plan.test_plan_apply import (
    Run,
    app,
    apply,
    cli,
    common,
    make_plan,
    planned_ids,
    space,
    url,
)

__all__ = ["app", "space", "url", "workspace"]


def deleted(space: Workspace) -> set[str]:
    if not space.audit_log.exists():
        return set()
    return {line["call_id"] for line in space.lines() if line["event"] == "deleted"}


def test_an_unpinned_plan_is_refused_by_an_execute_apply_before_anything_is_sent(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, _ = make_plan(capsys, monkeypatch, space, url)
    before = sum(app.stats.requests.values())

    done = apply(capsys, monkeypatch, space, url, plan, "--execute")

    assert done.code == 2
    assert done.err.count("\n") == 1 and "nobody pinned this plan" in done.err
    assert str(plan) in done.err and "retention approve" in done.err
    assert sum(app.stats.requests.values()) == before  # not even GET /agents
    assert deleted(space) == set()


def test_approve_pins_the_plan_and_apply_then_deletes_exactly_it(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)
    plan, _ = make_plan(capsys, monkeypatch, space, url)
    approved = cli(capsys, monkeypatch, "approve", str(plan))
    assert approved.code == 0, approved.err
    approval = plan.with_name(plan.name + ".sha256")
    digest = hashlib.sha256(plan.read_bytes()).hexdigest()
    assert approval.read_text() == f"{digest}  {plan.name}\n"  # as sha256sum writes it
    assert approval.stat().st_mode & 0o222 == 0
    assert f"{len(planned_ids(plan))}  old-30d" in approved.out.replace("     ", " ")
    checked = subprocess.run(
        ["sha256sum", "-c", approval.name], cwd=plan.parent, capture_output=True, check=False
    )
    assert checked.returncode == 0

    done = apply(capsys, monkeypatch, space, url, plan, "--execute")

    assert done.code == 0, done.err
    assert deleted(space) == planned_ids(plan) == expected
    again = cli(capsys, monkeypatch, "approve", str(plan))
    assert again.code == 2 and "never replaced" in again.err


def test_a_plan_replaced_after_its_approval_is_refused(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, _ = make_plan(capsys, monkeypatch, space, url)
    assert cli(capsys, monkeypatch, "approve", str(plan)).code == 0
    other = space.root / "other.plan"
    done = cli(capsys, monkeypatch, "plan", *common(space, url), "--out", str(other))
    assert done.code == 0
    plan.unlink()
    other.rename(plan)  # a valid plan, but not the bytes the reviewer approved

    refused = apply(capsys, monkeypatch, space, url, plan, "--execute")

    assert refused.code == 2 and "not the" in refused.err and "approved" in refused.err
    assert deletes_sent(app) == 0


def test_a_digest_flag_that_disagrees_with_the_approval_is_refused(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    plan, _ = make_plan(capsys, monkeypatch, space, url)
    assert cli(capsys, monkeypatch, "approve", str(plan)).code == 0
    other = "0" * 64
    done = apply(capsys, monkeypatch, space, url, plan, "--execute", "--expect-sha256", other)
    assert done.code == 2 and "disagrees with the approval" in done.err
    assert deletes_sent(app) == 0


def test_the_two_step_schedule_plans_into_a_review_folder_and_applies_the_approved_plan(
    capsys: Run, monkeypatch: pytest.MonkeyPatch, space: Workspace, app: SandboxApp, url: str
) -> None:
    expected = expected_deletions(app.dataset)
    review = space.root / "review"
    review.mkdir()
    night1 = cli(capsys, monkeypatch, "plan", *common(space, url), "--review-dir", str(review))
    assert night1.code == 0, night1.err
    (plan,) = review.glob("plan-*.plan")
    assert plan.with_suffix(".html").is_file()  # the reviewer's page, beside the plan

    unapproved = cli(
        capsys, monkeypatch, "apply", *common(space, url), "--review-dir", str(review),
        "--execute",
    )  # fmt: skip
    assert unapproved.code == 2 and "nobody pinned this plan" in unapproved.err
    assert deletes_sent(app) == 0

    assert cli(capsys, monkeypatch, "approve", str(plan)).code == 0
    night2 = cli(
        capsys, monkeypatch, "apply", *common(space, url), "--review-dir", str(review),
        "--execute",
    )  # fmt: skip
    assert night2.code == 0, night2.err
    assert deleted(space) == expected
    started = [line for line in space.lines() if line["event"] == "run_started"][-1]
    assert started["plan"]["sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("command", "where"),
    [
        (["plan"], "--out"),  # neither --out nor --review-dir
        (["apply"], "PLAN"),  # neither PLAN nor --review-dir
        (["apply", "--review-dir", "missing-dir"], "--review-dir"),
    ],
)
def test_a_plan_or_apply_without_its_target_is_one_line_and_exit_2(
    capsys: Run,
    monkeypatch: pytest.MonkeyPatch,
    space: Workspace,
    url: str,
    command: list[str],
    where: str,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    done = cli(capsys, monkeypatch, *command, *common(space, url))
    assert done.code == 2
    assert where in done.err and done.err.count("\n") == 1


def test_an_approval_that_is_no_small_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    """PLAN.sha256 as a FIFO would block a plain read forever; a huge one is no digest."""
    plan = tmp_path / "tonight.plan"
    approval = approval_path(plan)
    os.mkfifo(approval)
    with pytest.raises(PlanError, match="not a regular file") as caught:
        read_approval(plan)
    assert caught.value.exit_code == 2
    approval.unlink()
    with approval.open("wb") as handle:
        handle.truncate(MAX_APPROVAL_BYTES + 1)
    with pytest.raises(PlanError, match="larger than 64 KiB"):
        read_approval(plan)
    approval.unlink()
    approval.symlink_to(tmp_path / "nowhere")  # a broken link: no approval, as a missing file
    assert read_approval(plan) is None

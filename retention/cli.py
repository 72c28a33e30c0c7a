"""The command line: flags, environment variables and exit codes; nothing else.

Each command's work lives in its own module; this file only parses and maps
errors a user can fix to one line on stderr and exit status 2.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from retention import __version__, defaults
from retention.audit.events import Event
from retention.errors import ExitCode, FatalError, UserError


class _FiniteFloat(click.FloatRange):
    """A float range that also refuses `nan` and `inf`, which click's FloatRange lets through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class _EnvOption(click.Option):
    """An option that can also come from an environment variable: its help shows the
    variable, and a bad value read from there is reported under the variable's name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, **kwargs)

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as err:
            source = ctx.get_parameter_source(self.name) if self.name else None
            if source is not click.core.ParameterSource.ENVIRONMENT:
                raise
            raise click.UsageError(f"{self.envvar}: {err.message}", ctx) from None

    def get_error_hint(self, ctx: click.Context | None) -> str:
        # Errors about a flag's value name the flag only (click would add the variable).
        return " / ".join(f"'{opt}'" for opt in self.opts)


F = TypeVar("F", bound=Callable[..., Any])


def _env_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """`click.option` for an option that may also come from its `envvar`."""
    return click.option(*decls, cls=_EnvOption, **attrs)


EXIT_CODES_HELP = """\b
Exit codes:
  0  finished, nothing failed
  1  finished, some deletions failed (audit verify: the log is broken)
  2  bad input (policies, flags, environment, credentials), or the API cannot be reached
  3  stopped by --max-deletes or the surge guard
  4  the API refused the credentials mid-run (401/403)
  5  interrupted by a signal (SIGTERM/SIGINT)
  6  another run holds the audit log's lock
"""

# Requests per second: positive and finite.
_RATE = _FiniteFloat(min=0, min_open=True)


# Options shared by several commands: one definition each, so they cannot drift apart.
_base_url_option = click.option(
    "--base-url", help="API base URL [CARTESIA_BASE_URL, else https://api.cartesia.ai]."
)
_api_key_file_option = _env_option(
    "--api-key-file",
    type=click.Path(path_type=Path),
    envvar="CARTESIA_API_KEY_FILE",
    help="File holding the API key (a mounted secret) [else CARTESIA_API_KEY].",
)
_policies_option = _env_option(
    "--policies",
    "policy_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    default=[Path("policies")],
    show_default=True,
    envvar="RETENTION_POLICIES",
    help="Policy file or directory; repeatable. RETENTION_POLICIES takes several, separated"
    " by ':' (e.g. policies:/etc/retention/holds.yaml).",
)
_now_option = click.option("--now", help="RFC 3339 instant ages are measured from [now].")


def _concurrency_option(
    help_text: str, default: int | None = defaults.READ_CONCURRENCY
) -> Callable[[F], F]:
    return _env_option(
        "--concurrency",
        type=click.IntRange(1, 1024),
        default=default,
        show_default=default is not None,
        envvar="RETENTION_CONCURRENCY",
        help=help_text,
    )


def _rate_option(help_text: str, default: float | None = defaults.READ_RATE) -> Callable[[F], F]:
    return _env_option(
        "--rate",
        type=_RATE,
        default=default,
        show_default=default is not None,
        envvar="RETENTION_RATE",
        help=help_text,
    )


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="retention")
def cli() -> None:
    """Enforce data-retention policies on Cartesia voice-agent calls."""
    from retention.log import configure

    configure()  # once, for every command: log lines on stderr, redacted


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> int:
    """Check policy files (or directories of *.yaml) and print what they mean."""
    from retention.policy.commands import validate_command

    return validate_command(paths)


@cli.command()
@click.argument("call_id", required=False)
@_policies_option
@_now_option
@_base_url_option
@_api_key_file_option
@click.option(
    "--ids",
    "ids_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Explain many calls: one id per line, or a CSV with a call_id column (- for stdin).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv"]),
    default="table",
    show_default=True,
    help="With --ids: an aligned table, or CSV.",
)
@_rate_option("With --ids: requests per second at most.")
@_concurrency_option("With --ids: requests in flight at most.")
def explain(
    call_id: str | None,
    policy_paths: tuple[Path, ...],
    now: str | None,
    base_url: str | None,
    api_key_file: Path | None,
    ids_path: Path | None,
    output: str,
    rate: float,
    concurrency: int,
) -> int:
    """Fetch CALL_ID and show why the policies keep or delete it; or, with --ids FILE,
    one row per call: decision, credited or holding policy, first failed condition."""
    if (call_id is None) == (ids_path is None):
        raise UserError("give one CALL_ID, or --ids FILE for many", where="explain")
    if ids_path is not None:
        from retention.run.explain import explain_ids_command

        return explain_ids_command(
            ids_path,
            policy_paths,
            output="csv" if output == "csv" else "table",
            now=now,
            base_url=base_url,
            api_key_file=api_key_file,
            rate=rate,
            concurrency=concurrency,
        )
    if output != "table":
        raise UserError("--format csv is for --ids FILE", where="explain")
    from retention.policy.commands import explain_command

    assert call_id is not None
    return explain_command(
        call_id, policy_paths, now=now, base_url=base_url, api_key_file=api_key_file
    )


@cli.command("hash-phone")
@click.argument("numbers", nargs=-1)
def hash_phone(numbers: tuple[str, ...]) -> int:
    """Print the sha256: digest of each phone NUMBER, for `phone_numbers` in a policy.

    NUMBER is E.164: +, country code and number (spaces, - . ( ) ignored). With no
    NUMBER, or -, numbers are read one per line from stdin (out of shell history).
    """
    from retention.policy.commands import hash_phone_command

    return hash_phone_command(numbers)


def _evidence_options(command: F) -> F:
    """What `audit verify` and `audit certificate` share: the API to re-read calls from
    (with --api), paced by --rate and --concurrency, and the keys and witness that
    checkpoints are proved by."""
    for option in reversed(
        (
            _base_url_option,
            _api_key_file_option,
            _rate_option("Requests per second at most (with --api)."),
            _concurrency_option("Requests in flight at most (with --api)."),
            click.option(
                "--public-key",
                "public_keys",
                multiple=True,
                type=click.Path(path_type=Path, dir_okay=False),
                help="Check every checkpoint's signature against these keys; repeatable "
                "(rotated keys).",
            ),
            click.option(
                "--witness",
                type=click.Path(path_type=Path, file_okay=False),
                help="Prove the log still holds every checkpoint witnessed in this directory.",
            ),
        )
    ):
        command = option(command)
    return command


@cli.group()
def audit() -> None:
    """Prove an audit log intact, and true against the API."""


@audit.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=True))
@click.option("--api", "against_api", is_flag=True, help="Also confirm every logged redaction.")
@click.option("--report", type=click.Path(path_type=Path), help="Write the evidence (.md/.json).")
@click.option(
    "--plan",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also prove every deletion of the runs that applied this plan was a call in it.",
)
@_evidence_options
def audit_verify(
    files: tuple[Path, ...],
    against_api: bool,
    report: Path | None,
    plan: Path | None,
    base_url: str | None,
    api_key_file: Path | None,
    rate: float,
    concurrency: int,
    public_keys: tuple[Path, ...],
    witness: Path | None,
) -> int:
    """Check the hash chain and intents of a log: its FILE, with its segments beside it, or a
    directory of segments, or segments and the live file; with --api, re-read each redacted
    call; with --plan, check each deletion of the plan's apply runs against the plan."""
    from retention.audit.command import api_options, verify_command

    options = api_options(base_url, api_key_file, rate, concurrency) if against_api else None
    return verify_command(
        files, report=report, api=options, public_keys=public_keys, witness=witness, plan=plan
    )


@audit.command("certificate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--policy", required=True, help="The sweep policy the certificate is for.")
@click.option("--api", "against_api", is_flag=True, help="Also re-read every erased call.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the certificate here (.md, .html or .json) [Markdown on stdout].",
)
@_evidence_options
def audit_certificate(
    file: Path,
    policy: str,
    against_api: bool,
    out: Path | None,
    base_url: str | None,
    api_key_file: Path | None,
    rate: float,
    concurrency: int,
    public_keys: tuple[Path, ...],
    witness: Path | None,
) -> int:
    """Write the erasure certificate of one sweep POLICY from the audit log FILE."""
    from retention.audit.certificate_command import certificate_command
    from retention.audit.command import api_options

    options = api_options(base_url, api_key_file, rate, concurrency) if against_api else None
    return certificate_command(
        file, policy, out=out, api=options, public_keys=public_keys, witness=witness
    )


@audit.command("report")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=True))
@click.option(
    "--html",
    "html_out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report here: one self-contained HTML page (works offline).",
)
def audit_report(file: Path, html_out: Path) -> int:
    """Write a report of everything the audit log FILE (and its segments) records: runs
    over time, deletions per day by policy, failures, runs stopped by a cap or a signal."""
    from retention.audit.html_report import report_command

    tally = report_command(file, html_out)
    click.echo(
        f"wrote {html_out}: {tally.all_runs} runs, {tally.events[Event.DELETED]} deletions, "
        f"{tally.events[Event.FAILED]} failures, {tally.lines} lines read"
    )
    return 0


@audit.command("rotate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_env_option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RETENTION_SIGNING_KEY",
    help="End the segment on a checkpoint signed with this key (needed for a signed log).",
)
@_env_option(
    "--witness",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="RETENTION_WITNESS",
    help="Also keep that checkpoint in this directory (needs --signing-key).",
)
def audit_rotate(file: Path, signing_key: Path | None, witness: Path | None) -> int:
    """Close the audit log FILE as its next numbered gzip segment, under the run's lock."""
    from retention.audit.rotation_command import rotate_command

    return rotate_command(file, signing_key=signing_key, witness_dir=witness)


@audit.command("keygen")
@click.argument("key_file", type=click.Path(path_type=Path, dir_okay=False))
def audit_keygen(key_file: Path) -> int:
    """Write a new Ed25519 key pair: KEY_FILE (private, 0600) and KEY_FILE.pub."""
    from retention.audit.signing import keygen

    public, key_id = keygen(key_file)
    click.echo(f"private key {key_file} (mode 600; give it to the job as --signing-key)")
    click.echo(f"public key  {public} (give it to auditors: audit verify --public-key)")
    click.echo(f"fingerprint {key_id}")
    return 0


@cli.command(epilog=EXIT_CODES_HELP)
@_policies_option
@click.option("--execute", is_flag=True, help="Really delete. Without it: a dry run, no DELETE.")
@_env_option(
    "--audit-log",
    type=click.Path(path_type=Path, dir_okay=False),
    default=defaults.AUDIT_LOG,
    show_default=True,
    envvar="RETENTION_AUDIT_LOG",
    help="Append-only JSONL audit log (created mode 0600).",
)
@_env_option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RETENTION_REPORT",
    help="Write a report: .csv (one row per call selected), .json or .md (totals).",
)
@_base_url_option
@_api_key_file_option
@_concurrency_option(
    "Ceiling on requests in flight. Unset: found while running (adaptive: grows while"
    " latency stays flat and no 429 comes, halved on a 429, cut a tenth when latency"
    " rises), up to 256.",
    default=None,
)
@_rate_option(
    "Ceiling on requests per second (halved on each burst of 429s, then recovers)."
    " Unset: no rate ceiling; the adaptive in-flight limit paces the run.",
    default=None,
)
@_env_option(
    "--max-deletes",
    type=click.IntRange(min=0),
    envvar="RETENTION_MAX_DELETES",
    help="Stop cleanly after this many DELETE requests (exit 3).",
)
@_now_option
@_env_option(
    "--grace-period",
    type=_FiniteFloat(min=0),
    default=defaults.GRACE_PERIOD_SECONDS,
    show_default=True,
    envvar="RETENTION_GRACE_PERIOD",
    help="Seconds in-flight requests get after SIGTERM/SIGINT.",
)
@_env_option(
    "--progress-interval",
    type=_FiniteFloat(min=0.1),
    default=defaults.PROGRESS_INTERVAL_SECONDS,
    show_default=True,
    envvar="RETENTION_PROGRESS_INTERVAL",
    help="Seconds between progress log lines when stderr is not a terminal.",
)
@_env_option(
    "--timeout",
    type=_FiniteFloat(min=0, min_open=True),
    default=defaults.TIMEOUT_SECONDS,
    show_default=True,
    envvar="RETENTION_TIMEOUT",
    help="Seconds to wait for each API answer before retrying it.",
)
@_env_option(
    "--shard",
    envvar="RETENTION_SHARD",
    help="Only shard I of N (0-based), e.g. 0/4.",
)
@_env_option(
    "--shard-count",
    type=click.IntRange(min=1),
    envvar="RETENTION_SHARD_COUNT",
    help="N shards, this one's index from JOB_COMPLETION_INDEX (Indexed Job).",
)
@_env_option(
    "--shard-sizes",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RETENTION_SHARD_SIZES",
    help="Calls per agent (JSON, or a copy of a .resume file): even shards by size.",
)
@_env_option(
    "--pushgateway",
    envvar="RETENTION_PUSHGATEWAY",
    help="Push metrics to this URL.",
)
@_env_option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RETENTION_METRICS_FILE",
    help="Write metrics for node_exporter's textfile collector.",
)
@_env_option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RETENTION_SIGNING_KEY",
    help="Ed25519 private key (0600): append signed checkpoints (see `audit keygen`).",
)
@_env_option(
    "--witness",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="RETENTION_WITNESS",
    help="Directory that also keeps each checkpoint as its own file (needs --signing-key).",
)
@_env_option(
    "--rotate-bytes",
    type=click.IntRange(min=1),
    envvar="RETENTION_ROTATE_BYTES",
    help="At the run's end, close the audit log as a gzip segment once it holds this many bytes.",
)
@_env_option(
    "--surge-guard/--no-surge-guard",
    default=True,
    show_default=True,
    envvar="RETENTION_SURGE_GUARD",
    help="Stop (exit 3) before deleting more than max(--surge-floor, --surge-factor x the"
    " median of the latest execute runs in the audit log).",
)
@_env_option(
    "--surge-floor",
    type=click.IntRange(min=0),
    default=defaults.SURGE_FLOOR,
    show_default=True,
    envvar="RETENTION_SURGE_FLOOR",
    help="The surge guard never stops a run below this many deletions.",
)
@_env_option(
    "--surge-factor",
    type=_FiniteFloat(min=1.0),
    default=defaults.SURGE_FACTOR,
    show_default=True,
    envvar="RETENTION_SURGE_FACTOR",
    help="The surge guard's multiple of the median of recent runs' deletions.",
)
@_env_option(
    "--horizon",
    default=defaults.HORIZON,
    show_default=True,
    envvar="RETENTION_HORIZON",
    help="The forecast's window: count kept calls becoming due within it (e.g. 30d, 2w;"
    " at most 366d), with 7d and 30d inside it.",
)
def run(**flags: Any) -> int:
    """Delete the sensitive data of every call the policies say is due (dry run by default).

    Safety belts, with --execute: a first execute run on an audit log needs --max-deletes
    (or use plan/apply); later runs stop at the surge guard's line (exit 3).
    """
    from retention.run.flags import run_from_flags

    return run_from_flags(flags)


# `plan` and `apply` take the run's own options (the same objects: they cannot drift).
_RUN_SHARED = (
    "policy_paths",
    "audit_log",
    "report",
    "base_url",
    "api_key_file",
    "concurrency",
    "rate",
    "now",
    "grace_period",
    "progress_interval",
    "timeout",
    "shard",
    "shard_count",
    "shard_sizes",
    "pushgateway",
    "metrics_file",
    "signing_key",
    "witness",
    "rotate_bytes",
    "horizon",
)


def _run_options(*names: str) -> list[click.Parameter]:
    return [param for param in run.params if param.name in names]


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The plan file to write (SQLite; never overwritten).",
)
@_env_option(
    "--review-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="RETENTION_REVIEW_DIR",
    help="Instead of --out: write DIR/plan-<UTC time>.plan, and its .html report beside it.",
)
def plan(out: Path | None, review_dir: Path | None, **flags: Any) -> int:
    """List and decide like a dry run (no DELETE), and write every due call to a plan
    file for review; prints its sha256 for `approve` or `apply --expect-sha256`."""
    from retention.plan.command import plan_from_flags

    return plan_from_flags(flags, out, review_dir)


plan.params.extend(_run_options(*_RUN_SHARED))


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path, dir_okay=False))
def approve(plan_path: Path) -> int:
    """Check PLAN, print what it deletes, and pin its sha256 in PLAN.sha256 (the
    `sha256sum` format): `apply` then deletes only from these exact bytes."""
    from retention.plan.command import approve_plan

    return approve_plan(plan_path)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument(
    "plan_path", metavar="[PLAN]", required=False, type=click.Path(path_type=Path, dir_okay=False)
)
@_env_option(
    "--expect-sha256",
    envvar="RETENTION_EXPECT_SHA256",
    help="The digest `plan` printed: refuse any other file (exit 2). Without it, the"
    " approval PLAN.sha256 pins the plan; --execute refuses a plan with neither.",
)
@_env_option(
    "--review-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="RETENTION_REVIEW_DIR",
    help="Instead of PLAN: the newest plan in DIR (by name), pinned by its approval.",
)
@_env_option(
    "--max-plan-age",
    default=defaults.MAX_PLAN_AGE,
    show_default=True,
    envvar="RETENTION_MAX_PLAN_AGE",
    help="Refuse a plan older than this (e.g. 36h, 7d, 2w).",
)
def apply(
    plan_path: Path | None,
    expect_sha256: str | None,
    review_dir: Path | None,
    max_plan_age: str,
    **flags: Any,
) -> int:
    """Delete the calls of PLAN that are still due now, and nothing else: a planned call
    no longer due is `dropped` (with its reason), a due call not planned is `not_in_plan`.
    The policy files must be byte-identical to the plan's (exit 2)."""
    from retention.plan.command import apply_from_flags

    return apply_from_flags(flags, plan_path, expect_sha256, max_plan_age, review_dir)


apply.params.extend(_run_options("execute", "max_deletes", *_RUN_SHARED))


_SHARE = _FiniteFloat(0.0, 1.0)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port; 0 picks a free one.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Dataset seed.")
@click.option(
    "--agents",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Number of agents the calls belong to.",
)
@click.option(
    "--calls",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Total calls, spread over the agents.",
)
@click.option("--now", help="RFC 3339 instant the generated ages are relative to [now].")
@click.option(
    "--api-key",
    default="sk_car_sandbox",
    show_default=True,
    help="The one key the sandbox accepts (a fake; any other gets 401).",
)
@click.option("--rate", type=_RATE, help="Requests/s; over: 429.")
@click.option("--max-in-flight", type=click.IntRange(min=1), help="Concurrent requests; over: 429.")
@click.option(
    "--latency-ms",
    type=_FiniteFloat(min=0),
    default=0.0,
    show_default=True,
    help=(
        "Response time of every API request, in milliseconds from its arrival to its"
        " answer, the sandbox's own work included (429s from --rate or --max-in-flight"
        " answer at once)."
    ),
)
@click.option(
    "--jitter-ms",
    type=_FiniteFloat(min=0),
    default=0.0,
    show_default=True,
    help="Milliseconds of uniform spread, plus or minus, around --latency-ms.",
)
@click.option("--error-rate", type=_SHARE, default=0.0, help="Share of 5xx answers.")
@click.option("--drop-rate", type=_SHARE, default=0.0, help="Share of dropped connections.")
@click.option("--malformed-rate", type=_SHARE, default=0.0, help="Share of non-JSON 200 bodies.")
@click.option("--duplicate-rate", type=_SHARE, default=0.0, help="Share of pages repeating a call.")
@click.option("--stuck-cursor", is_flag=True, help="next_page stops advancing.")
@click.option(
    "--nonterminal-delete-status",
    type=click.Choice(["400", "409"]),
    default="400",
    show_default=True,
    help="Answer to deleting a call not completed/failed.",
)
@click.option(
    "--redelete-status",
    type=click.IntRange(200, 499),
    default=200,
    show_default=True,
    help="Answer to deleting an already-redacted call (200 or a 4xx).",
)
@click.option("--allow-non-loopback", is_flag=True, help="Allow a --host that is not loopback.")
def sandbox(**flags: object) -> int:
    """Serve a local Cartesia-compatible Agents API with generated demo data."""
    from retention.sandbox.command import run_sandbox
    from retention.sandbox.flags import options_from_flags

    return run_sandbox(options_from_flags(flags))


@cli.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Empty directory for the audit log and reports [a new temporary directory].",
)
def demo(workdir: Path | None) -> int:
    """Take the tour: a local sandbox, a dry run, a real run, and the proof. No key needed."""
    from retention.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(workdir=workdir), click.echo)


def _first_leaf(group: BaseExceptionGroup[FatalError]) -> FatalError:
    inner = group.exceptions[0]
    return inner if isinstance(inner, FatalError) else _first_leaf(inner)


def _fatal(
    args: list[str], message: str, code: int, run_id: str | None = None, *, human: str = ""
) -> None:
    """The last line. `run` with stderr not a terminal logs JSON lines, so this line is
    JSON too (level, event, exit_code, error, run_id once one exists); else human text."""
    positional = [arg for arg in args if not arg.startswith("-")]
    if positional[:1] == ["run"] and not sys.stderr.isatty():
        from retention.log import configure, get_logger

        configure(json_lines=True)
        fields: dict[str, Any] = {"exit_code": int(code), "error": message}
        if run_id is not None:
            fields["run_id"] = run_id
        get_logger("retention").error("run.fatal", **fields)
        return
    click.echo(human or f"retention: error: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turn a fatal error into one line and its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="retention", standalone_mode=False)
    except FatalError as err:
        _fatal(args, str(err), err.exit_code, err.run_id)
        sys.exit(err.exit_code)
    except BaseExceptionGroup as group:
        # Fatal errors raised inside a task group: report the first one, as above.
        users, others = group.split(FatalError)
        if users is None or others is not None:
            raise
        first = _first_leaf(users)
        _fatal(args, str(first), first.exit_code, first.run_id)
        sys.exit(first.exit_code)
    except click.exceptions.Abort:
        _fatal(args, "interrupted", ExitCode.INTERRUPTED, human="retention: interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as err:
        # Bad flags: click's own message, one line, exit 2.
        _fatal(args, err.format_message(), ExitCode.BAD_INPUT)
        sys.exit(ExitCode.BAD_INPUT)
    sys.exit(int(code) if isinstance(code, int) else 0)

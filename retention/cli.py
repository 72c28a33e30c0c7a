"""The command line: flags, environment variables and exit codes; nothing else.

Each command's work lives in its own module; this file only parses and maps
errors a user can fix to one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

import click

from retention import __version__
from retention.errors import ExitCode, UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="retention")
def cli() -> None:
    """Enforce data-retention policies on Cartesia voice-agent calls."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turn user errors into one line and exit 2."""
    try:
        code = cli.main(args=argv, prog_name="retention", standalone_mode=False)
    except UserError as err:
        click.echo(f"retention: error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("retention: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as err:
        # Bad flags: click's own message, one line, exit 2.
        click.echo(f"retention: error: {err.format_message()}", err=True)
        sys.exit(ExitCode.BAD_INPUT)
    sys.exit(int(code) if isinstance(code, int) else 0)

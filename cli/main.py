"""The `stride` command: a group of command groups, and the one place errors become exit codes.

Exit codes: 0 success, 1 a call failed (its status, reason and field violations are printed
on stderr) or a watched job ended failed or cancelled, 2 a usage error (click's own), 130
interrupted."""

from __future__ import annotations

import json
import sys

import click
import grpc

from cli.app import App, common_options, progress_option
from cli.commands import activities, analytics, athletes, imports, jobs, tokens
from cli.errors import CallError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@common_options
@progress_option
@click.version_option(package_name="stride", prog_name="stride")
@click.pass_context
def stride(ctx: click.Context) -> None:
    """Stride from the terminal: athletes, activities, imports with live progress,
    training summaries, personal records, age grades, jobs and access tokens.

    The server address and token come from --address/--token, STRIDE_CLI_ADDRESS and
    STRIDE_CLI_TOKEN, else the server's own settings (STRIDE_LISTEN_ADDRESS,
    STRIDE_ADMIN_TOKEN, and on the embedded default the admin_token file in
    STRIDE_DATA_DIR, default .stride-data). Every command takes --json for scripts."""
    ctx.ensure_object(App)


stride.add_command(athletes.group)
stride.add_command(activities.group)
stride.add_command(analytics.summaries)
stride.add_command(analytics.records)
stride.add_command(analytics.age_grade)
stride.add_command(imports.import_files)
stride.add_command(jobs.sync)
stride.add_command(jobs.group)
stride.add_command(tokens.group)


def main(argv: list[str] | None = None) -> None:
    app = App()
    try:
        stride.main(args=argv, prog_name="stride", obj=app, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except grpc.RpcError as exc:
        error = CallError.of(exc)
        address = app._connection.address if app._connection else ""
        if app.as_json:
            sys.stderr.write(json.dumps({"error": error.as_dict()}) + "\n")
        else:
            app.output.error(error.lines(address))
        sys.exit(1)
    finally:
        app.close()

"""The state every command shares: connection options, output mode, the open channel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from cli.connection import Connection
from cli.output import Output

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    address: str | None = None
    token: str | None = None
    as_json: bool = False
    progress: bool | None = None  # None: a live bar on a terminal, plain lines otherwise
    _connection: Connection | None = field(default=None, repr=False)
    _output: Output | None = field(default=None, repr=False)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = Connection.resolve(self.address, self.token)
        return self._connection

    @property
    def output(self) -> Output:
        if self._output is None:
            self._output = Output(self.as_json, force_terminal=self.progress)
        return self._output

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Options given at any level (`stride --json athletes list` or `... list --json`)."""
    app = ctx.ensure_object(App)
    if value is not None and value is not False and param.name:
        setattr(app, param.name, value)
    return value


def common_options(function: F) -> F:
    """--address, --token, --json (and --progress) on a command or group."""
    options = [
        click.option(
            "--address",
            metavar="HOST:PORT",
            expose_value=False,
            callback=_store,
            help="Server address [env STRIDE_CLI_ADDRESS; else STRIDE_LISTEN_ADDRESS; "
            "default 127.0.0.1:50051].",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            expose_value=False,
            callback=_store,
            help="Bearer token [env STRIDE_CLI_TOKEN; else STRIDE_ADMIN_TOKEN, else the "
            "data directory's admin_token file].",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_store,
            help="Print JSON (protobuf field names) instead of tables.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def progress_option(function: F) -> F:
    return click.option(
        "--progress/--no-progress",
        "progress",
        default=None,
        expose_value=False,
        callback=_store,
        help="Force the live progress bar on or off [default: on for a terminal].",
    )(function)


def athlete_option(function: F) -> F:
    return click.option(
        "--athlete",
        "-a",
        metavar="ID",
        envvar="STRIDE_CLI_ATHLETE",
        help="The athlete: an id or athletes/ID [env STRIDE_CLI_ATHLETE].",
    )(function)


pass_app = click.make_pass_decorator(App, ensure=True)

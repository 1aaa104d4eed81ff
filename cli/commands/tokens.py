"""`stride token create|list|revoke`: access tokens that act as one athlete."""

from __future__ import annotations

import datetime as dt

import click
from stride.v1 import athlete_pb2

from cli.app import App, athlete_option, common_options, pass_app
from cli.connection import athlete_name, child_name
from cli.output import short_id, timestamp, to_dict
from cli.pages import collect, limit_option, page_size_option
from cli.params import DateOrTime


@click.group(name="token")
def group() -> None:
    """Create, list and revoke an athlete's access tokens."""


@group.command(name="create")
@athlete_option
@click.option("--name", "display_name", default="", help="What the token is for.")
@click.option(
    "--expires",
    type=DateOrTime(),
    help="Expiry (date or ISO time) [default: the server's; an athlete token's own].",
)
@common_options
@pass_app
def create_token(
    app: App, athlete: str | None, display_name: str, expires: dt.datetime | None
) -> None:
    """Create an access token; its secret is shown this once."""
    token = athlete_pb2.AccessToken(display_name=display_name)
    if expires:
        token.expire_time.FromDatetime(expires.astimezone(dt.UTC))
    connection = app.connection
    created = connection.athletes.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(parent=athlete_name(athlete), access_token=token),
        metadata=connection.metadata,
    )
    output = app.output
    if output.as_json:
        output.message(created)
        return
    output.fields(
        [
            ("name", created.name),
            ("display name", created.display_name),
            ("expires", timestamp(created.expire_time, created.HasField("expire_time"))),
            ("token", created.token),
        ]
    )
    output.notice("keep the token now: it is not shown again")


@group.command(name="list")
@athlete_option
@limit_option
@page_size_option
@common_options
@pass_app
def list_tokens(app: App, athlete: str | None, limit: int, page_size: int | None) -> None:
    """List an athlete's access tokens (never their secrets)."""
    parent = athlete_name(athlete)
    connection = app.connection
    found, next_token = collect(
        lambda size, page: connection.athletes.ListAccessTokens(
            athlete_pb2.ListAccessTokensRequest(parent=parent, page_size=size, page_token=page),
            metadata=connection.metadata,
        ),
        lambda page: list(page.access_tokens),
        limit,
        page_size,
    )
    output = app.output
    if output.as_json:
        output.json({"access_tokens": [to_dict(t) for t in found], "next_page_token": next_token})
        return
    output.table(
        ["id", "display name", "created", "expires", "last used"],
        (
            [
                short_id(t.name),
                t.display_name,
                timestamp(t.create_time),
                timestamp(t.expire_time, t.HasField("expire_time")),
                timestamp(t.last_use_time, t.HasField("last_use_time")),
            ]
            for t in found
        ),
        title="Access tokens",
    )


@group.command(name="revoke")
@click.argument("token_name", metavar="TOKEN")
@athlete_option
@common_options
@pass_app
def revoke_token(app: App, token_name: str, athlete: str | None) -> None:
    """Revoke TOKEN (athletes/ID/accessTokens/ID, or its id with --athlete), and every
    token created through it."""
    name = child_name(token_name, "accessTokens", athlete)
    connection = app.connection
    connection.athletes.DeleteAccessToken(
        athlete_pb2.DeleteAccessTokenRequest(name=name), metadata=connection.metadata
    )
    if app.output.as_json:
        app.output.json({"revoked": name})
    else:
        app.output.console.print(f"revoked {name}", markup=False)

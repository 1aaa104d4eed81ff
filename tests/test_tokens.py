"""Access-token rules: revocation is immediate where it happens and bounded elsewhere, a token
cannot create one that outlives it, and revoking a token revokes what it created."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import timestamp_pb2
from stride.v1 import athlete_pb2, athlete_pb2_grpc

from domain.errors import Unauthenticated
from domain.pagination import PageTokens
from domain.tokens import BearerToken, digest
from server.blocking import BlockingRunner
from server.interceptors.auth import Authenticator
from server.principal import Principal
from services.athletes import AthleteService
from services.paging import Paging
from services.tokens import AccessTokenService
from storage import migrate
from storage.database import Database, PoolOptions
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    channel_as,
    make_settings,
    postgres_database,
    reason,
    violations,
)

Stub = athlete_pb2_grpc.AthleteServiceStub

# --- through the real server ----------------------------------------------------------------


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _in(seconds: int) -> dt.datetime:
    """A whole second in the future, so it survives every storage round trip unchanged."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=seconds)


def _athlete(stub: Stub) -> str:
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="UTC")
        )
    ).name


def _create(stub: Stub, athlete: str, expire_time: dt.datetime | None = None) -> Any:
    token = athlete_pb2.AccessToken(display_name="t")
    if expire_time is not None:
        token.expire_time.CopyFrom(_timestamp(expire_time))
    return stub.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(parent=athlete, access_token=token)
    )


def _as(address: str, token: str, call: Callable[[Stub], Any]) -> Any:
    with channel_as(address, token) as channel:
        return call(Stub(channel))


def _get(address: str, token: str, athlete: str) -> Any:
    return _as(address, token, lambda s: s.GetAthlete(athlete_pb2.GetAthleteRequest(name=athlete)))


def _error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    return cast(grpc.Call, _error(call)).code()


def _refused(address: str, token: str, athlete: str) -> bool:
    """Whether the token is refused as unknown, revoked or expired."""
    error = _error(lambda: _get(address, token, athlete))
    code = cast(grpc.Call, error).code()
    return code == grpc.StatusCode.UNAUTHENTICATED and reason(error) == "INVALID_TOKEN"


def _revoke(stub: Stub, name: str) -> None:
    stub.DeleteAccessToken(athlete_pb2.DeleteAccessTokenRequest(name=name))


def _listed(stub: Stub, athlete: str) -> set[str]:
    listed = stub.ListAccessTokens(athlete_pb2.ListAccessTokensRequest(parent=athlete))
    return {t.name for t in listed.access_tokens}


@pytest.fixture
def cached_server(database_url: str | None, tmp_path: Path) -> Iterator[ServerThread]:
    """A server that trusts verified tokens for 30 s."""
    settings = make_settings(tmp_path / "data", database_url, auth_cache_seconds=30)
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def admin(cached_server: ServerThread) -> Iterator[Stub]:
    with channel_as(cached_server.address, ADMIN_TOKEN) as channel:
        yield Stub(channel)


def test_a_revoked_token_is_refused_at_once_by_the_server_that_revoked_it(
    cached_server: ServerThread, admin: Stub
) -> None:
    address = cached_server.address
    ada = _athlete(admin)
    token = _create(admin, ada)
    _get(address, token.token, ada)  # now cached for 30 s
    _revoke(admin, token.name)
    assert _refused(address, token.token, ada)

    # Also when the token revokes itself, and then it cannot mint a successor.
    other = _create(admin, ada)
    _as(address, other.token, lambda s: _revoke(s, other.name))
    assert _code(lambda: _as(address, other.token, lambda s: _create(s, ada))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert _listed(admin, ada) == set()


def test_deleting_the_athlete_refuses_their_cached_tokens_at_once(
    cached_server: ServerThread, admin: Stub
) -> None:
    address = cached_server.address
    ada = _athlete(admin)
    token = _create(admin, ada)
    _get(address, token.token, ada)  # now cached for 30 s
    admin.DeleteAthlete(athlete_pb2.DeleteAthleteRequest(name=ada))
    assert _refused(address, token.token, ada)


def test_revoking_a_token_revokes_the_tokens_it_created(
    cached_server: ServerThread, admin: Stub
) -> None:
    address = cached_server.address
    ada = _athlete(admin)
    parent = _create(admin, ada)
    unrelated = _create(admin, ada)
    child = _as(address, parent.token, lambda s: _create(s, ada))
    grandchild = _as(address, child.token, lambda s: _create(s, ada))
    sibling = _as(address, parent.token, lambda s: _create(s, ada))
    for token in (parent, unrelated, child, grandchild, sibling):
        _get(address, token.token, ada)  # every one is cached now

    # Revoking the child takes the grandchild along, not the parent or the sibling.
    _revoke(admin, child.name)
    for token in (child, grandchild):
        assert _refused(address, token.token, ada)
    assert _listed(admin, ada) == {parent.name, unrelated.name, sibling.name}

    # Revoking the parent takes the sibling along; the operator's other token is untouched.
    _revoke(admin, parent.name)
    for token in (parent, sibling):
        assert _refused(address, token.token, ada)
    assert _get(address, unrelated.token, ada).name == ada
    assert _listed(admin, ada) == {unrelated.name}


def test_a_token_cannot_create_one_that_outlives_it(server: ServerThread, athletes: Stub) -> None:
    address = server.address
    ada = _athlete(athletes)
    expiry = _in(3600)
    limited = _create(athletes, ada, expiry).token

    error = _error(
        lambda: _as(address, limited, lambda s: _create(s, ada, expiry + dt.timedelta(seconds=1)))
    )
    assert cast(grpc.Call, error).code() == grpc.StatusCode.INVALID_ARGUMENT
    described = violations(error)["access_token.expire_time"]
    assert expiry.isoformat().replace("+00:00", "Z") in described

    # Omitting the expiry means "as long as the calling token", not "never".
    defaulted = _as(address, limited, lambda s: _create(s, ada))
    assert defaulted.expire_time.ToDatetime(tzinfo=dt.UTC) == expiry
    same = _as(address, limited, lambda s: _create(s, ada, expiry))
    assert same.expire_time.ToDatetime(tzinfo=dt.UTC) == expiry
    shorter = _as(address, limited, lambda s: _create(s, ada, expiry - dt.timedelta(minutes=5)))
    assert shorter.expire_time.ToDatetime(tzinfo=dt.UTC) == expiry - dt.timedelta(minutes=5)
    # ...and what they create is bounded by them in turn.
    assert _code(lambda: _as(address, shorter.token, lambda s: _create(s, ada, expiry))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )

    # The operator may create any expiry, including none; a token that never expires may too.
    forever = _create(athletes, ada)
    assert not forever.HasField("expire_time")
    also_forever = _as(address, forever.token, lambda s: _create(s, ada))
    assert not also_forever.HasField("expire_time")
    later = _in(7200)
    bounded = _as(address, forever.token, lambda s: _create(s, ada, later))
    assert bounded.expire_time.ToDatetime(tzinfo=dt.UTC) == later


@pytest.fixture
def servers_on_one_database(
    tmp_path: Path, postgres_template: str
) -> Iterator[tuple[ServerThread, ...]]:
    """Three processes' worth of servers on one PostgreSQL database: one trusting tokens for
    30 s, one looking every token up (auth cache 0), and one where tokens get revoked."""
    with (
        postgres_database(template=postgres_template) as url,
        ServerThread(make_settings(tmp_path / "a", url, auth_cache_seconds=30)) as caching,
        ServerThread(make_settings(tmp_path / "b", url, auth_cache_seconds=0)) as uncached,
        ServerThread(make_settings(tmp_path / "c", url, auth_cache_seconds=30)) as revoking,
    ):
        yield caching, uncached, revoking


def test_a_token_revoked_on_another_server(
    servers_on_one_database: tuple[ServerThread, ...],
) -> None:
    caching, uncached, revoking = (s.address for s in servers_on_one_database)
    with channel_as(revoking, ADMIN_TOKEN) as channel:
        admin = Stub(channel)
        ada = _athlete(admin)
        parent = _create(admin, ada)
        child = _as(revoking, parent.token, lambda s: _create(s, ada))
        for address in (caching, uncached, revoking):
            for token in (parent, child):
                _get(address, token.token, ada)
        _revoke(admin, parent.name)

        # Refused at once by the revoking server and by one that looks tokens up each call...
        for address in (uncached, revoking):
            for token in (parent, child):
                assert _refused(address, token.token, ada)
        # ...trusted by a caching server until its cache period ends (tested with a clock
        # below), yet even there it can no longer create a token.
        assert _get(caching, parent.token, ada).name == ada
        error = _error(lambda: _as(caching, parent.token, lambda s: _create(s, ada)))
        assert cast(grpc.Call, error).code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason(error) == "INVALID_TOKEN"
        assert _listed(admin, ada) == set()


# --- the authenticator, with an injected clock ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def database(database_url: str | None, tmp_path: Path) -> Iterator[Database]:
    url = database_url or f"sqlite:///{tmp_path / 'stride.db'}"
    database = Database(url, [], PoolOptions(size=2, max_overflow=2))
    if database_url is None:
        migrate.upgrade(database.primary)  # PostgreSQL databases are clones of a migrated one
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def runner() -> Iterator[BlockingRunner]:
    runner = BlockingRunner(2)
    try:
        yield runner
    finally:
        runner.shutdown()


def _service(database: Database) -> AccessTokenService:
    """A process's token service (each server process builds its own)."""
    return AccessTokenService(database, Paging(PageTokens(b"k"), 50, 1000))


def _ada(database: Database) -> str:
    from domain.athletes import AthleteProfile

    paging = Paging(PageTokens(b"k"), 50, 1000)
    return (
        AthleteService(database, paging)
        .create(AthleteProfile(display_name="Ada", time_zone="UTC"), "")
        .id
    )


class Harness:
    """One process's authenticator (and the token service it listens to)."""

    def __init__(
        self, database: Database, runner: BlockingRunner, clock: Clock, cache_seconds: float
    ) -> None:
        self.tokens = _service(database)
        self.lookups = 0
        # How a lookup runs: on the runner, unless a test replaces it.
        self.during_lookup: Callable[..., Any] = runner

        async def counting_run(fn: Callable[..., Any], /, *args: Any) -> Any:
            self.lookups += 1
            return await self.during_lookup(fn, *args)

        self.authenticator = Authenticator(
            digest(ADMIN_TOKEN),
            self.tokens,
            cast(BlockingRunner, counting_run),
            cache_seconds,
            clock,
        )

    def principal(self, secret: str) -> Principal:
        return asyncio.run(self.authenticator.principal(f"Bearer {secret}"))

    def refused(self, secret: str) -> bool:
        with pytest.raises(Unauthenticated) as caught:
            self.principal(secret)
        return caught.value.reason == "INVALID_TOKEN"


def test_the_principal_carries_the_token(database: Database, runner: BlockingRunner) -> None:
    here = Harness(database, runner, Clock(), cache_seconds=30)
    ada = _ada(database)
    expiry = _in(3600)
    issued = here.tokens.issue(ada, "", expiry, None)
    principal = here.principal(issued.secret)
    assert principal == Principal(ada, BearerToken(issued.token.id, expiry))
    assert principal.label == f"athletes/{ada}"
    assert hash(principal) == hash(here.principal(issued.secret))  # from the cache
    assert here.principal(ADMIN_TOKEN).token is None


def test_elsewhere_a_revocation_takes_effect_within_the_cache_period(
    database: Database, runner: BlockingRunner
) -> None:
    clock = Clock()
    here = Harness(database, runner, clock, cache_seconds=30)
    elsewhere = _service(database)  # another process revokes
    ada = _ada(database)
    issued = here.tokens.issue(ada, "", None, None)
    here.principal(issued.secret)
    assert here.lookups == 1
    elsewhere.revoke(ada, issued.token.id)
    clock.advance(29.9)
    assert here.principal(issued.secret).athlete_id == ada  # trusted without a lookup...
    assert here.lookups == 1
    clock.advance(0.1)
    assert here.refused(issued.secret)  # ...for STRIDE_AUTH_CACHE_SECONDS at most
    assert here.lookups == 2


def test_here_a_revocation_takes_effect_at_once(database: Database, runner: BlockingRunner) -> None:
    here = Harness(database, runner, Clock(), cache_seconds=30)
    ada = _ada(database)
    parent = here.tokens.issue(ada, "", None, None)
    child = here.tokens.issue(ada, "", None, BearerToken(parent.token.id, None))
    grandchild = here.tokens.issue(ada, "", None, BearerToken(child.token.id, None))
    for issued in (parent, child, grandchild):
        here.principal(issued.secret)
    here.tokens.revoke(ada, parent.token.id)
    for issued in (parent, child, grandchild):
        assert here.refused(issued.secret)


def test_a_lookup_that_overlaps_a_revocation_is_not_cached(
    database: Database, runner: BlockingRunner
) -> None:
    here = Harness(database, runner, Clock(), cache_seconds=30)
    ada = _ada(database)
    issued = here.tokens.issue(ada, "", None, None)

    async def revoked_during_first_lookup(fn: Callable[..., Any], /, *args: Any) -> Any:
        found = await runner(fn, *args)  # the token is read before the revocation commits
        if here.lookups == 1:
            await runner(here.tokens.revoke, ada, issued.token.id)
        return found

    here.during_lookup = revoked_during_first_lookup
    assert here.principal(issued.secret).athlete_id == ada  # concurrent with the revocation
    assert here.refused(issued.secret)
    assert here.lookups == 2


@pytest.mark.parametrize("cache_seconds", [0, 30])
def test_a_token_stops_working_when_it_expires(
    database: Database, runner: BlockingRunner, cache_seconds: float
) -> None:
    clock = Clock()
    here = Harness(database, runner, clock, cache_seconds=cache_seconds)
    ada = _ada(database)
    expiry = _in(60)
    issued = here.tokens.issue(ada, "", expiry, None)
    clock.now = expiry.timestamp() - 1
    assert here.principal(issued.secret).athlete_id == ada
    clock.advance(1)
    assert here.refused(issued.secret)

"""Authentication and authorization through the real server, unary and streaming."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
)

from core.settings import ADMIN_DIGEST_FILE, ADMIN_TOKEN_FILE
from server.app import SERVICE_NAMES
from server.authorization import POLICY
from tests.support import (
    ADMIN_TOKEN,
    LogCapture,
    ServerThread,
    channel_as,
    make_settings,
    reason,
    seed_activity_with_samples,
)


def _athlete(stub: athlete_pb2_grpc.AthleteServiceStub, name: str) -> str:
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name=name, time_zone="UTC")
        )
    ).name


def _token(stub: athlete_pb2_grpc.AthleteServiceStub, athlete: str, **fields: object) -> str:
    created = stub.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(
            parent=athlete,
            access_token=athlete_pb2.AccessToken(**fields),  # type: ignore[arg-type]
        )
    )
    assert created.token.startswith("stride_at_")
    return created.token


def _revoke_all(stub: athlete_pb2_grpc.AthleteServiceStub, athlete: str) -> None:
    listed = stub.ListAccessTokens(athlete_pb2.ListAccessTokensRequest(parent=athlete))
    for token in listed.access_tokens:
        stub.DeleteAccessToken(athlete_pb2.DeleteAccessTokenRequest(name=token.name))


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return cast(grpc.Call, caught.value).code()


@pytest.fixture
def ada(athletes: athlete_pb2_grpc.AthleteServiceStub) -> str:
    return _athlete(athletes, "Ada")


def test_every_method_has_an_authorization_rule() -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    methods = {
        f"/{service}/{method.name}"
        for service in SERVICE_NAMES
        for method in pool.FindServiceByName(service).methods
    }
    assert methods == set(POLICY)


def test_missing_malformed_and_unknown_tokens_are_unauthenticated(
    server: ServerThread, ada: str
) -> None:
    request = athlete_pb2.GetAthleteRequest(name=ada)
    for token, expected_reason in [
        (None, "MISSING_CREDENTIALS"),
        ("stride_at_not-a-real-token", "INVALID_TOKEN"),
        ("stride_admin_wrong", "INVALID_TOKEN"),
    ]:
        with channel_as(server.address, token) as channel:
            stub = athlete_pb2_grpc.AthleteServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetAthlete(request)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, token
        assert reason(caught.value) == expected_reason
    basic = "Basic dXNlcjpwdw=="
    with channel_as(server.address, None, authorization=basic) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        assert _code(lambda: stub.GetAthlete(request)) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetAthlete(request)
    assert reason(caught.value) == "MALFORMED_CREDENTIALS"


def test_athlete_token_reaches_only_its_own_resources(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str
) -> None:
    bob = _athlete(athletes, "Bob")
    token = _token(athletes, ada, display_name="phone")
    with channel_as(server.address, token) as channel:
        as_ada = athlete_pb2_grpc.AthleteServiceStub(channel)
        activities = activity_pb2_grpc.ActivityServiceStub(channel)
        assert as_ada.GetAthlete(athlete_pb2.GetAthleteRequest(name=ada)).display_name == "Ada"
        for call in (
            lambda: as_ada.GetAthlete(athlete_pb2.GetAthleteRequest(name=bob)),
            lambda: as_ada.GetAthlete(athlete_pb2.GetAthleteRequest(name="athletes/missing")),
            lambda: as_ada.ListAthletes(athlete_pb2.ListAthletesRequest()),
            lambda: as_ada.CreateAthlete(athlete_pb2.CreateAthleteRequest()),
            lambda: activities.ListActivities(activity_pb2.ListActivitiesRequest(parent=bob)),
            lambda: as_ada.UpdateAthlete(
                athlete_pb2.UpdateAthleteRequest(athlete=athlete_pb2.Athlete(name=bob))
            ),
        ):
            assert _code(call) == grpc.StatusCode.PERMISSION_DENIED
        listed = activities.ListActivities(activity_pb2.ListActivitiesRequest(parent=ada))
        assert list(listed.activities) == []


def test_streaming_calls_are_checked_too(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str
) -> None:
    assert server.running is not None
    owner_id, activity_id = seed_activity_with_samples(server.running.database, 25)
    owner = f"athletes/{owner_id}"
    name = f"{owner}/activities/{activity_id}"
    request = activity_pb2.StreamActivitySamplesRequest(name=name)
    revoked = _token(athletes, owner)
    _revoke_all(athletes, owner)
    cases = [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("stride_at_bogus", grpc.StatusCode.UNAUTHENTICATED),
        (revoked, grpc.StatusCode.UNAUTHENTICATED),
        (_token(athletes, ada), grpc.StatusCode.PERMISSION_DENIED),
    ]
    for token, expected in cases:
        with channel_as(server.address, token) as channel:
            stream = activity_pb2_grpc.ActivityServiceStub(channel).StreamActivitySamples(request)
            with pytest.raises(grpc.RpcError) as caught:
                list(stream)
        assert caught.value.code() == expected
    with channel_as(server.address, _token(athletes, owner)) as channel:
        chunks = list(activity_pb2_grpc.ActivityServiceStub(channel).StreamActivitySamples(request))
    assert sum(len(c.samples) for c in chunks) == 25


def test_client_stream_is_authorized_on_its_first_message(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str
) -> None:
    bob = _athlete(athletes, "Bob")
    header = activity_pb2.UploadHeader(parent=bob, file_name="run.gpx")
    requests = [
        activity_pb2.UploadActivityFileRequest(header=header),
        activity_pb2.UploadActivityFileRequest(chunk=b"<gpx/>"),
    ]
    with channel_as(server.address, _token(athletes, ada)) as channel:
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.UploadActivityFile(iter(requests))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_jobs_follow_their_name_and_every_athlete_is_for_the_operator(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str
) -> None:
    bob = _athlete(athletes, "Bob")
    own, foreign = f"{ada}/jobs/0123abcd", f"{bob}/jobs/0123abcd"
    with channel_as(server.address, _token(athletes, ada)) as channel:
        jobs = job_pb2_grpc.JobServiceStub(channel)
        # Past authorization: the own (missing) job is NOT_FOUND, the own list answers.
        assert _code(lambda: jobs.GetJob(job_pb2.GetJobRequest(name=own))) == (
            grpc.StatusCode.NOT_FOUND
        )
        assert not jobs.ListJobs(job_pb2.ListJobsRequest(parent=ada)).jobs
        for call in (
            lambda: jobs.GetJob(job_pb2.GetJobRequest(name=foreign)),
            lambda: jobs.CancelJob(job_pb2.CancelJobRequest(name=foreign)),
            lambda: list(jobs.WatchJob(job_pb2.WatchJobRequest(name=foreign))),
            lambda: jobs.ListJobs(job_pb2.ListJobsRequest(parent=bob)),
        ):
            assert _code(call) == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as caught:
            jobs.ListJobs(job_pb2.ListJobsRequest(parent="athletes/-"))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason(caught.value) == "ADMIN_ONLY"
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        jobs = job_pb2_grpc.JobServiceStub(channel)
        every = job_pb2.ListJobsRequest(parent="athletes/-")
        assert not jobs.ListJobs(every).jobs  # the operator may list across athletes


def test_revoked_and_expired_tokens_stop_working(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str
) -> None:
    token = _token(athletes, ada)
    request = athlete_pb2.GetAthleteRequest(name=ada)
    with channel_as(server.address, token) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        stub.GetAthlete(request)
        (listed,) = athletes.ListAccessTokens(
            athlete_pb2.ListAccessTokensRequest(parent=ada)
        ).access_tokens
        assert listed.token == ""  # secrets are shown only once
        assert listed.HasField("last_use_time")
        _revoke_all(athletes, ada)
        assert _code(lambda: stub.GetAthlete(request)) == grpc.StatusCode.UNAUTHENTICATED
    # Expiry, and the cache period on other processes, are tested with an injected clock in
    # tests/test_tokens.py.


def test_admin_methods_need_the_admin_token(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str
) -> None:
    with channel_as(server.address, _token(athletes, ada)) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            admin.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(caught.value) == "ADMIN_ONLY"


def test_health_and_reflection_need_no_token(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest()
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def generated_admin(tmp_path: Path) -> Iterator[tuple[ServerThread, Path]]:
    data_dir = tmp_path / "data"
    with ServerThread(make_settings(data_dir, None, admin_token=None)) as running:
        yield running, data_dir


def test_embedded_default_generates_an_owner_only_admin_token(
    generated_admin: tuple[ServerThread, Path], logs: LogCapture
) -> None:
    running, data_dir = generated_admin
    token_file = data_dir / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in (data_dir / ADMIN_DIGEST_FILE).read_text()
    with channel_as(running.address, token) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        assert stub.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest()).overall
    assert token not in logs.text

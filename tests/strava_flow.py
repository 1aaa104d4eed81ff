"""Driving Stride's Strava features through its API against the simulator: settings that
point a server or worker at a simulator, and the steps a client takes (create an athlete,
connect with a pasted code, sync, watch the job)."""

from __future__ import annotations

from typing import Any, Protocol

import grpc
from stride.v1 import athlete_pb2, athlete_pb2_grpc, job_pb2, job_pb2_grpc, sync_pb2, sync_pb2_grpc

from tests.strava_sim import SimConfig

ENCRYPTION_KEY = "test-token-encryption-key"


class Simulator(Protocol):
    """What these helpers use of a simulator: in-process (`StravaSimulator`) or remote."""

    @property
    def config(self) -> SimConfig: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_url(self) -> str: ...
    def authorize(self, athlete_id: int) -> str: ...


def strava_overrides(sim: Simulator, **extra: Any) -> dict[str, Any]:
    """`make_settings` overrides for a server or worker using `sim` as Strava. Scheduled
    syncs and reconciles are off, so a test's jobs are its own (tests of the schedule turn
    them on)."""
    values: dict[str, Any] = {
        "strava_sync_interval_seconds": 0,
        "strava_reconcile_interval_seconds": 0,
        "strava_client_id": str(sim.config.client_id),
        "strava_client_secret": sim.config.client_secret,
        "strava_api_url": sim.api_url,
        "strava_oauth_url": f"{sim.base_url}/oauth",
        "strava_verify_token": "verify-me",
        "token_encryption_key": ENCRYPTION_KEY,
        "strava_short_window_seconds": sim.config.short_window,
        "strava_long_window_seconds": sim.config.long_window,
        "strava_max_attempts": 3,
        "strava_read_timeout_seconds": 5.0,
    }
    values.update(extra)
    return values


def strava_env(sim: Simulator, **extra: Any) -> dict[str, str]:
    """The same as environment variables (for `stride-worker` processes)."""
    return {f"STRIDE_{k.upper()}": str(v) for k, v in strava_overrides(sim, **extra).items()}


def create_athlete(channel: grpc.Channel, name: str = "Runner") -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    return str(
        stub.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name=name, time_zone="Europe/Paris")
            )
        ).name
    )


def connection_name(athlete: str) -> str:
    return f"{athlete}/stravaConnection"


def watch(
    channel: grpc.Channel, job_name: str, after: int = 0, timeout: float = 120.0
) -> list[Any]:
    """Every event of the job after `after` until it ends (heartbeats left out)."""
    stub = job_pb2_grpc.JobServiceStub(channel)
    events = []
    request = job_pb2.WatchJobRequest(name=job_name, after_sequence=after)
    for event in stub.WatchJob(request, timeout=timeout):
        if event.heartbeat:
            continue
        events.append(event)
    return events


def connect(channel: grpc.Channel, athlete: str, sim: Simulator, strava_id: int) -> Any:
    """Connect with a pasted code and wait for the connect job; returns its last event."""
    sync = sync_pb2_grpc.SyncServiceStub(channel)
    job = sync.ConnectStrava(
        sync_pb2.ConnectStravaRequest(name=connection_name(athlete), code=sim.authorize(strava_id))
    )
    return watch(channel, job.name)[-1]


def sync_stub(channel: grpc.Channel) -> sync_pb2_grpc.SyncServiceStub:
    return sync_pb2_grpc.SyncServiceStub(channel)

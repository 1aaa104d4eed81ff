"""The full interceptor chain against the same server and handler without interceptors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc
from stride.v1 import activity_pb2, athlete_pb2, athlete_pb2_grpc

from bench.load import Result, measure
from bench.processes import ADMIN_METADATA, ADMIN_TOKEN, stride_server
from bench.reads import seed

METHOD = "/stride.v1.ActivityService/GetActivity"


def _athlete_token(address: str, athlete: str) -> str:
    with grpc.insecure_channel(address) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        created = stub.CreateAccessToken(
            athlete_pb2.CreateAccessTokenRequest(
                parent=athlete, access_token=athlete_pb2.AccessToken(display_name="bench")
            ),
            metadata=ADMIN_METADATA,
        )
    return created.token


def _report(label: str, result: Result, baseline: Result) -> None:
    print(result.line(f"  {label}"))
    print(f"  {'':<44} ratio {result.rate / baseline.rate:.2f} of no interceptors")


def run(seconds: float = 4.0) -> None:
    print("GetActivity with the full interceptor chain vs the same server without interceptors")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        athlete, activity = seed(f"sqlite:///{data_dir / 'stride.db'}")
        request = activity_pb2.GetActivityRequest(name=activity)
        settings = {"STRIDE_DATA_DIR": str(data_dir)}
        with stride_server(settings, module="bench.plain_server") as bare:
            baseline = measure(bare, METHOD, request, activity_pb2.Activity, seconds=seconds)
        print(baseline.line("  no interceptors"))
        variants = [
            ("chain, admin token, local limiter", {}, None),
            ("chain, athlete token, local limiter", {}, "athlete"),
            ("chain, admin token, Redis limiter", {"STRIDE_REDIS_URL": "redis://127.0.0.1:6379/8"},
             None),
        ]  # fmt: skip
        for label, extra, who in variants:
            with stride_server({**settings, **extra}) as address:
                token = _athlete_token(address, athlete) if who else ADMIN_TOKEN
                result = measure(
                    address, METHOD, request, activity_pb2.Activity, seconds=seconds,
                    metadata=(("authorization", f"Bearer {token}"),),
                )  # fmt: skip
            _report(label, result, baseline)

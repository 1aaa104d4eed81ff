"""Uploading files to the real server and following the import job, for the import tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from stride.v1 import activity_pb2, activity_pb2_grpc, job_pb2, job_pb2_grpc

from tests.strava_flow import watch

CHUNK = 256 * 1024


def upload_requests(
    athlete: str,
    file_name: str,
    data: bytes,
    *,
    chunk: int = CHUNK,
    size_bytes: int = 0,
    request_id: str = "",
) -> Iterator[activity_pb2.UploadActivityFileRequest]:
    header = activity_pb2.UploadHeader(
        parent=athlete, file_name=file_name, size_bytes=size_bytes, request_id=request_id
    )
    yield activity_pb2.UploadActivityFileRequest(header=header)
    for offset in range(0, len(data), chunk):
        yield activity_pb2.UploadActivityFileRequest(chunk=data[offset : offset + chunk])


def upload(
    channel: grpc.Channel, athlete: str, file_name: str, data: bytes, **options: Any
) -> job_pb2.Job:
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    job: job_pb2.Job = stub.UploadActivityFile(
        upload_requests(athlete, file_name, data, **options), timeout=60
    )
    return job


def import_and_watch(
    channel: grpc.Channel, athlete: str, file_name: str, data: bytes
) -> tuple[job_pb2.Job, list[Any]]:
    """Upload, watch the job to its end; (the job as it ended, every event)."""
    job = upload(channel, athlete, file_name, data)
    events = watch(channel, job.name)
    ended = job_pb2_grpc.JobServiceStub(channel).GetJob(job_pb2.GetJobRequest(name=job.name))
    return ended, events


def zip_of(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_activities(channel: grpc.Channel, athlete: str) -> list[activity_pb2.Activity]:
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    found: list[activity_pb2.Activity] = []
    token = ""
    while True:
        page = stub.ListActivities(
            activity_pb2.ListActivitiesRequest(parent=athlete, page_size=1000, page_token=token)
        )
        found.extend(page.activities)
        token = page.next_page_token
        if not token:
            return found


def item_errors(events: list[Any]) -> dict[str, str]:
    """File name -> the ErrorInfo reason of its item error, from the job's events."""
    from google.rpc import error_details_pb2

    errors: dict[str, str] = {}
    for event in events:
        if event.HasField("item_error"):
            reason = ""
            for detail in event.item_error.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = info.reason
            errors[event.item] = reason
    return errors


def gpx_track(start: dt.datetime, points: int, *, speed: float = 3.0) -> bytes:
    """A GPX 1.1 run: one point a second heading north at `speed` m/s, with heart rate."""
    rows = []
    for i in range(points):
        time = (start + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(
            f'<trkpt lat="{45 + i * speed / 111_195:.7f}" lon="7.0"><ele>{200 + i % 7}</ele>'
            f"<time>{time}</time><extensions><gpxtpx:TrackPointExtension>"
            f"<gpxtpx:hr>{120 + i % 30}</gpxtpx:hr></gpxtpx:TrackPointExtension></extensions>"
            "</trkpt>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="stride-tests" '
        'xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">'
        "<trk><type>running</type><trkseg>" + "".join(rows) + "</trkseg></trk></gpx>"
    ).encode()

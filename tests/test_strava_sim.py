"""The Strava simulator over real HTTP: shapes against Strava's recorded responses, OAuth,
pagination, rate limits, faults, webhooks, determinism, and the ``python -m`` process."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.strava_sim import SimConfig, StravaSimulator, serve
from tests.strava_sim.geo import decode_polyline, strava_timezone
from tests.strava_sim.streams import generate
from tests.strava_sim.world import World

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(
    os.environ.get(
        "STRIDE_STRAVA_FIXTURES", ROOT.parent / "shared" / "fixtures" / "real" / "strava_api"
    )
)
SECRET = "sim-client-secret"
TLS = ssl.create_default_context()
CLIENT_ID = 12345
# Fields of the 2013/2014 recordings that today's API no longer sends (the 2025 recordings
# of the same endpoints lack them).
LEGACY_KEYS = {"guid", "start_latitude", "start_longitude", "truncated"}
# Fields the recorded run lacks because its device had no power meter or no cadence sensor.
SENSOR_KEYS = {
    "average_watts",
    "kilojoules",
    "device_watts",
    "max_watts",
    "weighted_average_watts",
    "average_cadence",
    "average_temp",
}


# -- helpers --------------------------------------------------------------------------------------


def fixture(name: str) -> Any:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"Strava's recorded responses are not at {FIXTURES}")
    return json.loads(path.read_text())


def _types_by_key() -> dict[str, set[str]]:
    """JSON types each key name has anywhere in the recordings (``0`` for a float field)."""
    found: dict[str, set[str]] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                found.setdefault(key, set()).add(_kind(item))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if FIXTURES.exists():
        for path in FIXTURES.glob("*.json"):
            walk(json.loads(path.read_text()))
    return found


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, list) else "dict"


TYPES_BY_KEY = _types_by_key()


def shape_problems(
    recorded: Any, mine: Any, path: str = "$", ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Where ``mine`` departs from a recorded response: a missing key, or a non-null value of
    another JSON type (numbers: an int field stays int; a key recorded as float anywhere may
    be float). Extra keys are reported by the callers that care."""
    if recorded is None or mine is None:
        return []
    allowed = TYPES_BY_KEY.get(path.rsplit(".", 1)[-1], set()) | {_kind(recorded)}
    if _kind(mine) not in allowed:
        return [f"{path}: recorded {_kind(recorded)}, simulator {_kind(mine)}"]
    problems: list[str] = []
    if isinstance(recorded, dict) and isinstance(mine, dict):
        for name in sorted(set(recorded) - set(mine) - ignore):
            problems.append(f"{path}.{name}: missing")
        for name in sorted(set(recorded) & set(mine)):
            problems += shape_problems(recorded[name], mine[name], f"{path}.{name}")
    elif isinstance(recorded, list) and isinstance(mine, list) and recorded and mine:
        for index, item in enumerate(mine[:4]):
            problems += shape_problems(recorded[min(index, len(recorded) - 1)], item, f"{path}[]")
    return problems


def http(sim: StravaSimulator) -> httpx.Client:
    """A client for the simulator (one shared TLS context: building one per client is slow)."""
    return httpx.Client(base_url=sim.base_url, timeout=10, verify=TLS)


@contextmanager
def connect(
    sim: StravaSimulator, athlete_id: int, scope: str = "read,activity:read_all"
) -> Iterator[httpx.Client]:
    """A client holding a bearer token obtained through the real OAuth endpoints."""
    with http(sim) as client:
        tokens = client.post(
            "/oauth/token",
            data={
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "code": sim.authorize(athlete_id, scope),
                "grant_type": "authorization_code",
            },
        ).json()
        client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        yield client


def all_activities(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        batch = client.get(
            "/api/v3/athlete/activities", params={**params, "page": page, "per_page": 200}
        ).json()
        found += batch
        if len(batch) < 200:
            return found
        page += 1


@pytest.fixture(scope="module")
def sim() -> Iterator[StravaSimulator]:
    """A read-only simulator shared by the shape tests (tests that change state make theirs)."""
    with StravaSimulator(SimConfig(seed=7, athletes=3, activities=40, stream_step=10)) as running:
        yield running


@pytest.fixture(scope="module")
def everything(sim: StravaSimulator) -> dict[int, list[dict[str, Any]]]:
    """Every athlete's full activity list (with private ones)."""
    out = {}
    for athlete_id in sim.athlete_ids:
        with connect(sim, athlete_id) as client:
            out[athlete_id] = all_activities(client)
    return out


def _pick(everything: dict[int, list[dict[str, Any]]], **wanted: Any) -> tuple[int, dict[str, Any]]:
    for athlete_id, activities in everything.items():
        for activity in activities:
            if all(
                (activity.get(key) == value) if not callable(value) else value(activity.get(key))
                for key, value in wanted.items()
            ):
                return athlete_id, activity
    raise AssertionError(f"no simulated activity with {wanted}")


# -- shapes against the recordings ----------------------------------------------------------------


def test_summary_activity_has_every_recorded_field_and_type(
    everything: dict[int, list[dict[str, Any]]],
) -> None:
    recorded = fixture("athlete_activities_list_runs_2025.json")
    _, run = _pick(
        everything,
        sport_type="Run",
        has_heartrate=True,
        manual=False,
        average_temp=lambda t: t is not None,  # the recorded runs had a thermometer
    )
    assert run["start_latlng"], "a GPS run"
    for item in recorded:
        assert shape_problems(item, run) == []
    assert set(run) - set(recorded[0]) <= SENSOR_KEYS
    # Every kind of activity keeps the recorded keys but those its sensors could not record.
    optional = {"average_heartrate", "max_heartrate", "suffer_score", "elev_high", "elev_low"}
    optional |= {"upload_id_str", "average_temp", "average_cadence"}
    for activities in everything.values():
        for activity in activities:
            assert set(recorded[0]) - set(activity) <= optional
            assert shape_problems(recorded[0], activity, ignore=frozenset(optional)) == []


def test_detailed_activity_has_every_recorded_field_and_type(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    marathon = fixture("activity_detailed_run_nyc-marathon.json")
    old_run = fixture("activity_detailed_run_2013.json")
    athlete_id, run = _pick(
        everything,
        sport_type="Run",
        has_heartrate=True,
        manual=False,
        total_photo_count=lambda n: n > 0,
        gear_id=lambda g: g is not None,
        id=lambda i: i % 3 != 0,  # has segment efforts
    )
    with connect(sim, athlete_id) as client:
        response = client.get(f"/api/v3/activities/{run['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    detail = response.json()
    assert shape_problems(marathon, detail) == []
    assert shape_problems(old_run, detail, ignore=frozenset(LEGACY_KEYS)) == []
    assert set(detail) - set(marathon) <= SENSOR_KEYS
    assert detail["resource_state"] == 3
    assert detail["map"]["polyline"]
    # The detail repeats the summary's numbers.
    for key in ("distance", "moving_time", "elapsed_time", "start_date", "timezone", "name"):
        assert detail[key] == run[key]
    assert detail["laps"][0]["start_index"] == 0
    assert sum(lap["distance"] for lap in detail["laps"]) == pytest.approx(run["distance"], abs=1)
    assert sum(s["distance"] for s in detail["splits_metric"]) == pytest.approx(
        run["distance"], abs=1
    )
    assert {e["name"] for e in detail["best_efforts"]} >= {"400m", "1k"}


def test_manual_activity_matches_the_recorded_manual_one_and_has_no_streams(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    recorded = fixture("activity_manual_hike.json")
    athlete_id, manual = _pick(everything, manual=True)
    with connect(sim, athlete_id) as client:
        detail = client.get(f"/api/v3/activities/{manual['id']}").json()
        assert shape_problems(recorded, detail, ignore=frozenset(LEGACY_KEYS)) == []
        assert detail["map"]["summary_polyline"] == ""
        assert detail["start_latlng"] == []
        assert detail["upload_id"] is None
        assert detail["external_id"] is None
        streams = client.get(
            f"/api/v3/activities/{manual['id']}/streams",
            params={"keys": "time,heartrate", "key_by_type": "true"},
        )
        # What Strava answers for an activity without streams.
        assert streams.status_code == 404
        assert streams.json() == {"message": "Resource Not Found", "errors": []}
        assert client.get(f"/api/v3/activities/{manual['id']}/laps").json() == []


def test_athlete_matches_the_recorded_detailed_athlete(sim: StravaSimulator) -> None:
    recorded = fixture("athlete_current_2025.json")
    with connect(sim, sim.athlete_ids[1]) as client:
        athlete = client.get("/api/v3/athlete").json()
    assert shape_problems(recorded, athlete) == []
    assert set(athlete) == set(recorded)
    assert athlete["id"] == sim.athlete_ids[1]
    assert athlete["resource_state"] == 3
    gear = athlete["shoes"] + athlete["bikes"]
    assert gear
    assert all(shape_problems(recorded["shoes"][0], g) == [] for g in gear)


def test_streams_match_the_recorded_streams(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    by_type = fixture("activity_streams_key-by-type_distance-only_run.json")
    as_list = fixture("activity_streams_list_all-types_ride_2010.json")
    athlete_id, ride = _pick(
        everything,
        sport_type="Ride",
        trainer=False,
        average_watts=lambda w: w is not None,
        average_temp=lambda t: t is not None,
        has_heartrate=True,
    )
    url = f"/api/v3/activities/{ride['id']}/streams"
    with connect(sim, athlete_id) as client:
        # As recorded: key_by_type without keys answers the distance stream only.
        plain = client.get(url, params={"key_by_type": "true"}).json()
        assert list(plain) == ["distance"]
        assert shape_problems(by_type, plain) == []
        assert plain["distance"]["resolution"] == "high"
        assert plain["distance"]["original_size"] == len(plain["distance"]["data"])
        everything_list = client.get(
            url, params={"keys": ",".join(s["type"] for s in as_list)}
        ).json()
        keyed = client.get(
            url,
            params={"keys": "time,latlng,altitude,heartrate,cadence,watts", "key_by_type": "true"},
        ).json()
        low = client.get(url, params={"keys": "time", "resolution": "low"}).json()
    assert [s["type"] for s in everything_list] == [s["type"] for s in as_list]
    for recorded, mine in zip(as_list, everything_list, strict=True):
        assert shape_problems(recorded, mine) == []
    # The requested types plus the series stream (distance), whatever the order asked.
    assert set(keyed) == {"time", "latlng", "altitude", "heartrate", "cadence", "watts", "distance"}
    assert {len(s["data"]) for s in keyed.values()} == {keyed["time"]["original_size"]}
    assert {s["type"] for s in low} == {"time", "distance"}
    assert all(len(s["data"]) == 100 and s["resolution"] == "low" for s in low)


def test_laps_and_zones_match_the_recorded_ones(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    marathon = fixture("activity_detailed_run_nyc-marathon.json")
    recorded_zones = fixture("activity_zones_hr-pace.json")
    athlete_id, run = _pick(everything, sport_type="Run", has_heartrate=True, manual=False)
    with connect(sim, athlete_id) as client:
        laps = client.get(f"/api/v3/activities/{run['id']}/laps").json()
        zones = client.get(f"/api/v3/activities/{run['id']}/zones").json()
    assert laps
    assert all(shape_problems(marathon["laps"][0], lap) == [] for lap in laps)
    assert [z["type"] for z in zones] == ["heartrate", "pace"]
    for recorded, mine in zip(recorded_zones, zones, strict=True):
        assert shape_problems(recorded, mine) == []
        assert set(mine) == set(recorded)
    assert sum(b["time"] for b in zones[0]["distribution_buckets"]) == run["elapsed_time"]


def test_token_response_and_summary_athlete(sim: StravaSimulator) -> None:
    recorded = fixture("athlete_current_2025.json")
    code = sim.authorize(sim.athlete_ids[0], "read,activity:read")
    with http(sim) as client:
        response = _token(client, code=code, grant_type="authorization_code")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {
        "token_type",
        "expires_at",
        "expires_in",
        "refresh_token",
        "access_token",
        "athlete",
    }
    assert body["token_type"] == "Bearer"
    assert 21590 <= body["expires_in"] <= 21600
    assert body["expires_at"] == pytest.approx(time.time() + 21600, abs=5)
    athlete = body["athlete"]
    # The summary athlete (resource_state 2): the detailed one without counts, clubs, gear.
    summary_keys = set(recorded) - {
        "blocked",
        "can_follow",
        "follower_count",
        "friend_count",
        "mutual_friend_count",
        "athlete_type",
        "date_preference",
        "measurement_preference",
        "clubs",
        "postable_clubs_count",
        "ftp",
        "bikes",
        "shoes",
    }
    assert athlete["resource_state"] == 2
    assert set(athlete) == summary_keys
    assert shape_problems(recorded, athlete, ignore=frozenset(set(recorded) - summary_keys)) == []


# -- realism and consistency ---------------------------------------------------------------------


def test_streams_agree_with_the_summary(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    athlete_id, run = _pick(everything, sport_type="Run", has_heartrate=True, manual=False)
    with connect(sim, athlete_id) as client:
        streams = client.get(
            f"/api/v3/activities/{run['id']}/streams",
            params={
                "keys": "time,distance,latlng,altitude,heartrate,cadence,moving,velocity_smooth,"
                "grade_smooth",
                "key_by_type": "true",
            },
        ).json()
    data = {name: stream["data"] for name, stream in streams.items()}
    assert data["time"][0] == 0
    assert data["time"][-1] == run["elapsed_time"]
    assert data["distance"][-1] == pytest.approx(run["distance"], abs=0.11)
    assert data["distance"] == sorted(data["distance"])
    assert data["latlng"][0] == run["start_latlng"]
    assert data["latlng"][-1] == run["end_latlng"]
    assert run["elev_low"] <= min(data["altitude"]) <= max(data["altitude"]) <= run["elev_high"]
    assert max(data["heartrate"]) == run["max_heartrate"]
    mean_hr = sum(data["heartrate"]) / len(data["heartrate"])
    assert mean_hr == pytest.approx(run["average_heartrate"], abs=1.5)
    assert max(data["velocity_smooth"]) <= run["max_speed"]
    assert run["average_speed"] == pytest.approx(run["distance"] / run["moving_time"], abs=1e-3)
    assert isinstance(data["moving"][1], bool)
    assert isinstance(data["heartrate"][1], int)
    # The track stays near the summary polyline, and steps between samples are plausible.
    polyline = decode_polyline(run["map"]["summary_polyline"])
    assert polyline[0] == pytest.approx(tuple(run["start_latlng"]), abs=1e-5)
    for (lat_a, lng_a), (lat_b, lng_b) in zip(data["latlng"], data["latlng"][1:], strict=False):
        metres = math.hypot(lat_b - lat_a, (lng_b - lng_a) * math.cos(math.radians(lat_a)))
        assert metres * 111_320 < 10 * 10  # under 10 m/s over a 10 s step


def test_one_hertz_streams_have_realistic_sample_counts() -> None:
    world = World(SimConfig(seed=3, athletes=1, activities=12))
    activity = next(
        a for a in world.activities.values() if not a.manual and 1800 <= a.elapsed_time <= 7200
    )
    streams = generate(activity, step=1)
    assert len(streams) == activity.elapsed_time + 1
    assert 1800 < len(streams) <= 7201
    assert streams.time[:3] == [0, 1, 2]


def test_athletes_time_zones_names_and_kinds(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    pattern = re.compile(r"^\(GMT[+-]\d\d:\d\d\) [A-Za-z_]+/[A-Za-z_]+$")
    kinds = set()
    for activities in everything.values():
        for activity in activities:
            assert pattern.match(activity["timezone"]), activity["timezone"]
            start = dt.datetime.fromisoformat(activity["start_date"].replace("Z", "+00:00"))
            local = dt.datetime.fromisoformat(activity["start_date_local"].replace("Z", "+00:00"))
            assert (local - start).total_seconds() == activity["utc_offset"]
            kinds.add(activity["sport_type"])
            if activity["start_latlng"]:
                assert activity["end_latlng"]
                assert activity["map"]["summary_polyline"]
    assert {"Run", "Ride", "Swim", "Hike"} <= kinds
    names = [a["name"] for activities in everything.values() for a in activities]
    assert any(not name.isascii() for name in names)
    assert any(
        a["private"] and a["visibility"] == "only_me" for a in everything[sim.athlete_ids[0]]
    )
    # Standard offset in the label, the offset in force in utc_offset (as Strava records it).
    summer = dt.datetime(2025, 7, 1, 12, tzinfo=dt.UTC)
    assert strava_timezone("America/New_York", summer) == (
        "(GMT-05:00) America/New_York",
        -14400.0,
    )
    assert strava_timezone("Asia/Kolkata", summer) == ("(GMT+05:30) Asia/Kolkata", 19800.0)


def test_same_seed_same_world_other_seed_other_world() -> None:
    config = SimConfig(seed=11, athletes=2, activities=15, stream_step=30)
    with StravaSimulator(config) as first, StravaSimulator(config) as second:
        lists = []
        for running in (first, second):
            with connect(running, running.athlete_ids[1]) as client:
                activities = all_activities(client)
                detail = client.get(f"/api/v3/activities/{activities[0]['id']}").json()
                streams = client.get(
                    f"/api/v3/activities/{activities[0]['id']}/streams",
                    params={"keys": "latlng,heartrate,altitude", "key_by_type": "true"},
                ).json()
                athlete = client.get("/api/v3/athlete").json()
            lists.append((activities, detail, streams, athlete))
        assert lists[0] == lists[1]
        assert first.athlete_ids == second.athlete_ids
    other = World(SimConfig(seed=12, athletes=2, activities=15))
    assert list(other.athletes) != first.athlete_ids
    with serve(config) as base_url, httpx.Client(base_url=base_url, verify=TLS) as client:
        athletes = client.get("/_sim/athletes").json()
        assert [a["id"] for a in athletes] == first.athlete_ids


# -- the list endpoint ----------------------------------------------------------------------------


def test_pagination_before_after_and_order() -> None:
    config = SimConfig(seed=5, athletes=1, activities=230, stream_step=60)
    with StravaSimulator(config) as sim, connect(sim, sim.athlete_ids[0]) as client:
        url = "/api/v3/athlete/activities"
        default = client.get(url).json()
        assert len(default) == 30
        capped = client.get(url, params={"per_page": 500}).json()
        assert len(capped) == 200  # per_page is capped at 200
        everything = all_activities(client)
        assert len(everything) == 230
        starts = [a["start_date"] for a in everything]
        assert starts == sorted(starts, reverse=True)  # newest first
        assert len({a["id"] for a in everything}) == 230
        pages = [client.get(url, params={"page": p, "per_page": 50}).json() for p in (1, 2)]
        assert pages[0] + pages[1] == everything[:100]
        assert client.get(url, params={"page": 99}).json() == []
        assert client.get(url, params={"page": 1, "per_page": 30}).json() == default

        pivot = _epoch(everything[100]["start_date"])
        before = all_activities(client, before=pivot)
        assert before == everything[101:]  # strictly before
        after = all_activities(client, after=pivot)
        # With ``after`` Strava pages forward in time: oldest first.
        assert after == list(reversed(everything[:100]))
        window = all_activities(client, after=pivot, before=_epoch(everything[50]["start_date"]))
        assert window == list(reversed(everything[51:100]))
        bad = client.get(url, params={"per_page": "many"})
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["field"] == "per_page"


def _epoch(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def test_private_activities_and_scopes(
    sim: StravaSimulator, everything: dict[int, list[dict[str, Any]]]
) -> None:
    athlete_id = sim.athlete_ids[0]
    private = [a for a in everything[athlete_id] if a["private"]]
    assert private
    with connect(sim, athlete_id, "read,activity:read") as client:
        public = all_activities(client)
        assert not any(a["private"] for a in public)
        assert len(public) == len(everything[athlete_id]) - len(private)
        assert any(a["visibility"] == "followers_only" for a in public)
        hidden = client.get(f"/api/v3/activities/{private[0]['id']}")
        assert hidden.status_code == 404
        assert hidden.json() == {
            "message": "Record Not Found",
            "errors": [{"resource": "Activity", "field": "id", "code": "invalid"}],
        }
    with connect(sim, athlete_id, "read") as client:
        refused = client.get("/api/v3/athlete/activities")
        assert refused.status_code == 401
        assert refused.json() == {
            "message": "Authorization Error",
            "errors": [
                {"resource": "AccessToken", "field": "activity:read_permission", "code": "missing"}
            ],
        }
        assert client.get("/api/v3/athlete").status_code == 200
    other = everything[sim.athlete_ids[1]][0]
    with connect(sim, athlete_id) as client:
        assert client.get(f"/api/v3/activities/{other['id']}").status_code == 404


# -- OAuth ----------------------------------------------------------------------------------------


def _token(client: httpx.Client, **form: Any) -> httpx.Response:
    return client.post(
        "/oauth/token", data={"client_id": CLIENT_ID, "client_secret": SECRET, **form}
    )


def test_authorize_page_redirects_and_pasted_codes() -> None:
    config = SimConfig(seed=2, athletes=2, activities=3, callback_domain="stride.example")
    with StravaSimulator(config) as sim, http(sim) as client:
        query: dict[str, str | int] = {
            "client_id": CLIENT_ID,
            "redirect_uri": "https://app.stride.example/strava/callback",
            "response_type": "code",
            "approval_prompt": "force",
            "scope": "read,activity:read,activity:read_all",
            "state": "s-42",
        }
        page = client.get("/oauth/authorize", params=query)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        athlete = sim.athlete(sim.athlete_ids[1])
        assert athlete.firstname in page.text
        # The consenting athlete unticks activity:read_all.
        redirect = client.get(
            "/oauth/authorize",
            params={**query, "sim_athlete": athlete.id, "sim_scope": "read,activity:read"},
        )
        assert redirect.status_code == 302
        location = urlsplit(redirect.headers["location"])
        assert location.netloc == "app.stride.example"
        granted = parse_qs(location.query)
        assert granted["state"] == ["s-42"]
        assert granted["scope"] == ["read,activity:read"]
        tokens = _token(client, code=granted["code"][0], grant_type="authorization_code").json()
        assert tokens["athlete"]["id"] == athlete.id
        # Headless: a page showing the code to paste.
        shown = client.get(
            "/oauth/authorize", params={**query, "sim_athlete": athlete.id, "sim_show_code": 1}
        )
        code = re.search(r"<code id=code>([0-9a-f]+)</code>", shown.text)
        assert code is not None
        assert (
            _token(client, code=code.group(1), grant_type="authorization_code").status_code == 200
        )
        denied = client.get("/oauth/authorize", params={**query, "sim_deny": 1})
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
        # Bad requests, with Strava's fault bodies.
        foreign = client.get(
            "/oauth/authorize", params={**query, "redirect_uri": "https://evil.example/cb"}
        )
        assert foreign.status_code == 400
        assert foreign.json()["errors"] == [
            {"resource": "Application", "field": "redirect_uri", "code": "invalid"}
        ]
        assert (
            client.get(
                "/oauth/authorize", params={**query, "redirect_uri": "http://localhost/cb"}
            ).status_code
            == 200
        )
        assert client.get("/oauth/authorize", params={**query, "client_id": 1}).status_code == 400


def test_token_exchange_errors() -> None:
    with (
        StravaSimulator(
            SimConfig(seed=2, athletes=2, activities=2, max_connected_athletes=1)
        ) as sim,
        http(sim) as client,
    ):
        code = sim.authorize(sim.athlete_ids[0])
        wrong = client.post(
            "/oauth/token",
            data={
                "client_id": CLIENT_ID,
                "client_secret": "nope",
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        assert wrong.status_code == 401
        assert wrong.json()["errors"][0]["field"] == "client_secret"
        assert _token(client, code=code, grant_type="authorization_code").status_code == 200
        reused = _token(client, code=code, grant_type="authorization_code")
        assert reused.status_code == 400
        assert reused.json() == {
            "message": "Bad Request",
            "errors": [{"resource": "AuthorizationCode", "field": "code", "code": "invalid"}],
        }
        second = _token(
            client, code=sim.authorize(sim.athlete_ids[1]), grant_type="authorization_code"
        )
        assert second.status_code == 403
        assert second.json()["message"] == "Limit of connected athletes exceeded"
        # JSON bodies are accepted too.
        as_json = client.post(
            "/oauth/token",
            json={
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "code": sim.authorize(sim.athlete_ids[0]),
                "grant_type": "authorization_code",
            },
        )
        assert as_json.status_code == 200
        # Deauthorizing with a bearer header under the API base, as stravalib does.
        access = as_json.json()["access_token"]
        gone = client.post(
            "/api/v3/oauth/deauthorize", headers={"Authorization": f"Bearer {access}"}
        )
        assert gone.json() == {"access_token": access}
        assert sim.count("oauth.deauthorize") == 1


def test_refresh_rotates_and_the_old_refresh_token_lasts_until_the_new_access_token_is_used() -> (
    None
):
    config = SimConfig(
        seed=2, athletes=1, activities=2, access_token_ttl=1800, refresh_policy="until_used"
    )
    with StravaSimulator(config) as sim, http(sim) as client:
        first = sim.tokens(sim.athlete_ids[0])
        rotated = _token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
        new = rotated.json()
        assert rotated.status_code == 200
        assert "athlete" not in new
        assert set(new) == {
            "token_type",
            "access_token",
            "expires_at",
            "expires_in",
            "refresh_token",
        }
        assert new["access_token"] != first["access_token"]
        assert new["refresh_token"] != first["refresh_token"]
        # The client crashed before storing them: the old refresh token still works.
        again = _token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
        assert again.json()["refresh_token"] != first["refresh_token"]
        latest = again.json()
        api = {"Authorization": f"Bearer {latest['access_token']}"}
        assert client.get("/api/v3/athlete", headers=api).status_code == 200
        stale = _token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
        assert stale.status_code == 400
        assert stale.json()["errors"] == [
            {"resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}
        ]
        # Old access tokens keep working until they expire.
        old_api = {"Authorization": f"Bearer {first['access_token']}"}
        assert client.get("/api/v3/athlete", headers=old_api).status_code == 200

    fresh = SimConfig(seed=2, athletes=1, activities=2)  # refresh_policy="immediate"
    with StravaSimulator(fresh) as sim, http(sim) as client:
        tokens = sim.tokens(sim.athlete_ids[0])
        # More than an hour left: Strava hands back the same tokens.
        same = _token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert same.json()["access_token"] == tokens["access_token"]
        assert same.json()["refresh_token"] == tokens["refresh_token"]
        sim.expire_tokens(sim.athlete_ids[0])
        renewed = _token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert renewed.json()["access_token"] != tokens["access_token"]
        old = _token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert old.status_code == 400  # Strava's rule: the rotated-out token is dead at once


def test_expired_tokens_get_strava_401() -> None:
    now = [dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC).timestamp()]
    config = SimConfig(seed=2, athletes=1, activities=2)
    with (
        StravaSimulator(config, clock=lambda: now[0]) as sim,
        http(sim) as client,
    ):
        tokens = sim.tokens(sim.athlete_ids[0])
        api = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get("/api/v3/athlete", headers=api).status_code == 200
        now[0] += 21601  # six hours later
        expired = client.get("/api/v3/athlete", headers=api)
        assert expired.status_code == 401
        assert expired.json() == {
            "message": "Authorization Error",
            "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}],
        }
        # Counted like any request (in a new 15-minute window, the same day).
        assert expired.headers["X-RateLimit-Usage"] == "1,2"
        renewed = _token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        api = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
        assert client.get("/api/v3/athlete", headers=api).status_code == 200
        # Forced expiry through the control API.
        forced = client.post("/_sim/expire_tokens", data={"athlete_id": sim.athlete_ids[0]})
        assert forced.json()["expired"] >= 1
        assert client.get("/api/v3/athlete", headers=api).status_code == 401
        assert client.get("/api/v3/athlete").status_code == 401  # no token at all

    # And on the wall clock, with a one-second lifetime.
    with StravaSimulator(config, access_token_ttl=1) as sim:
        tokens = sim.tokens(sim.athlete_ids[0])
        assert tokens["expires_in"] <= 1
        time.sleep(max(0.0, tokens["expires_at"] - time.time()) + 0.02)
        api = {"Authorization": f"Bearer {tokens['access_token']}"}
        with http(sim) as client:
            assert client.get("/api/v3/athlete", headers=api).status_code == 401


# -- webhooks and deauthorization -----------------------------------------------------------------


class Callback:
    """A subscriber's callback: echoes the challenge for its verify token, records events."""

    def __init__(self, verify_token: str = "stride-verify", failures: int = 0) -> None:
        self.verify_token = verify_token
        self.failures = failures
        self.events: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                ok = query.get("hub.verify_token") == [outer.verify_token]
                body = json.dumps({"hub.challenge": query["hub.challenge"][0]}).encode()
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", str(len(body) if ok else 0))
                self.end_headers()
                if ok:
                    self.wfile.write(body)

            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 200
                with outer.arrived:
                    if outer.failures:
                        outer.failures -= 1
                        status = 500
                    else:
                        outer.events.append(event)
                        outer.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/strava/webhook"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callback() -> Iterator[Callback]:
    hook = Callback(failures=1)
    yield hook
    hook.close()


def test_subscriptions_edits_deletions_and_events(callback: Callback) -> None:
    config = SimConfig(seed=4, athletes=2, activities=12, stream_step=30, webhook_retry_delay=0.05)
    with StravaSimulator(config) as sim, http(sim) as app:
        creds = {"client_id": str(CLIENT_ID), "client_secret": SECRET}
        refused = app.post(
            "/api/v3/push_subscriptions",
            data={**creds, "callback_url": callback.url, "verify_token": "wrong"},
        )
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["resource"] == "PushSubscription"
        # Multipart, as Strava's documentation sends it (curl -F).
        created = app.post(
            "/api/v3/push_subscriptions",
            files={
                key: (None, value)
                for key, value in {
                    **creds,
                    "callback_url": callback.url,
                    "verify_token": callback.verify_token,
                }.items()
            },
        )
        assert created.status_code == 201
        subscription_id = created.json()["id"]
        listed = app.get("/api/v3/push_subscriptions", params=creds).json()
        assert listed[0]["id"] == subscription_id
        assert listed[0]["callback_url"] == callback.url
        assert set(listed[0]) == {
            "id",
            "resource_state",
            "application_id",
            "callback_url",
            "created_at",
            "updated_at",
        }
        again = app.post(
            "/api/v3/push_subscriptions",
            data={**creds, "callback_url": callback.url, "verify_token": callback.verify_token},
        )
        assert again.json()["errors"][0]["code"] == "already exists"

        athlete_id = sim.athlete_ids[0]
        with connect(sim, athlete_id) as client:
            victim, renamed = all_activities(client)[:2]
            sim.rename_activity(renamed["id"], "Renamed on Strava ✏️")
            sim.delete_activity(victim["id"])
            added = sim.add_activity(athlete_id, sport_type="Run")
            events = callback.wait_for(3)
            listing = all_activities(client)
            assert listing[0]["id"] == added.id
            assert {a["id"]: a["name"] for a in listing}[renamed["id"]] == "Renamed on Strava ✏️"
            assert victim["id"] not in {a["id"] for a in listing}
            assert client.get(f"/api/v3/activities/{victim['id']}").status_code == 404
            # Edits without an event (a missed webhook), through the control API.
            quiet = app.patch(
                f"/_sim/activities/{listing[1]['id']}",
                params={"notify": "false"},
                json={"name": "Quietly renamed"},
            )
            assert quiet.json()["name"] == "Quietly renamed"
        assert [(e["aspect_type"], e["object_id"]) for e in events] == [
            ("update", renamed["id"]),
            ("delete", victim["id"]),
            ("create", added.id),
        ]
        assert events[0]["updates"] == {"title": "Renamed on Strava ✏️"}
        assert set(events[0]) == {
            "aspect_type",
            "event_time",
            "object_id",
            "object_type",
            "owner_id",
            "subscription_id",
            "updates",
        }
        assert events[0]["owner_id"] == athlete_id
        assert events[0]["subscription_id"] == subscription_id
        assert sim.webhooks.deliveries[0].attempts == [500, 200]  # retried after a failure

        # The athlete disconnects through the app: tokens die, an athlete event follows.
        with connect(sim, athlete_id) as client:
            token = client.headers["Authorization"].split()[1]
            gone = app.post("/oauth/deauthorize", data={"access_token": token})
            assert gone.json() == {"access_token": token}
            assert client.get("/api/v3/athlete").status_code == 401
        last = callback.wait_for(4)[-1]
        assert last["object_type"] == "athlete"
        assert last["updates"] == {"authorized": "false"}
        # An event pushed by hand, through the control API.
        pushed = app.post(
            "/_sim/events",
            json={
                "object_id": 1,
                "owner_id": athlete_id,
                "aspect_type": "update",
                "updates": {"private": "true"},
                "wait": True,
            },
        ).json()
        assert pushed["delivered"] is True
        deleted = app.delete(f"/api/v3/push_subscriptions/{subscription_id}", params=creds)
        assert deleted.status_code == 204
        assert app.get("/api/v3/push_subscriptions", params=creds).json() == []


# -- rate limits ----------------------------------------------------------------------------------


def _next_window(length: float) -> None:
    """Sleep until just after the next epoch-aligned window starts."""
    now = time.time()
    time.sleep((math.floor(now / length) + 1) * length - now + 0.02)


def _usage(response: httpx.Response) -> tuple[str, str]:
    return response.headers["X-RateLimit-Usage"], response.headers["X-ReadRateLimit-Usage"]


def test_rate_limit_windows_reset_at_quarter_hours_and_midnight_utc() -> None:
    now = [dt.datetime(2025, 6, 1, 23, 44, 58, tzinfo=dt.UTC).timestamp()]
    config = SimConfig(seed=2, athletes=1, activities=3, read_limits=(2, 5))
    with (
        StravaSimulator(config, clock=lambda: now[0]) as sim,
        connect(sim, sim.athlete_ids[0]) as client,
    ):
        first = client.get("/api/v3/athlete")
        assert first.headers["X-RateLimit-Limit"] == "200,2000"
        assert first.headers["X-ReadRateLimit-Limit"] == "2,5"
        assert _usage(first) == ("1,1", "1,1")
        assert client.get("/api/v3/athlete").status_code == 200
        limited = client.get("/api/v3/athlete/activities")
        assert limited.status_code == 429
        assert limited.json() == {
            "message": "Rate Limit Exceeded",
            "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
        }
        assert _usage(limited) == ("3,3", "3,3")  # rejected requests count too
        now[0] += 2  # 23:45:00, a new 15-minute window
        assert [client.get("/api/v3/athlete").status_code for _ in range(3)] == [200, 200, 429]
        now[0] += 14 * 60 + 59  # 23:59:59: same window, the day's reads are spent as well
        late = client.get("/api/v3/athlete")
        assert late.status_code == 429
        assert _usage(late) == ("4,7", "4,7")
        now[0] += 1  # midnight UTC: both windows reset
        fresh = client.get("/api/v3/athlete")
        assert fresh.status_code == 200
        assert _usage(fresh) == ("1,1", "1,1")
        state = client.get("/_sim/ratelimit").json()
        assert state["read"] == {"limit": [2, 5], "usage": [1, 1]}
        assert state["resets_at"][0] == now[0] + 900


def test_rate_limits_on_the_wall_clock_with_short_windows() -> None:
    config = SimConfig(seed=2, athletes=1, activities=3, read_limits=(2, 1000), short_window=0.5)
    with StravaSimulator(config) as sim, connect(sim, sim.athlete_ids[0]) as client:
        _next_window(0.5)
        statuses = [client.get("/api/v3/athlete").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        _next_window(0.5)
        fresh = client.get("/api/v3/athlete")
        assert fresh.status_code == 200
        assert _usage(fresh)[1] == "1,4"
        # Unthrottled: usage is still reported, never a 429.
        client.post("/_sim/ratelimit", json={"enabled": False})
        assert all(client.get("/api/v3/athlete").status_code == 200 for _ in range(5))
        assert _usage(client.get("/api/v3/athlete"))[1].endswith(",10")


# -- faults ---------------------------------------------------------------------------------------


def test_faults_bursts_delays_hangs_garbage_and_vanishing_history() -> None:
    with StravaSimulator(SimConfig(seed=9, athletes=1, activities=8, stream_step=60)) as sim:
        athlete_id = sim.athlete_ids[0]
        with connect(sim, athlete_id) as client:
            activity = all_activities(client)[0]
            sim.fail_next(2, status=503)
            burst = [client.get("/api/v3/athlete") for _ in range(3)]
            assert [r.status_code for r in burst] == [503, 503, 200]
            assert burst[0].headers["content-type"] == "text/html"  # not JSON, as a proxy sends it
            sim.fail_next(1)
            failed = client.get("/api/v3/athlete")
            assert failed.status_code == 500
            assert failed.json()["message"] == "Internal Server Error"

            # Faults can target one endpoint; the control API arms them over HTTP too.
            client.post("/_sim/faults", json={"kind": "error", "status": 502, "match": "/streams"})
            assert client.get("/api/v3/athlete").status_code == 200
            streams_url = f"/api/v3/activities/{activity['id']}/streams"
            assert client.get(streams_url).status_code == 502

            sim.slow(0.3, count=1)
            started = time.monotonic()
            assert client.get("/api/v3/athlete").status_code == 200
            assert time.monotonic() - started >= 0.3

            sim.malformed(1)
            garbled = client.get("/api/v3/athlete/activities")
            assert garbled.status_code == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(garbled.content)

            sim.disconnect(1)
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/api/v3/athlete")

            sim.hang(1)
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                client.get("/api/v3/athlete", timeout=0.3)
            assert time.monotonic() - started < 2
            assert client.get("/api/v3/athlete").status_code == 200

            sim.vanish(athlete_id)
            assert client.get("/api/v3/athlete/activities").json() == []
            assert client.get(f"/api/v3/activities/{activity['id']}").status_code == 200
            client.post(f"/_sim/athletes/{athlete_id}/restore")
            assert len(all_activities(client)) == 8

            # The application's owner lost the Strava subscription: every request is a 403.
            client.post("/_sim/application", json={"active": False})
            inactive = client.get("/api/v3/athlete")
            assert inactive.status_code == 403
            assert inactive.json()["errors"] == [
                {"resource": "Application", "field": "Status", "code": "Inactive"}
            ]
            assert client.post("/oauth/token", data={}).status_code == 403
            sim.set_application_active(True)

            # Arming until cleared, then clearing, over HTTP.
            client.post("/_sim/faults", json={"kind": "error", "count": None, "status": 500})
            assert {client.get("/api/v3/athlete").status_code for _ in range(3)} == {500}
            assert client.delete("/_sim/faults").json() == {"faults": []}
            assert client.get("/api/v3/athlete").status_code == 200

        deadline = time.monotonic() + 2  # a hang is logged once its client has gone
        while "hang" not in [r["status"] for r in sim.requests("athlete")]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        statuses = [r["status"] for r in sim.requests("athlete")]
        assert "disconnect" in statuses
        assert 503 in statuses


def test_a_hang_ends_when_the_fault_is_cleared() -> None:
    config = SimConfig(seed=9, athletes=1, activities=1)
    with StravaSimulator(config) as sim, connect(sim, sim.athlete_ids[0]) as client:
        sim.hang(count=None)
        threading.Timer(0.3, sim.clear_faults).start()
        with pytest.raises(httpx.RemoteProtocolError):  # closed without a response
            client.get("/api/v3/athlete", timeout=5)
        assert client.get("/api/v3/athlete").status_code == 200


# -- the request log ------------------------------------------------------------------------------


def test_request_log_and_counters() -> None:
    config = SimConfig(seed=9, athletes=1, activities=5, stream_step=60)
    with StravaSimulator(config) as sim, connect(sim, sim.athlete_ids[0]) as client:
        activities = all_activities(client)
        for activity in activities[:3]:
            client.get(f"/api/v3/activities/{activity['id']}")
            client.get(f"/api/v3/activities/{activity['id']}/streams", params={"keys": "time"})
        assert sim.count("oauth.token") == 1
        assert sim.count("athlete.activities") == 1
        assert sim.count("activity") == 3
        assert sim.count("activity.streams") == 3
        log = client.get("/_sim/requests", params={"endpoint": "activity.streams"}).json()
        assert log["count"] == 3
        assert log["by_endpoint"]["activity"] == 3
        entry = log["requests"][0]
        assert entry["status"] == 200
        assert entry["query"] == "keys=time"
        client.delete("/_sim/requests")
        assert sim.count() == 0


# -- as a process ---------------------------------------------------------------------------------


def test_python_m_tests_strava_sim_starts_answers_and_stops() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.strava_sim",
            "--port",
            "0",
            "--seed",
            "1",
            "--athletes",
            "2",
            "--activities",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.match(r"Strava simulator listening on (http://127\.0\.0\.1:\d+)$", first.strip())
        assert match, first + (process.stderr.read() if process.stderr else "")
        with httpx.Client(base_url=match.group(1), verify=TLS, timeout=10) as client:
            described = client.get("/_sim").json()
            assert described["client_id"] == CLIENT_ID
            assert len(described["athletes"]) == 2
            athlete_id = described["athletes"][0]["id"]
            code = client.post("/_sim/codes", data={"athlete_id": athlete_id}).json()["code"]
            tokens = _token(client, code=code, grant_type="authorization_code").json()
            listed = client.get(
                "/api/v3/athlete/activities",
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
            )
            assert listed.status_code == 200
            assert len(listed.json()) == 20
            assert listed.headers["X-RateLimit-Limit"] == "200,2000"
            assert client.get("/api/v3/athlete").status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

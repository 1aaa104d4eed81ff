"""Deterministic athletes and activities: the same seed always gives the same world.

Only each activity's *plan* is built up front (summary numbers, route waypoints, pauses):
cheap enough for thousands of activities. Streams, laps, splits and best efforts are derived
from the plan on demand (``streams.py``) and agree with it: the distance stream ends at the
summary distance, the time stream at the elapsed time, the track starts and ends at
``start_latlng``/``end_latlng`` and follows the summary polyline, altitudes stay within
``elev_low``..``elev_high`` and the heart-rate stream peaks at ``max_heartrate``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from tests.strava_sim.config import SimConfig
from tests.strava_sim.geo import encode_polyline, offset_point


@dataclass(frozen=True)
class City:
    name: str
    state: str
    country: str
    lat: float
    lng: float
    zone: str
    altitude: float
    hilliness: float  # typical elevation amplitude of a city run, metres


CITIES = {
    "new_york": City(
        "New York", "NY", "United States", 40.7812, -73.9665, "America/New_York", 30, 12
    ),
    "paris": City("Paris", "Île-de-France", "France", 48.8566, 2.3522, "Europe/Paris", 45, 15),
    "zurich": City("Zürich", "Zürich", "Switzerland", 47.3769, 8.5417, "Europe/Zurich", 410, 60),
    "tokyo": City("Tokyo", "Tokyo", "Japan", 35.6852, 139.7528, "Asia/Tokyo", 20, 8),
    "sao_paulo": City(
        "São Paulo", "SP", "Brazil", -23.5874, -46.6576, "America/Sao_Paulo", 760, 25
    ),
    "bengaluru": City("Bengaluru", "Karnataka", "India", 12.9716, 77.5946, "Asia/Kolkata", 920, 15),
    "san_francisco": City(
        "San Francisco", "CA", "United States", 37.7694, -122.4862, "America/Los_Angeles", 20, 40
    ),
    "oslo": City("Oslo", "Oslo", "Norway", 59.9139, 10.7522, "Europe/Oslo", 30, 50),
    "adelaide": City(
        "Adelaide", "SA", "Australia", -34.9285, 138.6007, "Australia/Adelaide", 50, 20
    ),
}

# Sport mixes: (sport_type, weight).
RUNNER = (("Run", 70), ("TrailRun", 8), ("Walk", 8), ("Hike", 6), ("Ride", 4), ("Swim", 4))
TRIATHLETE = (("Ride", 38), ("Run", 32), ("Swim", 20), ("VirtualRide", 6), ("Walk", 4))
HIKER = (("Hike", 40), ("Walk", 20), ("Run", 15), ("TrailRun", 10), ("Ride", 15))
CYCLIST = (("Ride", 60), ("GravelRide", 10), ("VirtualRide", 15), ("Run", 10), ("Walk", 5))


@dataclass(frozen=True)
class Persona:
    firstname: str
    lastname: str
    sex: str
    city: str
    mix: tuple[tuple[str, int], ...]
    measurement: str  # "meters" or "feet"
    language: str


PERSONAS = (
    Persona("Marcus", "Johnson", "M", "new_york", RUNNER, "feet", "en"),
    Persona("Léa", "Dubois", "F", "paris", TRIATHLETE, "meters", "fr"),
    Persona("Zoë", "Müller", "F", "zurich", HIKER, "meters", "de"),
    Persona("Yuki", "Tanaka", "M", "tokyo", RUNNER, "meters", "ja"),
    Persona("João", "Silva", "M", "sao_paulo", CYCLIST, "meters", "pt"),
    Persona("Priya", "Sharma", "F", "bengaluru", RUNNER, "meters", "en"),
    Persona("Mia", "Nguyen", "F", "san_francisco", TRIATHLETE, "feet", "en"),
    Persona("Lars", "Eriksen", "M", "oslo", HIKER, "meters", "no"),
    Persona("Siobhán", "Kelly", "F", "adelaide", CYCLIST, "meters", "en"),
)

# Titles athletes give, by language and kind of sport (run, ride, swim, walk/hike).
CUSTOM_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "run": ("Tempo with the crew", "Hill repeats", "Long run 🏃", "Race day!"),
        "ride": ("Coffee ride ☕", "Hill climbs", "Group ride"),
        "swim": ("Masters swim", "Easy laps"),
        "walk": ("Walk with the dog", "Ridge hike ⛰️"),
    },
    "fr": {
        "run": ("Sortie longue à Vincennes", "Fractionné – piste", "Footing récup'"),  # noqa: RUF001
        "ride": ("Col du Galibier", "Sortie vélo entre amis"),
        "swim": ("Natation à la piscine Pontoise", "Séance technique"),
        "walk": ("Balade en forêt", "Randonnée à Fontainebleau"),
    },
    "de": {
        "run": ("Läufchen am Zürichsee", "Intervalle", "Lockerer Dauerlauf"),
        "ride": ("Ausfahrt über den Albis", "Rennvelo-Runde"),
        "swim": ("Schwimmen im Hallenbad", "Seeüberquerung"),
        "walk": ("Üetliberg hoch & runter", "Gemütliche Wanderung"),
    },
    "ja": {
        "run": ("朝ラン", "皇居ラン 🏯", "ロング走", "ビルドアップ走"),
        "ride": ("朝ライド", "ヒルクライム"),
        "swim": ("プール", "スイム練"),
        "walk": ("高尾山ハイク", "お散歩"),
    },
    "pt": {
        "run": ("Corrida no Ibirapuera 🌳", "Treino de subida", "Rodagem leve"),
        "ride": ("Pedal na Serra do Mar", "Giro leve"),
        "swim": ("Natação", "Treino na piscina"),
        "walk": ("Caminhada", "Trilha no Pico do Jaraguá"),
    },
    "no": {
        "run": ("Intervaller på Bislett", "Rolig langtur", "Morgenjogg"),
        "ride": ("Sykkeltur rundt Bygdøy", "Rolig sykkeltur"),
        "swim": ("Svømming på Tøyenbadet", "Teknikkøkt"),
        "walk": ("Tur til Vettakollen", "Søndagstur ⛰️"),
    },
}


# sport_type -> the deprecated ``type`` Strava still sends beside it.
LEGACY_TYPE = {"TrailRun": "Run", "GravelRide": "Ride", "MountainBikeRide": "Ride"}
FOOT_SPORTS = frozenset({"Run", "TrailRun", "Walk", "Hike"})
RUN_SPORTS = frozenset({"Run", "TrailRun"})
RIDE_SPORTS = frozenset({"Ride", "GravelRide", "VirtualRide", "MountainBikeRide"})


def _kind_of(sport_type: str) -> str:
    if sport_type in RUN_SPORTS:
        return "run"
    if sport_type in RIDE_SPORTS:
        return "ride"
    return "swim" if sport_type == "Swim" else "walk"


@dataclass
class Gear:
    id: str
    name: str
    nickname: str | None
    primary: bool
    retired: bool
    distance: float  # metres

    def summary(self, measurement: str) -> dict[str, object]:
        per_unit = 1609.344 if measurement == "feet" else 1000.0
        return {
            "id": self.id,
            "primary": self.primary,
            "name": self.name,
            "nickname": self.nickname,
            "resource_state": 2,
            "retired": self.retired,
            "distance": round(self.distance),
            "converted_distance": round(self.distance / per_unit, 1),
        }


@dataclass
class Athlete:
    index: int
    id: int
    username: str
    firstname: str
    lastname: str
    bio: str
    city: City
    sex: str
    premium: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    weight: float
    ftp: int | None
    measurement: str
    language: str
    max_hr: int
    resting_hr: int
    shoes: list[Gear]
    bikes: list[Gear]
    clubs: list[dict[str, Any]]
    mix: tuple[tuple[str, int], ...]
    history_vanished: bool = False

    def _profile(self, size: str) -> str:
        host = "https://dgalywyr863hv.cloudfront.net"
        return f"{host}/pictures/athletes/{self.id}/{self.id % 9973}/2/{size}.jpg"

    def summary(self) -> dict[str, object]:
        """SummaryAthlete (resource_state 2), as the token exchange returns it."""
        return {
            "id": self.id,
            "username": self.username,
            "resource_state": 2,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "bio": self.bio,
            "city": self.city.name,
            "state": self.city.state,
            "country": self.city.country,
            "sex": self.sex,
            "premium": self.premium,
            "summit": self.premium,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "badge_type_id": 1 if self.premium else 0,
            "weight": self.weight,
            "profile_medium": self._profile("medium"),
            "profile": self._profile("large"),
            "friend": None,
            "follower": None,
        }

    def detailed(self) -> dict[str, object]:
        """DetailedAthlete (resource_state 3), as ``GET /athlete`` returns it."""
        body = self.summary()
        body["resource_state"] = 3
        body.update(
            {
                "blocked": False,
                "can_follow": True,
                "follower_count": 40 + self.id % 300,
                "friend_count": 30 + self.id % 250,
                "mutual_friend_count": 0,
                "athlete_type": 1 if any(s in RUN_SPORTS for s, _ in self.mix[:1]) else 0,
                "date_preference": "%m/%d/%Y" if self.measurement == "feet" else "%d/%m/%Y",
                "measurement_preference": self.measurement,
                "clubs": self.clubs,
                "postable_clubs_count": len(self.clubs),
                "ftp": self.ftp,
                "bikes": [bike.summary(self.measurement) for bike in self.bikes],
                "shoes": [shoe.summary(self.measurement) for shoe in self.shoes],
            }
        )
        return body


@dataclass
class Activity:
    """One activity's plan: the summary numbers and what streams are derived from."""

    id: int
    athlete_id: int
    name: str
    sport_type: str
    start: dt.datetime  # UTC
    zone: str
    city: City
    distance: float
    moving_time: int
    elapsed_time: int
    pauses: list[tuple[int, int]]  # (elapsed offset, duration) in seconds
    waypoints: list[tuple[float, float, float]]  # (lat, lng, altitude); empty without GPS
    has_altitude: bool
    base_altitude: float
    manual: bool
    trainer: bool
    commute: bool
    visibility: str  # "everyone", "followers_only", "only_me"
    workout_type: int | None
    gear_id: str | None
    device_name: str | None
    external_id: str | None
    upload_id: int | None
    max_speed: float
    has_heartrate: bool
    average_heartrate: float
    max_heartrate: float
    average_cadence: float | None
    average_watts: float | None
    max_watts: int | None
    average_temp: int | None
    suffer_score: float | None
    calories: float
    description: str | None
    kudos_count: int
    comment_count: int
    achievement_count: int
    pr_count: int
    athlete_count: int
    photo_count: int
    stream_seed: str
    elev_high: float = 0.0
    elev_low: float = 0.0
    total_elevation_gain: float = 0.0
    deleted: bool = False

    @property
    def private(self) -> bool:
        return self.visibility == "only_me"

    @property
    def has_gps(self) -> bool:
        return bool(self.waypoints)

    @property
    def average_speed(self) -> float:
        return round(self.distance / self.moving_time, 3) if self.moving_time else 0.0

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.elapsed_time)

    def start_epoch(self) -> int:
        return int(self.start.timestamp())


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rng(config: SimConfig, *parts: object) -> random.Random:
    return random.Random(":".join([str(config.seed), *map(str, parts)]))


def _stable_int(text: str, modulo: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % modulo


def default_name(sport_type: str, local_hour: int) -> str:
    """Strava's automatic title: part of the day plus the sport."""
    if 5 <= local_hour < 11:
        part = "Morning"
    elif 11 <= local_hour < 14:
        part = "Lunch"
    elif 14 <= local_hour < 18:
        part = "Afternoon"
    elif 18 <= local_hour < 22:
        part = "Evening"
    else:
        part = "Night"
    noun = {
        "TrailRun": "Trail Run",
        "VirtualRide": "Virtual Ride",
        "GravelRide": "Gravel Ride",
    }.get(sport_type, sport_type)
    return f"{part} {noun}"


class World:
    """All athletes and their activities, generated from ``config.seed``."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.athletes: dict[int, Athlete] = {}
        self.activities: dict[int, Activity] = {}
        self._added = 0
        used_ids: set[int] = set()
        plans: list[tuple[dt.datetime, int, Activity]] = []
        for index in range(config.athletes):
            athlete = self._make_athlete(index, used_ids)
            self.athletes[athlete.id] = athlete
            rng = _rng(config, "history", index)
            count = config.activities
            # Every history of ten or more has at least one manual entry, one "Only You" and
            # one "Followers" activity, whatever the dice say.
            forced = {count // 3: "manual", count // 2: "only_me", (2 * count) // 3: "followers"}
            for position, start in enumerate(self._start_times(athlete, rng)):
                kind = forced.get(position) if count >= 10 else None
                plan = self._make_activity(
                    athlete,
                    start,
                    rng,
                    f"{index}:{position}",
                    manual=True if kind == "manual" else None,
                    visibility={"only_me": "only_me", "followers": "followers_only"}.get(
                        kind or ""
                    ),
                )
                plans.append((plan.start, index, plan))
        plans.sort(key=lambda item: (item[0], item[1]))
        id_rng = _rng(config, "ids")
        next_id = 9_000_000_000 + id_rng.randrange(1_000_000)
        next_upload = 10_000_000_000 + id_rng.randrange(1_000_000)
        for _, _, plan in plans:
            next_id += id_rng.randrange(20_000, 3_000_000)
            next_upload += id_rng.randrange(20_000, 3_000_000)
            plan.id = next_id
            if not plan.manual:
                plan.upload_id = next_upload
                if plan.external_id is None:
                    plan.external_id = f"garmin_ping_{next_upload * 3 // 7}"
            self.activities[plan.id] = plan
        self._next_id = next_id
        self._next_upload = next_upload
        self._accumulate_gear()

    # -- athletes --------------------------------------------------------------------------

    def _make_athlete(self, index: int, used_ids: set[int]) -> Athlete:
        rng = _rng(self.config, "athlete", index)
        persona = PERSONAS[index % len(PERSONAS)]
        round_suffix = "" if index < len(PERSONAS) else f" {index // len(PERSONAS) + 1}"
        athlete_id = rng.randrange(1_000_000, 120_000_000)
        while athlete_id in used_ids:
            athlete_id = rng.randrange(1_000_000, 120_000_000)
        used_ids.add(athlete_id)
        city = CITIES[persona.city]
        sports = {sport for sport, _ in persona.mix}
        shoes = [
            Gear(f"g{rng.randrange(1_000_000, 30_000_000)}", name, nick, primary, retired, 0.0)
            for name, nick, primary, retired in (
                ("Nike Pegasus 41", None, True, False),
                ("Hoka Speedgoat 6", "trail", False, False),
                ("Adidas Adizero SL2", "", False, True),
            )[: rng.randrange(1, 4)]
        ]
        bikes = []
        if sports & RIDE_SPORTS:
            bikes = [
                Gear(f"b{rng.randrange(1_000_000, 20_000_000)}", name, nick, primary, False, 0.0)
                for name, nick, primary in (
                    ("Canyon Endurace CF 7", "Road", True),
                    ("Specialized Diverge", "Gravel", False),
                )
            ]
        clubs = [
            {
                "id": 100_000 + _stable_int(f"club:{persona.city}:{k}", 900_000),
                "resource_state": 2,
                "name": f"{city.name} {'Running' if k == 0 else 'Endurance'} Club",
                "profile_medium": "https://dgalywyr863hv.cloudfront.net/pictures/clubs/1/1/2/medium.jpg",
                "profile": "https://dgalywyr863hv.cloudfront.net/pictures/clubs/1/1/2/large.jpg",
                "cover_photo": None,
                "cover_photo_small": None,
                "activity_types": ["Run", "VirtualRun", "Wheelchair"],
                "activity_types_icon": "sports_run_normal",
                "dimensions": ["distance", "num_activities", "moving_time", "elev_gain"],
                "sport_type": "running",
                "localized_sport_type": "Running",
                "city": city.name,
                "state": city.state,
                "country": city.country,
                "private": False,
                "member_count": 50 + _stable_int(f"members:{persona.city}:{k}", 5000),
                "featured": False,
                "verified": k == 0,
                "url": f"{persona.city}-club-{k}",
                "membership": "member",
                "admin": False,
                "owner": False,
            }
            for k in range(rng.randrange(0, 3))
        ]
        age = rng.randrange(24, 58)
        created = self.config.history_end - dt.timedelta(days=self.config.history_days + 400)
        return Athlete(
            index=index,
            id=athlete_id,
            username=f"{persona.firstname.lower()}{persona.lastname.lower()}{index}".encode(
                "ascii", "ignore"
            ).decode(),
            firstname=persona.firstname,
            lastname=persona.lastname + round_suffix,
            bio=rng.choice(("", "Runner, coffee drinker.", "Ultra curious ⛰️", "Tri life")),
            city=city,
            sex=persona.sex,
            premium=rng.random() < 0.6,
            created_at=created - dt.timedelta(days=rng.randrange(0, 1500)),
            updated_at=self.config.history_end - dt.timedelta(days=rng.randrange(1, 30)),
            weight=round(rng.uniform(52, 88), 1),
            ftp=rng.randrange(180, 300) if sports & RIDE_SPORTS else None,
            measurement=persona.measurement,
            language=persona.language,
            max_hr=220 - age + rng.randrange(-6, 7),
            resting_hr=rng.randrange(44, 62),
            shoes=shoes,
            bikes=bikes,
            clubs=clubs,
            mix=persona.mix,
        )

    def _start_times(self, athlete: Athlete, rng: random.Random) -> list[dt.datetime]:
        """``activities`` start instants (UTC), spread over the history, at plausible hours."""
        count = self.config.activities
        end = self.config.history_end
        begin = end - dt.timedelta(days=self.config.history_days)
        zone = ZoneInfo(athlete.city.zone)
        span = (end - begin).total_seconds()
        starts = []
        for k in range(count):
            base = begin + dt.timedelta(seconds=span * (k + rng.random()) / max(count, 1))
            local_day = base.astimezone(zone).date()
            hour = rng.choice((6, 6, 7, 7, 7, 8, 9, 12, 12, 17, 18, 18, 19, 20))
            local = dt.datetime.combine(
                local_day, dt.time(hour, rng.randrange(60), rng.randrange(60)), zone
            )
            start = local.astimezone(dt.UTC)
            while start > end - dt.timedelta(hours=6):  # keep it inside the history
                start -= dt.timedelta(days=1)
            starts.append(start)
        starts.sort()
        return starts

    # -- activities ------------------------------------------------------------------------

    def _make_activity(
        self,
        athlete: Athlete,
        start: dt.datetime,
        rng: random.Random,
        key: str,
        sport_type: str | None = None,
        manual: bool | None = None,
        visibility: str | None = None,
    ) -> Activity:
        sports, weights = zip(*athlete.mix, strict=True)
        sport = rng.choices(sports, weights)[0]
        sport = sport_type or sport
        city = athlete.city
        if rng.random() < 0.05:  # travelling: the same wall-clock time in another time zone
            city = CITIES[rng.choice(sorted(CITIES))]
            home_local = start.astimezone(ZoneInfo(athlete.city.zone)).replace(tzinfo=None)
            start = home_local.replace(tzinfo=ZoneInfo(city.zone)).astimezone(dt.UTC)
        is_manual = rng.random() < 0.04
        manual = is_manual if manual is None else manual
        trainer = sport == "VirtualRide" or (sport == "Ride" and rng.random() < 0.08)
        weekend = start.astimezone(ZoneInfo(city.zone)).weekday() >= 5

        if sport in RUN_SPORTS:
            distance = rng.uniform(5_000, 13_000) * (rng.uniform(1.4, 2.4) if weekend else 1)
            speed = rng.uniform(2.6, 4.0) * (0.8 if sport == "TrailRun" else 1.0)
            cadence: float | None = rng.uniform(80, 91)
        elif sport in RIDE_SPORTS:
            distance = rng.uniform(20_000, 55_000) * (rng.uniform(1.5, 3.0) if weekend else 1)
            speed = rng.uniform(6.0, 8.8) * (0.85 if sport == "GravelRide" else 1.0)
            cadence = rng.uniform(76, 94)
        elif sport == "Swim":
            distance = float(rng.randrange(30, 80) * 50)
            speed = rng.uniform(0.65, 0.95)
            cadence = None
        elif sport == "Hike":
            distance = rng.uniform(6_000, 16_000) * (rng.uniform(1.2, 1.6) if weekend else 1)
            speed = rng.uniform(0.95, 1.4)
            cadence = rng.uniform(48, 56)
        else:  # Walk
            distance = rng.uniform(2_000, 7_000)
            speed = rng.uniform(1.2, 1.55)
            cadence = rng.uniform(52, 60)
        distance = round(distance, 1)
        moving_time = max(60, round(distance / speed))
        has_gps = not manual and not trainer and sport != "Swim"

        pauses: list[tuple[int, int]] = []
        if not manual:
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                pauses.append((rng.randrange(60, max(61, moving_time - 60)), rng.randrange(8, 240)))
            pauses.sort()
            # Offsets are in moving time; shift each by the pauses before it.
            shifted = []
            lost = 0
            for offset, duration in pauses:
                shifted.append((offset + lost, duration))
                lost += duration
            pauses = shifted
        elapsed_time = moving_time + sum(duration for _, duration in pauses)

        device = None
        external_id = None
        has_hr = False
        if not manual:
            if sport in RIDE_SPORTS and not trainer:
                device = rng.choice(("Garmin Edge 540", "Wahoo ELEMNT BOLT", "Garmin Edge 1040"))
            elif trainer:
                device = rng.choice(("Zwift", "Wahoo KICKR"))
            else:
                device = rng.choice(
                    (
                        "Garmin Forerunner 265",
                        "Garmin fēnix 7",
                        "COROS PACE 3",
                        "Apple Watch",
                        "Strava App",
                    )
                )
            has_hr = device != "Strava App" and rng.random() < 0.95
            if device.startswith(("COROS", "Apple", "Strava")):
                external_id = f"{_stable_int(key, 16**12):012x}.fit"
        if manual or device == "Strava App":
            cadence = None

        avg_hr = max_hr = 0.0
        suffer: float | None = None
        if has_hr:
            effort = {"Run": 0.78, "TrailRun": 0.8, "Hike": 0.62, "Walk": 0.55}.get(sport, 0.72)
            reserve = athlete.max_hr - athlete.resting_hr
            avg_hr = round(
                athlete.resting_hr + reserve * rng.uniform(effort - 0.07, effort + 0.07), 1
            )
            max_hr = float(min(athlete.max_hr, round(avg_hr + rng.uniform(9, 22))))
            intensity = (avg_hr - athlete.resting_hr) / reserve
            suffer = float(round(moving_time / 60 * intensity**3 * 2.6))

        watts: float | None = None
        max_watts: int | None = None
        if sport in RIDE_SPORTS and not manual and (trainer or rng.random() < 0.6):
            watts = round(rng.uniform(0.55, 0.8) * (athlete.ftp or 220), 1)
            max_watts = round(watts * rng.uniform(2.2, 3.4))
        temp = rng.randrange(4, 30) if device and device.startswith("Garmin") else None

        waypoints: list[tuple[float, float, float]] = []
        base_alt = city.altitude + rng.uniform(-10, 10)
        if has_gps:
            waypoints = self._route(city, sport, distance, base_alt, rng)
        local_hour = start.astimezone(ZoneInfo(city.zone)).hour
        if rng.random() < 0.55 or manual:
            name = default_name(sport, local_hour)
        else:
            titles = CUSTOM_NAMES.get(athlete.language, CUSTOM_NAMES["en"])
            name = rng.choice(titles[_kind_of(sport)])
        roll = rng.random()
        rolled = "only_me" if roll < 0.08 else "followers_only" if roll < 0.18 else "everyone"
        visibility = visibility or rolled
        if sport in RUN_SPORTS:
            workout_type = rng.choice((None, None, None, 0, 0, 1, 2, 3))
        elif sport in RIDE_SPORTS:
            workout_type = rng.choice((None, None, 10, 10, 11, 12))
        else:
            workout_type = None
        gear = None
        if sport in FOOT_SPORTS and athlete.shoes:
            gear = rng.choice(athlete.shoes).id
        elif sport in RIDE_SPORTS and athlete.bikes:
            gear = athlete.bikes[0 if sport != "GravelRide" else -1].id
        kudos = rng.randrange(0, 40) if visibility == "everyone" else 0
        calories = (
            watts * moving_time / 1000 * 1.05
            if watts is not None
            else athlete.weight * distance / 1000 * (1.0 if sport not in RIDE_SPORTS else 0.3)
        )
        max_speed = round(speed * rng.uniform(1.25, 1.6) if not manual else 0.0, 1)
        activity = Activity(
            id=0,
            athlete_id=athlete.id,
            name=name,
            sport_type=sport,
            start=start,
            zone=city.zone,
            city=city,
            distance=distance,
            moving_time=moving_time,
            elapsed_time=elapsed_time,
            pauses=pauses,
            waypoints=waypoints,
            has_altitude=has_gps,
            base_altitude=base_alt,
            manual=manual,
            trainer=trainer,
            commute=sport in RIDE_SPORTS and not trainer and rng.random() < 0.1,
            visibility=visibility,
            workout_type=workout_type,
            gear_id=gear,
            device_name=device,
            external_id=external_id,
            upload_id=None,
            max_speed=max_speed,
            has_heartrate=has_hr,
            average_heartrate=avg_hr,
            max_heartrate=max_hr,
            average_cadence=round(cadence, 1) if cadence is not None else None,
            average_watts=watts,
            max_watts=max_watts,
            average_temp=temp,
            suffer_score=suffer,
            calories=round(calories, 1),
            description=rng.choice((None, None, None, "", "Felt great today.", "Très bien 👍")),
            kudos_count=kudos,
            comment_count=rng.randrange(0, 4) if kudos else 0,
            achievement_count=rng.randrange(0, 6) if not manual else 0,
            pr_count=rng.randrange(0, 3) if sport in RUN_SPORTS and not manual else 0,
            athlete_count=rng.choice((1, 1, 1, 2, 3)),
            photo_count=rng.choice((0, 0, 0, 0, 1, 3)) if has_gps else 0,
            stream_seed=f"{self.config.seed}:streams:{key}",
        )
        if waypoints:
            altitudes = [alt for _, _, alt in waypoints]
            activity.elev_high = round(max(altitudes), 1)
            activity.elev_low = round(min(altitudes), 1)
            gain = sum(max(0.0, b - a) for a, b in itertools.pairwise(altitudes))
            activity.total_elevation_gain = round(gain, 1)
        return activity

    def _route(
        self, city: City, sport: str, distance: float, base_alt: float, rng: random.Random
    ) -> list[tuple[float, float, float]]:
        """A plausible track: a wobbly loop (or a one-way arc) of exactly ``distance`` metres."""
        start_lat, start_lng = offset_point(
            city.lat, city.lng, rng.uniform(-2500, 2500), rng.uniform(-2500, 2500)
        )
        loop = rng.random() < 0.75
        span = 1.0 if loop else rng.uniform(0.35, 0.55)
        count = int(max(24, min(400, distance / 40)))
        heading = rng.uniform(0, 2 * math.pi)
        harmonics = [
            (k, rng.uniform(0, 0.18 / k**0.5), rng.uniform(0, 2 * math.pi))
            for k in (2, 3, 5, 7, 11)
        ]

        def radius(phi: float) -> float:
            return 1 + sum(amp * math.sin(k * phi + phase) for k, amp, phase in harmonics)

        unit = []
        r0 = radius(0.0)
        for j in range(count + 1):
            phi = 2 * math.pi * span * j / count
            r = radius(phi)
            unit.append(
                (
                    r * math.cos(phi + heading) - r0 * math.cos(heading),
                    r * math.sin(phi + heading) - r0 * math.sin(heading),
                )
            )
        if loop:
            unit[-1] = (0.0, 0.0)
        length = sum(math.dist(a, b) for a, b in itertools.pairwise(unit))
        scale = distance / length
        hilly = {"TrailRun": 6.0, "Hike": 9.0, "GravelRide": 4.0}.get(sport, 1.0)
        if sport in RIDE_SPORTS:
            hilly *= 3.0
        amplitude = city.hilliness * hilly * rng.uniform(0.4, 1.2)
        waves = [
            (k, amplitude * rng.uniform(0.2, 1.0) / k, rng.uniform(0, 2 * math.pi))
            for k in (1, 2, 3, 5)
        ]
        trend = 0.0 if loop else rng.uniform(-0.5, 0.5) * amplitude
        points = []
        for j, (x, y) in enumerate(unit):
            u = j / count
            alt = (
                base_alt
                + trend * u
                + sum(
                    amp * (math.sin(2 * math.pi * k * u + phase) - math.sin(phase))
                    for k, amp, phase in waves
                )
            )
            lat, lng = offset_point(start_lat, start_lng, x * scale, y * scale)
            points.append((round(lat, 6), round(lng, 6), round(alt, 1)))
        return points

    def _accumulate_gear(self) -> None:
        for athlete in self.athletes.values():
            for gear in athlete.shoes + athlete.bikes:
                gear.distance = sum(
                    a.distance
                    for a in self.activities.values()
                    if a.gear_id == gear.id and not a.deleted
                )

    # -- queries and edits -----------------------------------------------------------------

    def athlete_activities(self, athlete_id: int) -> list[Activity]:
        return [a for a in self.activities.values() if a.athlete_id == athlete_id and not a.deleted]

    def add_activity(
        self,
        athlete_id: int,
        start: dt.datetime | None = None,
        sport_type: str | None = None,
        name: str | None = None,
        manual: bool | None = None,
        visibility: str | None = None,
    ) -> Activity:
        """A newly uploaded activity (start defaults to two hours ago)."""
        athlete = self.athletes[athlete_id]
        self._added += 1
        rng = _rng(self.config, "added", athlete.index, self._added)
        when = start or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
        key = f"added:{athlete.index}:{self._added}"
        plan = self._make_activity(athlete, when, rng, key, sport_type=sport_type, manual=manual)
        plan.start = when  # exactly when asked, even if the plan picked a trip abroad
        if name is not None:
            plan.name = name
        if visibility is not None:
            plan.visibility = visibility
        self._next_id += 1_000_003
        plan.id = self._next_id
        if not plan.manual:
            self._next_upload += 1_000_003
            plan.upload_id = self._next_upload
            if plan.external_id is None:
                plan.external_id = f"garmin_ping_{self._next_upload * 3 // 7}"
        self.activities[plan.id] = plan
        self._accumulate_gear()
        return plan


def polylines(activity: Activity) -> tuple[str, str]:
    """(summary_polyline, polyline): a quarter of the waypoints, and all of them."""
    if not activity.waypoints:
        return "", ""
    points = [(lat, lng) for lat, lng, _ in activity.waypoints]
    summary = points[::4]
    if summary[-1] != points[-1]:
        summary.append(points[-1])
    return encode_polyline(summary), encode_polyline(points)

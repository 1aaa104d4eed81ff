"""A synthetic Strava bulk export, in the real layout, with what importing it should give.

`activities.csv` has Strava's English column order (the repeated Elapsed Time and Distance,
the first Distance in km and the later one in metres, extra columns) or German/French
headers and date formats; `activities/` cycles through the requested formats (GPX 1.1 with
Garmin's heart-rate extension, TCX with heart rate, FIT from tests.fit_writer, `.gz` where
the format says so); plus profile.csv, bikes.csv, shoes.csv, a media/ blob and one or two
manual activities (no file). Tracks run due north, so their length is exact: the expected
distance is what a haversine over the points gives.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fit_writer import fit_activity

EARTH_RADIUS_METERS = 6_371_008.8
SAMPLE_SECONDS = 10.0
DEFAULT_START = dt.datetime(2021, 1, 4, 6, 0, tzinfo=dt.UTC)

Point = tuple[float, float, float, float, int | None]  # seconds, lat, lon, metres, heart rate


@dataclass(frozen=True)
class ExpectedActivity:
    """What importing one activity of the export should produce."""

    activity_id: str
    file_name: str  # the archive entry, '' for a manual activity
    title: str
    sport_type: str  # a Stride sport type
    start_time: dt.datetime
    elapsed_seconds: float
    distance_meters: float
    sample_count: int


@dataclass(frozen=True)
class _Sport:
    stride: str
    speed: float  # m/s
    gpx: str
    tcx: str
    fit: str
    names: Mapping[str, str]  # language -> "Activity Type" value


_SPORTS = (
    _Sport("Run", 3.0, "running", "Running", "running",
           {"en": "Run", "de": "Lauf", "fr": "Course à pied"}),
    _Sport("Ride", 7.0, "cycling", "Biking", "cycling",
           {"en": "Ride", "de": "Radfahrt", "fr": "Vélo"}),
    _Sport("Walk", 1.4, "walking", "Other", "walking",
           {"en": "Walk", "de": "Spaziergang", "fr": "Marche"}),
    _Sport("Hike", 1.2, "hiking", "Other", "hiking",
           {"en": "Hike", "de": "Wanderung", "fr": "Randonnée"}),
)  # fmt: skip
_MANUAL = (
    (_Sport("WeightTraining", 0.0, "", "", "",
            {"en": "Weight Training", "de": "Krafttraining", "fr": "Musculation"}), 3600.0, 0.0),
    (_SPORTS[0], 1500.0, 5000.0),
)  # fmt: skip

# Column meanings in Strava's English order; None is a column the import does not read.
_COLUMNS = (
    "id", "date", "title", "type", "description", "elapsed", "distance_display", None, None,
    "commute", None, "gear", "file", None, None, "elapsed", None, "distance_meters", None, None,
    None, None, "media",
)  # fmt: skip
_HEADERS: Mapping[str, Sequence[str]] = {
    "en": (
        "Activity ID", "Activity Date", "Activity Name", "Activity Type", "Activity Description",
        "Elapsed Time", "Distance", "Max Heart Rate", "Relative Effort", "Commute",
        "Activity Private Note", "Activity Gear", "Filename", "Athlete Weight", "Bike Weight",
        "Elapsed Time", "Moving Time", "Distance", "Max Speed", "Average Speed",
        "Elevation Gain", "Calories", "Media",
    ),
    "de": (
        "Aktivitäts-ID", "Aktivitätsdatum", "Name der Aktivität", "Aktivitätsart",
        "Aktivitätsbeschreibung", "Verstrichene Zeit", "Distanz", "Maximale Herzfrequenz",
        "Relative Leistung", "Pendeln", "Private Notiz zur Aktivität", "Aktivitätsausrüstung",
        "Dateiname", "Sportlergewicht", "Fahrradgewicht", "Verstrichene Zeit", "Bewegungszeit",
        "Distanz", "Maximalgeschwindigkeit", "Durchschnittsgeschwindigkeit", "Höhenmeter",
        "Kalorien", "Medien",
    ),
    "fr": (
        "ID de l'activité", "Date de l'activité", "Nom de l'activité", "Type d'activité",
        "Description de l'activité", "Temps écoulé", "Distance", "Fréquence cardiaque max.",
        "Effort relatif", "Trajet domicile-travail", "Note privée", "Matériel de l'activité",
        "Nom du fichier", "Poids de l'athlète", "Poids du vélo", "Temps écoulé",
        "Temps de déplacement", "Distance", "Vitesse max.", "Vitesse moyenne",
        "Dénivelé positif", "Calories", "Médias",
    ),
}  # fmt: skip
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FR_MONTHS = (
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
    "déc.",
)  # fmt: skip
_TITLES = {"en": ("Morning", "Lunch", "Evening"), "de": ("Morgen", "Mittag", "Abend"),
           "fr": ("Matin", "Midi", "Soir")}  # fmt: skip
_FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def _date(time: dt.datetime, language: str) -> str:
    if language == "de":
        return time.strftime("%d.%m.%Y, %H:%M:%S")
    if language == "fr":
        return f"{time.day} {_FR_MONTHS[time.month - 1]} {time.year}, {time:%H:%M:%S}"
    hour = time.hour % 12 or 12
    meridiem = "AM" if time.hour < 12 else "PM"
    month = _EN_MONTHS[time.month - 1]
    return f"{month} {time.day}, {time.year}, {hour}:{time:%M:%S} {meridiem}"


def _number(value: float, language: str, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if language == "de" else text


def _points(index: int, sport: _Sport, count: int) -> list[Point]:
    """Due north at a steady speed: (seconds, lat, lon, cumulative metres, heart rate)."""
    speed = sport.speed * (1 + (index % 5) * 0.05)
    lat0, lon0 = 45.0 + (index % 10) * 0.1, 7.0 + (index % 7) * 0.1
    degrees_per_meter = 180 / (math.pi * EARTH_RADIUS_METERS)
    points: list[Point] = []
    for k in range(count):
        meters = speed * SAMPLE_SECONDS * k
        points.append((SAMPLE_SECONDS * k, lat0 + meters * degrees_per_meter, lon0, meters,
                       110 + (index + k) % 50))  # fmt: skip
    return points


def _iso(time: dt.datetime) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ")


def _gpx(title: str, sport: _Sport, start: dt.datetime, points: Sequence[Point]) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx creator="StravaGPX" version="1.1" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
        f"<metadata><time>{_iso(start)}</time></metadata>\n"
        f"<trk><name>{_xml(title)}</name><type>{sport.gpx}</type><trkseg>\n"
    ]
    for seconds, lat, lon, _, hr in points:
        time = _iso(start + dt.timedelta(seconds=seconds))
        parts.append(
            f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><ele>200.0</ele><time>{time}</time>'
            f"<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>{hr:.0f}</gpxtpx:hr>"
            "</gpxtpx:TrackPointExtension></extensions></trkpt>\n"
        )
    parts.append("</trkseg></trk></gpx>\n")
    return "".join(parts).encode()


def _tcx(sport: _Sport, start: dt.datetime, points: Sequence[Point]) -> bytes:
    elapsed = points[-1][0] if points else 0.0
    distance = points[-1][3] if points else 0.0
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<TrainingCenterDatabase '
        'xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2">\n'
        f'<Activities><Activity Sport="{sport.tcx}"><Id>{_iso(start)}</Id>\n'
        f'<Lap StartTime="{_iso(start)}"><TotalTimeSeconds>{elapsed}</TotalTimeSeconds>'
        f"<DistanceMeters>{distance:.1f}</DistanceMeters><Track>\n"
    ]
    for seconds, lat, lon, meters, hr in points:
        time = _iso(start + dt.timedelta(seconds=seconds))
        parts.append(
            f"<Trackpoint><Time>{time}</Time><Position><LatitudeDegrees>{lat:.7f}"
            f"</LatitudeDegrees><LongitudeDegrees>{lon:.7f}</LongitudeDegrees></Position>"
            f"<AltitudeMeters>200.0</AltitudeMeters><DistanceMeters>{meters:.2f}"
            f"</DistanceMeters><HeartRateBpm><Value>{hr:.0f}</Value></HeartRateBpm>"
            "</Trackpoint>\n"
        )
    parts.append("</Track></Lap></Activity></Activities></TrainingCenterDatabase>\n")
    return "".join(parts).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _activity_file(
    fmt: str, title: str, sport: _Sport, start: dt.datetime,
    points: list[Point],
) -> bytes:  # fmt: skip
    kind = fmt.removesuffix(".gz")
    if kind == "gpx":
        data = _gpx(title, sport, start, points)
    elif kind == "tcx":
        data = _tcx(sport, start, points)
    elif kind == "fit":
        data = fit_activity(start, points, sport=sport.fit)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return gzip.compress(data, compresslevel=1, mtime=0) if fmt.endswith(".gz") else data


def strava_export(
    path: Path,
    count: int,
    *,
    start: dt.datetime = DEFAULT_START,
    language: str = "en",
    formats: Sequence[str] = ("gpx", "fit.gz", "tcx.gz"),
    samples_per_activity: int = 120,
    extra: Mapping[str, bytes] = {},
) -> list[ExpectedActivity]:
    """Write the export zip at `path`; return what importing each activity should give, file
    activities first (in csv order), then the manual ones."""
    expected: list[ExpectedActivity] = []
    rows: list[list[str]] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:

        def write(name: str, data: bytes) -> None:
            archive.writestr(zipfile.ZipInfo(name, _FIXED_ZIP_TIME), data, zipfile.ZIP_DEFLATED)

        for index in range(count):
            sport = _SPORTS[index % len(_SPORTS)]
            fmt = formats[index % len(formats)]
            time = start + dt.timedelta(hours=5 * index, minutes=index % 47)
            activity_id = str(4_000_000_000 + index * 1_009)
            title = f"{_TITLES[language][index % 3]} {sport.names[language]} #{index}"
            points = _points(index, sport, samples_per_activity)
            file_name = f"activities/{activity_id}.{fmt}"
            write(file_name, _activity_file(fmt, title, sport, time, points))
            elapsed = points[-1][0] if points else 0.0
            distance = points[-1][3] if points else 0.0
            expected.append(ExpectedActivity(activity_id, file_name, title, sport.stride, time,
                                             elapsed, distance, samples_per_activity))  # fmt: skip
            description = 'Felt "great",\nlegs fresh' if index % 7 == 0 else ""
            rows.append(_row(expected[-1], sport, description, language))
        last = start + dt.timedelta(hours=5 * count)
        for number, (sport, elapsed, distance) in enumerate(_MANUAL[: 1 if count < 10 else 2]):
            time = last + dt.timedelta(hours=5 * number + 1)
            activity_id = str(4_000_000_000 + (count + number) * 1_009)
            title = f"Manual {sport.names[language]}"
            expected.append(ExpectedActivity(activity_id, "", title, sport.stride, time, elapsed,
                                             distance, 0))  # fmt: skip
            rows.append(_row(expected[-1], sport, "", language))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_HEADERS[language])
        writer.writerows(rows)
        write("activities.csv", out.getvalue().encode())
        write("profile.csv", b"Athlete ID,Email Address,First Name,Last Name\n1,a@b.c,Ann,Lee\n")
        write("bikes.csv", b"Bike Name,Bike Brand,Bike Model,Bike Default Sport Types\n")
        write("shoes.csv", b"Shoe Name,Shoe Brand,Shoe Model,Shoe Default Sport Types\n")
        write("media/0a1b2c3d-photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200))
        for name, data in extra.items():
            write(name, data)
    return expected


def _row(activity: ExpectedActivity, sport: _Sport, description: str, language: str) -> list[str]:
    values = {
        "id": activity.activity_id,
        "date": _date(activity.start_time, language),
        "title": activity.title,
        "type": sport.names[language],
        "description": description,
        "elapsed": f"{activity.elapsed_seconds:.0f}",
        "distance_display": _number(activity.distance_meters / 1000, language, 2),
        "commute": "false",
        "gear": "Canyon Endurace" if sport.stride == "Ride" else "Pegasus 40",
        "file": activity.file_name,
        "distance_meters": _number(activity.distance_meters, language, 1),
        "media": "media/0a1b2c3d-photo.jpg" if activity.activity_id.endswith("7") else "",
    }
    return [values[column] if column else "" for column in _COLUMNS]

"""activities.csv read by meaning: English, German and French headers, reordered and extra
columns, BOM, `;`, quoted newlines, a Filename column found by content, bad rows."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.files import strava_export as export_module
from domain.files.model import FileError
from domain.files.strava_export import (
    parse_activities_csv,
    parse_date,
    parse_number,
    sport_from_export,
)
from domain.sports import SPORT_TYPES

EN = (
    "Activity ID,Activity Date,Activity Name,Activity Type,Activity Description,Elapsed Time,"
    "Distance,Max Heart Rate,Relative Effort,Commute,Activity Private Note,Activity Gear,"
    "Filename,Athlete Weight,Bike Weight,Elapsed Time,Moving Time,Distance,Max Speed\r\n"
    '4163856655,"Oct 7, 2020, 2:43:11 PM",Lunch Run,Run,"Easy, with ""strides""\r\nand a'
    ' second line",1834,5.07,171.0,41,false,,Pegasus 37,activities/4163856655.gpx,70,,'
    "1834.0,1790.0,5071.3,4.2\r\n"
    '4163856656,"Oct 8, 2020, 7:01:00 AM",Commute,Ride,,2400,12.50,,,true,,Canyon,'
    "activities/4163856656.fit.gz,,,2400.0,2300.0,12503.9,11.0\r\n"
    '4163856657,"Oct 9, 2020, 6:00:00 PM",Gym,Weight Training,,3600,0,,,false,,,,,,3600.0,'
    "3600.0,0.0,0\r\n"
)


def test_english_export() -> None:
    export = parse_activities_csv(EN.encode())
    run, ride, gym = export.rows
    assert run.activity_id == "4163856655"
    assert run.file_name == "activities/4163856655.gpx"
    assert run.title == "Lunch Run"
    assert run.sport_type == "Run"
    assert run.description == 'Easy, with "strides"\r\nand a second line'
    assert run.gear == "Pegasus 37"
    assert run.start_time == dt.datetime(2020, 10, 7, 14, 43, 11, tzinfo=dt.UTC)
    assert run.elapsed_seconds == 1834
    assert run.distance_meters == pytest.approx(5071.3)  # the metres column, not 5.07 km
    assert run.commute is False
    assert ride.commute is True
    assert ride.start_time == dt.datetime(2020, 10, 8, 7, 1, tzinfo=dt.UTC)
    assert gym.sport_type == "WeightTraining"
    assert gym.file_name == ""
    assert export.without_file() == [gym]


def test_lookup_by_entry_path() -> None:
    export = parse_activities_csv(EN.encode())
    run = export.rows[0]
    assert export.for_file("activities/4163856655.gpx") is run
    assert export.for_file("activities/4163856655.gpx.gz") is run
    assert export.for_file("export_12345/Activities/4163856655.GPX") is run
    assert export.for_file("activities/4163856656.fit") is export.rows[1]
    assert export.for_file("activities/4163856656.fit.gz") is export.rows[1]
    assert export.for_file("activities/999.gpx") is None
    assert export.for_file("") is None


DE = (
    "\ufeffDateiname;Aktivitätsart;Distanz;Aktivitäts-ID;Aktivitätsdatum;Name der Aktivität;"
    "Verstrichene Zeit;Aktivitätsbeschreibung;Distanz;Aktivitätsausrüstung;Pendeln;Unbekannt\n"
    'activities/1.gpx;Lauf;"5,07";1;"07.10.2020, 14:43:11";Morgenlauf;1834;"Zeile 1\n'
    'Zeile 2";5071,3;Schuh;false;x\n'
    "activities/2.tcx.gz;Radfahrt;12,5;2;2020-10-08 07:01:00;Pendeln;2400;;12503,9;Rad;true\n"
)


def test_german_export_with_semicolons_bom_and_decimal_commas() -> None:
    first, second = parse_activities_csv(DE.encode()).rows
    assert first.file_name == "activities/1.gpx"
    assert first.sport_type == "Run"
    assert first.activity_id == "1"
    assert first.title == "Morgenlauf"
    assert first.description == "Zeile 1\nZeile 2"
    assert first.start_time == dt.datetime(2020, 10, 7, 14, 43, 11, tzinfo=dt.UTC)
    assert first.distance_meters == pytest.approx(5071.3)
    assert first.gear == "Schuh"
    assert second.sport_type == "Ride"
    assert second.commute is True
    assert second.start_time == dt.datetime(2020, 10, 8, 7, 1, tzinfo=dt.UTC)
    assert second.distance_meters == pytest.approx(12503.9)


FR = (
    "Nom du fichier,ID de l'activité,Date de l'activité,Nom de l'activité,Type d'activité,"
    "Description de l'activité,Temps écoulé,Distance,Matériel de l'activité,Distance\n"
    'activities/9.fit.gz,9,"7 oct. 2020, 14:43:11",Sortie,Course à pied,,1834,"5,07",'
    "Chaussures,5071.3\n"
    'activities/10.gpx,10,"12 févr. 2021, 08:00:00",Vélo du soir,Vélo,,3600,20,,20000\n'
)


def test_french_export() -> None:
    first, second = parse_activities_csv(FR.encode("utf-8")).rows
    assert first.sport_type == "Run"
    assert first.start_time == dt.datetime(2020, 10, 7, 14, 43, 11, tzinfo=dt.UTC)
    assert first.distance_meters == pytest.approx(5071.3)
    assert first.gear == "Chaussures"
    assert second.sport_type == "Ride"
    assert second.start_time == dt.datetime(2021, 2, 12, 8, 0, tzinfo=dt.UTC)


def test_unknown_language_finds_file_and_id_by_content() -> None:
    data = (
        "Aktivnost,Datum,Naziv,Datoteka\n"
        "11,x,Tek,activities/11.gpx\n"
        "12,x,Vožnja,activities/12.fit.gz\n"
        "13,x,Ročno,\n"
    ).encode()
    export = parse_activities_csv(data)
    assert [(r.activity_id, r.file_name) for r in export.rows] == [
        ("11", "activities/11.gpx"),
        ("12", "activities/12.fit.gz"),
        ("13", ""),
    ]
    assert export.rows[0].title is None
    assert export.for_file("activities/12.fit") is export.rows[1]


def test_single_distance_column_is_km() -> None:
    data = b"Activity ID,Distance,Filename\n1,5.5,activities/1.gpx\n"
    (row,) = parse_activities_csv(data).rows
    assert row.distance_meters == pytest.approx(5500)


def test_short_bad_and_blank_rows_never_raise() -> None:
    data = (
        b"Activity ID,Activity Date,Activity Name,Elapsed Time,Distance,Filename\n"
        b"1\n"
        b",,,,,\n"
        b"\n"
        b"2,not a date,Name,-5,abc,activities/2.gpx,extra,cells\n"
        b'3,"Jan 1, 2021, 1:00:00 AM",Unclosed "quote,10,1.0,activities/3.gpx\n'
    )
    rows = parse_activities_csv(data).rows
    assert [r.activity_id for r in rows] == ["1", "2", "3"]
    assert rows[0].file_name == ""
    assert rows[0].start_time is None
    assert rows[1].start_time is None
    assert rows[1].elapsed_seconds is None
    assert rows[1].distance_meters is None
    assert rows[2].start_time == dt.datetime(2021, 1, 1, 1, 0, tzinfo=dt.UTC)


def test_utf16_and_latin1_text() -> None:
    text = "Activity ID,Activity Name,Filename\n1,Café,activities/1.gpx\n"
    assert parse_activities_csv(text.encode("utf-16")).rows[0].title == "Café"
    assert parse_activities_csv(text.encode("latin-1")).rows[0].title == "Café"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x01\x02binary\x00", b"just,some,columns\nno,strava,here\n", b"\n\n"],
)
def test_unreadable_csv_is_corrupt(data: bytes) -> None:
    with pytest.raises(FileError) as caught:
        parse_activities_csv(data)
    assert caught.value.reason == "FILE_CORRUPT"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oct 7, 2020, 2:43:11 PM", (2020, 10, 7, 14, 43, 11)),
        ("Dec 31, 2019, 12:05:00 AM", (2019, 12, 31, 0, 5, 0)),
        ("Jun 1, 2022, 12:30:00 PM", (2022, 6, 1, 12, 30, 0)),
        ("2020-10-07 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("2020-10-07T14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("7 oct. 2020, 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("07.10.2020, 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("07/10/2020 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("7 mar 2021, 09:00:00", (2021, 3, 7, 9, 0, 0)),
        ("7 de out. de 2020 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("7 de oct. de 2020, 2:43:11 p. m.", (2020, 10, 7, 14, 43, 11)),
        ("7 ott 2020, 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("7 okt. 2020 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("7. März 2020, 14:43:11", (2020, 3, 7, 14, 43, 11)),
        ("2020年10月7日 14:43:11", (2020, 10, 7, 14, 43, 11)),
        ("2020/10/07 午後2:43:11", (2020, 10, 7, 14, 43, 11)),
    ],
)
def test_dates(text: str, expected: tuple[int, int, int, int, int, int]) -> None:
    assert parse_date(text) == dt.datetime(*expected, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "text", ["", "Oct 7, 2020", "yesterday", "Foo 7, 2020, 2:43:11 PM", "31.02.2020, 10:00:00"]
)
def test_unparseable_dates_are_none(text: str) -> None:
    assert parse_date(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5.07", 5.07), ("5,07", 5.07), ("1,234.5", 1234.5), ("1.234,5", 1234.5), ("nan", None)],
)
def test_numbers(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("value", "sport"),
    [
        ("Run", "Run"),
        ("Virtual Ride", "VirtualRide"),
        ("Nordic Ski", "NordicSki"),
        ("Weight Training", "WeightTraining"),
        ("E-Bike Ride", "EBikeRide"),
        ("Lauf", "Run"),
        ("Radfahrt", "Ride"),
        ("Course à pied", "Run"),
        ("Vélo", "Ride"),
        ("Carrera", "Run"),
        ("Bicicleta", "Ride"),
        ("Wanderung", "Hike"),
        ("Something New", None),
        ("", None),
    ],
)
def test_sport_types(value: str, sport: str | None) -> None:
    assert sport_from_export(value) == sport
    assert sport is None or sport in SPORT_TYPES


@pytest.mark.parametrize(
    "header",
    [
        "ID de actividad,Fecha de la actividad,Nombre de la actividad,Tipo de actividad,Distancia,"
        "Nombre del archivo",
        "ID attività,Data attività,Nome attività,Tipo di attività,Distanza,Nome file",
        "ID da atividade,Data da atividade,Nome da atividade,Tipo de atividade,Distância,"
        "Nome do arquivo",
        "Activiteit-ID,Activiteitsdatum,Naam activiteit,Activiteitstype,Afstand,Bestandsnaam",
        "アクティビティID,アクティビティの日付,アクティビティ名,アクティビティタイプ,距離,ファイル名",
    ],
)
def test_other_languages(header: str) -> None:
    data = f'{header}\n5,"2020-10-07 14:43:11",Titel,Run,"5,5",activities/5.gpx\n'.encode()
    (row,) = parse_activities_csv(data).rows
    assert (row.activity_id, row.title, row.sport_type) == ("5", "Titel", "Run")
    assert row.start_time == dt.datetime(2020, 10, 7, 14, 43, 11, tzinfo=dt.UTC)
    assert row.distance_meters == pytest.approx(5500)
    assert row.file_name == "activities/5.gpx"


def test_header_and_sport_tables_do_not_collide() -> None:
    """Each normalised header name means one column, each alias one sport."""
    meanings: dict[str, str] = {}
    for key, names in export_module._HEADERS.items():
        for name in names:
            assert meanings.setdefault(export_module.normalise(name), key) == key, name
    sports = {export_module.normalise(s): s for s in SPORT_TYPES}
    for sport, aliases in export_module._SPORT_ALIASES.items():
        for alias in aliases:
            assert sports.setdefault(export_module.normalise(alias), sport) == sport, alias

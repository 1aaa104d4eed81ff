"""`activities.csv` of a Strava bulk export, read by meaning.

Decisions:
- Columns are found by what their header means, never by position: Strava adds, drops and
  reorders columns over time and localizes the headers. Headers are normalised (accents,
  case, punctuation, whitespace dropped) and looked up in a table of the names Strava uses
  in English, German, French, Spanish, Italian, Portuguese, Dutch and Japanese. Unknown
  columns are ignored.
- When no header is known (another language), two columns can still be found by content:
  the file name (values like `activities/123.gpx`) and the id (all digits, column 0). A csv
  where neither headers nor content yield a column is FILE_CORRUPT.
- Distance: exports carry two `Distance` columns, the first in the athlete's display units
  (km or mi) and a later one in metres; the later one is used. With only one, it is taken as
  km (the default display unit; an imperial account's older exports would be 1.6x off, and
  the activity file's own distance still wins where there is a file). Numbers may use a
  decimal comma.
- Elapsed time: the first `Elapsed Time` column (seconds; both copies agree), also accepted
  as h:mm:ss.
- Dates are UTC (Strava writes them so). Month names are matched from a table, not the
  process locale, so `Oct 7, 2020, 2:43:11 PM`, `7 oct. 2020, 14:43:11`,
  `7 de out. de 2020 14:43:11`, `07.10.2020, 14:43:11`, `2020-10-07 14:43:11` and
  `2020年10月7日 14:43:11` all parse. Numeric dates with `.` or `/` are day first (the US
  form uses a month name). A date without a time is None: it places nothing precisely.
- The delimiter is `,`, `;` or tab, whichever the header line holds most of. Text is UTF-8
  (with or without BOM), UTF-16 with BOM, else Latin-1.
- Bad rows never raise: a row the csv module rejects, or an empty one, is skipped; missing
  cells are None.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from domain.files.model import FileError
from domain.sports import SPORT_TYPES


@dataclass(frozen=True)
class ExportRow:
    activity_id: str  # Strava activity id ("" if missing)
    file_name: str  # normalised like 'activities/4163856655.gpx' ('' for manual activities)
    title: str | None
    sport_type: str | None  # a Stride sport type (domain.sports), None if unknown
    description: str | None
    gear: str | None
    start_time: dt.datetime | None  # aware UTC
    elapsed_seconds: float | None
    distance_meters: float | None
    commute: bool | None = None


def _file_key(name: str) -> str:
    key = name.strip().replace("\\", "/").lstrip("./").casefold()
    return key[:-3] if key.endswith(".gz") else key


@dataclass(frozen=True)
class StravaExport:
    rows: list[ExportRow]
    _by_file: dict[str, ExportRow] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_file: dict[str, ExportRow] = {}
        for row in self.rows:
            if row.file_name:
                by_file.setdefault(_file_key(row.file_name), row)
        object.__setattr__(self, "_by_file", by_file)

    def for_file(self, name: str) -> ExportRow | None:
        """The row for an archive entry; tolerates a top-level folder, `.gz` or not, case."""
        key = _file_key(name)
        row = self._by_file.get(key)
        if row is None and "/" in key:
            row = self._by_file.get(key.split("/", 1)[1])
        return row

    def without_file(self) -> list[ExportRow]:
        """Manual activities: rows without a file."""
        return [row for row in self.rows if not row.file_name]


def normalise(text: str) -> str:
    """Lower case, no accents, letters and digits only: 'Aktivitäts-ID' -> 'aktivitatsid'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if c.isalnum())


_HEADERS: dict[str, tuple[str, ...]] = {
    "id": (
        "Activity ID", "Aktivitäts-ID", "ID de l'activité", "ID de actividad",
        "ID de la actividad", "ID attività", "ID dell'attività", "ID da atividade",
        "Activiteit-ID", "Activiteits-ID", "アクティビティID",
    ),
    "date": (
        "Activity Date", "Aktivitätsdatum", "Datum der Aktivität", "Date de l'activité",
        "Fecha de la actividad", "Fecha de actividad", "Data attività", "Data dell'attività",
        "Data da atividade", "Activiteitsdatum", "Datum activiteit", "アクティビティの日付",
        "アクティビティ日",
    ),
    "title": (
        "Activity Name", "Name der Aktivität", "Aktivitätsname", "Nom de l'activité",
        "Nombre de la actividad", "Nombre de actividad", "Nome attività",
        "Nome dell'attività", "Nome da atividade", "Naam activiteit", "Activiteitsnaam",
        "アクティビティ名",
    ),
    "type": (
        "Activity Type", "Aktivitätsart", "Aktivitätstyp", "Sportart", "Type d'activité",
        "Tipo de actividad", "Tipo di attività", "Tipo attività", "Tipo de atividade",
        "Activiteitstype", "Type activiteit", "アクティビティタイプ", "アクティビティの種類",
    ),
    "description": (
        "Activity Description", "Aktivitätsbeschreibung", "Beschreibung der Aktivität",
        "Description de l'activité", "Descripción de la actividad", "Descrizione attività",
        "Descrizione dell'attività", "Descrição da atividade", "Beschrijving activiteit",
        "Activiteitsbeschrijving", "アクティビティの説明",
    ),
    "elapsed": (
        "Elapsed Time", "Verstrichene Zeit", "Gesamtzeit", "Temps écoulé",
        "Tiempo transcurrido", "Tempo trascorso", "Tempo decorrido", "Verstreken tijd",
        "経過時間",
    ),
    "distance": (
        "Distance", "Distanz", "Entfernung", "Distancia", "Distanza", "Distância",
        "Afstand", "距離",
    ),
    "gear": (
        "Activity Gear", "Aktivitätsausrüstung", "Ausrüstung", "Matériel de l'activité",
        "Équipement de l'activité", "Equipo de la actividad", "Equipamiento de la actividad",
        "Attrezzatura attività", "Attrezzatura dell'attività", "Equipamento da atividade",
        "Uitrusting activiteit", "Activiteitsuitrusting", "アクティビティのギア", "ギア",
    ),
    "file": (
        "Filename", "File Name", "Dateiname", "Nom du fichier", "Nom de fichier",
        "Nombre del archivo", "Nombre de archivo", "Nome file", "Nome del file",
        "Nome do arquivo", "Nome do ficheiro", "Bestandsnaam", "ファイル名",
    ),
    "commute": (
        "Commute", "Pendeln", "Arbeitsweg", "Trajet domicile-travail", "Trajet",
        "Desplazamiento", "Desplazamiento al trabajo", "Tragitto casa-lavoro", "Pendolarismo",
        "Deslocamento", "Trajeto casa-trabalho", "Woon-werkverkeer", "通勤",
    ),
}  # fmt: skip
_HEADER_KEYS: dict[str, str] = {
    normalise(name): key for key, names in _HEADERS.items() for name in names
}

# "Activity Type" values beyond Strava's own sport names (which match after normalising:
# "Virtual Ride" -> VirtualRide), localized ones included.
_SPORT_ALIASES: dict[str, tuple[str, ...]] = {
    "Run": (
        "Running", "Lauf", "Laufen", "Course à pied", "Course", "Carrera", "Correr", "Corsa",
        "Corrida", "Hardlopen", "Loop", "ラン", "ランニング",
    ),
    "Ride": (
        "Cycling", "Radfahrt", "Radfahren", "Vélo", "Sortie à vélo", "Bicicleta", "Ciclismo",
        "Giro in bici", "Bici", "Pedalada", "Fietsrit", "Fietsen", "ライド", "サイクリング",
    ),
    "VirtualRide": (
        "Virtuelle Radfahrt", "Vélo virtuel", "Bicicleta virtual", "Pedalata virtuale",
        "Giro in bici virtuale", "Pedalada virtual", "Virtuele fietsrit", "バーチャルライド",
    ),
    "VirtualRun": (
        "Virtueller Lauf", "Course virtuelle", "Carrera virtual", "Corsa virtuale",
        "Corrida virtual", "Virtuele hardloopsessie", "バーチャルラン",
    ),
    "TrailRun": ("Traillauf", "Trail", "Carrera por montaña", "Corrida em trilha", "トレイルラン"),
    "Walk": (
        "Walking", "Spaziergang", "Gehen", "Marche", "Caminata", "Camminata", "Caminhada",
        "Wandeling", "Wandelen", "ウォーク",
    ),
    "Hike": (
        "Hiking", "Wanderung", "Wandern", "Randonnée", "Excursionismo", "Senderismo",
        "Escursione", "Escursionismo", "Trilha", "Trekking", "ハイキング",
    ),
    "Swim": (
        "Swimming", "Schwimmen", "Natation", "Natación", "Nuoto", "Natação", "Zwemmen", "スイム",
    ),
    "WeightTraining": (
        "Krafttraining", "Musculation", "Entrenamiento con pesas", "Allenamento con i pesi",
        "Musculação", "Treino com pesos", "Krachttraining", "ウェイトトレーニング",
    ),
    "NordicSki": (
        "Skilanglauf", "Langlauf", "Ski nordique", "Ski de fond", "Esquí nórdico",
        "Esquí de fondo", "Sci nordico", "Sci di fondo", "Esqui nórdico", "Langlaufen",
        "クロスカントリースキー",
    ),
    "AlpineSki": ("Ski alpin", "Alpinski", "Esquí alpino", "Sci alpino", "Esqui alpino", "Skiën"),
    "MountainBikeRide": (
        "Mountainbike-Fahrt", "VTT", "Bicicleta de montaña", "Mountain bike",
        "Mountainbikerit", "マウンテンバイクライド",
    ),
    "EBikeRide": ("E-Bike-Fahrt", "Vélo électrique", "Bicicleta eléctrica", "E-bike"),
    "Rowing": ("Rudern", "Aviron", "Remo", "Canottaggio", "Roeien"),
    "Canoeing": ("Canoe", "Kanufahren", "Canoë", "Canoa", "Kanoën"),
    "RockClimbing": ("Rock Climb", "Klettern", "Escalade", "Escalada", "Arrampicata", "Klimmen"),
    "HighIntensityIntervalTraining": ("HIIT",),
    "Sail": ("Sailing", "Segeln", "Voile", "Vela", "Zeilen"),
    "Workout": (
        "Training", "Entraînement", "Entrenamiento", "Allenamento", "Treino", "ワークアウト",
    ),
}  # fmt: skip
_SPORTS: dict[str, str] = {normalise(sport): sport for sport in SPORT_TYPES} | {
    normalise(alias): sport for sport, aliases in _SPORT_ALIASES.items() for alias in aliases
}


def sport_from_export(value: str | None) -> str | None:
    """A Stride sport type for an "Activity Type" cell, None when unknown."""
    return None if value is None else _SPORTS.get(normalise(value))


_MONTHS: dict[int, tuple[str, ...]] = {
    1: ("jan", "january", "januar", "janner", "janv", "janvier", "ene", "enero", "gen",
        "gennaio", "janeiro", "januari"),
    2: ("feb", "february", "februar", "fevr", "fevrier", "fev", "febrero", "febbraio",
        "fevereiro", "februari"),
    3: ("mar", "march", "marz", "mars", "marzo", "marco", "mrt", "maart"),
    4: ("apr", "april", "avr", "avril", "abr", "abril", "aprile"),
    5: ("may", "mai", "mayo", "mag", "maggio", "maio", "mei"),
    6: ("jun", "june", "juni", "juin", "junio", "giu", "giugno", "junho"),
    7: ("jul", "july", "juli", "juil", "juillet", "julio", "lug", "luglio", "julho"),
    8: ("aug", "august", "aout", "ago", "agosto", "augustus"),
    9: ("sep", "sept", "september", "septembre", "septiembre", "set", "settembre", "setembro"),
    10: ("oct", "october", "okt", "oktober", "octobre", "octubre", "ott", "ottobre", "out",
         "outubro"),
    11: ("nov", "november", "novembre", "noviembre", "novembro"),
    12: ("dec", "december", "dez", "dezember", "decembre", "dic", "diciembre", "dicembre",
         "dezembro"),
}  # fmt: skip
_MONTH_BY_NAME = {name: month for month, names in _MONTHS.items() for name in names}

_TIME = re.compile(
    r"(?:(午前|午後)\s*)?(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?"
    r"(?:\s*([ap])\.?\s?m\b\.?)?",
    re.IGNORECASE,
)
_YEAR_FIRST = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})")
_DAY_FIRST = re.compile(r"(\d{1,2})\s*[./-]\s*(\d{1,2})\s*[./-]\s*(\d{4})")


def parse_date(text: str | None) -> dt.datetime | None:
    """A Strava export date (see the module docstring) as aware UTC, or None."""
    if not text:
        return None
    match = _TIME.search(text)
    if match is None:
        return None
    hour, minute, second = int(match[2]), int(match[3]), int(match[4] or 0)
    meridiem = (match[5] or "").lower() or {"午前": "a", "午後": "p"}.get(match[1] or "", "")
    if meridiem and not 1 <= hour <= 12:
        return None
    if meridiem == "p" and hour != 12:
        hour += 12
    elif meridiem == "a" and hour == 12:
        hour = 0
    rest = text[: match.start()] + " " + text[match.end() :]
    date = _date_part(rest)
    if date is None:
        return None
    try:
        return dt.datetime(*date, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        return None


def _date_part(text: str) -> tuple[int, int, int] | None:
    if match := _YEAR_FIRST.search(text):
        return int(match[1]), int(match[2]), int(match[3])
    if match := _DAY_FIRST.search(text):
        return int(match[3]), int(match[2]), int(match[1])
    month = next(
        (_MONTH_BY_NAME[w] for w in map(normalise, re.findall(r"[^\W\d_]+", text))
         if w in _MONTH_BY_NAME),
        None,
    )  # fmt: skip
    numbers = re.findall(r"\d+", text)
    years = [int(n) for n in numbers if len(n) == 4]
    days = [int(n) for n in numbers if len(n) <= 2]
    if month is None or len(years) != 1 or not days:
        return None
    return years[0], month, days[0]


def parse_number(text: str | None) -> float | None:
    """'5.01', '5,01', '1,234.5', '1.234,5', '1 234,5' -> float; None when not a number."""
    if text is None:
        return None
    value = text.strip().replace("\u00a0", "").replace(" ", "").replace("\u202f", "")
    if "," in value and "." in value:
        thousands = "," if value.rfind(",") < value.rfind(".") else "."
        value = value.replace(thousands, "")
    value = value.replace(",", ".")
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def parse_duration(text: str | None) -> float | None:
    """Seconds from '3600', '3600.0' or '1:00:00'."""
    if text is not None and ":" in text:
        parts = [parse_number(p) for p in text.strip().split(":")]
        if len(parts) > 3 or any(p is None or p < 0 for p in parts):
            return None
        seconds = 0.0
        for part in parts:
            assert part is not None
            seconds = seconds * 60 + part
        return seconds
    value = parse_number(text)
    return value if value is None or value >= 0 else None


_TRUE = {"true", "yes", "1", "ja", "wahr", "oui", "vrai", "si", "sim", "vero"}
_FALSE = {"false", "no", "0", "nein", "falsch", "non", "faux", "nao", "nee", "falso"}


def _flag(text: str | None) -> bool | None:
    key = normalise(text or "")
    return True if key in _TRUE else False if key in _FALSE else None


_FILE_VALUE = re.compile(r"^activities/[^/]+\.(gpx|tcx|fit)(\.gz)?$", re.IGNORECASE)


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FileError("FILE_CORRUPT", f"activities.csv: bad UTF-16 text: {exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _rows(text: str, delimiter: str) -> Iterator[list[str]]:
    """csv rows; a row the csv module rejects (a NUL, a field over its size limit) is
    skipped, and reading goes on with the next line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            continue


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> dict[str, list[int]]:
    """Column indices by meaning, in header order; content fallbacks for file and id."""
    columns: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        key = _HEADER_KEYS.get(normalise(name))
        if key is not None:
            columns.setdefault(key, []).append(index)

    def cells(index: int) -> list[str]:
        return [row[index].strip() for row in rows if index < len(row) and row[index].strip()]

    if "file" not in columns:
        for index in range(len(header)):
            values = cells(index)
            if values and sum(bool(_FILE_VALUE.match(v)) for v in values) * 2 > len(values):
                columns["file"] = [index]
                break
    if "id" not in columns and header:
        values = cells(0)
        if values and all(v.isdigit() for v in values):
            columns["id"] = [0]
    return columns


def parse_activities_csv(data: bytes) -> StravaExport:
    """Read activities.csv (see the module docstring). Raises FileError FILE_CORRUPT when
    nothing in it can be read as Strava activities."""
    text = _decode(data)
    if "\x00" in text[:4096]:
        raise FileError("FILE_CORRUPT", "activities.csv is not text")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    rows = list(_rows(text, delimiter))
    if not rows:
        raise FileError("FILE_CORRUPT", "activities.csv is empty")
    header, body = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    columns = _columns(header, body)
    if "file" not in columns and "id" not in columns:
        raise FileError("FILE_CORRUPT", "activities.csv has no recognisable columns")
    return StravaExport([_row(row, columns) for row in body])


def _row(row: Sequence[str], columns: dict[str, list[int]]) -> ExportRow:
    def cell(key: str, which: int = 0) -> str | None:
        indices = columns.get(key)
        if not indices or indices[which] >= len(row):
            return None
        return row[indices[which]].strip() or None

    distances = columns.get("distance", [])
    if len(distances) >= 2:
        distance = parse_number(cell("distance", -1))
    else:
        km = parse_number(cell("distance"))
        distance = None if km is None else km * 1000
    file_name = (cell("file") or "").replace("\\", "/").lstrip("/")
    return ExportRow(
        activity_id=cell("id") or "",
        file_name=file_name,
        title=cell("title"),
        sport_type=sport_from_export(cell("type")),
        description=cell("description"),
        gear=cell("gear"),
        start_time=parse_date(cell("date")),
        elapsed_seconds=parse_duration(cell("elapsed")),
        distance_meters=distance if distance is None or distance >= 0 else None,
        commute=_flag(cell("commute")),
    )

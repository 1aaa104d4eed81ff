"""How results are shown: rich tables for people, protobuf JSON for scripts.

`--json` prints one JSON document per command (lists: the collected items under the
response's own field name, with `next_page_token`), and JSON lines for watches and
imports. Field names are the protos' own (`preserving_proto_field_name`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from rich.console import Console
from rich.table import Table


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


PIPE_WIDTH = 240
WHOLE_COLUMNS = frozenset({"id", "name", "job", "athlete"})


class Output:
    """Where a command writes: stdout for results, stderr for errors and notices."""

    def __init__(self, as_json: bool, force_terminal: bool | None = None) -> None:
        self.as_json = as_json
        self.console = Console(force_terminal=force_terminal, highlight=False, soft_wrap=False)
        if not self.console.is_terminal and "COLUMNS" not in os.environ:
            # Piped into a file or another program: rows stay whole, not cut at 80 columns.
            self.console.width = PIPE_WIDTH
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def json_line(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def message(self, message: Message) -> None:
        self.json(to_dict(message))

    def notice(self, text: str) -> None:
        """Something for the person at the terminal (stderr, so stdout stays the result)."""
        self.errors.print(text, markup=False)

    def error(self, lines: Sequence[str]) -> None:
        for index, line in enumerate(lines):
            self.errors.print(line, style="bold red" if index == 0 else "red", markup=False)

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None
    ) -> None:
        found = [list(row) for row in rows]
        if not found:
            self.console.print(f"(no {title.lower() if title else 'rows'})", markup=False)
            return
        table = Table(title=title, header_style="bold")
        for index, column in enumerate(columns):
            longest = max(
                (len(part) for row in found for part in row[index].splitlines()), default=0
            )
            # Ids stay whole (they are copied into other commands); short values such as
            # states and dates keep their width, long text wraps.
            whole = column in WHOLE_COLUMNS
            table.add_column(
                column,
                overflow="fold",
                no_wrap=whole,
                min_width=max(len(column), min(longest, 16)),
            )
        for row in found:
            table.add_row(*row)
        self.console.print(table)

    def fields(self, pairs: Iterable[tuple[str, str]], title: str | None = None) -> None:
        table = Table(title=title, show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in pairs:
            if value:
                table.add_row(key, value)
        self.console.print(table)


def enum_label(name: str, prefix: str) -> str:
    """`SPORT_TYPE_TRAIL_RUN` -> `trail run`."""
    if name.endswith("_UNSPECIFIED"):
        return ""
    return name.removeprefix(prefix).replace("_", " ").lower()


def seconds(value: Duration) -> float:
    return value.seconds + value.nanos / 1e9


def duration(value: Duration | float) -> str:
    total = value if isinstance(value, float | int) else seconds(value)
    if total <= 0:
        return ""
    whole = round(total)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def kilometres(meters: float) -> str:
    return f"{meters / 1000:.2f} km" if meters else ""


def pace(meters: float, value: Duration) -> str:
    """Minutes per kilometre."""
    total = seconds(value)
    if meters <= 0 or total <= 0:
        return ""
    return duration(total * 1000 / meters) + " /km"


def timestamp(value: Timestamp, has: bool = True) -> str:
    if not has or (value.seconds == 0 and value.nanos == 0):
        return ""
    return value.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def date(value: date_pb2.Date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}" if value.year else ""


def number(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if value else ""


def short_id(name: str) -> str:
    """The last segment of a resource name."""
    return name.rsplit("/", 1)[-1]


def enum_names(descriptor: Any) -> list[str]:
    """The names of a proto enum's values, in order, without the UNSPECIFIED zero."""
    return [value.name for value in descriptor.values if value.number != 0]

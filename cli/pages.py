"""Walking `List*` pages up to a limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")

limit_option = click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="At most this many items (0: all of them).",
)
page_size_option = click.option(
    "--page-size",
    type=int,
    default=None,
    help="Items per request (the server checks it) [default: from --limit].",
)


def collect(
    fetch: Callable[[int, str], Any],
    items: Callable[[Any], list[T]],
    limit: int,
    page_size: int | None,
) -> tuple[list[T], str]:
    """Items of successive pages until `limit` (0: no limit) or the last page; the token
    of the page after the items returned ("" when there is none)."""
    size = page_size if page_size is not None else (min(limit, 1000) if limit else 1000)
    found: list[T] = []
    token = ""
    while True:
        page = fetch(size, token)
        found.extend(items(page))
        token = page.next_page_token
        if not token or (limit and len(found) >= limit):
            break
    if limit and len(found) > limit:
        found = found[:limit]
    return found, token

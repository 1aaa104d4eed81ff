"""Injectable faults: armed through the Python API or ``POST /_sim/faults``.

Kinds:

* ``error``: answer ``status`` (500 by default; 502/503/504 come back as an HTML page, as a
  load balancer would send them) instead of handling the request.
* ``delay``: wait ``seconds`` before handling the request normally.
* ``hang``: never answer; the request ends when the client gives up (closes the connection),
  when the fault is cleared, when the simulator stops, or after ``max_hang_seconds``.
* ``malformed``: a 200 whose JSON body is cut short.
* ``disconnect``: close the connection without any response.

Each fault applies to the next ``count`` matching requests (``None``: until cleared); ``match``
limits it to paths containing that text (e.g. ``"/streams"``). Faults only touch the Strava
API and OAuth endpoints, never the ``/_sim`` control API.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

KINDS = ("error", "delay", "hang", "malformed", "disconnect")


@dataclass
class Fault:
    kind: str
    count: int | None = 1
    status: int = 500
    seconds: float = 0.0
    match: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 (or None: until cleared)")
        if self.kind == "error" and not 400 <= self.status <= 599:
            raise ValueError("an error fault's status is 4xx or 5xx")

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "count": self.count,
            "status": self.status,
            "seconds": self.seconds,
            "match": self.match,
        }


@dataclass(frozen=True)
class Plan:
    """What to do to one request: wait first, then at most one terminal fault."""

    delay: float = 0.0
    terminal: Fault | None = None


class FaultBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.released = threading.Event()  # set to end every hanging request

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)
            self.released.clear()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self.released.set()

    def active(self) -> list[dict[str, object]]:
        with self._lock:
            return [fault.describe() for fault in self._faults]

    def take(self, path: str) -> Plan:
        """Consume the faults that apply to a request for ``path``."""
        delay = 0.0
        terminal: Fault | None = None
        with self._lock:
            for fault in list(self._faults):
                if fault.match is not None and fault.match not in path:
                    continue
                if fault.kind == "delay":
                    delay += fault.seconds
                elif terminal is None:
                    terminal = fault
                else:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
        return Plan(delay, terminal)

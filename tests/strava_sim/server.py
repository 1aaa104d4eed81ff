"""The Strava-compatible HTTP server and its Python control API.

``StravaSimulator`` is a real ``ThreadingHTTPServer`` on a real port (0 picks a free one).
It serves Strava's OAuth endpoints (``/oauth/...``), the API (``/api/v3/...``) and a control
API for tests and demos (``/_sim/...``, never rate-limited or faulted). Use it in-process::

    with StravaSimulator(SimConfig(athletes=2, activities=40, stream_step=10)) as sim:
        code = sim.authorize(sim.athlete_ids[0])
        httpx.post(f"{sim.base_url}/oauth/token", data={...})

or as a process: ``python -m tests.strava_sim --port 8700``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import html
import json
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from email import policy
from email.parser import BytesParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.strava_sim import payloads
from tests.strava_sim.auth import Auth, Grant, parse_scopes
from tests.strava_sim.config import SimConfig
from tests.strava_sim.errors import (
    ApiError,
    bad_request,
    missing_scope,
    not_found,
    rate_limited,
)
from tests.strava_sim.faults import Fault, FaultBoard
from tests.strava_sim.ratelimit import RateLimiter
from tests.strava_sim.streams import ALL_STREAM_TYPES, Streams, generate
from tests.strava_sim.webhooks import Delivery, Webhooks
from tests.strava_sim.world import Activity, Athlete, World

Params = dict[str, list[str]]
JSON_TYPE = "application/json; charset=utf-8"
LOG_LIMIT = 100_000
EDITABLE = ("name", "sport_type", "visibility", "private", "description")


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    action: str | None = None  # "hang" or "disconnect": no response at all


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, data, JSON_TYPE, dict(headers or {}))


def _one(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _int_param(params: Params, name: str, resource: str = "Application") -> int | None:
    value = _one(params, name)
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except ValueError:
        raise bad_request(resource, name) from None


def _bool_param(params: Params, name: str, default: bool) -> bool:
    value = _one(params, name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes", "on")


def _epoch(value: str | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    except ValueError:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class StravaSimulator:
    """A simulated Strava: world, OAuth, rate limits, faults, webhooks, request log."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        **overrides: Any,
    ) -> None:
        """``clock`` (epoch seconds) drives token expiry, rate-limit windows and event times:
        tests can pass a settable one to cross windows without sleeping."""
        self.config = dataclasses.replace(config or SimConfig(), **overrides)
        self.clock = clock
        self.lock = threading.RLock()
        self.world = World(self.config)
        self.auth = Auth(self.config, clock)
        self.limiter = RateLimiter(self.config, clock)
        self.faults = FaultBoard()
        self.webhooks = Webhooks(self.config, clock)
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LIMIT)
        self.counts: collections.Counter[str] = collections.Counter()
        self._streams: collections.OrderedDict[int, Streams] = collections.OrderedDict()
        self._streams_lock = threading.Lock()
        self.application_active = True
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> StravaSimulator:
        handler = type("BoundHandler", (_Handler,), {"sim": self})
        server = _Server((self.config.host, self.config.port), handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.faults.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self.lock:
            connections = list(self._connections)
        for connection in connections:  # keep-alive connections die with the server
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.webhooks.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StravaSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler, say)."""
        self._stopping.wait()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: Strava's ``https://www.strava.com`` (OAuth lives here)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``…/api/v3``: Strava's ``https://www.strava.com/api/v3``."""
        return f"{self.base_url}/api/v3"

    # -- the world -----------------------------------------------------------------------------

    @property
    def athlete_ids(self) -> list[int]:
        return list(self.world.athletes)

    def athlete(self, athlete_id: int) -> Athlete:
        return self.world.athletes[athlete_id]

    def activities(self, athlete_id: int, include_private: bool = True) -> list[Activity]:
        """The athlete's activities (not deleted), newest first."""
        with self.lock:
            found = [
                a
                for a in self.world.athlete_activities(athlete_id)
                if include_private or not a.private
            ]
        return sorted(found, key=lambda a: a.start, reverse=True)

    def activity(self, activity_id: int) -> Activity:
        return self.world.activities[activity_id]

    def streams(self, activity: Activity) -> Streams | None:
        """The activity's streams (cached; ``None`` for manual activities)."""
        if activity.manual:
            return None
        with self._streams_lock:
            cached = self._streams.get(activity.id)
            if cached is not None:
                self._streams.move_to_end(activity.id)
                return cached
        made = generate(activity, self.config.stream_step)
        with self._streams_lock:
            self._streams[activity.id] = made
            while len(self._streams) > self.config.stream_cache_size:
                self._streams.popitem(last=False)
        return made

    # -- OAuth shortcuts -----------------------------------------------------------------------

    def authorize(self, athlete_id: int, scope: str = "read,activity:read_all") -> str:
        """An authorization code, as if the athlete consented on the authorize page."""
        with self.lock:
            self.world.athletes[athlete_id]
            return self.auth.issue_code(athlete_id, parse_scopes(scope))

    def tokens(self, athlete_id: int, scope: str = "read,activity:read_all") -> dict[str, Any]:
        """A token response (with the athlete) without going through HTTP."""
        with self.lock:
            grant = self.auth.exchange(self.authorize(athlete_id, scope))
            return self.auth.token_body(grant, self.world.athletes[athlete_id].summary())

    def expire_tokens(self, athlete_id: int | None = None) -> int:
        """Make current access tokens (one athlete's, or everyone's) expired now."""
        with self.lock:
            return self.auth.expire(athlete_id)

    def revoke(self, athlete_id: int) -> Delivery | None:
        """The athlete revokes access on Strava's settings page: tokens die, an event is sent."""
        with self.lock:
            revoked = self.auth.revoke_athlete(athlete_id)
        if not revoked:
            return None
        return self.webhooks.push(
            "athlete", athlete_id, "update", athlete_id, {"authorized": "false"}
        )

    # -- faults --------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        self.faults.add(fault)

    def fail_next(self, count: int = 1, status: int = 500, match: str | None = None) -> None:
        self.inject(Fault("error", count, status=status, match=match))

    def slow(self, seconds: float, count: int | None = None, match: str | None = None) -> None:
        self.inject(Fault("delay", count, seconds=seconds, match=match))

    def hang(self, count: int | None = 1, match: str | None = None) -> None:
        self.inject(Fault("hang", count, match=match))

    def malformed(self, count: int = 1, match: str | None = None) -> None:
        self.inject(Fault("malformed", count, match=match))

    def disconnect(self, count: int = 1, match: str | None = None) -> None:
        self.inject(Fault("disconnect", count, match=match))

    def clear_faults(self) -> None:
        """Remove every fault and release hanging requests."""
        self.faults.clear()

    def set_application_active(self, active: bool) -> None:
        """An inactive application (its owner has no Strava subscription, since mid-2026) gets
        a 403 on every request, as Strava answers then."""
        self.application_active = active

    def vanish(self, athlete_id: int, vanished: bool = True) -> None:
        """The athlete's activity list comes back empty (details still answer)."""
        with self.lock:
            self.world.athletes[athlete_id].history_vanished = vanished

    # -- edits on "Strava" ---------------------------------------------------------------------

    def update_activity(self, activity_id: int, notify: bool = True, **fields: Any) -> Activity:
        """Edit an activity as its owner would on strava.com; sends an ``update`` event.

        Fields: ``name``, ``sport_type``, ``visibility`` (or ``private``), ``description``.
        The event's ``updates`` carry Strava's keys (``title``, ``type``, ``private``).
        """
        updates: dict[str, str] = {}
        with self.lock:
            activity = self._live_activity(activity_id)
            for key, value in fields.items():
                if key not in EDITABLE:
                    raise ValueError(f"{key} cannot be edited (editable: {', '.join(EDITABLE)})")
                if key == "name":
                    activity.name = str(value)
                    updates["title"] = activity.name
                elif key == "sport_type":
                    activity.sport_type = str(value)
                    updates["type"] = activity.sport_type
                elif key in ("visibility", "private"):
                    if key == "private":
                        value = "only_me" if value in (True, "true", "1") else "everyone"
                    if value not in ("everyone", "followers_only", "only_me"):
                        raise ValueError("visibility is everyone, followers_only or only_me")
                    activity.visibility = str(value)
                    updates["private"] = "true" if activity.private else "false"
                else:
                    activity.description = None if value is None else str(value)
        if notify and updates:
            self._notify(activity, "update", updates)
        return activity

    def rename_activity(self, activity_id: int, name: str, notify: bool = True) -> Activity:
        return self.update_activity(activity_id, notify=notify, name=name)

    def delete_activity(self, activity_id: int, notify: bool = True) -> None:
        with self.lock:
            activity = self._live_activity(activity_id)
            activity.deleted = True
        if notify:
            self._notify(activity, "delete", {})

    def add_activity(self, athlete_id: int, notify: bool = True, **options: Any) -> Activity:
        """A new upload (``start``, ``sport_type``, ``name``, ``manual``, ``visibility``)."""
        with self.lock:
            activity = self.world.add_activity(athlete_id, **options)
        if notify:
            self._notify(activity, "create", {})
        return activity

    def _live_activity(self, activity_id: int) -> Activity:
        activity = self.world.activities.get(activity_id)
        if activity is None or activity.deleted:
            raise KeyError(f"no activity {activity_id}")
        return activity

    def _notify(self, activity: Activity, aspect: str, updates: dict[str, str]) -> Delivery | None:
        """Send an activity event if the owner has authorized the app (and, for an
        "Only You" activity, granted ``activity:read_all``: Strava keeps those from apps
        that may not see them, except the event that makes an activity private)."""
        with self.lock:
            grants = [
                g for g in self.auth.grants if g.athlete_id == activity.athlete_id and not g.revoked
            ]
        if not grants:
            return None
        if (
            activity.private
            and "private" not in updates
            and not any(g.can_read_private() for g in grants)
        ):
            return None
        return self.webhooks.push("activity", activity.id, aspect, activity.athlete_id, updates)

    def push_event(
        self,
        object_type: str,
        object_id: int,
        aspect_type: str,
        owner_id: int,
        updates: dict[str, str] | None = None,
    ) -> Delivery | None:
        """Send any event to the subscription's callback, as is."""
        return self.webhooks.push(object_type, object_id, aspect_type, owner_id, updates)

    # -- the request log -----------------------------------------------------------------------

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Logged API and OAuth requests (not ``/_sim``), oldest first."""
        with self.lock:
            return [r for r in self.log if endpoint is None or r["endpoint"] == endpoint]

    def count(self, endpoint: str | None = None) -> int:
        """How many API/OAuth requests were made (to one endpoint, e.g. ``activity.streams``)."""
        with self.lock:
            return self.counts[endpoint] if endpoint else sum(self.counts.values())

    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()
            self.counts.clear()

    def _record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)
            self.counts[entry["endpoint"]] += 1

    # -- HTTP: routing ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: Params, headers: dict[str, str]) -> Response:
        """Answer one request (the handler applies delays, hangs and disconnects)."""
        if path.startswith("/_sim"):
            try:
                return self._control(method, path, params)
            except ApiError as error:
                return _json(error.status, error.body())
            except (KeyError, ValueError, TypeError) as error:
                return _json(400, {"message": "Bad Request", "errors": [], "detail": str(error)})
        return self._api(method, _canonical(path), params, headers)

    def _api(self, method: str, path: str, params: Params, headers: dict[str, str]) -> Response:
        if not self.application_active:
            inactive = ApiError(403, "Forbidden", [("Application", "Status", "Inactive")])
            return _json(403, inactive.body())
        rate_headers: dict[str, str] = {}
        if path.startswith("/api/v3/push_subscriptions"):
            rate_headers = self.limiter.peek()  # app-level calls: reported, not counted
        elif path.startswith("/api/v3"):
            verdict = self.limiter.hit(is_read=True)
            rate_headers = verdict.headers
            if verdict.limited:
                return _json(429, rate_limited().body(), rate_headers)
        plan = self.faults.take(path)
        if plan.delay:
            self._stopping.wait(plan.delay)
        fault = plan.terminal
        if fault is not None and fault.kind == "error":
            return _error_page(fault.status, rate_headers)
        if fault is not None and fault.kind in ("hang", "disconnect"):
            return Response(0, action=fault.kind)
        try:
            response = self._route(method, path, params, headers)
        except ApiError as error:
            response = _json(error.status, error.body())
        except Exception:  # a simulator bug: say so rather than drop the connection
            traceback.print_exc()
            response = _json(500, {"message": "Simulator Error", "errors": []})
        response.headers.update(rate_headers)
        if fault is not None and fault.kind == "malformed":
            response.status = 200
            response.content_type = JSON_TYPE
            cut = max(1, len(response.body) // 2)
            response.body = response.body[:cut] if len(response.body) > 8 else b'{"id": '
        return response

    def _route(self, method: str, path: str, params: Params, headers: dict[str, str]) -> Response:
        parts = path.strip("/").split("/")
        if parts[:1] == ["oauth"]:
            if parts == ["oauth", "authorize"] and method == "GET":
                return self._authorize(params)
            if parts == ["oauth", "token"] and method == "POST":
                return self._token(params)
            if parts == ["oauth", "deauthorize"] and method == "POST":
                return self._deauthorize(params, headers)
            raise not_found("resource", "path")
        if parts[:2] != ["api", "v3"]:
            raise not_found("resource", "path")
        rest = parts[2:]
        if rest and rest[0] == "push_subscriptions":
            return self._subscriptions(method, rest[1:], params)
        if method != "GET":
            raise not_found("resource", "path")
        grant = self._authenticate(params, headers)
        if rest == ["athlete"]:
            return self._athlete(grant)
        if rest == ["athlete", "activities"]:
            return self._list(grant, params)
        if len(rest) >= 2 and rest[0] == "activities":
            activity = self._readable_activity(grant, rest[1])
            if len(rest) == 2:
                return self._detail(activity)
            if rest[2] == "streams" and len(rest) in (3, 4):
                return self._streams_response(activity, params, rest[3] if len(rest) == 4 else None)
            if rest[2:] == ["laps"]:
                return _json(
                    200, payloads.laps(activity, self._owner(activity), self.streams(activity))
                )
            if rest[2:] == ["zones"]:
                return _json(
                    200, payloads.zones(activity, self._owner(activity), self.streams(activity))
                )
        raise not_found("resource", "path")

    # -- OAuth -----------------------------------------------------------------------------------

    def _check_redirect(self, redirect_uri: str | None) -> str:
        invalid = bad_request("Application", "redirect_uri")
        if not redirect_uri:
            raise invalid
        parsed = urlsplit(redirect_uri)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise invalid
        domain = self.config.callback_domain
        host = parsed.hostname
        if (
            domain
            and host not in ("localhost", "127.0.0.1")
            and not (host == domain or host.endswith("." + domain))
        ):
            raise invalid
        return redirect_uri

    def _authorize(self, params: Params) -> Response:
        if _one(params, "client_id") != str(self.config.client_id):
            raise bad_request("Application", "client_id")
        redirect_uri = self._check_redirect(_one(params, "redirect_uri"))
        if _one(params, "response_type") != "code":
            raise bad_request("Application", "response_type")
        requested = parse_scopes(_one(params, "scope"))
        state = _one(params, "state") or ""
        if _bool_param(params, "sim_deny", False):
            return _redirect(redirect_uri, {"state": state, "error": "access_denied"})
        chosen = _int_param(params, "sim_athlete")
        if chosen is None:
            return self._consent_page(params, requested)
        if chosen not in self.world.athletes:
            raise bad_request("Athlete", "sim_athlete")
        granted = requested
        if _one(params, "sim_scope") is not None:  # the athlete unticked some boxes
            allowed = set(parse_scopes(_one(params, "sim_scope")))
            granted = [scope for scope in requested if scope in allowed]
        with self.lock:
            code = self.auth.issue_code(chosen, granted)
        query = {"state": state, "code": code, "scope": ",".join(granted)}
        if _bool_param(params, "sim_show_code", False):
            page = (
                "<!doctype html><meta charset=utf-8><title>Authorization code</title>"
                f"<h1>Authorization code</h1><p>Paste this code: <code id=code>{code}</code></p>"
                f"<p>Scope granted: <code id=scope>{html.escape(query['scope'])}</code></p>"
                f"<p>Redirect: <a href='{html.escape(_with_query(redirect_uri, query))}'>"
                f"{html.escape(redirect_uri)}</a></p>"
            )
            return Response(200, page.encode(), "text/html; charset=utf-8")
        return _redirect(redirect_uri, query)

    def _consent_page(self, params: Params, requested: list[str]) -> Response:
        base = {k: v[0] for k, v in params.items() if not k.startswith("sim_")}
        rows = []
        for athlete in self.world.athletes.values():
            boxes = "".join(
                f"<label><input type=checkbox name=sim_scope_box value='{s}' checked "
                f"onchange='sync(this.form)'> {s}</label> "
                for s in requested
            )
            hidden = "".join(
                f"<input type=hidden name='{html.escape(k)}' value='{html.escape(v)}'>"
                for k, v in base.items()
            )
            rows.append(
                f"<form method=get action='/oauth/authorize'>{hidden}"
                f"<input type=hidden name=sim_athlete value={athlete.id}>"
                f"<input type=hidden name=sim_scope value='{','.join(requested)}'>"
                f"<h2>{html.escape(athlete.firstname)} {html.escape(athlete.lastname)} "
                f"(#{athlete.id}, {html.escape(athlete.city.name)})</h2>{boxes}"
                "<button type=submit>Authorize</button> "
                "<button type=submit name=sim_show_code value=1>Show code to paste</button> "
                "<button type=submit name=sim_deny value=1>Cancel</button></form>"
            )
        page = (
            "<!doctype html><meta charset=utf-8><title>Authorize application</title>"
            "<script>function sync(f){f.sim_scope.value=[...f.querySelectorAll("
            "'input[name=sim_scope_box]:checked')].map(b=>b.value).join(',')}</script>"
            f"<h1>Strava simulator: authorize application {self.config.client_id}</h1>"
            "<p>Choose the athlete who consents. Untick scopes to grant fewer.</p>" + "".join(rows)
        )
        return Response(200, page.encode(), "text/html; charset=utf-8")

    def _token(self, params: Params) -> Response:
        with self.lock:
            self.auth.check_client(_one(params, "client_id"), _one(params, "client_secret"))
            grant_type = _one(params, "grant_type")
            if grant_type == "authorization_code":
                grant = self.auth.exchange(_one(params, "code"))
                athlete = self.world.athletes[grant.athlete_id].summary()
                return _json(200, self.auth.token_body(grant, athlete))
            if grant_type == "refresh_token":
                grant = self.auth.refresh(_one(params, "refresh_token"))
                return _json(200, self.auth.token_body(grant))
        raise bad_request("Application", "grant_type")

    def _deauthorize(self, params: Params, headers: dict[str, str]) -> Response:
        token = _one(params, "access_token") or _bearer(headers)
        with self.lock:
            athlete_id = self.auth.deauthorize(token)
        self.webhooks.push("athlete", athlete_id, "update", athlete_id, {"authorized": "false"})
        return _json(200, {"access_token": token})

    # -- API -------------------------------------------------------------------------------------

    def _authenticate(self, params: Params, headers: dict[str, str]) -> Grant:
        token = _bearer(headers) or _one(params, "access_token")
        if not token:
            raise ApiError(401, "Authorization Error", [("Application", "", "invalid")])
        with self.lock:
            return self.auth.authenticate(token)

    def _owner(self, activity: Activity) -> Athlete:
        return self.world.athletes[activity.athlete_id]

    def _athlete(self, grant: Grant) -> Response:
        if not grant.scopes & {"read", "read_all", "profile:read_all"}:
            raise missing_scope("read_permission")
        with self.lock:
            return _json(200, self.world.athletes[grant.athlete_id].detailed())

    def _list(self, grant: Grant, params: Params) -> Response:
        if not grant.can_read_activities():
            raise missing_scope("activity:read_permission")
        before = _int_param(params, "before")
        after = _int_param(params, "after")
        page = _int_param(params, "page") or 1
        per_page = _int_param(params, "per_page")
        per_page = 30 if per_page is None or per_page < 1 else min(per_page, 200)
        page = max(page, 1)
        with self.lock:
            athlete = self.world.athletes[grant.athlete_id]
            if athlete.history_vanished:
                return _json(200, [])
            found = [
                a
                for a in self.world.athlete_activities(athlete.id)
                if (grant.can_read_private() or not a.private)
                and (before is None or a.start_epoch() < before)
                and (after is None or a.start_epoch() > after)
            ]
            # Newest first, except that with ``after`` Strava pages forward in time.
            found.sort(key=lambda a: (a.start, a.id), reverse=after is None)
            chosen = found[(page - 1) * per_page : page * per_page]
            return _json(200, [payloads.summary(a) for a in chosen])

    def _readable_activity(self, grant: Grant, raw_id: str) -> Activity:
        if not grant.can_read_activities():
            raise missing_scope("activity:read_permission")
        try:
            activity_id = int(raw_id)
        except ValueError:
            raise not_found() from None
        with self.lock:
            activity = self.world.activities.get(activity_id)
            if (
                activity is None
                or activity.deleted
                or activity.athlete_id != grant.athlete_id
                or (activity.private and not grant.can_read_private())
            ):
                raise not_found()
            return activity

    def _detail(self, activity: Activity) -> Response:
        streams = self.streams(activity)
        with self.lock:
            return _json(200, payloads.detailed(activity, self._owner(activity), streams))

    def _streams_response(
        self, activity: Activity, params: Params, path_types: str | None
    ) -> Response:
        if activity.manual:  # what Strava answers for an activity without streams
            return _json(404, {"message": "Resource Not Found", "errors": []})
        keys: list[str] = []
        for value in params.get("keys", []) + ([path_types] if path_types else []):
            keys.extend(k.strip() for k in value.split(",") if k.strip() in ALL_STREAM_TYPES)
        key_by_type = _bool_param(params, "key_by_type", False) and path_types is None
        streams = self.streams(activity)
        assert streams is not None
        body = payloads.stream_set(
            streams,
            keys,
            key_by_type,
            _one(params, "series_type") or "distance",
            _one(params, "resolution"),
        )
        return _json(200, body)

    def _subscriptions(self, method: str, rest: list[str], params: Params) -> Response:
        self.auth.check_client(_one(params, "client_id"), _one(params, "client_secret"))
        if method == "POST" and not rest:
            subscription = self.webhooks.create(
                _one(params, "callback_url"), _one(params, "verify_token")
            )
            return _json(201, {"id": subscription.id})
        if method == "GET" and not rest:
            current = self.webhooks.subscription
            return _json(200, [current.body(self.config.client_id)] if current else [])
        if method == "DELETE" and len(rest) == 1:
            try:
                subscription_id = int(rest[0])
            except ValueError:
                raise not_found("PushSubscription") from None
            self.webhooks.delete(subscription_id)
            return Response(204)
        raise not_found("resource", "path")

    # -- the control API -------------------------------------------------------------------------

    def _control(self, method: str, path: str, params: Params) -> Response:
        parts = path.strip("/").split("/")[1:]
        p = {k: v[0] for k, v in params.items()}
        notify = _bool_param(params, "notify", True)
        if not parts and method == "GET":
            return _json(200, self.describe())
        if parts == ["athletes"] and method == "GET":
            return _json(200, [self._athlete_row(a) for a in self.world.athletes.values()])
        if len(parts) >= 2 and parts[0] == "athletes":
            athlete_id = int(parts[1])
            if athlete_id not in self.world.athletes:
                raise not_found("Athlete")
            tail = parts[2:]
            if tail == ["activities"] and method == "GET":
                return _json(200, [payloads.summary(a) for a in self.activities(athlete_id)])
            if tail == ["activities"] and method == "POST":
                options: dict[str, Any] = {
                    key: p[key] for key in ("sport_type", "name", "visibility") if key in p
                }
                if "manual" in p:
                    options["manual"] = _bool_param(params, "manual", False)
                start = _epoch(p.get("start"))
                if start is not None:
                    options["start"] = start
                activity = self.add_activity(athlete_id, notify=notify, **options)
                return _json(201, payloads.summary(activity))
            if tail == ["vanish"] and method == "POST":
                self.vanish(athlete_id, True)
                return _json(200, self._athlete_row(self.world.athletes[athlete_id]))
            if tail == ["restore"] and method == "POST":
                self.vanish(athlete_id, False)
                return _json(200, self._athlete_row(self.world.athletes[athlete_id]))
            if tail == ["revoke"] and method == "POST":
                delivery = self.revoke(athlete_id)
                return _json(200, {"revoked": True, "event": delivery.event if delivery else None})
        if parts == ["application"]:
            if method == "POST":
                self.set_application_active(_bool_param(params, "active", True))
            return _json(200, {"active": self.application_active})
        if parts == ["codes"] and method == "POST":
            scope = p.get("scope", "read,activity:read_all")
            return _json(200, {"code": self.authorize(int(p["athlete_id"]), scope), "scope": scope})
        if parts == ["tokens"] and method == "POST":
            return _json(
                200, self.tokens(int(p["athlete_id"]), p.get("scope", "read,activity:read_all"))
            )
        if parts == ["expire_tokens"] and method == "POST":
            athlete = int(p["athlete_id"]) if p.get("athlete_id") else None
            return _json(200, {"expired": self.expire_tokens(athlete)})
        if len(parts) == 2 and parts[0] == "activities":
            activity_id = int(parts[1])
            if activity_id not in self.world.activities:
                raise not_found()
            if method == "GET":
                return _json(200, payloads.summary(self.world.activities[activity_id]))
            if method in ("PATCH", "POST"):
                fields = {k: v for k, v in p.items() if k in EDITABLE}
                activity = self.update_activity(activity_id, notify=notify, **fields)
                return _json(200, payloads.summary(activity))
            if method == "DELETE":
                self.delete_activity(activity_id, notify=notify)
                return _json(200, {"deleted": activity_id})
        if parts == ["faults"]:
            if method == "POST":
                count = p.get("count", "1")
                self.inject(
                    Fault(
                        kind=p["kind"],
                        count=None if count in (None, "", "null", "none") else int(count),
                        status=int(p.get("status", 500)),
                        seconds=float(p.get("seconds", 0)),
                        match=p.get("match") or None,
                    )
                )
            elif method == "DELETE":
                self.clear_faults()
            return _json(200, {"faults": self.faults.active()})
        if parts == ["events"] and method == "POST":
            updates = json.loads(p["updates"]) if p.get("updates") else None
            delivery = self.push_event(
                p.get("object_type", "activity"),
                int(p["object_id"]),
                p.get("aspect_type", "update"),
                int(p["owner_id"]),
                updates,
            )
            if delivery is None:
                raise ApiError(409, "No webhook subscription")
            if _bool_param(params, "wait", False):
                delivery.wait(60)
            return _json(200, delivery.describe())
        if parts == ["webhooks"] and method == "GET":
            current = self.webhooks.subscription
            return _json(
                200,
                {
                    "subscription": current.body(self.config.client_id) if current else None,
                    "deliveries": [d.describe() for d in self.webhooks.deliveries],
                },
            )
        if parts == ["requests"]:
            if method == "DELETE":
                self.reset_log()
            endpoint = p.get("endpoint")
            with self.lock:
                counts = dict(self.counts)
            entries = self.requests(endpoint)
            limit = int(p.get("limit", 200))
            return _json(
                200,
                {"count": len(entries), "by_endpoint": counts, "requests": entries[-limit:]},
            )
        if parts == ["ratelimit"]:
            if method == "POST":
                overall = json.loads(p["overall"]) if "overall" in p else None
                read = json.loads(p["read"]) if "read" in p else None
                self.limiter.configure(
                    overall=tuple(overall) if overall else None,
                    read=tuple(read) if read else None,
                    short_window=float(p["short_window"]) if "short_window" in p else None,
                    long_window=float(p["long_window"]) if "long_window" in p else None,
                    enabled=_bool_param(params, "enabled", self.limiter.enabled),
                )
            elif method == "DELETE":
                self.limiter.reset()
            return _json(200, self.limiter.state())
        raise not_found("resource", "path")

    def _athlete_row(self, athlete: Athlete) -> dict[str, Any]:
        with self.lock:
            mine = self.world.athlete_activities(athlete.id)
            connected = athlete.id in self.auth.connected_athletes()
        return {
            "id": athlete.id,
            "firstname": athlete.firstname,
            "lastname": athlete.lastname,
            "username": athlete.username,
            "city": athlete.city.name,
            "time_zone": athlete.city.zone,
            "activities": len(mine),
            "private_activities": sum(a.private for a in mine),
            "manual_activities": sum(a.manual for a in mine),
            "connected": connected,
            "history_vanished": athlete.history_vanished,
        }

    def describe(self) -> dict[str, Any]:
        """What a human needs to point a client here."""
        return {
            "simulator": "strava",
            "base_url": self.base_url,
            "api_url": self.api_url,
            "authorize_url": f"{self.base_url}/oauth/authorize",
            "token_url": f"{self.base_url}/oauth/token",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "seed": self.config.seed,
            "stream_step": self.config.stream_step,
            "athletes": [self._athlete_row(a) for a in self.world.athletes.values()],
            "rate_limits": self.limiter.state(),
        }


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def _with_query(url: str, query: dict[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(query)


def _redirect(url: str, query: dict[str, str]) -> Response:
    return Response(302, b"", "text/html; charset=utf-8", {"Location": _with_query(url, query)})


def _error_page(status: int, headers: dict[str, str]) -> Response:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if status in (502, 503, 504):
        page = f"<html><body><h1>{status} {phrase}</h1></body></html>\n".encode()
        return Response(status, page, "text/html", dict(headers))
    return _json(status, {"message": phrase, "errors": []}, headers)


def _parse_body(content_type: str, body: bytes) -> Params:
    if not body:
        return {}
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): [v if isinstance(v, str) else json.dumps(v)] for k, v in data.items()}
    if kind == "multipart/form-data":
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        form: Params = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                text = payload.decode() if isinstance(payload, bytes) else str(payload)
                form.setdefault(name, []).append(text)
        return form
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _canonical(path: str) -> str:
    """Strava also answers OAuth under the API base (stravalib deauthorizes at
    ``/api/v3/oauth/deauthorize``): serve those as the OAuth endpoints."""
    return path[len("/api/v3") :] if path.startswith("/api/v3/oauth/") else path


def _endpoint(method: str, path: str) -> str:
    """A stable name for a request's endpoint, for the log and the counters."""
    parts = _canonical(path).strip("/").split("/")
    if parts[:1] == ["oauth"]:
        return ".".join(parts)
    rest = parts[2:] if parts[:2] == ["api", "v3"] else parts
    if rest[:1] == ["push_subscriptions"]:
        return f"push_subscriptions.{method.lower()}"
    if rest[:1] == ["activities"] and len(rest) >= 2:
        return ".".join(["activity", *rest[2:3]])
    return ".".join(rest) or "root"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StravaSimulator/1.0"
    sim: StravaSimulator

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.sim.lock:
            self.sim._connections.add(self.connection)

    def finish(self) -> None:
        with self.sim.lock:
            self.sim._connections.discard(self.connection)
        with suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log (``/_sim/requests``) has every call."""

    def handle_one_request(self) -> None:
        if self.sim._stopping.is_set():
            self.close_connection = True
            return
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        path = "/" + url.path.strip("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        params = parse_qs(url.query, keep_blank_values=True)
        for key, values in _parse_body(self.headers.get("Content-Type", ""), body).items():
            params.setdefault(key, []).extend(values)
        headers = {key.lower(): value for key, value in self.headers.items()}
        response = self.sim.handle(method, path, params, headers)
        if response.action == "hang":
            self._hang()
        # Logged before the answer leaves, so a client that got it finds it in the log.
        if not path.startswith("/_sim"):
            self.sim._record(
                {
                    "time": self.sim.clock(),
                    "method": method,
                    "path": path,
                    "query": url.query,
                    "endpoint": _endpoint(method, path),
                    "status": response.status if response.action is None else response.action,
                    "duration_ms": round((time.monotonic() - started) * 1000, 2),
                }
            )
        if response.action is None:
            self._send(response)
        else:
            self.close_connection = True

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.body or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    def _hang(self) -> None:
        """Hold the request until the client gives up, the fault is cleared or we stop."""
        deadline = time.monotonic() + self.sim.config.max_hang_seconds
        released = self.sim.faults.released
        while time.monotonic() < deadline and not released.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return  # the client closed the connection
                except OSError:
                    return
                time.sleep(0.05)


@contextmanager
def serve(config: SimConfig | None = None, **overrides: Any) -> Iterator[str]:
    """Run a simulator for the ``with`` block and yield its base URL."""
    with StravaSimulator(config, **overrides) as sim:
        yield sim.base_url

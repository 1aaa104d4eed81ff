"""Webhook subscriptions (one per application) and event delivery to the callback.

Creating a subscription performs Strava's validation GET on the callback URL
(``hub.mode=subscribe``, ``hub.challenge``, ``hub.verify_token``) and requires a 200 echoing
``{"hub.challenge": ...}`` within the timeout. Events are POSTed as JSON by one background
thread, in order; a delivery that does not get a 2xx within the timeout is retried up to
``webhook_retries`` times.
"""

from __future__ import annotations

import datetime as dt
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.strava_sim.config import SimConfig
from tests.strava_sim.errors import ApiError


@dataclass
class Subscription:
    id: int
    callback_url: str
    verify_token: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def body(self, application_id: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource_state": 2,
            "application_id": application_id,
            "callback_url": self.callback_url,
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_at": self.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass
class Delivery:
    """One event and what happened to it: HTTP statuses, or an error name per attempt."""

    event: dict[str, Any]
    callback_url: str
    attempts: list[int | str] = field(default_factory=list)
    delivered: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float = 30.0) -> bool:
        return self.done.wait(timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "callback_url": self.callback_url,
            "attempts": list(self.attempts),
            "delivered": self.delivered,
            "done": self.done.is_set(),
        }


class Webhooks:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.subscription: Subscription | None = None
        self.deliveries: list[Delivery] = []
        self._next_id = 100_000 + config.seed % 1000
        self._lock = threading.Lock()
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="strava-sim-webhooks", daemon=True)
        self._thread.start()

    def create(self, callback_url: str | None, verify_token: str | None) -> Subscription:
        if not callback_url or not callback_url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request", [("PushSubscription", "callback_url", "invalid")])
        if not verify_token:
            raise ApiError(400, "Bad Request", [("PushSubscription", "verify_token", "invalid")])
        with self._lock:
            if self.subscription is not None:
                raise ApiError(400, "Bad Request", [("PushSubscription", "", "already exists")])
        challenge = secrets.token_urlsafe(16)
        failure = ApiError(
            400,
            "Bad Request",
            [("PushSubscription", "callback url", "GET to callback URL does not return 200")],
        )
        try:
            response = httpx.get(
                callback_url,
                params={
                    "hub.verify_token": verify_token,
                    "hub.challenge": challenge,
                    "hub.mode": "subscribe",
                },
                timeout=self.config.webhook_timeout,
            )
        except httpx.HTTPError as error:
            raise failure from error
        if response.status_code != 200:
            raise failure
        try:
            echoed = response.json().get("hub.challenge")
        except (ValueError, AttributeError):
            echoed = None
        if echoed != challenge:
            raise ApiError(
                400,
                "Bad Request",
                [("PushSubscription", "callback url", "challenge verification failed")],
            )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with self._lock:
            if self.subscription is not None:
                raise ApiError(400, "Bad Request", [("PushSubscription", "", "already exists")])
            self._next_id += 1
            self.subscription = Subscription(self._next_id, callback_url, verify_token, now, now)
            return self.subscription

    def delete(self, subscription_id: int) -> None:
        with self._lock:
            if self.subscription is None or self.subscription.id != subscription_id:
                raise ApiError(404, "Record Not Found", [("PushSubscription", "id", "invalid")])
            self.subscription = None

    def push(
        self,
        object_type: str,
        object_id: int,
        aspect_type: str,
        owner_id: int,
        updates: dict[str, str] | None = None,
    ) -> Delivery | None:
        """Queue an event for the subscription's callback (``None`` without a subscription)."""
        with self._lock:
            subscription = self.subscription
        if subscription is None:
            return None
        event = {
            "aspect_type": aspect_type,
            "event_time": int(self.clock()),
            "object_id": object_id,
            "object_type": object_type,
            "owner_id": owner_id,
            "subscription_id": subscription.id,
            "updates": updates or {},
        }
        delivery = Delivery(event, subscription.callback_url)
        with self._lock:
            self.deliveries.append(delivery)
        self._queue.put(delivery)
        return delivery

    def _run(self) -> None:
        with httpx.Client(timeout=self.config.webhook_timeout) as client:
            while True:
                delivery = self._queue.get()
                if delivery is None:
                    return
                self._deliver(client, delivery)

    def _deliver(self, client: httpx.Client, delivery: Delivery) -> None:
        try:
            for attempt in range(1 + self.config.webhook_retries):
                if attempt and self._stopping.wait(self.config.webhook_retry_delay):
                    return
                try:
                    response = client.post(delivery.callback_url, json=delivery.event)
                    delivery.attempts.append(response.status_code)
                    if 200 <= response.status_code < 300:
                        delivery.delivered = True
                        return
                except httpx.HTTPError as error:
                    delivery.attempts.append(type(error).__name__)
        finally:
            delivery.done.set()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

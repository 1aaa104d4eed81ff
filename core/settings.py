"""One settings object for server, workers and tools, read from STRIDE_* variables and .env."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from domain.tokens import ADMIN_TOKEN_PREFIX, digest, new_secret

ENV_PREFIX = "STRIDE_"


class SettingsError(Exception):
    """Raised with a message naming each bad variable."""


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must look like HOST:PORT with a port from 0 to 65535")
    return value


_PORT_RULE = "a port from 1 to 65535"
REDIS_SCHEMES = ("redis", "rediss", "unix")


def _check_database_url(url: str) -> None:
    """A URL SQLAlchemy can parse, whose port (when given) is a real TCP port. Messages never
    echo the URL: it may carry a password."""
    if "://" not in url:
        raise ValueError("must be a URL such as postgresql+psycopg://user@host/db")
    try:
        port = make_url(url).port
    except ArgumentError:
        raise ValueError("must be a URL such as postgresql+psycopg://user@host/db") from None
    except ValueError:  # int() of whatever follows the host's colon
        raise ValueError(f"has a malformed port (must be {_PORT_RULE})") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"has a malformed port (must be {_PORT_RULE})")


def _check_redis_url(url: str) -> None:
    parts = urlsplit(url)
    if "://" not in url or parts.scheme not in REDIS_SCHEMES:
        raise ValueError("must be a URL such as redis://host:6379/0 (redis, rediss or unix)")
    try:
        port = parts.port  # raises for a non-number or one beyond 65535
    except ValueError:
        raise ValueError(f"has a malformed port (must be {_PORT_RULE})") from None
    if port == 0:
        raise ValueError(f"has a malformed port (must be {_PORT_RULE})")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Server
    listen_address: str = "127.0.0.1:50051"
    metrics_address: str | None = "127.0.0.1:9464"
    # A stride-worker's own /metrics (job runs, failures, durations); off by default, as a
    # worker beside a server on one host would otherwise clash with its port.
    worker_metrics_address: str | None = None
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # Let several processes listen on one port (SO_REUSEPORT). Off: a port in use is refused.
    reuse_port: bool = False
    # Server processes sharing the listening port, under one supervising parent (server.
    # supervisor). Unset: one per core with an external database, one on the embedded default.
    processes: int | None = Field(default=None, ge=1)
    # Calls beyond this many at once are refused with RESOURCE_EXHAUSTED (health exempt).
    max_concurrent_rpcs: int | None = Field(default=None, ge=1)
    # Proxies (IP addresses or CIDR networks, a JSON list) whose `x-forwarded-for` is
    # believed: a call from one of them is attributed, for the per-IP rate limit and the
    # access log, to the header's last address (the one that proxy appended). From any other
    # peer the header is ignored. Empty: the peer is always the client.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # Streaming calls one principal may hold open at once.
    max_streams_per_principal: int = Field(default=8, ge=1)
    # A stream whose client reads nothing (or, for client streams, sends nothing) for this
    # long is ended with DEADLINE_EXCEEDED.
    stream_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    # WatchJob sends a heartbeat when nothing else was sent for this long (below the idle
    # timeouts of proxies and load balancers on the way).
    watch_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Entries a repeated request field may hold; larger requests are refused before any
    # per-entry work.
    max_repeated_field_entries: int = Field(default=1000, ge=1)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Storage
    data_dir: Path = Path(".stride-data")
    database_url: SecretStr | None = None
    database_replica_urls: list[SecretStr] = Field(default_factory=list)
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=30, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True
    db_connect_attempts: int = Field(default=8, ge=1)
    # Threads running database work for the server's calls. Few: every thread shares one
    # GIL with the event loop, and 32 answered cold reads slower than 4 or 8 (docs/
    # benchmarks.md, "Reads through h2load").
    db_executor_threads: int = Field(default=8, ge=1)
    auto_migrate: bool | None = None

    # Queue and cache
    redis_url: SecretStr | None = None
    # Huey worker threads per consumer: the server's in-process workers and each stride-worker.
    huey_workers: int = Field(default=2, ge=1)
    # Run Huey workers inside the server process. Unset: on the embedded default and whenever
    # there is no Redis (a SQLite queue only this server reads); the entry points refuse
    # PostgreSQL without Redis unless this is set to true explicitly (runtime.check_server).
    inprocess_workers: bool | None = None

    # Secrets
    secret_key: SecretStr | None = None
    admin_token: SecretStr | None = None

    # Observability
    otlp_endpoint: str | None = None
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "production"
    health_check_interval_seconds: float = Field(default=5.0, gt=0)

    # Rate limiting: token buckets per principal and per client IP
    rate_limit_enabled: bool = True
    rate_limit_principal_per_second: float = Field(default=20.0, gt=0)
    rate_limit_principal_burst: float = Field(default=100.0, gt=0)
    rate_limit_ip_per_second: float = Field(default=50.0, gt=0)
    rate_limit_ip_burst: float = Field(default=200.0, gt=0)
    # Cost of one call by `Service/Method`; every other method costs 1.
    rate_limit_method_costs: dict[str, float] = Field(
        default_factory=lambda: {
            "SyncService/StartSync": 20.0,
            "ActivityService/UploadActivityFile": 20.0,
            "ActivityService/UploadActivityFileBody": 20.0,
            "SyncService/ConnectStrava": 5.0,
        }
    )
    # Streams are charged by work: one more token per this many bytes streamed to the client.
    rate_limit_stream_bytes_per_token: int = Field(default=64 * 1024, ge=1024)
    # Uploads (client streams) are charged per this many bytes instead: an import of a large
    # export is one deliberate act, not a stream of reads (20 MiB/s sustained by default).
    rate_limit_upload_bytes_per_token: int = Field(default=2**20, ge=1024)
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    # Read cache (services.cache): athlete and activity reads, keyed by a per-athlete data
    # version that every write bumps. In Redis when configured, plus this many entries held
    # in each server process; without Redis, in-process only (and only with one process).
    cache_enabled: bool = True
    cache_local_entries: int = Field(default=10_000, ge=0)
    cache_ttl_seconds: float = Field(default=3600.0, gt=0)
    # Prefix of every Redis key Stride writes (rate-limit buckets), so deployments and test
    # runs can share one Redis database.
    redis_key_prefix: str = "stride:"
    # How long a verified athlete token is trusted before it is looked up again; a revoked
    # token keeps working on other replicas for at most this long. 0 looks up every call.
    auth_cache_seconds: float = Field(default=5.0, ge=0)

    # Strava (off unless both the client id and secret of the deployment's application are set)
    strava_api_url: str = "https://www.strava.com/api/v3"
    strava_oauth_url: str = "https://www.strava.com/oauth"
    strava_client_id: str | None = None
    strava_client_secret: SecretStr | None = None
    strava_verify_token: SecretStr | None = None
    # Where Strava sends the browser after consent when GetStravaAuthorizationUrl names none
    # (Strava accepts localhost for any application; a headless user copies the address).
    strava_redirect_uri: str = "http://localhost/exchange_token"
    # Webhook events of another subscription are ignored (0: accept any).
    strava_subscription_id: int = Field(default=0, ge=0)
    # Every connected athlete gets an incremental sync this often (0: never), their tokens
    # are refreshed ahead of expiry, and a reconcile looks for deletions webhooks missed.
    strava_sync_interval_seconds: float = Field(default=3600.0, ge=0)
    strava_reconcile_interval_seconds: float = Field(default=86400.0, ge=0)
    strava_page_size: int = Field(default=100, ge=1, le=200)
    # Encrypts Strava tokens at rest; several comma-separated keys: the first encrypts, all
    # decrypt (rotation). Required when Strava is configured.
    token_encryption_key: SecretStr | None = None
    strava_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # Also how long a cancelled job may wait for a hung Strava call to give up.
    strava_read_timeout_seconds: float = Field(default=15.0, gt=0)
    strava_max_attempts: int = Field(default=4, ge=1)
    strava_circuit_threshold: int = Field(default=5, ge=1)
    strava_circuit_cooldown_seconds: float = Field(default=30.0, gt=0)
    # Strava's rate-limit windows (15 minutes, a day); shorter only against the simulator.
    strava_short_window_seconds: float = Field(default=900.0, gt=0)
    strava_long_window_seconds: float = Field(default=86400.0, gt=0)

    # File import (UploadActivityFile). Uploads are staged here until their import job ends;
    # workers on other hosts must see the same directory (a shared volume). Default:
    # <data_dir>/imports.
    import_staging_dir: Path | None = None
    # Bytes one upload may carry, and one file may hold once decompressed (a single file's
    # upload is held to both as it arrives).
    import_max_upload_bytes: int = Field(default=2**30, ge=1024)
    import_max_file_bytes: int = Field(default=256 * 2**20, ge=1024)
    # All files of one archive together, decompressed; and the largest compression ratio a
    # member may have (zip bombs).
    import_max_archive_bytes: int = Field(default=4 * 2**30, ge=1024)
    import_max_compression_ratio: float = Field(default=200.0, gt=1)
    # An imported activity starting within this many seconds of one the athlete already has,
    # with a distance within this fraction of it, is linked to it instead of stored twice.
    # Seconds 0: no duplicate detection.
    import_duplicate_start_seconds: float = Field(default=60.0, ge=0)
    import_duplicate_distance_ratio: float = Field(default=0.02, ge=0)

    # API behaviour
    default_page_size: int = Field(default=50, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    sample_chunk_size: int = Field(default=1000, ge=1, le=10000)

    @field_validator("listen_address")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        return _host_port(value)

    @field_validator("metrics_address", "worker_metrics_address")
    @classmethod
    def _check_metrics(cls, value: str | None) -> str | None:
        return None if value in (None, "", "off") else _host_port(value)

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_database_url(value.get_secret_value())
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _check_replicas(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, url in enumerate(value, start=1):
            try:
                _check_database_url(url.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"URL {number} {exc}") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_redis_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _check_page_sizes(self) -> Settings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("STRIDE_DEFAULT_PAGE_SIZE must not exceed STRIDE_MAX_PAGE_SIZE")
        return self

    @model_validator(mode="after")
    def _check_strava(self) -> Settings:
        if (self.strava_client_id is None) != (self.strava_client_secret is None):
            raise ValueError(
                "STRIDE_STRAVA_CLIENT_ID and STRIDE_STRAVA_CLIENT_SECRET are set together"
            )
        if self.strava_enabled and not _given(self.token_encryption_key):
            raise ValueError("STRIDE_TOKEN_ENCRYPTION_KEY must be set when Strava is configured")
        for name in ("strava_api_url", "strava_oauth_url"):
            if urlsplit(getattr(self, name)).scheme not in ("http", "https"):
                raise ValueError(f"STRIDE_{name.upper()} must be an http(s) URL")
        return self

    @property
    def strava_enabled(self) -> bool:
        return self.strava_client_id is not None and self.strava_client_secret is not None

    @property
    def embedded(self) -> bool:
        """No external database configured: SQLite, SQLite-backed Huey, in-process workers."""
        return self.database_url is None

    @property
    def process_count(self) -> int:
        """Server processes to run (STRIDE_PROCESSES, or its default)."""
        if self.processes is not None:
            return self.processes
        return 1 if self.embedded else max(1, os.cpu_count() or 1)

    @property
    def primary_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'stride.db').resolve()}"

    @property
    def replica_database_urls(self) -> list[str]:
        return [url.get_secret_value() for url in self.database_replica_urls]

    @property
    def staging_dir(self) -> Path:
        return self.import_staging_dir or self.data_dir / "imports"

    @property
    def should_migrate_at_startup(self) -> bool:
        return self.embedded if self.auto_migrate is None else self.auto_migrate

    @cached_property
    def admin_token_digest(self) -> str:
        """Digest of the admin token; generated once into the data directory when not configured."""
        if self.admin_token is not None:
            return digest(self.admin_token.get_secret_value())
        return admin_token_digest_in(self.data_dir)

    @cached_property
    def signing_key(self) -> bytes:
        """Key for page tokens; generated once into the data directory when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return read_or_create_secret(self.data_dir / "secret_key")


def read_or_create_secret(path: Path) -> bytes:
    """A random secret kept in a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    value = secrets.token_urlsafe(32).encode()
    with os.fdopen(fd, "wb") as file:
        file.write(value)
    return value


ADMIN_TOKEN_FILE = "admin_token"
ADMIN_DIGEST_FILE = "admin_token.sha256"


def admin_token_digest_in(data_dir: Path) -> str:
    """Create the admin token on first use: only its digest is kept for checking; the token
    itself is written once to an owner-only file for the operator to read (and may be deleted).
    """
    digest_path = data_dir / ADMIN_DIGEST_FILE
    if digest_path.exists():
        return digest_path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = new_secret(ADMIN_TOKEN_PREFIX)
    fd = os.open(data_dir / ADMIN_TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    digest_path.write_text(digest(token) + "\n")
    return digest(token)


def load_settings(*, require_shared_secrets: bool = True, **overrides: object) -> Settings:
    """Validate the environment; a SettingsError names every bad variable.

    With an external database (STRIDE_DATABASE_URL) several processes serve one database, so
    the secret key and admin token must be given, the same on every one: a generated value would
    differ per process (page tokens from one replica failing on another). Tools that only touch
    the schema, such as stride-migrate, pass `require_shared_secrets=False`.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = ENV_PREFIX + field.upper() if field else "settings"
            lines.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    if require_shared_secrets and not settings.embedded:
        missing = [
            f"{ENV_PREFIX}{field.upper()}: must be set with {ENV_PREFIX}DATABASE_URL"
            " (the same value on every server)"
            for field in ("secret_key", "admin_token")
            if not _given(getattr(settings, field))
        ]
        if missing:
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(missing))
    return settings


def _given(value: SecretStr | None) -> bool:
    return value is not None and bool(value.get_secret_value().strip())

"""Several server processes on one port, under one supervising parent (STRIDE_PROCESSES).

One grpc.aio process serves about one core: Python runs one thread at a time. To use every
core of a host without running one container per core, `stride-server` with
STRIDE_PROCESSES=N > 1 becomes a parent that runs N ordinary server processes (children,
`python -m server` each) on one port and does the few things that must happen once per host:

- It migrates the database before any child starts (children never migrate, so they
  never race on the schema), and creates the embedded default's generated secrets, which
  the children then read instead of each writing its own.
- It reserves the listening port: a socket bound with SO_REUSEPORT (never listening, so
  the kernel gives it no connections) holds HOST:PORT for the parent's lifetime. Port 0
  becomes one concrete port that every child, and every restarted child, listens on; and no
  other program can take the port while a child restarts. A port some other program already
  listens on is refused first, exactly as a single server refuses it (server.listen),
  unless STRIDE_REUSE_PORT says sharing it is deliberate.
- It alone serves /metrics: children write their values to files in a private directory
  (prometheus_client's multiprocess mode) and one scrape sums every process.
- It forwards SIGTERM/SIGINT to every child, each of which drains its calls as a single
  server does; what has not exited within the grace period plus 10 s is killed.
- It restarts a child that dies while serving (with a backoff), but gives up, stops the
  others and exits 1 when a child cannot start at all, or children keep dying.

Only the first child runs in-process Huey workers (when settings want them): the queue and
its periodic tasks are per host, and N consumers would schedule each periodic task N times.
The other children enqueue into the same queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, multiprocess

from core.addresses import ListenError, describe
from core.metrics_endpoint import MetricsEndpoint
from core.settings import Settings
from runtime import build_database
from server import listen
from server.app import serve
from storage import migrate

log = structlog.get_logger(__name__)

# How a child learns that it is one: "index:ready_fd:parent_pid". Internal (not a setting):
# only the supervisor sets it, in the environment of the children it starts.
CHILD_VARIABLE = "_STRIDE_SUPERVISED_CHILD"
# prometheus_client reads this when it is imported: it must be in the child's environment
# from the start, never in the parent's own (the parent keeps ordinary in-memory metrics).
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
READY = b"R"

# Children still running this long after the grace period are killed.
KILL_MARGIN_SECONDS = 10.0
# This many unexpected exits (of any children) within the window stop everything: a child
# that dies again and again needs an operator, not an endless restart loop.
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 60.0
# Restart delays double from the first to the last, counting exits within the window.
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 10.0


# --- the child's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRole:
    """What a supervised server process is told by its parent."""

    index: int  # 0 .. N-1; a restarted child keeps its predecessor's index
    ready_fd: int  # a pipe the child writes READY to once it serves
    parent_pid: int

    @classmethod
    def from_environment(cls) -> ChildRole | None:
        value = os.environ.get(CHILD_VARIABLE)
        if not value:
            return None
        index, ready_fd, parent_pid = (int(part) for part in value.split(":"))
        return cls(index, ready_fd, parent_pid)

    def encode(self) -> str:
        return f"{self.index}:{self.ready_fd}:{self.parent_pid}"

    @property
    def runs_workers(self) -> bool:
        return self.index == 0


def run_child(settings: Settings, role: ChildRole) -> None:
    """Serve as one of the supervisor's processes until SIGTERM or SIGINT. Startup errors
    propagate to the entry point, which logs them and exits 1 (the parent then sees a child
    that exited before it was ready)."""
    os.set_inheritable(role.ready_fd, False)  # nothing this process starts holds the pipe
    _exit_with_parent(role.parent_pid)
    # Tell the processes' lines apart (the access log, errors) in the shared output.
    structlog.contextvars.bind_contextvars(process=role.index, pid=os.getpid())
    try:
        asyncio.run(serve(settings, run_workers=role.runs_workers, on_ready=lambda: _ready(role)))
    finally:
        os.close(role.ready_fd)


def _ready(role: ChildRole) -> None:
    """Tell the parent this process serves (the pipe is closed once, when it exits)."""
    os.write(role.ready_fd, READY)


def _exit_with_parent(parent_pid: int) -> None:
    """Linux: get SIGTERM (and drain) when the supervisor dies without stopping us, e.g.
    when it is SIGKILLed, instead of serving on as an orphan nobody supervises."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


# --- the parent's side ---------------------------------------------------------------------


def supervise(settings: Settings) -> int:
    """Run `settings.process_count` server processes until SIGTERM or SIGINT; return the
    exit status. Raises (`core.addresses.ListenError`, `storage.database.
    DatabaseUnavailable`, OSError) for what stops it before any child starts, as a single
    server would for the same cause."""
    _prepare_shared_state(settings)
    reservation = PortReservation.take(settings.listen_address, refuse_busy=not settings.reuse_port)
    metrics_dir: str | None = None
    endpoint: MetricsEndpoint | None = None
    try:
        if settings.metrics_address is not None:
            metrics_dir = tempfile.mkdtemp(prefix="stride-metrics-")
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
            endpoint = MetricsEndpoint(settings.metrics_address, registry)
        if settings.should_migrate_at_startup:
            _migrate(settings)
        supervisor = Supervisor(settings, reservation, metrics_dir, endpoint)
        return asyncio.run(supervisor.run())
    finally:
        if endpoint is not None:
            endpoint.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        reservation.close()


def _prepare_shared_state(settings: Settings) -> None:
    """Create what the children would otherwise race to create: the data directory and, on
    the embedded default, the generated admin token and secret key (each child reads them)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _ = settings.admin_token_digest
    _ = settings.signing_key


def _migrate(settings: Settings) -> None:
    database = build_database(settings)
    try:
        database.wait_until_reachable(settings.db_connect_attempts)
        migrate.upgrade(database.primary)
    finally:
        database.dispose()


class PortReservation:
    """HOST:PORT held by sockets bound with SO_REUSEADDR and SO_REUSEPORT, never listening:
    the children's listening sockets (also SO_REUSEPORT) share the port with them, and the
    kernel hands connections only to listening sockets."""

    def __init__(self, sockets: list[socket.socket], host: str, port: int) -> None:
        self._sockets = sockets
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def take(cls, address: str, *, refuse_busy: bool, attempts: int = 5) -> PortReservation:
        """Raise ListenError naming the address when it cannot be had."""
        if refuse_busy:
            # The same check, and the same words, as a single server (server.listen.add_port).
            busy = listen.probe(address)
            if busy is not None:
                raise ListenError(describe(address, busy))
        host, _, port_text = address.rpartition(":")
        try:
            candidates = socket.getaddrinfo(
                host.strip("[]") or None,
                int(port_text),
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )
        except socket.gaierror as exc:
            raise ListenError(describe(address, exc)) from None
        for _ in range(attempts):
            port = int(port_text)
            sockets: list[socket.socket] = []
            try:
                # Port 0: the first address picks a free port; every other address of the
                # host (localhost: ::1 and 127.0.0.1) must have the same one free.
                for family, kind, proto, _, sockaddr in candidates:
                    sock = socket.socket(family, kind, proto)
                    sockets.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    sock.bind((sockaddr[0], port, *sockaddr[2:]))
                    port = sock.getsockname()[1]
            except OSError as exc:
                for sock in sockets:
                    sock.close()
                if int(port_text) == 0 and exc.errno == errno.EADDRINUSE:
                    continue  # the port picked on one address was taken on another
                raise ListenError(describe(address, exc)) from None
            return cls(sockets, host, port)
        raise ListenError(f"cannot find a port free on every address of {host}")

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@dataclass
class RestartPolicy:
    """When to restart a child that exited unexpectedly: after a delay that doubles with
    each exit (of any child) within the window, and no more once `limit` exits fall in it.
    A child that dies now and then is restarted at once; one that dies at every start
    (a bad deploy, a database gone for good) stops the service within a minute, so that
    the orchestrator above, or an operator, sees it fail."""

    limit: int = CRASH_LIMIT
    window_seconds: float = CRASH_WINDOW_SECONDS
    exits: deque[float] = field(default_factory=deque)

    def delay_after_exit(self, now: float) -> float | None:
        """Seconds to wait before restarting, or None to give up."""
        self.exits.append(now)
        while self.exits and self.exits[0] <= now - self.window_seconds:
            self.exits.popleft()
        if len(self.exits) >= self.limit:
            return None
        delay = FIRST_RESTART_DELAY_SECONDS * 2.0 ** (len(self.exits) - 1)
        return min(delay, MAX_RESTART_DELAY_SECONDS)


@dataclass
class _Child:
    index: int
    process: asyncio.subprocess.Process
    ready_pipe: int
    ready: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)


@dataclass
class Supervisor:
    """Runs the children on an event loop: one task per child slot, which starts its child,
    waits for it to be ready and then to exit, and restarts it when that was unexpected."""

    settings: Settings
    reservation: PortReservation
    metrics_dir: str | None
    endpoint: MetricsEndpoint | None
    _children: dict[int, _Child] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_signal: int = signal.SIGTERM
    _started: bool = False
    _exit_code: int = 0
    _restarts: RestartPolicy = field(default_factory=RestartPolicy)

    @property
    def count(self) -> int:
        return self.settings.process_count

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        slots = [asyncio.create_task(self._slot(index)) for index in range(self.count)]
        await self._stop.wait()
        limit = self.settings.shutdown_grace_seconds + KILL_MARGIN_SECONDS
        _, pending = await asyncio.wait(slots, timeout=limit)
        if pending:
            log.error(
                "server processes did not stop in time; killing them",
                pids=sorted(child.pid for child in self._children.values()),
                waited_seconds=limit,
            )
            self._exit_code = 1
            for child in list(self._children.values()):
                child.send(signal.SIGKILL)
            await asyncio.wait(pending)
        log.info("supervisor stopped", exit_code=self._exit_code)
        return self._exit_code

    # Stopping ---------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if not self._stop.is_set():
            log.info(
                "shutting down",
                signal=signal.Signals(signum).name,
                grace_seconds=self.settings.shutdown_grace_seconds,
                pids=sorted(child.pid for child in self._children.values()),
            )
        self._request_stop(signum)

    def _fail(self, event: str, **fields: object) -> None:
        """Stop everything and exit 1, saying why."""
        if self._stop.is_set():
            return
        log.error(event, **fields)
        self._exit_code = 1
        self._request_stop(signal.SIGTERM)

    def _request_stop(self, signum: int) -> None:
        # Forwarded as received: each child stops gracefully on either signal.
        self._stop_signal = signum
        self._stop.set()
        for child in list(self._children.values()):
            child.send(signum)

    # One child slot ---------------------------------------------------------------------

    async def _slot(self, index: int) -> None:
        try:
            await self._keep_running(index)
        except Exception as exc:  # a bug or an OS refusal to start a process: stop, say why
            log.exception("supervising a server process failed", process=index)
            self._fail("cannot run a server process", process=index, error=str(exc))

    async def _keep_running(self, index: int) -> None:
        while not self._stop.is_set():
            child = await self._spawn(index)
            if self._stop.is_set():  # the stop raced with the start
                child.send(self._stop_signal)
            child.ready = await self._wait_ready(child)
            if child.ready:
                self._on_ready(child)
            code = await child.process.wait()
            del self._children[index]
            if self.metrics_dir is not None:
                # Its "live" gauges (calls in flight, pool connections) are gone with it;
                # its counters stay, so totals never go backwards.
                multiprocess.mark_process_dead(child.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            if self._stop.is_set():
                self._on_stopped(child, code)
                return
            if not child.ready and not self._started:
                self._fail(
                    "a server process failed to start; stopping",
                    process=index,
                    pid=child.pid,
                    exit_code=code,
                )
                return
            log.error(
                "server process exited unexpectedly",
                process=index,
                pid=child.pid,
                exit_code=code,
                was_ready=child.ready,
            )
            delay = self._restarts.delay_after_exit(time.monotonic())
            if delay is None:
                self._fail(
                    "server processes keep exiting; stopping",
                    exits=len(self._restarts.exits),
                    window_seconds=self._restarts.window_seconds,
                )
                return
            log.info("restarting server process", process=index, delay_seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _on_stopped(self, child: _Child, code: int) -> None:
        log.info("server process stopped", process=child.index, pid=child.pid, exit_code=code)
        # A child stopped before it was ready was serving nothing: how it ended loses no call.
        if code != 0 and child.ready:
            self._exit_code = 1

    def _on_ready(self, child: _Child) -> None:
        if self._started:
            log.info("server process restarted", process=child.index, pid=child.pid)
            return
        if not all(c.ready for c in self._children.values()) or len(self._children) < self.count:
            return
        self._started = True
        log.info(
            "server started",
            address=self.reservation.address,
            port=self.reservation.port,
            processes=self.count,
            pids=[self._children[index].pid for index in sorted(self._children)],
            metrics_port=self.endpoint.port if self.endpoint is not None else None,
        )

    async def _spawn(self, index: int) -> _Child:
        read_end, write_end = os.pipe()
        try:
            role = ChildRole(index, write_end, os.getpid())
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server",
                stdin=asyncio.subprocess.DEVNULL,  # stdout and stderr: the parent's own
                env=self._child_environment(role),
                pass_fds=(write_end,),
                # A group of its own: Ctrl-C in a terminal reaches the supervisor alone, which
                # forwards it, instead of every process at once (a child that stopped before
                # the supervisor heard of the signal would look like one that died).
                process_group=0,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child holds the only write end: its exit means EOF
        child = _Child(index, process, read_end)
        self._children[index] = child
        return child

    def _child_environment(self, role: ChildRole) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                CHILD_VARIABLE: role.encode(),
                "STRIDE_LISTEN_ADDRESS": self.reservation.address,
                "STRIDE_REUSE_PORT": "true",
                # Migrated by the parent already; the parent serves metrics for all.
                "STRIDE_AUTO_MIGRATE": "false",
                "STRIDE_METRICS_ADDRESS": "off",
                # The truth: this process is one of N, so what holds only with one process
                # (a read cache kept in-process without Redis) can tell.
                "STRIDE_PROCESSES": str(self.count),
            }
        )
        env.pop(MULTIPROC_VARIABLE, None)
        if self.metrics_dir is not None:
            env[MULTIPROC_VARIABLE] = self.metrics_dir
        return env

    async def _wait_ready(self, child: _Child) -> bool:
        """True once the child says it serves; False if it exits first (EOF on the pipe)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(child.ready_pipe, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            return await reader.read(len(READY)) == READY
        finally:
            transport.close()

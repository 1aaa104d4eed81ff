"""One lean Redis connection for the read cache's version lookups.

Every cached read waits for one lookup, so its cost is paid per call: through redis-py's
asyncio client a script call costs about 60 µs of CPU (connection pool, command
packing, response callbacks), through this connection about a fifth of that. It speaks
just what the lookup needs (RESP2: AUTH, SELECT, EVALSHA, SCRIPT LOAD) over TCP or a
Unix socket, one command at a time (the lookups are sent one at a time anyway). Anything
unexpected closes the connection and raises `LinkError`; the next command reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit


class LinkError(Exception):
    """Redis could not be reached or answered something unexpected."""


class Unsupported(Exception):
    """A URL this connection does not speak (TLS): use redis-py instead."""


class RedisLink:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "unix"):
            raise Unsupported(parts.scheme)
        query = parse_qs(parts.query)
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        database = query.get("db", [""])[0]
        if parts.scheme == "redis" and parts.path.strip("/"):
            database = parts.path.strip("/")
        self._database = int(database or 0)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def evalsha(self, script: str, keys: Sequence[str], args: Sequence[object]) -> object:
        """Run `script` (loaded once per connection when Redis does not know it)."""
        sha = hashlib.sha1(script.encode()).hexdigest()
        command = ["EVALSHA", sha, len(keys), *keys, *args]
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    if self._writer is None:
                        await self._connect()
                    reply = await self._call(command)
                    if isinstance(reply, _Error) and reply.message.startswith("NOSCRIPT"):
                        await self._call(["SCRIPT", "LOAD", script])
                        reply = await self._call(command)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self.close()
                raise LinkError(str(exc) or type(exc).__name__) from exc
            if isinstance(reply, _Error):
                raise LinkError(reply.message)
            return reply

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _connect(self) -> None:
        if self._unix is not None:
            self._reader, self._writer = await asyncio.open_unix_connection(self._unix)
        else:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        if self._password is not None:
            credentials = [self._username, self._password] if self._username else [self._password]
            await self._expect_ok(["AUTH", *credentials])
        if self._database:
            await self._expect_ok(["SELECT", self._database])

    async def _expect_ok(self, command: list[object]) -> None:
        reply = await self._call(command)
        if isinstance(reply, _Error):
            self.close()
            raise LinkError(reply.message)

    async def _call(self, command: Sequence[object]) -> object:
        if self._reader is None or self._writer is None:
            raise OSError("not connected")
        self._writer.write(_encode(command))
        return await _read(self._reader)


class _Error:
    def __init__(self, message: str) -> None:
        self.message = message


def _encode(command: Sequence[object]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def _read(reader: asyncio.StreamReader) -> object:
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise asyncio.IncompleteReadError(line, None)
    kind, body = line[:1], line[1:-2]
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        return (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [await _read(reader) for _ in range(count)]
    if kind == b"+":
        return body.decode()
    if kind == b":":
        return int(body)
    if kind == b"-":
        return _Error(body.decode(errors="replace"))
    raise ValueError(f"unexpected Redis reply {line[:20]!r}")

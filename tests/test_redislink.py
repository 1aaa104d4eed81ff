"""The lean Redis connection of the cache's version lookups, against real Redis servers."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from storage.dataversions import _CURRENT
from storage.redislink import LinkError, RedisLink, Unsupported
from tests.netfaults import free_port, private_redis
from tests.support import SharedRedis

ECHO = "return {KEYS[1], ARGV[1]}"


async def _lookup(link: RedisLink, key: str, token: str) -> object:
    return await link.evalsha(_CURRENT, [key], [60, token])


def test_runs_a_script_redis_has_not_seen_and_reads_its_reply(shared_redis: SharedRedis) -> None:
    link = RedisLink(shared_redis.url, timeout=2)
    key = f"{shared_redis.prefix}dv:a:one"
    script = f"{ECHO} -- {shared_redis.prefix}"  # a script no one else loaded

    async def run() -> None:
        assert await _lookup(link, key, "first") == [b"first"]  # missing: the token given
        assert await _lookup(link, key, "second") == [b"first"]  # present: kept
        assert await link.evalsha(script, ["k"], ["v"]) == [b"k", b"v"]
        assert await link.evalsha(script, ["k"], [b"\x00\xff"]) == [b"k", b"\x00\xff"]
        link.close()

    asyncio.run(run())


def test_an_error_reply_is_raised_and_the_link_still_works(shared_redis: SharedRedis) -> None:
    link = RedisLink(shared_redis.url, timeout=2)

    async def run() -> None:
        with pytest.raises(LinkError, match="boom"):
            await link.evalsha("return redis.error_reply('boom')", [], [])
        assert await link.evalsha(ECHO, ["a"], ["b"]) == [b"a", b"b"]
        link.close()

    asyncio.run(run())


@pytest.fixture
def password_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--requirepass", "s3cret"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, password="s3cret")
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://:s3cret@127.0.0.1:{port}/3"
    finally:
        process.kill()
        process.wait()


def test_authenticates_and_selects_the_database(password_redis: str) -> None:
    async def run() -> None:
        link = RedisLink(password_redis, timeout=2)
        assert await _lookup(link, "dv:a:x", "t") == [b"t"]
        link.close()
        wrong = RedisLink(password_redis.replace("s3cret", "nope"), timeout=2)
        with pytest.raises(LinkError):
            await _lookup(wrong, "dv:a:x", "t")

    asyncio.run(run())
    client = redis.Redis.from_url(password_redis)
    assert client.get("dv:a:x") == b"t"  # written in database 3
    client.close()


@pytest.mark.usefixtures("redis_server_binary")
def test_a_lost_redis_is_an_error_then_the_link_reconnects() -> None:
    with private_redis() as server:
        link = RedisLink(server.url, timeout=0.5)

        async def run() -> None:
            assert await link.evalsha(_CURRENT, ["k"], [60, "a"]) == [b"a"]
            server.stop()
            with pytest.raises(LinkError):
                await link.evalsha(_CURRENT, ["k"], [60, "b"])
            server.start()  # empty: the key and the script are gone
            assert await link.evalsha(_CURRENT, ["k"], [60, "c"]) == [b"c"]
            link.close()

        asyncio.run(run())


def test_garbage_and_silence_from_the_server_are_errors() -> None:
    async def run() -> None:
        replies = iter([b"?what\r\n", b""])

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1000)
            reply = next(replies)
            if reply:
                writer.write(reply)
                await writer.drain()
            else:
                await asyncio.sleep(2)  # says nothing: the timeout ends the wait
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = RedisLink(f"redis://127.0.0.1:{port}", timeout=0.3)
        for _ in range(2):
            with pytest.raises(LinkError):
                await link.evalsha(ECHO, ["a"], ["b"])
        link.close()
        server.close()

    asyncio.run(run())


def test_tls_is_left_to_redis_py() -> None:
    with pytest.raises(Unsupported):
        RedisLink("rediss://127.0.0.1:6380/0", timeout=1)

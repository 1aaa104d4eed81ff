"""The bare baseline: a grpc.aio server, no interceptors, answering constant bytes.

It is given the exact bytes the real server returned, so both serve the same payload.

    python -m bench.baseline_server GET_FILE LIST_FILE
        /stride.v1.Baseline/GetActivity and /stride.v1.Baseline/ListActivities
    python -m bench.baseline_server --answer /pkg.Service/Method=FILE [--answer ...]
        each given path answers its file's bytes (the real server's paths can be reused)

Either way it prints its port on stdout, and `/bench.Baseline/Count` answers (as ASCII
digits) how many calls the constant handlers have answered so far, so a load generator that
cannot read gRPC status (h2load) can be checked against it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc

COUNT_PATH = "/bench.Baseline/Count"
_answered = [0]


def _constant(answer: bytes) -> grpc.RpcMethodHandler[bytes, bytes]:
    async def handle(_: bytes, __: Any) -> bytes:
        _answered[0] += 1
        return answer

    return grpc.unary_unary_rpc_method_handler(handle, lambda b: b, lambda b: b)


def _count() -> grpc.RpcMethodHandler[bytes, bytes]:
    async def handle(_: bytes, __: Any) -> bytes:
        return str(_answered[0]).encode()

    return grpc.unary_unary_rpc_method_handler(handle, lambda b: b, lambda b: b)


async def serve(answers: dict[str, bytes]) -> None:
    """`answers`: call path (/pkg.Service/Method) -> the bytes it answers."""
    services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = defaultdict(dict)
    for path, answer in answers.items():
        service, _, method = path.strip("/").partition("/")
        services[service][method] = _constant(answer)
    count_service, _, count_method = COUNT_PATH.strip("/").partition("/")
    services[count_service][count_method] = _count()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(service, methods)
            for service, methods in services.items()
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server")
    parser.add_argument("files", nargs="*", type=Path, help="GetActivity and ListActivities")
    parser.add_argument(
        "--answer", action="append", default=[], metavar="PATH=FILE", help="path and its bytes"
    )
    args = parser.parse_args(argv)
    answers: dict[str, bytes] = {}
    if args.files:
        if len(args.files) != 2:
            parser.error("give two files (GetActivity, ListActivities) or --answer")
        answers["/stride.v1.Baseline/GetActivity"] = args.files[0].read_bytes()
        answers["/stride.v1.Baseline/ListActivities"] = args.files[1].read_bytes()
    for item in args.answer:
        path, sep, file = item.partition("=")
        if not sep or not path.startswith("/") or path.count("/") != 2:
            parser.error(f"--answer {item!r}: expected /pkg.Service/Method=FILE")
        answers[path] = Path(file).read_bytes()
    if not answers:
        parser.error("nothing to answer")
    asyncio.run(serve(answers))


if __name__ == "__main__":
    main()

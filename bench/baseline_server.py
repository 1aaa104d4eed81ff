"""The bare baseline: a grpc.aio server, no interceptors, answering constant bytes.

It is given the exact bytes the real server returned, so both serve the same payload.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc


def _constant(answer: bytes) -> grpc.RpcMethodHandler[bytes, bytes]:
    async def handle(_: bytes, __: Any) -> bytes:
        return answer

    return grpc.unary_unary_rpc_method_handler(handle, lambda b: b, lambda b: b)


async def serve(get_answer: bytes, list_answer: bytes) -> None:
    handler = grpc.method_handlers_generic_handler(
        "stride.v1.Baseline",
        {"GetActivity": _constant(get_answer), "ListActivities": _constant(list_answer)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()))

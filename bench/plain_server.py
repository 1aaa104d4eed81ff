"""The real server with no interceptors: the baseline for the interceptor-chain benchmark."""

from __future__ import annotations

import asyncio

from core.logging import configure_logging
from core.settings import load_settings
from server.app import start


async def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    running = await start(settings, interceptors=False)
    await running.server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())

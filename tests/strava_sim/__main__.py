"""``python -m tests.strava_sim --port 8700 --seed 1 --athletes 3 --activities 300``.

The first line printed is ``Strava simulator listening on http://HOST:PORT`` (``--port 0``
picks a free port), so scripts can read the address. SIGTERM or Ctrl-C stops it (exit 0).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from types import FrameType

from tests.strava_sim.config import SimConfig
from tests.strava_sim.server import StravaSimulator


def _pair(text: str) -> tuple[int, int]:
    short, daily = (int(part) for part in text.split(","))
    return short, daily


def _when(text: str) -> dt.datetime:
    if text == "now":
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_args(argv: list[str] | None = None) -> SimConfig:
    defaults = SimConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tests.strava_sim", description="A Strava-compatible API simulator."
    )
    add = parser.add_argument
    add("--host", default=defaults.host)
    add("--port", type=int, default=8700, help="0 picks a free port (default 8700)")
    add("--seed", type=int, default=defaults.seed)
    add("--athletes", type=int, default=defaults.athletes)
    add("--activities", type=int, default=defaults.activities, help="per athlete")
    add("--stream-step", type=int, default=defaults.stream_step, help="seconds between samples")
    add("--history-end", type=_when, default=defaults.history_end, help="ISO date or 'now'")
    add("--history-days", type=int, default=defaults.history_days)
    add("--client-id", type=int, default=defaults.client_id)
    add("--client-secret", default=defaults.client_secret)
    add("--callback-domain", default=None, help="redirect_uri host allowed besides localhost")
    add("--token-ttl", type=int, default=defaults.access_token_ttl, help="access token seconds")
    add("--refresh-policy", choices=("until_used", "immediate"), default=defaults.refresh_policy)
    add("--max-athletes", type=int, default=None, help="connected-athlete limit (403 beyond)")
    add("--rate-limit", type=_pair, default=defaults.overall_limits, help="overall '15min,daily'")
    add("--read-rate-limit", type=_pair, default=defaults.read_limits, help="read '15min,daily'")
    add("--short-window", type=float, default=defaults.short_window, help="seconds (900)")
    add("--long-window", type=float, default=defaults.long_window, help="seconds (86400)")
    add("--no-rate-limit", action="store_true", help="report usage but never answer 429")
    args = parser.parse_args(argv)
    return SimConfig(
        seed=args.seed,
        athletes=args.athletes,
        activities=args.activities,
        stream_step=args.stream_step,
        history_end=args.history_end,
        history_days=args.history_days,
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        callback_domain=args.callback_domain,
        access_token_ttl=args.token_ttl,
        refresh_policy=args.refresh_policy,
        max_connected_athletes=args.max_athletes,
        overall_limits=args.rate_limit,
        read_limits=args.read_rate_limit,
        short_window=args.short_window,
        long_window=args.long_window,
        rate_limits_enabled=not args.no_rate_limit,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    sim = StravaSimulator(config)
    try:
        sim.start()
    except OSError as error:
        print(f"cannot listen on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        sim.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    base = sim.base_url
    print(f"Strava simulator listening on {base}", flush=True)
    print(f"  API base      {sim.api_url}")
    print(f"  client        id {config.client_id}, secret {config.client_secret}")
    authorize = (
        f"{base}/oauth/authorize?client_id={config.client_id}&response_type=code"
        "&redirect_uri=http://localhost/exchange_token&scope=read,activity:read_all"
    )
    print(f"  authorize     {authorize}")
    print(f"  a code        curl -s -XPOST '{base}/_sim/codes?athlete_id=ID'")
    print(f"  control API   {base}/_sim (athletes, faults, events, requests, ratelimit)")
    for athlete in sim.world.athletes.values():
        count = len(sim.world.athlete_activities(athlete.id))
        print(
            f"  athlete {athlete.id}: {athlete.firstname} {athlete.lastname} "
            f"({athlete.city.name}, {athlete.city.zone}), {count} activities"
        )
    sys.stdout.flush()
    sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

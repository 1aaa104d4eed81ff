"""A Strava-compatible simulator: a real HTTP server on loopback for tests, benchmarks, demos.

Start it in-process (``with StravaSimulator(...) as sim: sim.base_url``, or
``with serve(...) as base_url``) or as a process (``python -m tests.strava_sim``,
``make strava-sim``). Point a Strava client at ``base_url`` (OAuth, Strava's
``https://www.strava.com``) and ``api_url`` (Strava's ``https://www.strava.com/api/v3``).
"""

from tests.strava_sim.config import SimConfig
from tests.strava_sim.errors import ApiError
from tests.strava_sim.faults import Fault
from tests.strava_sim.server import StravaSimulator, serve
from tests.strava_sim.webhooks import Delivery

__all__ = ["ApiError", "Delivery", "Fault", "SimConfig", "StravaSimulator", "serve"]

"""Strava's `sport_type` values, the vocabulary activities are stored with."""

from __future__ import annotations

SPORT_TYPES: frozenset[str] = frozenset(
    [
        "AlpineSki", "BackcountrySki", "Badminton", "Canoeing", "Crossfit", "EBikeRide",
        "Elliptical", "EMountainBikeRide", "Golf", "GravelRide", "Handcycle",
        "HighIntensityIntervalTraining", "Hike", "IceSkate", "InlineSkate", "Kayaking",
        "Kitesurf", "MountainBikeRide", "NordicSki", "Pickleball", "Pilates", "Racquetball",
        "Ride", "RockClimbing", "RollerSki", "Rowing", "Run", "Sail", "Skateboard", "Snowboard",
        "Snowshoe", "Soccer", "Squash", "StairStepper", "StandUpPaddling", "Surfing", "Swim",
        "TableTennis", "Tennis", "TrailRun", "Velomobile", "VirtualRide", "VirtualRow",
        "VirtualRun", "Walk", "WeightTraining", "Wheelchair", "Windsurf", "Workout", "Yoga",
    ]
)  # fmt: skip


# Running sports: the ones road age grading and personal records (best efforts) apply to.
RUNNING_SPORTS = frozenset({"Run", "TrailRun", "VirtualRun"})

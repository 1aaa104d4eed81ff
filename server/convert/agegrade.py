"""Age grades -> stride.v1.AgeGradeResult (AgeGrade's answer, and on activities and
personal records)."""

from __future__ import annotations

from google.protobuf import duration_pb2
from stride.v1 import analytics_pb2

from domain.agegrade import GradedPerformance
from server.convert.athletes import SEX_TO_PROTO

STANDARDS = "road-2025"


def seconds_to_duration(value: float) -> duration_pb2.Duration:
    """Fractional seconds, to the nanosecond."""
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def age_grade_to_proto(graded: GradedPerformance) -> analytics_pb2.AgeGradeResult:
    return analytics_pb2.AgeGradeResult(
        age=graded.age,
        sex=SEX_TO_PROTO[graded.sex],
        distance_meters=graded.distance_meters,
        time=seconds_to_duration(graded.time_seconds),
        age_factor=float(graded.grade.factor),
        age_graded_time=seconds_to_duration(graded.grade.graded_time_seconds),
        age_graded_percent=graded.grade.percentage,
        open_class_standard=seconds_to_duration(graded.open_standard_seconds),
        standards=STANDARDS,
    )

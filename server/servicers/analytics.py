"""AnalyticsService: protobuf <-> domain translation around services.analytics. Methods not
implemented here still answer UNIMPLEMENTED (the generated base class)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2
from stride.v1 import analytics_pb2, analytics_pb2_grpc

from domain import names
from domain.athletes import Sex
from domain.errors import InvalidArgument, Violations
from server.blocking import BlockingRunner
from server.convert.athletes import SEX_FROM_PROTO, SEX_TO_PROTO
from server.convert.common import date_to_domain, duration_to_timedelta
from services.analytics import AnalyticsService, GradedPerformance, Performance

Context = grpc.aio.ServicerContext[Any, Any]
STANDARDS = "road-2025"


def _performance(
    message: analytics_pb2.Performance, prefix: str, violations: Violations
) -> Performance:
    distance_field, time_field = f"{prefix}.distance_meters", f"{prefix}.time"
    if not message.distance_meters:
        violations.add(distance_field, "is required")
    seconds = 0.0
    if not message.HasField("time"):
        violations.add(time_field, "is required")
    elif (time := duration_to_timedelta(message.time, time_field, violations)) is not None:
        seconds = time.total_seconds()
    return Performance(message.distance_meters, seconds, distance_field, time_field)


def _seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def _result(graded: GradedPerformance) -> analytics_pb2.AgeGradeResult:
    return analytics_pb2.AgeGradeResult(
        age=graded.age,
        sex=SEX_TO_PROTO[graded.sex],
        distance_meters=graded.distance_meters,
        time=_seconds(graded.time_seconds),
        age_factor=float(graded.grade.factor),
        age_graded_time=_seconds(graded.grade.graded_time_seconds),
        age_graded_percent=graded.grade.percentage,
        open_class_standard=_seconds(graded.open_standard_seconds),
        standards=STANDARDS,
    )


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, analytics: AnalyticsService, run: BlockingRunner) -> None:
        self._analytics = analytics
        self._run = run

    async def AgeGrade(
        self, request: analytics_pb2.AgeGradeRequest, context: Context
    ) -> analytics_pb2.AgeGradeResult:
        # Authorization of the athlete the subject names is the interceptor's (the policy
        # reads the oneof); here only the translation.
        violations = Violations()
        subject = request.WhichOneof("subject")
        if subject == "activity":
            athlete_id, activity_id = names.parse_activity(request.activity, "activity")
            graded = await self._run(self._analytics.grade_activity, athlete_id, activity_id)
        elif subject == "athlete_performance":
            message = request.athlete_performance
            athlete_id = names.parse_athlete(message.athlete, "athlete_performance.athlete")
            performance = _performance(
                message.performance, "athlete_performance.performance", violations
            )
            day = date_to_domain(message.date, "athlete_performance.date", violations)
            violations.raise_if_any()
            graded = await self._run(
                self._analytics.grade_for_athlete, athlete_id, performance, day
            )
        elif subject == "age_sex_performance":
            explicit = request.age_sex_performance
            prefix = "age_sex_performance"
            performance = _performance(explicit.performance, f"{prefix}.performance", violations)
            violations.raise_if_any()
            sex = SEX_FROM_PROTO.get(explicit.sex, Sex.UNSPECIFIED)
            graded = self._analytics.grade_explicit(explicit.age, sex, performance, prefix)
        else:
            raise InvalidArgument.one(
                "subject", "one of activity, athlete_performance, age_sex_performance is required"
            )
        return _result(graded)

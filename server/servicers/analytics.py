"""AnalyticsService: protobuf <-> domain translation around services.analytics (age grades,
summaries, the fitness trend) and services.records (personal records)."""

from __future__ import annotations

from typing import Any

import grpc
from stride.v1 import analytics_pb2, analytics_pb2_grpc

from domain import names
from domain.athletes import Sex
from domain.best_efforts import Distance
from domain.errors import InvalidArgument, Violations
from domain.periods import Period
from server.blocking import BlockingRunner
from server.convert.activities import SPORT_TO_PROTO, sport_type_from_proto
from server.convert.agegrade import age_grade_to_proto, seconds_to_duration
from server.convert.athletes import SEX_FROM_PROTO
from server.convert.common import (
    date_to_domain,
    date_to_proto,
    datetime_to_timestamp,
    duration_to_timedelta,
)
from services.analytics import (
    AnalyticsService,
    FitnessTrend,
    Performance,
    Totals,
    TrainingSummary,
)
from services.records import PersonalRecord, PersonalRecordService

Context = grpc.aio.ServicerContext[Any, Any]


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


PERIOD_FROM_PROTO = {
    analytics_pb2.SUMMARY_PERIOD_UNSPECIFIED: Period.WEEK,
    analytics_pb2.SUMMARY_PERIOD_WEEK: Period.WEEK,
    analytics_pb2.SUMMARY_PERIOD_MONTH: Period.MONTH,
}
PERIOD_TO_PROTO = {
    Period.WEEK: analytics_pb2.SUMMARY_PERIOD_WEEK,
    Period.MONTH: analytics_pb2.SUMMARY_PERIOD_MONTH,
}
SUMMARY = "trainingSummary"
TREND = "fitnessTrend"


def _totals(totals: Totals) -> analytics_pb2.TrainingTotals:
    return analytics_pb2.TrainingTotals(
        activity_count=totals.activity_count,
        distance_meters=totals.distance_meters,
        moving_time=seconds_to_duration(totals.moving_seconds),
        elevation_gain_meters=totals.elevation_gain_meters,
        training_load=totals.training_load,
        estimated_load_count=totals.estimated_load_count,
    )


def _summary(athlete_id: str, summary: TrainingSummary) -> analytics_pb2.TrainingSummary:
    periods = []
    for period in summary.periods:
        sports = sorted(
            (SPORT_TO_PROTO.get(sport, 0), totals) for sport, totals in period.sports.items()
        )
        periods.append(
            analytics_pb2.TrainingPeriod(
                start_date=date_to_proto(period.start),
                end_date=date_to_proto(period.end),
                totals=_totals(period.totals),
                sports=[
                    analytics_pb2.SportTrainingTotals(
                        sport_type=number,  # type: ignore[arg-type]
                        totals=_totals(totals),
                    )
                    for number, totals in sports
                ],
            )
        )
    return analytics_pb2.TrainingSummary(
        name=f"{names.athlete_name(athlete_id)}/{SUMMARY}",
        period=PERIOD_TO_PROTO[summary.period],
        start_date=date_to_proto(summary.start),
        end_date=date_to_proto(summary.end),
        time_zone=summary.time_zone,
        periods=periods,
    )


def _trend(athlete_id: str, trend: FitnessTrend) -> analytics_pb2.FitnessTrend:
    return analytics_pb2.FitnessTrend(
        name=f"{names.athlete_name(athlete_id)}/{TREND}",
        start_date=date_to_proto(trend.start),
        end_date=date_to_proto(trend.end),
        time_zone=trend.time_zone,
        points=[
            analytics_pb2.FitnessPoint(
                date=date_to_proto(point.day),
                training_load=point.training_load,
                chronic_load=point.chronic_load,
                acute_load=point.acute_load,
                balance=point.balance,
                estimated_load_count=point.estimated_load_count,
            )
            for point in trend.points
        ],
    )


# BestEffortDistance values in the order of domain.best_efforts.Distance (both shortest first).
DISTANCE_TO_PROTO: dict[Distance, analytics_pb2.BestEffortDistance.ValueType] = {
    distance: value
    for distance, value in zip(Distance, analytics_pb2.BestEffortDistance.values()[1:], strict=True)
}
DISTANCE_FROM_PROTO = {value: key for key, value in DISTANCE_TO_PROTO.items()}


def _record(athlete_id: str, record: PersonalRecord) -> analytics_pb2.PersonalRecord:
    best = record.best
    proto = analytics_pb2.PersonalRecord(
        name=f"{names.athlete_name(athlete_id)}/personalRecords/{record.record_id}",
        distance=DISTANCE_TO_PROTO[best.distance],
        distance_meters=best.distance.meters,
        period=analytics_pb2.RECORD_PERIOD_ALL_TIME
        if record.year is None
        else analytics_pb2.RECORD_PERIOD_YEAR,
        year=record.year or 0,
        time=seconds_to_duration(best.elapsed_seconds),
        activity=names.activity_name(athlete_id, best.activity_id),
        sport_type=SPORT_TO_PROTO[best.sport_type],  # type: ignore[arg-type]
        start_time=datetime_to_timestamp(best.start_time),
        start_offset=seconds_to_duration(best.start_offset_seconds),
    )
    if record.graded is not None:
        proto.age_grade.CopyFrom(age_grade_to_proto(record.graded))
    return proto


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(
        self, analytics: AnalyticsService, records: PersonalRecordService, run: BlockingRunner
    ) -> None:
        self._analytics = analytics
        self._records = records
        self._run = run

    async def ListPersonalRecords(
        self, request: analytics_pb2.ListPersonalRecordsRequest, context: Context
    ) -> analytics_pb2.ListPersonalRecordsResponse:
        violations = Violations()
        athlete_id = names.parse_athlete(request.parent, "parent", violations)
        if request.period not in (
            analytics_pb2.RECORD_PERIOD_UNSPECIFIED,
            analytics_pb2.RECORD_PERIOD_ALL_TIME,
            analytics_pb2.RECORD_PERIOD_YEAR,
        ):
            violations.add("period", "must be a RecordPeriod")
        distances = []
        for i, value in enumerate(request.distances):
            if value not in DISTANCE_FROM_PROTO:
                violations.add(f"distances[{i}]", "must be a BestEffortDistance")
            else:
                distances.append(DISTANCE_FROM_PROTO[value])
        sports = [
            sport_type_from_proto(value, f"sport_types[{i}]", violations)
            for i, value in enumerate(request.sport_types)
        ]
        violations.raise_if_any()
        records, token = await self._run(
            self._records.list_page,
            athlete_id,
            per_year=request.period == analytics_pb2.RECORD_PERIOD_YEAR,
            year=request.year if request.HasField("year") else None,
            distances=distances,
            sport_types=sports,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return analytics_pb2.ListPersonalRecordsResponse(
            personal_records=[_record(athlete_id, record) for record in records],
            next_page_token=token,
        )

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
                self._analytics.grade_for_athlete,
                athlete_id,
                performance,
                day,
                "athlete_performance.date",
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
        return age_grade_to_proto(graded)

    async def GetTrainingSummary(
        self, request: analytics_pb2.GetTrainingSummaryRequest, context: Context
    ) -> analytics_pb2.TrainingSummary:
        athlete_id = names.parse_singleton(request.name, "name", SUMMARY)
        violations = Violations()
        period = PERIOD_FROM_PROTO.get(request.period)
        if period is None:
            violations.add("period", "must be SUMMARY_PERIOD_WEEK or SUMMARY_PERIOD_MONTH")
        start = date_to_domain(request.start_date, "start_date", violations)
        end = date_to_domain(request.end_date, "end_date", violations)
        sports = sorted(
            {
                sport_type_from_proto(value, f"sport_types[{i}]", violations)
                for i, value in enumerate(request.sport_types)
            }
        )
        violations.raise_if_any()
        assert period is not None
        summary = await self._run(
            self._analytics.training_summary,
            athlete_id,
            period,
            start,
            end,
            sports,
            request.per_sport,
        )
        return _summary(athlete_id, summary)

    async def GetFitnessTrend(
        self, request: analytics_pb2.GetFitnessTrendRequest, context: Context
    ) -> analytics_pb2.FitnessTrend:
        athlete_id = names.parse_singleton(request.name, "name", TREND)
        violations = Violations()
        start = date_to_domain(request.start_date, "start_date", violations)
        end = date_to_domain(request.end_date, "end_date", violations)
        violations.raise_if_any()
        trend = await self._run(self._analytics.fitness_trend, athlete_id, start, end)
        return _trend(athlete_id, trend)

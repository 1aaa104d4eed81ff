"""The AnalyticsService contract (issue 10), read from the generated descriptors: Get methods
name what they get, ListPersonalRecords pages, AgeGrade's subject is a oneof of three cases,
and the authorization table reads the athlete from those names."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2, field_behavior_pb2, resource_pb2
from google.protobuf.descriptor import FieldDescriptor
from stride.v1 import activity_pb2, analytics_pb2

from domain.errors import PermissionDenied
from server.authorization import POLICY, authorize
from server.principal import Principal

SERVICE = analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"]


def _behaviors(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _reference(field: FieldDescriptor) -> str:
    return str(field.GetOptions().Extensions[resource_pb2.resource_reference].type)


def _http(method_name: str) -> Any:
    return SERVICE.methods_by_name[method_name].GetOptions().Extensions[annotations_pb2.http]


def test_every_get_method_takes_the_name_of_a_singleton_it_returns() -> None:
    gets = [m for m in SERVICE.methods if m.name.startswith("Get")]
    assert {m.name for m in gets} == {"GetTrainingSummary", "GetFitnessTrend"}
    for method in gets:
        name = method.input_type.fields_by_name["name"]
        assert field_behavior_pb2.REQUIRED in _behaviors(name), method.name
        resource = method.output_type.GetOptions().Extensions[resource_pb2.resource]
        assert _reference(name) == resource.type, method.name
        (pattern,) = resource.pattern
        assert pattern.startswith("athletes/{athlete}/"), pattern
        assert _http(method.name).get == "/v1/{name=" + pattern.replace("{athlete}", "*") + "}"
        assert "athlete" not in method.input_type.fields_by_name
        identifier = method.output_type.fields_by_name["name"]
        assert field_behavior_pb2.IDENTIFIER in _behaviors(identifier)
        # Optional ranges (AIP-131: no other required field), echoed in the response.
        for date in ("start_date", "end_date"):
            assert field_behavior_pb2.OPTIONAL in _behaviors(method.input_type.fields_by_name[date])
            assert date in method.output_type.fields_by_name


def test_list_personal_records_paginates_under_the_athlete() -> None:
    method = SERVICE.methods_by_name["ListPersonalRecords"]
    request, response = method.input_type.fields_by_name, method.output_type.fields_by_name
    assert request["parent"].type == FieldDescriptor.TYPE_STRING
    assert _reference(request["parent"]) == "stride.dev/Athlete"
    assert request["page_size"].type == FieldDescriptor.TYPE_INT32
    assert request["page_token"].type == FieldDescriptor.TYPE_STRING
    assert response["next_page_token"].type == FieldDescriptor.TYPE_STRING
    assert _http("ListPersonalRecords").get == "/v1/{parent=athletes/*}/personalRecords"
    records = response["personal_records"].message_type
    assert records is analytics_pb2.PersonalRecord.DESCRIPTOR
    resource = records.GetOptions().Extensions[resource_pb2.resource]
    assert list(resource.pattern) == ["athletes/{athlete}/personalRecords/{personal_record}"]
    # All-time and per-year bests: the period and year filters exist.
    assert {"period", "year", "distances"} <= set(request)


def test_age_grade_subject_is_a_oneof_of_activity_athlete_or_explicit_age_and_sex() -> None:
    request = analytics_pb2.AgeGradeRequest.DESCRIPTOR
    (subject,) = request.oneofs
    cases = {f.name: f for f in subject.fields}
    assert set(cases) == {"activity", "athlete_performance", "age_sex_performance"}
    assert _reference(cases["activity"]) == "stride.dev/Activity"
    athlete = analytics_pb2.AthletePerformance.DESCRIPTOR.fields_by_name
    assert cases["athlete_performance"].message_type is analytics_pb2.AthletePerformance.DESCRIPTOR
    assert _reference(athlete["athlete"]) == "stride.dev/Athlete"
    assert {"performance", "date"} <= set(athlete)
    explicit = analytics_pb2.AgeSexPerformance.DESCRIPTOR.fields_by_name
    assert cases["age_sex_performance"].message_type is analytics_pb2.AgeSexPerformance.DESCRIPTOR
    assert {"age", "sex", "performance"} <= set(explicit)
    assert "athlete" not in explicit
    # Nothing outside the oneof: the old flat athlete/age/sex/distance fields are gone.
    assert {f.name for f in request.fields} == set(cases)

    request_message = analytics_pb2.AgeGradeRequest(activity="athletes/a/activities/b")
    request_message.age_sex_performance.age = 40
    assert request_message.WhichOneof("subject") == "age_sex_performance"


def test_age_grade_results_carry_factor_times_percent_and_standard() -> None:
    method = SERVICE.methods_by_name["AgeGrade"]
    result = method.output_type
    assert {"age_factor", "age_graded_time", "age_graded_percent", "open_class_standard"} <= set(
        result.fields_by_name
    )
    for carrier in (analytics_pb2.PersonalRecord.DESCRIPTOR, activity_pb2.Activity.DESCRIPTOR):
        grade = carrier.fields_by_name["age_grade"]
        assert grade.message_type is result, carrier.full_name
        assert field_behavior_pb2.OUTPUT_ONLY in _behaviors(grade)
        assert grade.has_presence  # absent when there is no grade
    bindings = [_http("AgeGrade"), *_http("AgeGrade").additional_bindings]
    paths = {rule.post or rule.get for rule in bindings}
    assert paths == {
        "/v1/analytics:ageGrade",
        "/v1/{activity=athletes/*/activities/*}:ageGrade",
        "/v1/{athlete_performance.athlete=athletes/*}:ageGrade",
    }


def test_fitness_and_summary_carry_the_figures_the_issue_asks_for() -> None:
    point = analytics_pb2.FitnessPoint.DESCRIPTOR.fields_by_name
    assert {"date", "training_load", "chronic_load", "acute_load", "balance"} <= set(point)
    totals = analytics_pb2.TrainingTotals.DESCRIPTOR.fields_by_name
    assert {
        "activity_count",
        "distance_meters",
        "moving_time",
        "elevation_gain_meters",
        "training_load",
    } <= set(totals)
    period = analytics_pb2.TrainingPeriod.DESCRIPTOR.fields_by_name
    assert {"start_date", "end_date", "totals", "sports"} <= set(period)
    request = analytics_pb2.GetTrainingSummaryRequest.DESCRIPTOR.fields_by_name
    assert {"period", "sport_types", "per_sport"} <= set(request)


def test_authorization_reads_the_athlete_from_the_new_names() -> None:
    athlete = Principal(athlete_id="a1")
    own = {
        "GetTrainingSummary": analytics_pb2.GetTrainingSummaryRequest(
            name="athletes/a1/trainingSummary"
        ),
        "GetFitnessTrend": analytics_pb2.GetFitnessTrendRequest(name="athletes/a1/fitnessTrend"),
        "ListPersonalRecords": analytics_pb2.ListPersonalRecordsRequest(parent="athletes/a1"),
    }
    for method, request in own.items():
        path = f"/stride.v1.AnalyticsService/{method}"
        assert callable(POLICY[path]), path
        authorize(athlete, path, request)
        other = type(request)()
        other.CopyFrom(request)
        field = "parent" if method.startswith("List") else "name"
        setattr(other, field, getattr(request, field).replace("a1", "a2", 1))
        with pytest.raises(PermissionDenied) as refused:
            authorize(athlete, path, other)
        assert refused.value.reason == "NOT_YOUR_RESOURCE", path
    # AgeGrade's oneof: the athlete of `activity` or `athlete_performance`; an explicit age
    # and sex concerns nobody.
    path = "/stride.v1.AnalyticsService/AgeGrade"
    performance = analytics_pb2.Performance(distance_meters=5000)
    authorize(athlete, path, analytics_pb2.AgeGradeRequest(activity="athletes/a1/activities/x"))
    nobody = analytics_pb2.AgeSexPerformance(age=40, performance=performance)
    authorize(athlete, path, analytics_pb2.AgeGradeRequest(age_sex_performance=nobody))
    theirs = [
        analytics_pb2.AgeGradeRequest(activity="athletes/a2/activities/x"),
        analytics_pb2.AgeGradeRequest(
            athlete_performance=analytics_pb2.AthletePerformance(
                athlete="athletes/a2", performance=performance
            )
        ),
    ]
    for request in theirs:
        with pytest.raises(PermissionDenied) as refused:
            authorize(athlete, path, request)
        assert refused.value.reason == "NOT_YOUR_RESOURCE"

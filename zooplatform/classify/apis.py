"""The volunteer API: next subjects, submitting classifications, subjects, workflows, history.

Each view validates its input with a serializer, calls one service or selector and serializes the
result. Errors of the services (:class:`ApplicationError`) become HTTP 400 ``{field: [reason]}``.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from zooplatform.core.api import SharedFieldsSerializer
from zooplatform.workflows.models import WorkflowVersion

from .identity import request_volunteer_id
from .selectors import (
    classifications_for_volunteer,
    serving_context_get,
    subject_current_workflow_version_id,
    subject_get,
    volunteer_stats,
)
from .services import MAX_SERVE, classification_submit, subjects_serve
from .throttles import ThrottledView


class VolunteerApi(ThrottledView, APIView):
    # The volunteer API's views, throttled per volunteer and per IP address. (No docstring: the schema
    # would show it as every endpoint's description.)
    pass


class SubjectOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    image_url = serializers.SerializerMethodField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    workflow_version = serializers.SerializerMethodField()
    survey = serializers.CharField()
    ra = serializers.FloatField(allow_null=True)
    dec = serializers.FloatField(allow_null=True)
    metadata = serializers.DictField()

    def get_image_url(self, subject) -> str:
        return self.context["request"].build_absolute_uri(subject.image.url)

    def get_workflow_version(self, subject) -> int:
        return self.context["workflow_version"]


class SubjectsNextApi(VolunteerApi):
    class InputSerializer(SharedFieldsSerializer):
        n = serializers.IntegerField(min_value=1, max_value=MAX_SERVE, default=1)
        project = serializers.SlugField(required=False)

    @extend_schema(
        summary="The calling volunteer's next subjects",
        description="Up to `n` subjects the volunteer has not classified (nor been served in the last two "
                    "hours), highest priority first, gold-standard subjects mixed in by experience. Each is "
                    "recorded as served, so it can be submitted with the given workflow version.",
        parameters=[InputSerializer], responses=SubjectOutputSerializer(many=True),
    )
    def get(self, request):
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        context = serving_context_get(project_slug=params.validated_data.get("project"))
        volunteer_id = request_volunteer_id(request)
        subjects = subjects_serve(volunteer_id=volunteer_id, context=context, n=params.validated_data["n"])
        out = SubjectOutputSerializer(subjects, many=True,
                                      context={"request": request, "workflow_version": context.workflow_version_id})
        return Response(out.data)


class SubjectDetailApi(VolunteerApi):
    @extend_schema(summary="One subject", responses=SubjectOutputSerializer)
    def get(self, request, pk: int):
        subject = subject_get(pk=pk)
        out = SubjectOutputSerializer(subject, context={
            "request": request, "workflow_version": subject_current_workflow_version_id(subject=subject)})
        return Response(out.data)


class BoxSerializer(serializers.Serializer):
    x = serializers.FloatField()
    y = serializers.FloatField()
    width = serializers.FloatField()
    height = serializers.FloatField()


class AnswerSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=100)
    answer = serializers.CharField(max_length=100)


class FeedbackSerializer(serializers.Serializer):
    text = serializers.CharField()
    questions_compared = serializers.IntegerField()
    questions_agreed = serializers.IntegerField()
    expert_answers = AnswerSerializer(many=True)


class _OnePassListField(serializers.Field):
    """A JSON list of small objects checked in one pass: a nested serializer per item cost as much CPU as
    storing the classification. Subclasses check one item in ``item``."""

    name = ""

    def __init__(self, *, max_length: int, **kwargs):
        self.max_length = max_length
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError(f"expected a list of {self.name}, not {type(data).__name__}")
        if len(data) > self.max_length:
            raise serializers.ValidationError(f"{len(data)} {self.name}: at most {self.max_length} are allowed")
        return [self.item(i, item) for i, item in enumerate(data)]

    def item(self, i: int, item) -> dict:
        raise NotImplementedError

    def to_representation(self, value):
        return value


@extend_schema_field(AnswerSerializer(many=True))
class AnswersField(_OnePassListField):
    """``[{"question": name, "answer": name}, ...]`` (the path through the tree is checked later)."""

    name = "answers"

    def item(self, i, item):
        if not isinstance(item, dict):
            raise serializers.ValidationError(f"answers[{i}] must be an object with question and answer")
        pair = {k: item.get(k) for k in ("question", "answer")}
        for k, v in pair.items():
            if not isinstance(v, str) or not v or len(v) > 100:
                raise serializers.ValidationError(f"answers[{i}].{k} must be a name of 1 to 100 characters")
        return pair


@extend_schema_field(BoxSerializer(many=True))
class BoxesField(_OnePassListField):
    """``[{"x":.., "y":.., "width":.., "height":..}, ...]`` in image pixels (inside the image, positive
    size and the count are checked against the subject later)."""

    name = "boxes"

    def item(self, i, item):
        if not isinstance(item, dict):
            raise serializers.ValidationError(f"boxes[{i}] must be an object with x, y, width and height")
        box = {}
        for k in ("x", "y", "width", "height"):
            v = item.get(k)
            try:
                if isinstance(v, bool):
                    raise TypeError
                box[k] = float(v)
            except (TypeError, ValueError):
                raise serializers.ValidationError(f"boxes[{i}].{k} must be a number, not {v!r}") from None
        return box


class ClassificationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subject = serializers.SerializerMethodField()
    workflow_version = serializers.IntegerField(source="workflow_version_id")
    answers = AnswerSerializer(many=True)
    boxes = serializers.SerializerMethodField()
    no_clumps = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    def get_subject(self, c) -> dict:
        request = self.context["request"]
        return {"id": c.subject_id, "external_id": c.subject.external_id,
                "image_url": request.build_absolute_uri(c.subject.image.url)}

    def get_boxes(self, c) -> list[dict]:
        return [b.as_dict() for b in c.boxes.all()]


class ClassificationsApi(VolunteerApi):
    class InputSerializer(SharedFieldsSerializer):
        subject = serializers.IntegerField(min_value=1)
        workflow_version = serializers.IntegerField(min_value=1)
        key = serializers.CharField(max_length=64)
        answers = AnswersField(max_length=100)
        boxes = BoxesField(max_length=500, required=False, default=list)
        no_clumps = serializers.BooleanField(required=False, default=False)
        started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        finished_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        client = serializers.DictField(required=False, default=dict)

    class Pagination(LimitOffsetPagination):
        default_limit = 20
        max_limit = 100

    @extend_schema(
        summary="Submit a classification",
        description="Idempotent on `key`: the same key again returns the same id (with the header "
                    "`Idempotent-Replayed: true`) and stores nothing new. 400 with `{field: [reason]}` for "
                    "invalid input; nothing partial is stored.",
        request=InputSerializer,
        responses={201: inline_serializer("ClassificationCreated", {
            "id": serializers.IntegerField(), "feedback": FeedbackSerializer(allow_null=True)})},
    )
    def post(self, request):
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        result = classification_submit(
            volunteer_id=request_volunteer_id(request), subject_id=data["subject"],
            workflow_version_id=data["workflow_version"], key=data["key"], answers=data["answers"],
            boxes=data["boxes"], no_clumps=data["no_clumps"], started_at=data["started_at"],
            finished_at=data["finished_at"], client=data["client"],
        )
        headers = {} if result.created else {"Idempotent-Replayed": "true"}
        return Response({"id": result.classification_id, "feedback": result.feedback},
                        status=status.HTTP_201_CREATED, headers=headers)

    @extend_schema(summary="The calling volunteer's classifications, newest first",
                   responses=ClassificationOutputSerializer(many=True))
    def get(self, request):
        volunteer_id = request_volunteer_id(request, create=False)
        paginator = self.Pagination()
        page = paginator.paginate_queryset(classifications_for_volunteer(volunteer_id=volunteer_id), request, self)
        out = ClassificationOutputSerializer(page, many=True, context={"request": request})
        return paginator.get_paginated_response(out.data)


class MeApi(VolunteerApi):
    @extend_schema(summary="Who the API thinks you are", responses=inline_serializer("Me", {
        "volunteer": serializers.IntegerField(allow_null=True), "username": serializers.CharField(allow_null=True),
        "classifications": serializers.IntegerField(), "boxes": serializers.IntegerField(),
        "gold_seen": serializers.IntegerField()}))
    def get(self, request):
        volunteer_id = request_volunteer_id(request, create=False)
        user = request.user
        return Response({"volunteer": volunteer_id,
                         "username": user.get_username() if user.is_authenticated else None,
                         **volunteer_stats(volunteer_id=volunteer_id)})


class WorkflowVersionApi(VolunteerApi):
    @extend_schema(
        summary="A workflow version's decision tree",
        description="Exactly the stored tree (`first`, `questions[].name/text/answers[].name/text/next`), "
                    "plus the clump task under `box_task`. Versions are immutable.",
        responses=inline_serializer("WorkflowTree", {"first": serializers.CharField(),
                                                     "questions": serializers.ListField(child=serializers.DictField()),
                                                     "box_task": serializers.DictField()}),
    )
    def get(self, request, pk: int):
        version = get_object_or_404(WorkflowVersion.objects.only("tree", "box_task"), pk=pk)
        response = Response({**version.tree, "box_task": version.box_task})
        response["Cache-Control"] = "public, max-age=86400, immutable"
        return response

"""``zooplatform.core.api``: the shortcuts on DRF's per-request work give DRF's own answers."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from zooplatform.core.api import JsonFirstNegotiation, SharedFieldsSerializer


class AnyJsonRenderer(BaseRenderer):
    media_type = "application/*"
    format = "anyjson"


@pytest.mark.parametrize("renderers", [
    [JSONRenderer, BrowsableAPIRenderer], [BrowsableAPIRenderer, JSONRenderer], [AnyJsonRenderer, JSONRenderer],
    [BrowsableAPIRenderer],
])
@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html", "application/json; indent=4",
                                    "text/html, application/json;q=0.9", "application/*"])
@pytest.mark.parametrize("query", ["", "?format=api", "?format=json"])
def test_negotiation_agrees_with_drf(renderers, accept, query):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/subjects/next/" + query, **headers))
    instances = [r() for r in renderers]

    def answer(negotiation):
        try:
            renderer, media_type = negotiation.select_renderer(request, instances)
        except Exception as exc:  # no acceptable renderer: both must refuse alike
            return type(exc).__name__
        return type(renderer).__name__, media_type

    assert answer(JsonFirstNegotiation()) == answer(DefaultContentNegotiation())


class Plain(serializers.Serializer):
    n = serializers.IntegerField(min_value=1, max_value=20, default=1)
    name = serializers.CharField(max_length=5)
    tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_name(self, value):
        if value == "nope":
            raise serializers.ValidationError("not that one")
        return value


class Shared(SharedFieldsSerializer, Plain):
    pass


CASES = [{"n": "3", "name": "abc"}, {"name": "abc", "tags": ["x", "y"], "at": "2026-11-23T10:00:00Z"},
         {"n": 0, "name": "abcdefg"}, {"n": "x"}, {"name": "nope"}, {"name": "ok", "at": "yesterday"}, {}]


@pytest.mark.parametrize("data", CASES)
def test_shared_fields_validate_as_drf_does(data):
    ours, drf = Shared(data=data), Plain(data=data)
    assert ours.is_valid() == drf.is_valid()
    assert ours.errors == drf.errors
    if not drf.errors:
        assert ours.validated_data == drf.validated_data


def test_fields_are_bound_once_per_class_and_instances_keep_their_own_state():
    a, b = Shared(data=CASES[0]), Shared(data=CASES[2])
    assert a.fields is b.fields and a.fields is not Plain(data=CASES[0]).fields
    assert a.is_valid() and not b.is_valid()
    assert a.validated_data["n"] == 3 and "name" in b.errors and not a.errors
    assert Shared(data={"name": "ab"}, partial=True).fields is not a.fields  # partial: DRF's own copies


def test_shared_fields_are_safe_across_threads():
    def check(i):
        s = Shared(data={"n": str(i % 20 + 1), "name": f"v{i % 999}"})
        return s.is_valid() and s.validated_data["n"] == i % 20 + 1 and s.validated_data["name"] == f"v{i % 999}"

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, range(4000)))

"""Django REST framework, with two of its per-request costs taken off the volunteer API's hot paths.

Both give exactly DRF's results; they only skip work that DRF repeats on every request:

- :class:`JsonFirstNegotiation` answers content negotiation at once for the ``Accept`` headers that the
  classify page and scripts send (none, ``*/*``, ``application/json``), where DRF would parse the header
  and match every renderer against it.
- :class:`SharedFieldsSerializer` binds an input serializer's declared fields once per class. DRF
  deep-copies every declared field for every serializer instance (``Serializer.get_fields``): for a
  submitted classification that copy cost more than the validation itself.
"""
from __future__ import annotations

import threading

from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation

JSON = "application/json"


class JsonFirstNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation. For no ``Accept`` header, ``*/*`` or ``application/json``, and no
    ``?format=``, DRF's answer is the first renderer (for ``*/*``) or the first JSON renderer, with its
    own media type; that answer is given without parsing the header."""

    def select_renderer(self, request, renderers, format_suffix=None):
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        if (accept == "*/*" or accept == JSON) and renderers and not format_suffix \
                and not request.query_params.get(self.settings.URL_FORMAT_OVERRIDE):
            for renderer in renderers:
                if accept == "*/*" or renderer.media_type == JSON:
                    return renderer, renderer.media_type
                if "*" in renderer.media_type or ";" in renderer.media_type:
                    break  # a wildcard or parameter before the JSON renderer: let DRF match it
        return super().select_renderer(request, renderers, format_suffix)


class SharedFieldsSerializer(serializers.Serializer):
    """A serializer for request input whose fields are bound once per class and shared by its instances.

    Only for fields that keep nothing per request: plain values with constant defaults, which read
    neither the serializer's ``context`` nor its ``partial`` flag (a shared field sees those of a blank
    serializer). Validation still runs on the instance: ``validate_<field>`` and ``validate`` methods,
    errors, ``validated_data`` are the instance's own. A ``partial`` instance gets DRF's own copies.
    """

    _shared_lock = threading.Lock()

    @cached_property
    def fields(self):
        if self.partial:
            return serializers.Serializer.fields.func(self)
        cls = type(self)
        shared = cls.__dict__.get("_shared_fields")
        if shared is None:
            with cls._shared_lock:
                shared = cls.__dict__.get("_shared_fields")
                if shared is None:
                    shared = serializers.Serializer.fields.func(cls())
                    cls._shared_fields = shared
        return shared

"""One project error type. Services raise :class:`ApplicationError`; the API answers HTTP 400 with
``{field: [reason]}`` (or ``{"detail": [reason]}`` when no field is to blame) so a person can act on it."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions as drf_exceptions
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    def __init__(self, message: str, *, field: str | None = None, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors or {field or "detail": [message]}


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        exc = drf_exceptions.ValidationError(exc.errors)
    elif isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
    return exception_handler(exc, context)

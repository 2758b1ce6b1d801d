"""Session authentication that also protects anonymous volunteers against CSRF, and token authentication.

DRF checks the CSRF token only for logged-in users. An anonymous volunteer is identified by their
session cookie just as firmly, so a cross-site form could submit classifications in their name: here
any unsafe request that carries a session cookie must carry the CSRF token too. Requests with a token
(scripts) authenticate before this class runs and are not affected.
"""
from django.conf import settings
from drf_spectacular import authentication as drf_spectacular_authentication
from rest_framework import authentication


class SessionAuthentication(authentication.SessionAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None and request._request.COOKIES.get(settings.SESSION_COOKIE_NAME):
            self.enforce_csrf(request)
        return result


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, answering at once for a request with no ``Authorization`` header (every
    browser request), where DRF would first build the whole header mapping to look for one."""

    def authenticate(self, request):
        if not request._request.META.get("HTTP_AUTHORIZATION"):
            return None
        return super().authenticate(request)


class SessionScheme(drf_spectacular_authentication.SessionScheme):
    """The same cookie scheme in the OpenAPI schema as DRF's session authentication."""

    target_class = "zooplatform.classify.authentication.SessionAuthentication"

from django.views.generic import TemplateView
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.views import ObtainAuthToken

from zooplatform.classify.throttles import IPThrottle


class ApiDocsView(TemplateView):
    """The schema rendered by a small script served from static/ (no CDN, no Swagger bundle)."""

    template_name = "api/docs.html"


class TokenApi(ObtainAuthToken):
    """POST username and password, get the token that scripts send as `Authorization: Token <key>`."""

    throttle_classes = [IPThrottle]

    @extend_schema(summary="Get an API token for scripts")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

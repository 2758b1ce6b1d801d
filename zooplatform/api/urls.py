from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from . import views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", views.ApiDocsView.as_view(), name="api-docs"),
    path("auth/token/", views.TokenApi.as_view(), name="api-token"),
    path("", include("zooplatform.classify.api_urls")),
]

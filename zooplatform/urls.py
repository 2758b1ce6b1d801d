from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from zooplatform.core import views as core_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", core_views.healthz, name="healthz"),
    path("api/", include("zooplatform.api.urls")),
    path("dashboard/", include("zooplatform.dashboard.urls")),
    path("", include("zooplatform.classify.urls")),
]

if settings.SERVE_MEDIA:
    from django.urls import re_path

    # django.conf.urls.static.static() only works with DEBUG on; this serves media in both profiles.
    urlpatterns += [re_path(rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>.*)$", core_views.media, name="media")]

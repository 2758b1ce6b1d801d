"""The project's URLs plus media served from the current ``MEDIA_ROOT``: each browser test keeps its
images in its own temporary folder, which the project's media route (bound at import) cannot know."""
from django.conf import settings
from django.urls import re_path
from django.views.static import serve

from zooplatform.urls import urlpatterns as project_urlpatterns


def media(request, path):
    return serve(request, path, document_root=settings.MEDIA_ROOT)


urlpatterns = [re_path(r"^media/(?P<path>.*)$", media)] + project_urlpatterns

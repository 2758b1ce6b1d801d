from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.static import serve


def healthz(request):
    """Liveness and database readiness, for load balancers and the compose health check."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def media(request, path):
    """Uploaded images and files. MEDIA_ROOT is read per request, not when the URLs are loaded, so a
    changed setting (tests move it per test) takes effect."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)

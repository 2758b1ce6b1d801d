from django.urls import path

from . import apis

urlpatterns = [
    path("subjects/next/", apis.SubjectsNextApi.as_view(), name="subjects-next"),
    path("subjects/<int:pk>/", apis.SubjectDetailApi.as_view(), name="subject-detail"),
    path("classifications/", apis.ClassificationsApi.as_view(), name="classifications"),
    path("workflows/<int:pk>/", apis.WorkflowVersionApi.as_view(), name="workflow-version"),
    path("me/", apis.MeApi.as_view(), name="me"),
]

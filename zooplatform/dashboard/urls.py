from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:slug>/", views.overview, name="overview"),
    path("<slug:slug>/jobs.json", views.jobs_json, name="jobs-json"),
    path("<slug:slug>/learning/", views.learning, name="learning"),
    path("<slug:slug>/learning/action/", views.learning_action, name="learning-action"),
    path("<slug:slug>/models/<int:pk>/promote/", views.model_promote, name="model-promote"),
    path("<slug:slug>/subjects/", views.subjects, name="subjects"),
    path("<slug:slug>/subjects/<int:pk>/", views.subject_detail, name="subject"),
    path("<slug:slug>/subjects/<int:pk>/priority/", views.subject_priority, name="subject-priority"),
    path("<slug:slug>/subjects/<int:pk>/retire/", views.subject_retire, name="subject-retire"),
    path("<slug:slug>/subjects/<int:pk>/expert/", views.subject_expert, name="subject-expert"),
    path("<slug:slug>/catalogue/", views.catalogue, name="catalogue"),
    path("<slug:slug>/catalogue.csv", views.catalogue_csv, name="catalogue-csv"),
]

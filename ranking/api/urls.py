from django.urls import path

from ranking.api import views

urlpatterns = [
    path("", views.DuplicateGroupsApi.as_view(), name="api-duplicate-groups"),
    path("scans/", views.DuplicateScanApi.as_view(), name="api-duplicate-scans"),
    path("marks/", views.DuplicateMarkApi.as_view(), name="api-duplicate-marks"),
]

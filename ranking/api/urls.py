from django.urls import path

from ranking.api import views

urlpatterns = [
    path("duplicates/", views.DuplicateGroupsApi.as_view(), name="api-duplicate-groups"),
    path("duplicates/scans/", views.DuplicateScanApi.as_view(), name="api-duplicate-scans"),
    path("duplicates/marks/", views.DuplicateMarkApi.as_view(), name="api-duplicate-marks"),
    path("maps/<int:map_id>/points/", views.MapPointsApi.as_view(), name="api-map-points"),
    path("maps/<int:map_id>/selection/", views.MapSelectionApi.as_view(), name="api-map-selection"),
]

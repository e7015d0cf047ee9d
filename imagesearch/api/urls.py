from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from imagesearch.api import views

urlpatterns = [
    path("images/", views.ImageListApi.as_view(), name="api-image-list"),
    path("images/upload/", views.ImageUploadApi.as_view(), name="api-image-upload"),
    path("images/<int:image_id>/", views.ImageDetailApi.as_view(), name="api-image-detail"),
    path("documents/", views.DocumentListApi.as_view(), name="api-document-list"),
    path("documents/upload/", views.DocumentUploadApi.as_view(), name="api-document-upload"),
    path("documents/imports/", views.ImportJobListApi.as_view(), name="api-document-imports"),
    path("documents/<int:document_id>/", views.DocumentDetailApi.as_view(), name="api-document-detail"),
    path("search", views.SearchNoSlashApi.as_view(), name="api-search-no-slash"),
    path("search/", views.SearchApi.as_view(), name="api-search"),
    path("search/feedback/", views.SearchFeedbackApi.as_view(), name="api-search-feedback"),
    path("jobs/", views.JobListApi.as_view(), name="api-job-list"),
    path("jobs/<int:job_id>/cancel/", views.JobCancelApi.as_view(), name="api-job-cancel"),
    path("workers/", views.WorkerListApi.as_view(), name="api-worker-list"),
    path("labeling/", include("labeling.api.urls")),
    path("", include("ranking.api.urls")),  # duplicates/, maps/
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

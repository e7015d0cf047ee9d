from django.contrib import admin
from django.urls import include, path
from imagesearch import views
from labeling import views as labeling_views

urlpatterns = [
    path("", views.home, name="home"),
    path("label/", labeling_views.label, name="label"),
    path("images/", views.image_list, name="image-list"),
    path("images/<int:image_id>/", views.image_detail, name="image-detail"),
    path("documents/<int:document_id>/", views.document_detail, name="document-detail"),
    path("media/<path:name>", views.media_file, name="media-file"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("imagesearch.api.urls")),
    path("admin/", admin.site.urls),
]

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from imagesearch import search_views, views
from imagesearch.login_throttle import ThrottledAuthenticationForm
from labeling import views as labeling_views
from ranking import duplicate_views, map_views
from ranking import views as ranking_views

urlpatterns = [
    path("", views.home, name="home"),
    path("label/", labeling_views.label, name="label"),
    path("label/focuses/", labeling_views.focus_make_from_page, name="label-focus-make"),
    path("dashboard/", ranking_views.dashboard, name="dashboard"),
    path("dashboard/action/", ranking_views.dashboard_action, name="dashboard-action"),
    path("search/", search_views.search, name="search"),
    path("search/add/", search_views.search_add_to_library, name="search-add"),
    path("search/region/", search_views.search_region, name="search-region"),
    path("search/queries/<str:token>.webp", search_views.search_query_thumbnail, name="search-query-thumbnail"),
    path("duplicates/", duplicate_views.duplicates, name="duplicates"),
    path("duplicates/scan/", duplicate_views.duplicates_scan, name="duplicates-scan"),
    path("duplicates/prepare/", duplicate_views.duplicates_prepare, name="duplicates-prepare"),
    path("map/", map_views.map_page, name="map"),
    path("map/clusters/", map_views.cluster_list, name="cluster-list"),
    path("map/compute/", map_views.map_compute, name="map-compute"),
    path("images/", views.image_list, name="image-list"),
    path("images/<int:image_id>/", views.image_detail, name="image-detail"),
    path("documents/", views.document_list, name="document-list"),
    path("documents/<int:document_id>/", views.document_detail, name="document-detail"),
    path("documents/<int:document_id>/pages/<int:page_number>.webp", views.document_page_image,
         name="document-page-image"),
    path("documents/<int:document_id>/read-again/", views.document_read_again_view, name="document-read-again"),
    path("documents/<int:document_id>/download/", views.document_download, name="document-download"),
    path("media/<path:name>", views.media_file, name="media-file"),
    # sign in and out, and change one's own password; no anonymous password-reset pages
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("api/", include("imagesearch.api.urls")),
    path("admin/", admin.site.urls),
]

# 403, 404 and 500 are Django's own views with templates/403.html, 404.html, 500.html; the 400
# page says which parameter of the address was wrong (imagesearch.params)
handler400 = "imagesearch.views.bad_request"

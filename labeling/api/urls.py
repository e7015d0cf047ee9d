from django.urls import path

from labeling.api import views

urlpatterns = [
    path("criteria/", views.CriteriaApi.as_view(), name="api-labeling-criteria"),
    path("focuses/", views.FocusesApi.as_view(), name="api-labeling-focuses"),
    path("focuses/<int:focus_id>/", views.FocusApi.as_view(), name="api-labeling-focus"),
    path("next/", views.NextTripletsApi.as_view(), name="api-labeling-next"),
    path("judgments/", views.JudgmentSubmitApi.as_view(), name="api-labeling-judgment"),
    path("skip/", views.SkipApi.as_view(), name="api-labeling-skip"),
    path("undo/", views.UndoApi.as_view(), name="api-labeling-undo"),
    path("stats/", views.StatsApi.as_view(), name="api-labeling-stats"),
    path("quality/", views.LabelerQualityApi.as_view(), name="api-labeling-quality"),
    path("gold/", views.GoldApi.as_view(), name="api-labeling-gold"),
    path("export/", views.JudgmentExportApi.as_view(), name="api-labeling-export"),
    path("import/", views.JudgmentImportApi.as_view(), name="api-labeling-import"),
]

from django.contrib import admin

from ranking.models import ModelVersion, SimilarityCriterion


@admin.register(SimilarityCriterion)
class SimilarityCriterionAdmin(admin.ModelAdmin):
    list_display = ("name", "question", "created_at")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "criterion", "kind", "status", "created_at", "trained_at", "activated_at")
    list_filter = ("criterion", "kind", "status")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

from django.contrib import admin

from labeling.models import Triplet, TripletJudgment


@admin.register(Triplet)
class TripletAdmin(admin.ModelAdmin):
    list_display = ("id", "criterion", "query", "candidate_a", "candidate_b", "created_at")
    list_filter = ("criterion",)
    raw_id_fields = ("query", "candidate_a", "candidate_b")


@admin.register(TripletJudgment)
class TripletJudgmentAdmin(admin.ModelAdmin):
    list_display = ("id", "triplet", "user", "answer", "source", "seconds", "created_at")
    list_filter = ("answer", "source")
    raw_id_fields = ("triplet",)

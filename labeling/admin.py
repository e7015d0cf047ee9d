from django.contrib import admin, messages

from labeling.models import Triplet, TripletAssignment, TripletJudgment
from labeling.services.quality import gold_make


@admin.register(Triplet)
class TripletAdmin(admin.ModelAdmin):
    list_display = ("id", "criterion", "query", "candidate_a", "candidate_b", "gold_answer", "priority",
                    "judgments_wanted", "created_at")
    list_filter = ("criterion", "gold_answer")
    raw_id_fields = ("query", "candidate_a", "candidate_b")
    # kept by the labeling services; edited by hand they would desynchronise the queue
    readonly_fields = ("priority", "judgments_wanted", "complete", "gold_answer", "origin")
    actions = ["make_gold"]

    @admin.action(description="Make gold (with each triplet's majority answer)", permissions=["manage"])
    def make_gold(self, request, queryset):
        made = 0
        for triplet in queryset:
            try:
                gold_make(triplet=triplet)
                made += 1
            except ValueError as exc:
                self.message_user(request, f"Triplet {triplet.pk}: {exc}", messages.WARNING)
        self.message_user(request, f"{made} triplet(s) made gold.")

    def has_manage_permission(self, request) -> bool:
        return request.user.has_perm("labeling.manage_labeling")


@admin.register(TripletJudgment)
class TripletJudgmentAdmin(admin.ModelAdmin):
    list_display = ("id", "triplet", "user", "answer", "source", "seconds", "created_at")
    list_filter = ("answer", "source")
    raw_id_fields = ("triplet",)


@admin.register(TripletAssignment)
class TripletAssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "triplet", "user", "status", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("triplet",)

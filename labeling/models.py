"""Triplets shown to labelers and their judgments."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Triplet(models.Model):
    """A query image and two candidates: "which of A and B is more similar to the query?"."""

    criterion = models.ForeignKey("ranking.SimilarityCriterion", on_delete=models.CASCADE, related_name="triplets")
    query = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    candidate_a = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    candidate_b = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    # how it was chosen, e.g. {"strategy": "neighbours", "version": 3, "ranks": [4, 57]}
    origin = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # candidates stored in id order, so (q, a, b) and (q, b, a) are one triplet
            models.UniqueConstraint(fields=["criterion", "query", "candidate_a", "candidate_b"],
                                    name="one_triplet_per_images"),
            models.CheckConstraint(condition=Q(candidate_a__lt=F("candidate_b")), name="candidates_in_id_order"),
            models.CheckConstraint(condition=~Q(query=F("candidate_a")) & ~Q(query=F("candidate_b")),
                                   name="query_is_not_a_candidate"),
        ]


class TripletJudgment(models.Model):
    class Answer(models.TextChoices):
        A = "a", "A is more similar"
        B = "b", "B is more similar"
        UNSURE = "unsure", "Can't tell"

    class Source(models.TextChoices):
        LABELING = "labeling", "Labeling page"
        SEARCH_FEEDBACK = "search", "Search feedback"
        IMPORT = "import", "Import"
        SIMULATED = "simulated", "Simulated expert"

    triplet = models.ForeignKey(Triplet, on_delete=models.CASCADE, related_name="judgments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="judgments")
    answer = models.CharField(max_length=10, choices=Answer.choices)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.LABELING)
    seconds = models.FloatField(null=True, blank=True, help_text="Time the labeler took to answer.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]

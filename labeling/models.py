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
    # served to labelers highest first: how unsure the model is, raised when labelers disagree
    priority = models.FloatField(default=0.0)
    # how many labelers answer it (LABELING_JUDGMENTS_PER_TRIPLET; raised when they disagree)
    judgments_wanted = models.PositiveSmallIntegerField(default=1)
    # a known answer (made by an admin): mixed into every labeler's queue to measure accuracy
    gold_answer = models.CharField(max_length=1, blank=True, default="", choices=[("a", "A"), ("b", "B")])
    # only answers given after this count towards gold accuracy: the answers it was made from would
    # otherwise score their own labelers
    gold_made_at = models.DateTimeField(null=True, blank=True)
    # all wanted judgments are in: kept up to date on answer, undo and disagreement, so the queue
    # query reads only the open part of a table that grows with every answer
    complete = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["criterion", "complete", "-priority", "id"], name="triplet_queue_order")]
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
    # imported judgments: a hash of the row, so importing the same file twice adds nothing
    import_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]
        permissions = [
            ("label", "Can vote on triplets"),
            ("manage_labeling", "Can make gold triplets, see labelers' quality, import and export judgments"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["triplet", "user"], condition=Q(source="labeling"),
                                    name="one_labeling_judgment_per_user_and_triplet"),
            models.UniqueConstraint(fields=["triplet", "user"], condition=Q(source="search"),
                                    name="one_feedback_judgment_per_user_and_triplet"),
        ]


class TripletAssignment(models.Model):
    """A triplet handed to a labeler: never handed to them again, and held for them while open.

    Open assignments older than ``LABELING_ASSIGNMENT_SECONDS`` no longer count
    towards a triplet's wanted judgments, so a labeler who walks away does not
    keep triplets from others.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        SKIPPED = "skipped", "Skipped"

    triplet = models.ForeignKey(Triplet, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="triplet_assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["triplet", "user"], name="one_assignment_per_user_and_triplet")]
        indexes = [models.Index(fields=["user", "status"])]


class SearchFeedback(models.Model):
    """An analyst's mark on a search result: relevant to the query, or not.

    Every (relevant, not relevant) pair of one analyst's marks on one query is a
    judged triplet of the criterion, with source "search feedback"
    (``labeling.services.feedback``); the marks are kept so the page shows them
    again and a changed mark changes the judgments.
    """

    criterion = models.ForeignKey("ranking.SimilarityCriterion", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="search_feedback")
    query = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    result = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    relevant = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["criterion", "user", "query", "result"], name="one_mark_per_result"),
            models.CheckConstraint(condition=~Q(query=F("result")), name="feedback_result_is_not_the_query"),
        ]


class LabelingFocus(models.Model):
    """What a criterion's labelers may choose to work on: the images of a collection or of a label, or a
    set chosen once (a cluster or a selection on the map, a saved search's results). Triplets are drawn
    within it, each focus has its own queue, and the dashboard shows its judgments and held-out accuracy
    (``labeling.services.focus``)."""

    class Kind(models.TextChoices):
        COLLECTION = "collection", "Collection"
        LABEL = "label", "Label"
        CLUSTER = "cluster", "Map cluster"
        SELECTION = "selection", "Map selection"
        SEARCH = "search", "Saved search"

    # kinds whose images are listed (FocusImage) when the focus is made; the others follow the library
    LISTED = (Kind.CLUSTER, Kind.SELECTION, Kind.SEARCH)

    criterion = models.ForeignKey("ranking.SimilarityCriterion", on_delete=models.CASCADE, related_name="focuses")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    collection = models.ForeignKey("imagesearch.Collection", null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="+")
    label = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True, help_text="Where its images came from.")
    archived = models.BooleanField(default=False, help_text="No longer offered to labelers.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["criterion", "name"], name="one_focus_name_per_criterion")]

    def __str__(self) -> str:
        return self.name


class FocusImage(models.Model):
    """An image of a listed focus (a cluster, a map selection, a saved search)."""

    focus = models.ForeignKey(LabelingFocus, on_delete=models.CASCADE, related_name="members")
    image = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["focus", "image"], name="one_membership_per_focus_and_image")]

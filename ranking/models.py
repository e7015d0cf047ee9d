"""Similarity criteria, model versions and their embeddings.

The torch code of this package (``nets``, ``losses``, ``training``, ...) does not
import Django; this module and ``services``/``selectors`` are the app around it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from pgvector.django import VectorField

from imagesearch.models import Job, JobChunk

DEFAULT_CRITERION_NAME = "Similarity"
DEFAULT_QUESTION = "Which image is more similar to the query?"


class SimilarityCriterion(models.Model):
    """One notion of "similar" (e.g. same structure, same acquisition style).

    Judgments, model versions, the active version and embeddings all belong to a
    criterion, so that teams who judge the same images differently each get
    their own model.
    """

    name = models.CharField(max_length=200, unique=True)
    question = models.CharField(max_length=500, default=DEFAULT_QUESTION,
                                help_text="What labelers are asked about each triplet.")
    description = models.TextField(blank=True)
    # who may label it; nobody listed means every labeler
    labelers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="labeling_criteria")
    # the automatic loop: train a new deep-ranking version once this many judgments arrived since the
    # last one was started (0: off); it is then embedded and activated if it beats the active one
    auto_retrain_after = models.PositiveIntegerField(
        default=0, help_text="Retrain automatically after this many new judgments (0: never).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "similarity criteria"

    def __str__(self) -> str:
        return self.name


class FeatureExtractor(models.Model):
    """A frozen pretrained backbone at one input size, whose output for each image is computed once
    and cached (``ImageFeature``): pretrained-features versions embed from it, and deep-ranking
    heads train and embed from it without running the backbone again.

    Dropped, with its features, once no version that reads it is left (``features.extractor_drop_if_unused``).
    """

    backbone = models.CharField(max_length=100)
    weights = models.CharField(max_length=255, help_text="Where its weights came from (never random).")
    image_size = models.PositiveIntegerField()
    feature_dim = models.PositiveIntegerField()
    pixels_size = models.PositiveIntegerField(help_text="Side of the down-sampled copy cached beside the features.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["backbone", "weights", "image_size"], name="one_extractor_per_input")]

    def __str__(self) -> str:
        return f"{self.backbone} at {self.image_size} px"


class ImageFeature(models.Model):
    """One image's cached backbone output: the pooled features as raw little-endian fp16 (2.5 kB at
    1280-d; bytes rather than pgvector's halfvec, whose text form costs more to parse than training
    spends on them) and the quarter-size copy the shallow branches read (uint8 RGB, channels first)."""

    extractor = models.ForeignKey(FeatureExtractor, on_delete=models.CASCADE, related_name="features")
    image = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    features = models.BinaryField()
    pixels = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["extractor", "image"], name="one_feature_per_image_extractor")]


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        PRETRAINED = "pretrained", "Pretrained features"
        AUTOENCODER = "autoencoder", "Autoencoder"
        RANKING = "ranking", "Deep ranking"

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        EMBEDDING = "embedding", "Embedding"
        READY = "ready", "Ready"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"
        RETIRED = "retired", "Retired"

    # versions whose embeddings are (being) kept up to date as images arrive
    EMBEDDED_STATUSES = (Status.EMBEDDING, Status.READY, Status.ACTIVE)

    criterion = models.ForeignKey(SimilarityCriterion, on_delete=models.PROTECT, related_name="versions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TRAINING, db_index=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    # where the network is rebuilt from: relative to settings.RANKING_MODELS_DIR
    weights_file = models.CharField(max_length=255, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    embedding_dim = models.PositiveIntegerField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    training_job = models.ForeignKey("imagesearch.Job", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    embedding_job = models.ForeignKey("imagesearch.Job", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    index_name = models.CharField(max_length=63, blank=True, help_text="Its HNSW index, once built.")
    # the cached backbone outputs its embeddings are computed from (pretrained features, and deep ranking
    # with a frozen backbone); none for networks that run whole
    feature_extractor = models.ForeignKey(FeatureExtractor, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="versions")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    trained_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("manage_models", "Can train, refresh, activate and retire models")]
        constraints = [
            models.UniqueConstraint(
                fields=["criterion"], condition=Q(status="active"), name="one_active_version_per_criterion"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.criterion} v{self.pk} ({self.get_kind_display()}, {self.status})"


class Embedding(models.Model):
    """An image's embedding under one model version.

    One table for all versions, with a partial HNSW index per version (see the
    README, "Embeddings and indexes"); the column has no fixed dimension, so each
    index casts it to its version's dimension.
    """

    image = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="embeddings")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="embeddings")
    vector = VectorField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "image"], name="one_embedding_per_image_version")]


class ImageRangeChunk(JobChunk):
    """A range of image ids that one task of a job works through (the job engine runs and commits it)."""

    job = models.ForeignKey("imagesearch.Job", on_delete=models.CASCADE, related_name="+")
    first_image_id = models.BigIntegerField()
    last_image_id = models.BigIntegerField()
    size = models.PositiveIntegerField(help_text="Images in the range when the chunk was made.")

    class Meta:
        abstract = True
        ordering = ["first_image_id"]


class EmbeddingChunk(ImageRangeChunk):
    """A range of image ids that one ``refresh_embeddings`` task embeds (idempotent, retried)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="chunks")
    embedded = models.PositiveIntegerField(default=0)


class JobResult(models.Model):
    """What one background job computes and keeps (a near-duplicate scan, a map): the job, who asked, when."""

    job = models.ForeignKey("imagesearch.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-id"]

    @property
    def succeeded(self) -> bool:
        """Its job finished well: all it computes is there (reads ``job``: select it with the row)."""
        return self.job is not None and self.job.status == Job.Status.SUCCEEDED


class DuplicateScan(JobResult):
    """One search for near-duplicates under a version: each image's nearest images within ``max_distance``
    (``ranking.services.duplicates``). Its pairs are kept; its groups are computed from them, under any
    threshold up to ``max_distance``."""

    criterion = models.ForeignKey(SimilarityCriterion, on_delete=models.CASCADE, related_name="duplicate_scans")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="duplicate_scans")
    max_distance = models.FloatField(help_text="The largest cosine distance of a pair kept.")
    neighbours = models.PositiveSmallIntegerField(help_text="Nearest images looked at per image.")
    pair_count = models.PositiveIntegerField(default=0)

    class Meta(JobResult.Meta):
        pass


class DuplicateChunk(ImageRangeChunk):
    """A range of image ids whose near neighbours one ``find_duplicates_chunk`` task looks up."""

    scan = models.ForeignKey(DuplicateScan, on_delete=models.CASCADE, related_name="chunks")


class DuplicatePair(models.Model):
    """Two images within the scan's distance of each other (smaller id first), and where each one
    ranks among the other's nearest images (1: the nearest; null: not among them)."""

    scan = models.ForeignKey(DuplicateScan, on_delete=models.CASCADE, related_name="pairs")
    image_a = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    distance = models.FloatField()
    rank_a = models.PositiveSmallIntegerField(null=True, help_text="image_b's rank among image_a's nearest.")
    rank_b = models.PositiveSmallIntegerField(null=True, help_text="image_a's rank among image_b's nearest.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scan", "image_a", "image_b"], name="one_pair_per_scan_and_images"),
            models.CheckConstraint(condition=Q(image_a__lt=F("image_b")), name="pair_images_in_id_order"),
        ]
        indexes = [models.Index(fields=["scan", "distance"], name="duplicate_pair_distance")]


class DuplicateMark(models.Model):
    """A person's word on two images (smaller id first): the same picture, or two different ones.

    It holds for the criterion whatever the distances say (the latest mark on a pair wins), and is
    also the marker's judgment (``ranking.services.duplicates.duplicate_mark``)."""

    class Verdict(models.TextChoices):
        DUPLICATE = "duplicate", "The same picture"
        DISTINCT = "distinct", "Different pictures"

    criterion = models.ForeignKey(SimilarityCriterion, on_delete=models.CASCADE, related_name="duplicate_marks")
    image_a = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    marked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["criterion", "image_a", "image_b"], name="one_mark_per_criterion_and_pair"),
            models.CheckConstraint(condition=Q(image_a__lt=F("image_b")), name="mark_images_in_id_order"),
        ]


class EmbeddingMap(JobResult):
    """A version's embeddings grouped into clusters and laid out in the plane, by one job
    (``ranking.services.maps``). Its points and clusters are kept; a newer map of the version replaces it
    on the pages."""

    class Method(models.TextChoices):
        TSNE = "tsne", "t-SNE"
        UMAP = "umap", "UMAP"
        PCA = "pca", "PCA"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="maps")
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.TSNE)
    cluster_count = models.PositiveIntegerField(default=0)
    point_count = models.PositiveIntegerField(default=0)
    fitted_count = models.PositiveIntegerField(default=0, help_text="Points the projection was fitted on; "
                                               "the others are placed by their nearest fitted points.")

    class Meta(JobResult.Meta):
        pass


class MapCluster(models.Model):
    """One k-means cluster of a map: its size, centre on the map, and the images nearest its centroid."""

    map = models.ForeignKey(EmbeddingMap, on_delete=models.CASCADE, related_name="clusters")
    number = models.PositiveIntegerField(help_text="1, 2, … by size, largest first.")
    size = models.PositiveIntegerField()
    x = models.FloatField()
    y = models.FloatField()
    representative_ids = models.JSONField(default=list, help_text="Image ids nearest the centroid, nearest first.")
    top_labels = models.JSONField(default=list, help_text="[[label, count], …] of its images, commonest first.")

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["map", "number"], name="one_cluster_number_per_map")]


class MapPoint(models.Model):
    """An image's place on a map (x, y in [0, 1]) and its cluster. ``sample_rank`` is a random order: the
    first n points by it are a uniform sample, which is what a zoomed-out page draws at a million images."""

    map = models.ForeignKey(EmbeddingMap, on_delete=models.CASCADE, related_name="points")
    image = models.ForeignKey("imagesearch.Image", on_delete=models.CASCADE, related_name="+")
    x = models.FloatField()
    y = models.FloatField()
    cluster = models.ForeignKey(MapCluster, on_delete=models.CASCADE, related_name="points")
    sample_rank = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["map", "image"], name="one_point_per_map_and_image")]
        indexes = [models.Index(fields=["map", "sample_rank"], name="map_point_sample"),
                   models.Index(fields=["map", "x", "y"], name="map_point_place")]

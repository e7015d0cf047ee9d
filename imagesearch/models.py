"""The image library (collections, documents, images) and background jobs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Collection(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    """A source file (a PDF, a multi-page scan) that images were taken from."""

    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="documents")
    title = models.CharField(max_length=500)
    original_name = models.CharField(max_length=500)
    source_path = models.TextField(blank=True, help_text="Where the file was imported from.")
    media_type = models.CharField(max_length=100)
    page_count = models.PositiveIntegerField(default=1)
    page_sizes = models.JSONField(
        default=list, blank=True, help_text="Each page's displayed [width, height] in points (PDF).")
    file = models.FileField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, unique=True)
    file_size = models.BigIntegerField(default=0)
    # what the import left out and why ({"skipped": {reason: count}, "page_errors": [...]})
    metadata = models.JSONField(default=dict, blank=True)
    ingest_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["-created_at", "-id"], name="document_recent")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_pdf(self) -> bool:
        return self.media_type == "application/pdf"


BROWSER_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}


class Image(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="images")
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.CASCADE, related_name="images"
    )
    page_number = models.PositiveIntegerField(null=True, blank=True)
    bbox = ArrayField(
        models.FloatField(), size=4, null=True, blank=True,
        help_text="Position on the page: x0, y0, x1, y1 in points from the top-left of the displayed page.",
    )
    # Content-addressed: both files are named by the SHA-256 of the original bytes.
    file = models.FileField(max_length=255)
    thumbnail = models.FileField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True)
    file_size = models.BigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    media_type = models.CharField(max_length=100)
    original_name = models.CharField(max_length=500)
    source_path = models.TextField(blank=True, help_text="Where the file was imported from.")
    # Indexed for filtering; free-form extra facts go in metadata.
    label = models.CharField(max_length=200, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    ingest_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["collection", "-created_at"], name="image_collection_recent")]
        permissions = [("search", "Can browse and search the library")]

    def __str__(self) -> str:
        return self.original_name or self.sha256[:12]

    @property
    def displayable_name(self) -> str:
        """The stored file a browser can show: the image itself, or its thumbnail for a format browsers do not
        show (a TIFF scan)."""
        return self.file.name if self.media_type in BROWSER_IMAGE_TYPES else self.thumbnail.name

    @property
    def title(self) -> str:
        """What the pages call it: its file's name, or, taken from a document, the document's title, the page
        and where on the page ("Survey manual, p. 12, top left"): a 100-page PDF's pictures all have its
        file's name. (Reads ``document``: select it with the image.)"""
        if self.document_id is None:
            return str(self)
        parts = [self.document.title]
        if self.page_number:
            parts.append(f"p. {self.page_number}")
        if self.place_on_page:
            parts.append(self.place_on_page)
        return ", ".join(parts)

    @property
    def place_on_page(self) -> str:
        """Where its box sits on its page: "whole page", "top left" … "bottom right", or "" when unknown."""
        sizes = self.document.page_sizes if self.document_id is not None else []
        return _place_on_page(self.bbox, sizes, self.page_number)


def _place_on_page(bbox, page_sizes, page_number: int | None) -> str:
    if not bbox or not page_number or len(page_sizes or []) < page_number:
        return ""
    width, height = page_sizes[page_number - 1]
    x0, y0, x1, y1 = bbox
    if width <= 0 or height <= 0:
        return ""
    if (x1 - x0) * (y1 - y0) >= 0.8 * width * height:
        return "whole page"
    across, down = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    row = "top" if down < 1 / 3 else "bottom" if down > 2 / 3 else "middle"
    column = "left" if across < 1 / 3 else "right" if across > 2 / 3 else ""
    return f"{row} {column}" if column else ("centre" if row == "middle" else row)


class ImageOccurrence(models.Model):
    """A place where a library picture appears: a document's page and the box on it. The same picture (the
    same SHA-256) is one library image however many documents, pages or places show it; each of them is an
    occurrence. ``Image.document`` and ``page_number`` keep the first one, which names the image
    (``Image.title``); pages and the API list them all."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="occurrences")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="occurrences")
    page_number = models.PositiveIntegerField(default=1)
    bbox = ArrayField(models.FloatField(), size=4, null=True, blank=True,
                      help_text="x0, y0, x1, y1 in points from the top-left of the displayed page.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document_id", "page_number", "id"]
        constraints = [models.UniqueConstraint(fields=["image", "document", "page_number"],
                                               name="one_occurrence_per_image_and_page")]
        indexes = [models.Index(fields=["document", "page_number"], name="occurrence_document_page")]

    @property
    def place(self) -> str:
        """"p. 12, top right" on its document."""
        parts = [f"p. {self.page_number}"]
        place = _place_on_page(self.bbox, self.document.page_sizes, self.page_number)
        if place:
            parts.append(place)
        return ", ".join(parts)


class Job(models.Model):
    """A background job as the UI shows it: what, how far, how fast, how it ended."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Kind(models.TextChoices):
        """Every kind of job, whichever app runs it (the job engine lists them; the apps own their work)."""

        IMPORT = "import_images", "Import"
        REFRESH_EMBEDDINGS = "refresh_embeddings", "Embedding refresh"
        PREPARE_PRETRAINED = "prepare_pretrained", "Pretrained model"
        TRAIN_AUTOENCODER = "train_autoencoder", "Autoencoder training"
        TRAIN_RANKING = "train_ranking", "Deep-ranking training"
        FIND_DUPLICATES = "find_duplicates", "Near-duplicate scan"
        MAP = "map", "Clusters and map"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=50, choices=Kind.choices, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(default=0)
    rate = models.FloatField(default=0.0, help_text="Items per second since the job started.")
    # when progress_done last moved: the ETA counts down from it between updates instead of growing
    progress_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # the Celery worker (hostname) that last worked on it: when that worker is gone and the job
    # has made no progress since, the job is reported failed rather than running forever
    worker = models.CharField(max_length=255, blank=True)
    log = models.TextField(blank=True, help_text="Its latest log lines, newest last.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class JobIssue(models.Model):
    """One item a job could not process (a corrupt file …), with the reason."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="issues")
    source = models.TextField()
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class JobChunk(models.Model):
    """A slice of a job that one Celery task does, idempotently: the job engine runs and commits it
    (``services.jobs``). A chunk model has a ``job``, this ``status`` and a ``size`` (its items)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)

    class Meta:
        abstract = True


class IngestChunk(JobChunk):
    """A slice of an import job, processed by one Celery task (idempotently)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="ingest_chunks")
    index = models.PositiveIntegerField()
    items = models.JSONField()
    imported = models.PositiveIntegerField(default=0)  # images
    documents = models.PositiveIntegerField(default=0)  # documents imported (their images count above)
    duplicates = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    @property
    def size(self) -> int:
        """Its source items (the job engine counts a chunk's progress in them)."""
        return len(self.items)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="ingest_chunk_unique_index")]
        indexes = [models.Index(fields=["job", "status"], name="ingest_chunk_job_status")]

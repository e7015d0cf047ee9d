"""Input and output serializers of the image-library API, one small pair per operation."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from imagesearch.models import Collection, Document, Image, Job
from imagesearch.selectors import server_paths_for


def media_url(name: str) -> str:
    return reverse("media-file", args=[name]) if name else ""


class CollectionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Collection
        fields = ["id", "name"]


class DocumentSummarySerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "title", "page_count", "url"]

    def get_url(self, document: Document) -> str:
        return reverse("document-detail", args=[document.pk])


class OccurrenceSerializer(serializers.Serializer):
    """A place a picture appears: a document's page and the box on it."""

    document = DocumentSummarySerializer()
    page_number = serializers.IntegerField()
    bbox = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                 help_text="x0, y0, x1, y1 in points from the page's top left")
    place = serializers.CharField(help_text='"p. 12, top right"')
    page_url = serializers.SerializerMethodField(help_text="The document at that page.")

    def get_page_url(self, occurrence) -> str:
        return (reverse("document-detail", args=[occurrence.document_id])
                + f"?page={occurrence.page_number}#page-{occurrence.page_number}")


class ImageOutputSerializer(serializers.ModelSerializer):
    collection = CollectionOutputSerializer()
    document = DocumentSummarySerializer(allow_null=True)
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()
    title = serializers.CharField(read_only=True, help_text="The file's name, or for a picture taken from a "
                                  "document: its title, page and place on the page.")
    occurrences = OccurrenceSerializer(many=True, read_only=True, help_text=(
        "Every document page the picture appears on (document and page_number above: the first of them)."))

    class Meta:
        model = Image
        fields = [
            "id", "sha256", "title", "original_name", "label", "metadata", "width", "height", "format",
            "media_type", "file_size", "collection", "document", "page_number", "bbox", "occurrences",
            "file_url", "thumbnail_url", "page_url", "created_at",
        ]

    def get_file_url(self, image: Image) -> str:
        return media_url(image.file.name)

    def get_thumbnail_url(self, image: Image) -> str:
        return media_url(image.thumbnail.name)

    def get_page_url(self, image: Image) -> str:
        return reverse("image-detail", args=[image.pk])


class ImageFilterSerializer(serializers.Serializer):
    collection = serializers.IntegerField(required=False, min_value=1)
    document = serializers.IntegerField(required=False, min_value=1)
    label = serializers.CharField(required=False, max_length=200)


class ImageUploadInputSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
    collection = serializers.CharField(required=False, max_length=200, default="Default")
    label = serializers.CharField(required=False, max_length=200, allow_blank=True, default="")


class UploadResultSerializer(serializers.Serializer):
    """One uploaded file's ``ingest.IngestOutcome``."""

    name = serializers.CharField(source="source")
    status = serializers.ChoiceField(choices=["imported", "duplicate", "failed", "queued"],
                                     help_text="queued: imported in the background by the answer's job")
    message = serializers.CharField(allow_blank=True)
    image_ids = serializers.ListField(child=serializers.IntegerField())
    document_id = serializers.IntegerField(allow_null=True)


class SearchInputSerializer(serializers.Serializer):
    # a plain file: the search service checks the bytes itself, with the SEARCH_QUERY_* limits
    image = serializers.FileField(required=False, help_text="The query image (multipart upload).",
                                  allow_empty_file=True)
    image_id = serializers.IntegerField(required=False, min_value=1, help_text="Or: a library image as the query.")
    query_token = serializers.RegexField(r"^[0-9a-f]{64}$", required=False,
                                        help_text="Or: an earlier upload, by the token its search returned.")
    k = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=999, default=0)
    collection = serializers.IntegerField(required=False, min_value=1)
    document = serializers.IntegerField(required=False, min_value=1)
    label = serializers.CharField(required=False, max_length=200)
    criterion = serializers.IntegerField(required=False, min_value=1, help_text="Default: the library's default.")
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the criterion's active one.")
    add_to_library = serializers.BooleanField(required=False, default=False,
                                              help_text="Keep an uploaded query in the library.")
    add_to_collection = serializers.CharField(required=False, max_length=200, default="Default")

    def validate(self, data):
        given = [name for name in ("image", "image_id", "query_token") if data.get(name) is not None]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of image, image_id and query_token.")
        return data


class SearchQueryOutputSerializer(serializers.Serializer):
    image_id = serializers.IntegerField(allow_null=True, help_text="Set when the query is a library image.")
    token = serializers.CharField(allow_null=True, help_text="An upload kept aside: reuse as query_token.")
    name = serializers.CharField(allow_blank=True)


class SearchResultSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    image_id = serializers.IntegerField(source="image.pk")
    score = serializers.FloatField(help_text="Cosine similarity, 1 = same direction.")
    closeness = serializers.FloatField(allow_null=True, help_text=(
        "Share of random pairs of library images less similar than this one under the same model (0–1): "
        "0.998 means only 0.2 % of pairs are this similar. Comparable across models, unlike score. "
        "Null until the model's reference is measured (when its embeddings are complete)."))
    distance = serializers.FloatField(help_text="Cosine distance, 1 − score.")
    original_name = serializers.CharField(source="image.original_name")
    label = serializers.CharField(source="image.label")
    collection = CollectionOutputSerializer(source="image.collection")
    document = DocumentSummarySerializer(source="image.document", allow_null=True)
    page_number = serializers.IntegerField(source="image.page_number", allow_null=True)
    thumbnail_url = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    document_url = serializers.SerializerMethodField(help_text="The source document at the image's page.")
    occurrences = OccurrenceSerializer(many=True, help_text="Every document page the picture appears on.")

    def get_thumbnail_url(self, hit) -> str:
        return media_url(hit["image"].thumbnail.name)

    def get_file_url(self, hit) -> str:
        return media_url(hit["image"].file.name)

    def get_image_url(self, hit) -> str:
        return reverse("image-detail", args=[hit["image"].pk])

    def get_document_url(self, hit) -> str | None:
        image = hit["image"]
        if image.document_id is None:
            return None
        page = f"?page={image.page_number}#page-{image.page_number}" if image.page_number else ""
        return reverse("document-detail", args=[image.document_id]) + page


class SearchVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()


class SearchOutputSerializer(serializers.Serializer):
    query = SearchQueryOutputSerializer()
    criterion = serializers.DictField(help_text="id and name")
    version = SearchVersionSerializer()
    offset = serializers.IntegerField()
    has_more = serializers.BooleanField()
    results = SearchResultSerializer(many=True)


class SearchFeedbackInputSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(required=False, min_value=1, help_text="Default: the library's default.")
    query = serializers.IntegerField(min_value=1, help_text="The query: a library image id.")
    result = serializers.IntegerField(min_value=1, help_text="The result marked.")
    mark = serializers.ChoiceField(choices=["relevant", "not_relevant", "none"],
                                   help_text="none clears the mark.")


class SearchFeedbackOutputSerializer(serializers.Serializer):
    relevant = serializers.ListField(child=serializers.IntegerField())
    not_relevant = serializers.ListField(child=serializers.IntegerField())
    judgments = serializers.IntegerField(help_text="Your search-feedback judgments on this query, now.")
    added = serializers.IntegerField()
    withdrawn = serializers.IntegerField()


# a job's fields that may hold paths on the server (an import's folders, a file that could not be read)
JOB_PATH_FIELDS = {"message", "error", "log_tail", "params", "issues"}


class JobOutputSerializer(serializers.ModelSerializer):
    """A job; without ``context={"request": request}`` of an admin, its server paths are cut to file names."""


    percent = serializers.SerializerMethodField()
    elapsed_seconds = serializers.SerializerMethodField()
    eta_seconds = serializers.SerializerMethodField(help_text="From the rate so far; null when unknown.")
    log_tail = serializers.SerializerMethodField()
    kind_label = serializers.CharField(source="get_kind_display", read_only=True,
                                       help_text="What the job does, in words (its kind's label).")

    class Meta:
        model = Job
        fields = ["id", "kind", "kind_label", "status", "progress_done", "progress_total", "percent", "rate", "elapsed_seconds",
                  "eta_seconds", "message", "error", "log_tail", "worker", "params", "created_at", "started_at",
                  "finished_at"]

    def get_percent(self, job: Job) -> float | None:
        return round(100 * job.progress_done / job.progress_total, 1) if job.progress_total else None

    def get_elapsed_seconds(self, job: Job) -> float | None:
        from django.utils import timezone

        if job.started_at is None:
            return None
        return round(((job.finished_at or timezone.now()) - job.started_at).total_seconds(), 1)

    def get_eta_seconds(self, job: Job) -> float | None:
        """The time per item up to the last progress, times the items left, less the time since then.

        Counting from the last progress (not from now) keeps the estimate from growing while a long
        item runs (a training epoch: it climbed a minute per poll, then fell back at each epoch).
        """
        from django.utils import timezone

        if job.is_finished or not job.progress_total or not job.progress_done or job.started_at is None:
            return None
        from django.utils.dateparse import parse_datetime

        # a job of several phases (a training: feature pass, then epochs) times the phase under way
        phase = (job.params or {}).get("phase_started_at") if isinstance(job.params, dict) else None
        started = (parse_datetime(phase) if isinstance(phase, str) else None) or job.started_at
        progress_at = job.progress_at or timezone.now()
        per_item = max((progress_at - started).total_seconds(), 0.0) / job.progress_done
        if not per_item:
            return None
        since = max((timezone.now() - progress_at).total_seconds(), 0.0)
        left = per_item * max(job.progress_total - job.progress_done, 0) - since
        return round(max(left, 1.0), 1)  # overdue: "any moment" rather than a negative time

    def get_log_tail(self, job: Job) -> list[str]:
        return job.log.splitlines()[-8:]

    def to_representation(self, job: Job) -> dict:
        # the fields that may name files on the server: whole for admins only (the view's request.user)
        data = super().to_representation(job)
        request = self.context.get("request")
        return {name: server_paths_for(user=getattr(request, "user", None), value=value)
                if name in JOB_PATH_FIELDS else value for name, value in data.items()}


class WorkerOutputSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    queues = serializers.ListField(child=serializers.CharField())
    gpu = serializers.CharField(allow_blank=True, help_text="CUDA device name; empty for none.")
    active_tasks = serializers.IntegerField()


class DocumentUploadInputSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), allow_empty=False,
        help_text="PDFs, multi-page TIFFs, images, or .zip archives of them.")
    collection = serializers.CharField(required=False, max_length=200, default="Default")
    label_from_folder = serializers.BooleanField(
        required=False, default=False, help_text="Label images with their folder's name inside a .zip archive.")


class JobIssueOutputSerializer(serializers.Serializer):
    source = serializers.CharField()
    message = serializers.CharField()


class ImportJobOutputSerializer(JobOutputSerializer):
    """An import job: documents and images done so far (``result``), and the first problems."""

    issues = serializers.SerializerMethodField()
    issue_count = serializers.SerializerMethodField()

    class Meta(JobOutputSerializer.Meta):
        fields = JobOutputSerializer.Meta.fields + ["result", "issues", "issue_count"]

    def get_issues(self, job: Job) -> list[dict]:
        return JobIssueOutputSerializer(job.issues.all()[:20], many=True).data

    def get_issue_count(self, job: Job) -> int:
        return job.issues.count()


class ImageUploadOutputSerializer(serializers.Serializer):
    """An ``ingest.ImageUpload``: a result per file, and the import job of the files it left to the workers."""

    results = UploadResultSerializer(many=True, source="outcomes")
    job = ImportJobOutputSerializer(allow_null=True, help_text="Set when some files are imported in the background.")


class DocumentImageSerializer(serializers.Serializer):
    """A picture as it appears in this document (``ImageOccurrence``): a picture shared with other documents is
    listed in each, at its page and place there."""

    id = serializers.IntegerField(source="image_id")
    page_number = serializers.IntegerField()
    bbox = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    kind = serializers.SerializerMethodField(help_text="embedded, page (a rendered page) or figure")
    width = serializers.IntegerField(source="image.width")
    height = serializers.IntegerField(source="image.height")
    thumbnail_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()
    first_found_here = serializers.SerializerMethodField(help_text="False: imported from another document first.")

    def get_thumbnail_url(self, occurrence) -> str:
        return media_url(occurrence.image.thumbnail.name)

    def get_page_url(self, occurrence) -> str:
        return reverse("image-detail", args=[occurrence.image_id])

    def get_kind(self, occurrence) -> str:
        return (occurrence.image.metadata or {}).get("kind", "page" if occurrence.image.page_number else "embedded")

    def get_first_found_here(self, occurrence) -> bool:
        return occurrence.image.document_id == occurrence.document_id


class DocumentOutputSerializer(serializers.ModelSerializer):
    collection = CollectionOutputSerializer()
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "title", "original_name", "media_type", "page_count", "page_sizes", "file_size", "sha256",
                  "collection", "metadata", "url", "download_url", "created_at"]

    def get_url(self, document: Document) -> str:
        return reverse("document-detail", args=[document.pk])

    def get_download_url(self, document: Document) -> str:
        return reverse("document-download", args=[document.pk])


class DocumentDetailOutputSerializer(DocumentOutputSerializer):
    images = DocumentImageSerializer(many=True, source="ordered_images")

    class Meta(DocumentOutputSerializer.Meta):
        fields = DocumentOutputSerializer.Meta.fields + ["images"]

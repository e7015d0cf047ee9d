from django.contrib import admin

from imagesearch.models import Collection, Document, Image, Job, JobIssue


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["title", "collection", "media_type", "page_count", "created_at"]
    list_filter = ["collection", "media_type"]
    search_fields = ["title", "original_name", "sha256"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["original_name", "collection", "label", "width", "height", "format", "created_at"]
    list_filter = ["collection", "format"]
    search_fields = ["original_name", "label", "sha256"]
    raw_id_fields = ["document", "ingest_job"]


class JobIssueInline(admin.TabularInline):
    model = JobIssue
    extra = 0
    readonly_fields = ["source", "message", "created_at"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "progress_done", "progress_total", "rate", "created_at"]
    list_filter = ["kind", "status"]
    inlines = [JobIssueInline]

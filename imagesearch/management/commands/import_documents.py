"""python manage.py import_documents PATH... [--collection NAME] [--label-from-folder] [--inline]"""

from __future__ import annotations

from imagesearch.management.commands.import_images import Command as ImportImagesCommand


class Command(ImportImagesCommand):
    help = (
        "Import documents (PDF, multi-page TIFF scans) and images from files, folders (recursively) "
        "and .zip archives. Each PDF is a Celery task of its own: its embedded pictures (and its "
        "scanned pages, rendered) become library images linked to their page. A document already in "
        "the library is recognised by its SHA-256 and skipped; an encrypted, corrupt or truncated file "
        "is listed with the reason and the rest imported."
    )
    unit = "file"

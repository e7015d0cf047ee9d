"""Computing a model version's embeddings of the library, in resumable chunks, and indexing them.

``embeddings_refresh_start`` cuts the images that lack an embedding under a
version into ranges of ids (``EmbeddingChunk``), one Celery task each, spread
over every worker. A chunk upserts on (version, image), so running it twice —
after a worker died mid-way and the broker redelivered it, say — does no harm;
starting a refresh again only creates chunks for what is still missing. The
last chunk to finish builds the version's HNSW index, marks it ready, and may
activate it (see ``versions.version_auto_activate``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max

from imagesearch.errors import AppError
from imagesearch.models import Image, Job
from imagesearch.services.jobs import (
    ChunkCommit, job_chunk_commit, job_chunk_start, job_chunks_pending, job_chunks_run, job_create, job_finish,
    job_part_reporter,
)
from ranking.models import Embedding, EmbeddingChunk, ModelVersion
from ranking.selectors import images_without_embedding

logger = logging.getLogger(__name__)

INDEX_LOCK_CLASS = 7301  # first key of this module's advisory locks


def embeddings_refresh_start(*, version_id: int, created_by=None, dispatch: bool = True) -> Job:
    """Create the chunks that embed every image still lacking an embedding under the version.

    With ``dispatch`` the chunk tasks are queued once the transaction commits;
    without it, run them with ``embeddings_refresh_run_inline``.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        if version.status in (ModelVersion.Status.TRAINING, ModelVersion.Status.FAILED,
                              ModelVersion.Status.RETIRED) or not version.weights_file:
            raise AppError(f"version {version.pk} is {version.status}: it has no weights to embed with")
        _supersede_unfinished_refresh(version)
        ids = list(images_without_embedding(version=version))
        job = job_create(
            kind=Job.Kind.REFRESH_EMBEDDINGS, total=len(ids), created_by=created_by,
            params={"version_id": version.pk, "criterion_id": version.criterion_id},
            message=f"Embedding {len(ids):,} images with version {version.pk}.",
        )
        size = settings.RANKING_EMBED_CHUNK_SIZE
        EmbeddingChunk.objects.bulk_create(
            EmbeddingChunk(version=version, job=job, first_image_id=ids[i],
                           last_image_id=ids[min(i + size, len(ids)) - 1], size=len(ids[i : i + size]))
            for i in range(0, len(ids), size)
        )
        version.embedding_job = job
        version.save(update_fields=["embedding_job"])
        if ids and dispatch:
            from ranking.tasks import embed_chunk

            job_chunks_run(EmbeddingChunk, job_id=job.pk, process=embedding_chunk_process, task=embed_chunk)
    if not ids:
        embeddings_finalize(version_id=version_id, job_id=job.pk)
    return job


def _supersede_unfinished_refresh(version: ModelVersion) -> None:
    """A new refresh replaces one left unfinished (its worker died, its messages were lost).

    Only the version's latest refresh can be unfinished: each new one supersedes the last.
    """
    job = version.embedding_job
    if job is not None and not job.is_finished:
        EmbeddingChunk.objects.filter(job=job, status=EmbeddingChunk.Status.PENDING).delete()
        job_finish(job_id=job.pk, status=Job.Status.CANCELLED, message="Superseded by a newer refresh.")


def embeddings_refresh_run_inline(*, job_id: int) -> None:
    job_chunks_run(EmbeddingChunk, job_id=job_id, process=embedding_chunk_process)


def embedding_chunk_process(*, chunk_id: int) -> None:
    """Embed one chunk. Safe to call again (it then does nothing, or redoes the same upserts)."""
    done = EmbeddingChunk.objects.filter(pk=chunk_id, status=EmbeddingChunk.Status.DONE).select_related("job").first()
    if done is not None:
        # Redelivered after its worker died between marking the last chunk done and
        # finishing the job: finish it now, or the version would wait forever.
        if not done.job.is_finished and not job_chunks_pending(EmbeddingChunk, job_id=done.job_id):
            embeddings_finalize(version_id=done.version_id, job_id=done.job_id)
        return
    chunk = job_chunk_start(EmbeddingChunk, chunk_id=chunk_id)
    if chunk is None:  # its job was cancelled or superseded
        return
    images = list(
        images_without_embedding(version=chunk.version).filter(pk__gte=chunk.first_image_id, pk__lte=chunk.last_image_id)
    )
    # the bar moves within a chunk: a library's first pass (the backbone over 512 images) is minutes of it
    part = f"embedding-chunk-{chunk.pk}"
    report = job_part_reporter(job_id=chunk.job_id, part=part, size=chunk.size,
                               pending=EmbeddingChunk.objects.filter(pk=chunk.pk, status=EmbeddingChunk.Status.PENDING))
    embedded = embed_and_store(version=chunk.version, image_ids=images, on_progress=report)

    def write(locked: EmbeddingChunk, job: Job) -> list[str]:
        locked.embedded = embedded
        return ["embedded"]

    # the last chunk closes the job after the commit: building the index cannot run in a transaction
    committed = job_chunk_commit(EmbeddingChunk, chunk_id=chunk_id, part=part, write=write)
    if committed is ChunkCommit.LAST:
        embeddings_finalize(version_id=chunk.version_id, job_id=chunk.job_id)
    elif committed is ChunkCommit.SKIPPED and ModelVersion.objects.filter(
            pk=chunk.version_id, status=ModelVersion.Status.RETIRED).exists():
        # its job was cancelled with the version's retirement while this ran: what it stored goes too
        Embedding.objects.filter(version_id=chunk.version_id, image_id__in=images).delete()


def embed_and_store(*, version: ModelVersion, image_ids: list[int],
                    on_progress: Callable[[int], None] | None = None) -> int:
    """Embed the given images with the version and upsert their rows; returns how many were stored.

    Files that cannot be read are skipped with a warning (they get no row, so a
    later refresh tries again); the rest are stored. ``on_progress(done)``: images done so far.
    """
    if not image_ids:
        return 0
    from ranking.data import iter_image_batches
    from ranking.inference import embed_images, resolve_device
    from ranking.query_encoder import version_model

    model, params = version_model(version)
    device = resolve_device(settings.RANKING_DEVICE)
    if version.feature_extractor_id is not None:
        return _embed_from_cache(version=version, model=model, image_ids=image_ids, device=device,
                                 on_progress=on_progress)
    size = params["image_size"]
    rows = list(Image.objects.filter(pk__in=image_ids).order_by("pk").values_list("pk", "file"))
    paths = [str(settings.MEDIA_ROOT / name) for _, name in rows]
    stored = 0
    offset = 0
    for batch, ok in iter_image_batches(paths, size, batch_size=256):
        vectors = embed_images(model, batch, device).numpy()
        objs = []
        for j in range(len(batch)):
            image_id = rows[offset + j][0]
            if ok[j]:
                objs.append(Embedding(image_id=image_id, version_id=version.pk, vector=vectors[j]))
            else:
                logger.warning("image %s: file unreadable, not embedded (%s)", image_id, paths[offset + j])
        offset += len(batch)
        Embedding.objects.bulk_create(
            objs, update_conflicts=True, unique_fields=["version", "image"], update_fields=["vector"]
        )
        stored += len(objs)
        if on_progress is not None:
            on_progress(offset)
    return stored


def _embed_from_cache(*, version: ModelVersion, model, image_ids: list[int], device,
                      on_progress: Callable[[int], None] | None = None) -> int:
    """Embed through the feature cache: the backbone runs only for images with no cached features
    (and stores them), the version's head reads the cache for all of them."""
    from ranking.services.features import features_compute, features_load
    from ranking.inference import embed_cached

    extractor = version.feature_extractor
    # the backbone's pass is nearly all of the time: its progress stands for the chunk's
    features_compute(extractor=extractor, model=model, image_ids=image_ids,
                     on_progress=None if on_progress is None else lambda done, total: on_progress(done))
    stored = 0
    for start in range(0, len(image_ids), 2048):
        part = sorted(image_ids[start : start + 2048])
        inputs, found = features_load(extractor=extractor, image_ids=part)
        for image_id in sorted(set(part) - set(found)):
            logger.warning("image %s: file unreadable, not embedded", image_id)
        if not found:
            continue
        vectors = embed_cached(model, inputs, device).numpy()
        Embedding.objects.bulk_create(
            [Embedding(image_id=image_id, version_id=version.pk, vector=vectors[n]) for n, image_id in enumerate(found)],
            update_conflicts=True, unique_fields=["version", "image"], update_fields=["vector"],
        )
        stored += len(found)
    return stored


def embeddings_finalize(*, version_id: int, job_id: int) -> None:
    """Index a fully embedded version, mark it ready and close the refresh job; maybe activate it.

    Idempotent: a second call finds the index built, the version ready and the job finished.
    """
    from ranking.services.versions import version_auto_activate

    version = ModelVersion.objects.get(pk=version_id)
    if version.status == ModelVersion.Status.RETIRED:
        from ranking.services.versions import version_embeddings_drop

        job_finish(job_id=job_id, status=Job.Status.CANCELLED, message=f"Version {version.pk} was retired.")
        version_embeddings_drop(version_id=version.pk)  # what its last chunks stored meanwhile
        return
    index_build(version=version)
    similarity_reference_measure(version=version)
    # images imported after the refresh listed its chunks are not its failures: their import embeds them
    # (embeddings_add_new_images), and activates the version once they are in
    covered = EmbeddingChunk.objects.filter(job_id=job_id).aggregate(last=Max("last_image_id"))["last"] or 0
    without = images_without_embedding(version=version)
    unreadable = without.filter(pk__lte=covered).count()
    arriving = without.filter(pk__gt=covered).count()
    from ranking.services.versions import version_status_change

    version_status_change(to=ModelVersion.Status.READY, from_statuses=(ModelVersion.Status.EMBEDDING,),
                          version_id=version_id)
    note = f" {unreadable:,} images could not be read; run the refresh again to retry them." if unreadable else ""
    if arriving:
        note += f" {arriving:,} images imported meanwhile are embedded as their import goes on."
    job_finish(job_id=job_id, message=f"Embedded the library with version {version.pk}.{note}",
               result={"missing": unreadable, "arriving": arriving})
    if unreadable == 0 and arriving == 0:
        version_auto_activate(version_id=version_id)


REFERENCE_SAMPLE = 3000  # images: ≈ 4.5 million pairs, enough to tell the top 0.001 % apart


def similarity_reference_measure(*, version: ModelVersion, seed: int = 0) -> dict | None:
    """How similar random pairs of library images are under the version, stored with it: the
    similarity at each "top fraction" from 1 down to 1e-6, log-spaced. Search results are shown
    against it ("top 0.2 %"), since a raw cosine similarity means something different under each
    model (the autoencoder put every result at 0.99–1.00)."""
    import numpy as np

    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [seed / 10])  # the same sample each time (ORDER BY random())
    sample = Embedding.objects.filter(version=version).order_by("?").values_list("vector", flat=True)
    rows = [np.asarray(v, dtype=np.float32) for v in sample[:REFERENCE_SAMPLE]]
    if len(rows) < 10:
        return None
    unit = np.stack(rows)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    pairs = (unit @ unit.T)[np.triu_indices(len(unit), k=1)]
    top = np.logspace(0, -6, 121)
    top = top[top >= 1 / len(pairs)]
    values = np.quantile(pairs, 1 - top)
    reference = {"pairs": int(len(pairs)), "top_fractions": [float(t) for t in top],
                 "similarities": [round(float(v), 6) for v in np.maximum.accumulate(values)]}
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        locked.metrics = {**(locked.metrics or {}), "similarity_reference": reference}
        locked.save(update_fields=["metrics"])
    version.metrics = locked.metrics
    return reference


def index_name_for(version: ModelVersion) -> str:
    return f"ranking_embedding_hnsw_v{version.pk}"


@contextlib.contextmanager
def _version_lock(cursor, version_id: int):
    """A session-level advisory lock per version (it works outside transactions, as CONCURRENTLY needs):
    two finalizers of one version never build, or drop and rebuild, its index at once."""
    cursor.execute("SELECT pg_advisory_lock(%s, %s)", [INDEX_LOCK_CLASS, version_id])
    try:
        yield
    finally:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [INDEX_LOCK_CLASS, version_id])


def index_build(*, version: ModelVersion) -> str:
    """Build the version's partial HNSW index (concurrently: searches and writes go on meanwhile).

    Building once the rows are in is much faster than growing the index row by
    row; images embedded later are added to it as they are inserted.
    """
    name = index_name_for(version)
    dim = int(version.embedding_dim)
    # CONCURRENTLY cannot run in a transaction block (the tests run in one).
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY"
    with connection.cursor() as cursor, _version_lock(cursor, version.pk):
        # An interrupted CONCURRENTLY build leaves an invalid index behind: drop it first.
        cursor.execute(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name]
        )
        row = cursor.fetchone()
        if row and row[0]:
            cursor.execute(f'DROP INDEX {concurrently} IF EXISTS "{name}"')
        if connection.in_atomic_block:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # else: "pending trigger events"
        # The graph is built fastest while it fits in memory (pgvector warns and slows down after).
        cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [settings.RANKING_INDEX_BUILD_MEMORY])
        try:
            cursor.execute(
                f'CREATE INDEX {concurrently} IF NOT EXISTS "{name}" ON ranking_embedding '
                f"USING hnsw ((vector::vector({dim})) vector_cosine_ops) WITH (m = {int(settings.RANKING_HNSW_M)}, "
                f"ef_construction = {int(settings.RANKING_HNSW_EF_CONSTRUCTION)}) "
                f"WHERE version_id = {int(version.pk)}"
            )
        finally:
            cursor.execute("RESET maintenance_work_mem")
    ModelVersion.objects.filter(pk=version.pk).update(index_name=name)
    return name


def index_drop(*, version: ModelVersion) -> None:
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX {concurrently} IF EXISTS "{index_name_for(version)}"')
    ModelVersion.objects.filter(pk=version.pk).update(index_name="")


def embeddings_schedule_new_images(*, image_ids: Iterable[int]) -> None:
    """After an import commits, embed its images with every version that keeps embeddings."""
    image_ids = list(image_ids)
    if not image_ids or not ModelVersion.objects.filter(status__in=ModelVersion.EMBEDDED_STATUSES).exists():
        return
    from ranking.tasks import embed_new_images

    transaction.on_commit(lambda: embed_new_images.delay(image_ids))


def embeddings_add_new_images(*, image_ids: list[int]) -> int:
    """Embed the given images with every version that keeps embeddings; returns rows stored."""
    from ranking.services.versions import version_auto_activate

    stored = 0
    for version in ModelVersion.objects.filter(status__in=ModelVersion.EMBEDDED_STATUSES):
        missing = list(images_without_embedding(version=version).filter(pk__in=image_ids))
        stored += embed_and_store(version=version, image_ids=missing)
        # a first model whose refresh ended while an import was still adding images waits for them: the last
        # of them in, it goes live (version_auto_activate: a criterion with no active version takes it)
        if (missing and version.status == ModelVersion.Status.READY and not images_without_embedding(version=version)
                .exists() and not ModelVersion.objects.filter(criterion_id=version.criterion_id,
                                                              status=ModelVersion.Status.ACTIVE).exists()):
            version_auto_activate(version_id=version.pk)
    return stored


SWEEP_MIN_AGE_SECONDS = 600  # younger images are still on their way (their import queued their embedding)


def embeddings_sweep_missing(*, batch_size: int = 512, max_images: int = 50_000) -> int:
    """Queue embeddings for library images that a version keeping embeddings lacks; returns how many.

    Every image is embedded when its import commits, but that task can be lost: the database or the
    worker died before it ran, or retries ran out. This periodic sweep finds what is still missing.
    A version whose refresh job is still running is left to that job.
    """
    from django.utils import timezone

    from ranking.tasks import embed_new_images

    cutoff = timezone.now() - timedelta(seconds=SWEEP_MIN_AGE_SECONDS)
    queued: set[int] = set()
    for version in ModelVersion.objects.filter(status__in=ModelVersion.EMBEDDED_STATUSES):
        if Job.objects.filter(pk=version.embedding_job_id).exclude(status__in=Job.FINISHED).exists():
            continue
        missing = images_without_embedding(version=version).filter(created_at__lt=cutoff)
        ids = [pk for pk in missing[:max_images] if pk not in queued]
        for start in range(0, len(ids), batch_size):
            embed_new_images.delay(ids[start : start + batch_size])  # it embeds with every version lacking them
        queued.update(ids)
    if queued:
        logger.info("queued embeddings for %d library images that lacked them", len(queued))
    return len(queued)


def embedding_chunks_drop_pending(job_id: int, status: str, reason: str) -> None:
    """End-of-job hook (``imagesearch.services.jobs.job_end_hook``): the chunks an embedding job had
    not reached when it failed or was cancelled are dropped (their redelivered tasks then find nothing)."""
    EmbeddingChunk.objects.filter(job_id=job_id, status=EmbeddingChunk.Status.PENDING).delete()

"""Near-duplicates: the same picture re-scanned, resized, recompressed or lightly cropped.

A scan reads at best a version of max-pooled pretrained features (``duplicate_features_prepare``):
with them copies stay as close while look-alikes move apart (``bench.duplicates``); without one, the
active version's embeddings (``ranking.selectors.duplicate_versions``).

A scan (``DuplicateScan``) asks the version's HNSW index, for every image, for its ``neighbours``
nearest images within ``max_distance`` (cosine distance), in chunks of image ids that run as Celery
tasks over every worker: the pairs it finds are stored (``DuplicatePair``). The groups are not: they
are the connected components of the pairs under whatever threshold the user picks, up to the scan's,
whose images are each among the other's few nearest (``ranking.selectors.duplicate_groups``). So
moving the threshold costs no new scan, and the scan costs one index query per image (minutes at
100k images), never all pairs.

A person's mark on two images (``DuplicateMark``: the same picture, or distinct) overrides the
distances in the groups, and is a judgment for the criterion: it is recorded as the marker's feedback
on the group's reference image (``labeling.services.feedback``), so that each pair of a "same" and a
"distinct" mark on one reference becomes a judged triplet.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from imagesearch.errors import AppError
from imagesearch.models import Job
from imagesearch.services.jobs import (
    job_chunk_commit, job_chunk_start, job_chunks_run, job_create, job_fail, job_finish,
)
from ranking.models import DuplicateChunk, DuplicateMark, DuplicatePair, DuplicateScan, ModelVersion, SimilarityCriterion
from ranking.selectors import active_version, duplicate_versions

# Cosine distances under the pretrained features: copies of one photo (half size, JPEG quality 40, 4 %
# cropped off each side) sat within 0.11 of each other, different photos 0.47 or more apart
# (tests/ranking/test_duplicates.py). On Fashion-MNIST, where look-alikes come as close as copies, the
# groups' pairwise precision / recall at 0.11 with the mutual rule were 0.96 / 0.98 with max-pooled
# features, 0.85 / 1.00 with the average-pooled ones (bench.duplicates). A scan keeps the pairs up to
# DEFAULT_MAX_DISTANCE; the groups are shown at DEFAULT_THRESHOLD until the user moves it.
DEFAULT_MAX_DISTANCE = 0.2
DEFAULT_THRESHOLD = 0.11
# a pair joins a group only when each image is among the other's 3 nearest (see duplicate_groups)
DEFAULT_MUTUAL = 3
DEFAULT_NEIGHBOURS = 10
NO_EMBEDDINGS = "Version {version} has no embeddings yet: near-duplicates are found once the library is embedded."


def duplicate_features_prepare(*, criterion: SimilarityCriterion, created_by=None, dispatch: bool = True) -> ModelVersion:
    """Start a version of max-pooled pretrained features: it embeds the library (a feature pass of its
    own) and is then what scans use by default. It serves searches only if an admin activates it."""
    from ranking.services.training import training_start

    return training_start(criterion=criterion, kind=ModelVersion.Kind.PRETRAINED, created_by=created_by,
                          hyperparameters={"pooling": "max"}, dispatch=dispatch)


def duplicate_scan_start(*, criterion: SimilarityCriterion, version: ModelVersion | None = None,
                         max_distance: float = DEFAULT_MAX_DISTANCE, neighbours: int = DEFAULT_NEIGHBOURS,
                         created_by=None, dispatch: bool = True) -> DuplicateScan:
    """Start a scan for near-duplicates under ``version`` (by default the first of ``duplicate_versions``).

    The request only records the scan and its job: listing a million images into chunks is the job's first
    step (``duplicate_scan_prepare``, the task ``ranking.prepare_duplicate_scan``). Without ``dispatch`` that
    step runs here and the chunks wait for ``duplicate_scan_run_inline``."""
    if version is None:
        usable = duplicate_versions(criterion=criterion)
        version = usable[0] if usable else active_version(criterion=criterion)
    if not 0 < max_distance <= 1:
        raise AppError("The largest distance must be above 0 and at most 1 (cosine distance).")
    if not 1 <= neighbours <= 100:
        raise AppError("Neighbours per image must be between 1 and 100.")
    if not version.index_name or not version.embeddings.exists():
        raise AppError(NO_EMBEDDINGS.format(version=version.pk))
    with transaction.atomic():
        job = job_create(kind=Job.Kind.FIND_DUPLICATES, created_by=created_by,
                         params={"version_id": version.pk, "criterion_id": criterion.pk},
                         message=f"Listing the images of version {version.pk} to look for near-duplicates.")
        scan = DuplicateScan.objects.create(criterion=criterion, version=version, job=job, max_distance=max_distance,
                                            neighbours=neighbours, created_by=created_by)
        if dispatch:
            from ranking.tasks import prepare_duplicate_scan

            transaction.on_commit(lambda: prepare_duplicate_scan.delay(scan.pk))
    if not dispatch:
        duplicate_scan_prepare(scan_id=scan.pk, dispatch=False)
    return scan


def duplicate_scan_prepare(*, scan_id: int, dispatch: bool = True) -> None:
    """The scan's first step: its images listed into chunks, then (``dispatch``) a task per chunk. Safe to run
    again: a scan already listed only has its pending chunks queued again."""
    scan = DuplicateScan.objects.select_related("job", "version").get(pk=scan_id)
    if scan.job is None or scan.job.is_finished:
        return
    try:
        _chunks_list(scan)
    except Exception as exc:  # a bug: the job says so instead of waiting "queued" forever
        job_fail(job_id=scan.job_id, exc=exc)
        raise
    if dispatch and not DuplicateScan.objects.filter(pk=scan.pk, job__status__in=Job.FINISHED).exists():
        from ranking.tasks import find_duplicates_chunk

        job_chunks_run(DuplicateChunk, job_id=scan.job_id, process=duplicate_chunk_process, task=find_duplicates_chunk)


def _chunks_list(scan: DuplicateScan) -> None:
    if not scan.chunks.exists():
        with connection.cursor() as cursor:
            # the planner must know the version's rows: a version embedded a moment ago is not in the statistics
            # yet, and each image's query then read the whole table (9.6 ms an image instead of 0.3). Not in
            # index_build: there the fresh statistics of a tiny library turned its searches to a sort.
            cursor.execute("ANALYZE ranking_embedding")
        ids = list(scan.version.embeddings.order_by("image_id").values_list("image_id", flat=True))
        size = settings.DUPLICATES_CHUNK_SIZE
        with transaction.atomic():
            DuplicateChunk.objects.bulk_create(
                DuplicateChunk(scan=scan, job=scan.job, first_image_id=ids[i],
                               last_image_id=ids[min(i + size, len(ids)) - 1], size=len(ids[i:i + size]))
                for i in range(0, len(ids), size))
            Job.objects.filter(pk=scan.job_id).update(
                progress_total=len(ids),
                message=f"Looking for near-duplicates among {len(ids):,} images (version {scan.version_id}).")
        if not ids:
            job_finish(job_id=scan.job_id, message="No image has an embedding under this version.")


def duplicate_scan_run_inline(*, scan: DuplicateScan) -> None:
    job_chunks_run(DuplicateChunk, job_id=scan.job_id, process=duplicate_chunk_process)


def duplicate_chunk_process(*, chunk_id: int) -> None:
    """Find the near neighbours of one chunk's images and store the pairs. Safe to run again."""
    chunk = job_chunk_start(DuplicateChunk, chunk_id=chunk_id)
    if chunk is None:
        return
    scan = DuplicateScan.objects.select_related("version").get(pk=chunk.scan_id)
    pairs = _near_pairs(scan, chunk.first_image_id, chunk.last_image_id)

    def write(locked: DuplicateChunk, job: Job) -> list[str]:
        _pairs_store(scan.pk, pairs)
        return []

    def close(job: Job) -> None:
        found = DuplicatePair.objects.filter(scan_id=scan.pk).count()
        DuplicateScan.objects.filter(pk=scan.pk).update(pair_count=found)
        job_finish(job_id=job.pk, message=f"Found {found:,} pairs of images within distance {scan.max_distance:g}.")

    job_chunk_commit(DuplicateChunk, chunk_id=chunk_id, part=f"duplicate-chunk-{chunk_id}", write=write, close=close)


# (smaller id, larger id) -> (distance, rank of the larger among the smaller's nearest, and the reverse)
Pairs = dict[tuple[int, int], tuple[float, int | None, int | None]]


def _near_pairs(scan: DuplicateScan, first_id: int, last_id: int) -> Pairs:
    """The pairs of each image of the range and its near neighbours, with their ranks: one index scan
    per image (a lateral join), so the work grows with the images, not with their pairs."""
    version = scan.version
    dim = int(version.embedding_dim)
    vector = f"(e.vector::vector({dim}))"
    # integers from the database inlined: the planner picks the version's partial index for a literal only
    sql = (
        f"SELECT q.image_id, n.image_id, n.distance FROM ranking_embedding q CROSS JOIN LATERAL ("
        f"  SELECT e.image_id, {vector} <=> (q.vector::vector({dim})) AS distance FROM ranking_embedding e"
        f"  WHERE e.version_id = {int(version.pk)}"
        f"  ORDER BY {vector} <=> (q.vector::vector({dim})) LIMIT %s) n "
        f"WHERE q.version_id = {int(version.pk)} AND q.image_id BETWEEN %s AND %s "
        "ORDER BY q.image_id, n.distance, n.image_id"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # as wide a beam as search's: at 40, among hundreds of near-identical images (Fashion-MNIST beside copies of
        # a photo) the graph walk missed a photo's own copies, 0.005 away, that a search found
        beam = max(settings.RANKING_HNSW_EF_SEARCH, 4 * (scan.neighbours + 1))
        # and through the index: with that beam the planner priced a library of 2,000 images cheaper to sort
        # whole for each image (10.4 ms an image, against 0.9 ms through the index)
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true), set_config('enable_sort', 'off', true)",
                       [str(min(beam, 1000))])
        cursor.execute(sql, [scan.neighbours + 1, first_id, last_id])  # + 1: the image itself comes back too
        rows = cursor.fetchall()
    pairs: Pairs = {}
    rank, last_query = 0, None
    for query, near, distance in rows:
        if query != last_query:
            rank, last_query = 0, query
        if near == query:
            continue
        rank += 1
        if rank > scan.neighbours or distance > scan.max_distance:
            continue
        key = (min(query, near), max(query, near))
        old_distance, rank_a, rank_b = pairs.get(key, (distance, None, None))
        if query < near:
            rank_a = rank
        else:
            rank_b = rank
        pairs[key] = (min(old_distance, float(distance)), rank_a, rank_b)
    return pairs


def _pairs_store(scan_id: int, pairs: Pairs) -> None:
    """Insert the pairs, or add the rank a pair's other image found (another chunk found it from there)."""
    if not pairs:
        return
    a, b = zip(*pairs)
    distances, ranks_a, ranks_b = zip(*pairs.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ranking_duplicatepair (scan_id, image_a_id, image_b_id, distance, rank_a, rank_b) "
            "SELECT %s, a, b, d, ra, rb FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::int[], %s::int[]) "
            "AS t(a, b, d, ra, rb) ON CONFLICT (scan_id, image_a_id, image_b_id) DO UPDATE SET "
            # LEAST ignores nulls: each side's rank is kept, and a redone chunk changes nothing
            "rank_a = LEAST(ranking_duplicatepair.rank_a, EXCLUDED.rank_a), "
            "rank_b = LEAST(ranking_duplicatepair.rank_b, EXCLUDED.rank_b)",
            [scan_id, list(a), list(b), list(distances), list(ranks_a), list(ranks_b)])


@dataclass
class DuplicateMarkOutcome:
    mark: str  # "duplicate", "distinct" or "" (cleared)
    judgments: int  # the marker's judgments on this reference image (search feedback included)


def duplicate_mark(*, user, criterion: SimilarityCriterion, reference_id: int, image_id: int,
                   verdict: str | None) -> DuplicateMarkOutcome:
    """Mark ``image_id`` as the same picture as ``reference_id`` ("duplicate"), as another one ("distinct"),
    or clear the mark (None). The latest mark on a pair holds for everyone; it is also the marker's
    judgment (see the module's docstring)."""
    from labeling.services.feedback import search_feedback_mark

    if verdict not in (None, DuplicateMark.Verdict.DUPLICATE, DuplicateMark.Verdict.DISTINCT):
        raise AppError("A mark is \"duplicate\", \"distinct\" or none.")
    if reference_id == image_id:
        raise AppError("An image cannot be marked against itself.")
    a, b = sorted((reference_id, image_id))
    with transaction.atomic():
        feedback = search_feedback_mark(  # refuses an image that is not in the library
            user=user, criterion=criterion, query_id=reference_id, result_id=image_id,
            relevant=None if verdict is None else verdict == DuplicateMark.Verdict.DUPLICATE)
        if verdict is None:
            DuplicateMark.objects.filter(criterion=criterion, image_a_id=a, image_b_id=b).delete()
        else:
            DuplicateMark.objects.update_or_create(criterion=criterion, image_a_id=a, image_b_id=b,
                                                   defaults={"verdict": verdict, "marked_by": user})
    return DuplicateMarkOutcome(mark=verdict or "", judgments=feedback.judgments)

"""Reads: active versions, embeddings, and nearest-neighbour search through pgvector."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Q

from imagesearch.models import Collection, Image, Job
from ranking.models import (
    DuplicateMark, DuplicateScan, Embedding, EmbeddingMap, MapCluster, ModelVersion, SimilarityCriterion,
)
from ranking.query_encoder import embed_file
from ranking.services.criteria import criterion_resolve


class NoActiveVersion(Exception):
    """The criterion has no active model yet: train and embed one first."""


@dataclass
class SearchHit:
    image: Image
    distance: float  # cosine distance, 0 (same direction) to 2
    # share of random pairs of library images less similar than this hit, under the same version
    # (None before the version's reference was measured): what a person can read, where raw cosine
    # similarities of one model all sit at 0.99 and another's at 0.6
    closeness: float | None = None
    # every document page the image appears on (imagesearch.models.ImageOccurrence), filled by search_answer
    occurrences: list = field(default_factory=list)

    @property
    def score(self) -> float:
        """Cosine similarity, 1 (same direction) to -1."""
        return 1.0 - self.distance

    @property
    def closeness_text(self) -> str:
        """"top 0.2 %": how rare a pair this similar is in the library."""
        if self.closeness is None:
            return f"{self.score:.3f}"
        top = (1 - self.closeness) * 100
        if top < 0.01:
            return "top < 0.01 %"
        return f"top {top:.2g} %" if top < 10 else f"top {top:.0f} %"

    @property
    def closeness_title(self) -> str:
        """The tooltip that explains ``closeness_text``."""
        if self.closeness is None:
            return f"Cosine similarity {self.score:.3f} (1 = the same direction)."
        return (f"{self.closeness_text}: only {(1 - self.closeness) * 100:.2g} % of random pairs of library images are "
                f"this similar under this model. Cosine similarity {self.score:.3f}.")


def closeness(version: ModelVersion, similarities: np.ndarray) -> np.ndarray | None:
    """Where similarities fall among those of random pairs of library images (0–1), from the
    reference ``embeddings.similarity_reference_measure`` stored with the version."""
    reference = (version.metrics or {}).get("similarity_reference")
    if not reference:
        return None
    top = np.asarray(reference["top_fractions"], dtype=np.float64)  # decreasing: 1 … 1e-6
    values = np.asarray(reference["similarities"], dtype=np.float64)  # increasing with it
    return 1.0 - np.interp(similarities, values, top, left=1.0, right=top[-1])


MAX_SEARCH_RESULTS = 1000  # deepest rank a search returns (k + offset)


def criterion_list() -> list[SimilarityCriterion]:
    return list(SimilarityCriterion.objects.order_by("pk"))


def active_version(*, criterion: SimilarityCriterion | int | str | None = None) -> ModelVersion:
    criterion = criterion_resolve(criterion)
    version = ModelVersion.objects.filter(criterion=criterion, status=ModelVersion.Status.ACTIVE).first()
    if version is None:
        ready = ModelVersion.objects.filter(criterion=criterion, status=ModelVersion.Status.READY).order_by("-pk").first()
        if ready is not None:
            raise NoActiveVersion(f"'{criterion}' has no active model yet: version {ready.pk} is ready, an admin "
                                  "activates it on the dashboard.")
        preparing = ModelVersion.objects.filter(criterion=criterion, status__in=[
            ModelVersion.Status.TRAINING, ModelVersion.Status.EMBEDDING]).order_by("-pk").first()
        if preparing is not None:
            raise NoActiveVersion(f"'{criterion}' has no active model yet: version {preparing.pk} is "
                                  f"{preparing.get_status_display().lower()}; try again when it is done.")
        raise NoActiveVersion(f"'{criterion}' has no active model yet: train one (manage.py train).")
    return version


def images_without_embedding(*, version: ModelVersion):
    """Ids of the library images with no embedding under the version, in id order."""
    return Image.objects.exclude(
        pk__in=Embedding.objects.filter(version=version).values("image_id")
    ).order_by("pk").values_list("pk", flat=True)


def embedding_vectors(*, version: ModelVersion, image_ids: list[int]) -> dict[int, np.ndarray]:
    """Stored embeddings of the given images under the version (missing ones are absent)."""
    rows = Embedding.objects.filter(version=version, image_id__in=image_ids).values_list("image_id", "vector")
    return {image_id: np.asarray(vector, dtype=np.float32) for image_id, vector in rows}


def triplet_accuracy_of_version(*, version: ModelVersion, triplets: list[tuple[int, int, int]]) -> float | None:
    """Share of (query, more similar, less similar) triplets the version's stored embeddings get right,
    among those whose three images it has embedded."""
    vectors = embedding_vectors(version=version, image_ids=list({i for t in triplets for i in t}))
    scored = [t for t in triplets if all(i in vectors for i in t)]
    return float(_outcomes(vectors, scored).mean()) if scored else None


def triplet_outcomes(*, version: ModelVersion, triplets: list[tuple[int, int, int]]) -> np.ndarray | None:
    """Per triplet, whether the version's stored embeddings put the more similar image nearer the
    query; None when an image of them has no embedding (compare versions on the same triplets only)."""
    vectors = embedding_vectors(version=version, image_ids=list({i for t in triplets for i in t}))
    if not triplets or any(i not in vectors for t in triplets for i in t):
        return None
    return _outcomes(vectors, triplets)


def _outcomes(vectors: dict[int, np.ndarray], triplets: list[tuple[int, int, int]]) -> np.ndarray:
    q, p, n = (np.stack([vectors[t[k]] for t in triplets]) for k in range(3))
    return ((q - p) ** 2).sum(1) < ((q - n) ** 2).sum(1)


def nearest_images(
    *,
    criterion: SimilarityCriterion | int | str | None = None,
    image_id: int | None = None,
    vector: np.ndarray | None = None,
    k: int = 10,
    offset: int = 0,
    collection_id: int | None = None,
    document_id: int | None = None,
    label: str | None = None,
    focus_id: int | None = None,
    version: ModelVersion | None = None,
    ef_search: int | None = None,
) -> list[SearchHit]:
    """The library images at ranks ``offset + 1 … offset + k`` nearest the query, under a version.

    The version is the criterion's active one unless given. The query is a
    library image (``image_id``; never returned itself) or a vector (from
    ``embed_file`` for an upload). The HNSW index answers; filters on
    collection, document, label or a labeling focus's listed images use pgvector's iterative scans, so a selective
    filter still returns ``k`` results rather than the few that survive among
    the first ``ef_search`` candidates. ``offset + k`` is capped at
    ``MAX_SEARCH_RESULTS``.
    """
    version = version or active_version(criterion=criterion)
    if vector is None:
        if image_id is None:
            raise ValueError("give image_id or vector")
        vector = embedding_vectors(version=version, image_ids=[image_id]).get(image_id)
        if vector is None:  # imported a moment ago, not embedded yet: embed its file, store nothing
            name = Image.objects.values_list("file", flat=True).get(pk=image_id)
            vector = embed_file(version=version, path=Path(settings.MEDIA_ROOT) / name)
    depth = min(max(offset, 0) + k, MAX_SEARCH_RESULTS)
    if depth <= offset:
        return []
    rows = _nearest(version, np.asarray(vector, dtype=np.float32), depth, image_id,
                    {"collection_id": collection_id, "document_id": document_id, "label": label, "focus_id": focus_id},
                    ef_search or settings.RANKING_HNSW_EF_SEARCH)[offset:]
    near = closeness(version, 1.0 - np.array([float(row[0]) for row in rows]))
    return [SearchHit(_image_from_row(row), float(row[0]), None if near is None else float(near[n]))
            for n, row in enumerate(rows)]


def _columns(model, alias: str) -> str:
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def _image_from_row(row: tuple) -> Image:
    """An Image with its collection and document, from one row of ``_nearest``: what
    ``select_related`` would build, without the ORM's per-query cost (half a search's time)."""
    from imagesearch.models import Collection, Document

    at = 1
    built = []
    for model in (Image, Collection, Document):
        fields = model._meta.concrete_fields
        # the fields' own conversions, which from_db does not run: JSON columns come as text
        values = [f.from_db_value(v, None, connection) if v is not None and hasattr(f, "from_db_value") else v
                  for f, v in zip(fields, row[at:at + len(fields)])]
        at += len(fields)
        built.append(None if values[0] is None else
                     model.from_db(connection.alias, [f.attname for f in fields], values))
    image, collection, document = built
    Image.collection.field.set_cached_value(image, collection)
    Image.document.field.set_cached_value(image, document)
    return image


def _nearest(version, vector, k, exclude_id, filters: dict, ef_search) -> list[tuple]:
    """Rows of (distance, image columns…, collection columns…, document columns…), nearest first."""
    from imagesearch.models import Collection, Document

    dim = int(version.embedding_dim)
    # The version id and dimension are inlined (they are integers from the database):
    # the planner can only pick the version's partial index for a literal predicate.
    where = [f"e.version_id = {int(version.pk)}"]
    params: list = []
    join = ""
    if exclude_id is not None:
        where.append("e.image_id <> %s")
        params.append(exclude_id)
    image_filters = {column: value for column, value in filters.items() if value not in (None, "")}
    focus_id = image_filters.pop("focus_id", None)
    if focus_id is not None:  # a labeling focus's listed images (labeling.models.FocusImage)
        where.append("e.image_id IN (SELECT image_id FROM labeling_focusimage WHERE focus_id = %s)")
        params.append(focus_id)
    document_id = image_filters.pop("document_id", None)
    if document_id is not None:  # every picture that appears in the document, first found there or not
        where.append("e.image_id IN (SELECT image_id FROM imagesearch_imageoccurrence WHERE document_id = %s)")
        params.append(document_id)
    if image_filters:
        join = "JOIN imagesearch_image i ON i.id = e.image_id"
        for column, value in image_filters.items():
            where.append(f"i.{column} = %s")  # column names come from this module, never from input
            params.append(value)
    distance = f"(e.vector::vector({dim})) <=> %s::vector({dim})"
    sql = (
        f"WITH hits AS MATERIALIZED (SELECT e.image_id, {distance} AS distance FROM ranking_embedding e {join} "
        f"WHERE {' AND '.join(where)} ORDER BY {distance} LIMIT %s) "
        f"SELECT h.distance, {_columns(Image, 'im')}, {_columns(Collection, 'c')}, {_columns(Document, 'd')} "
        "FROM hits h JOIN imagesearch_image im ON im.id = h.image_id "
        "JOIN imagesearch_collection c ON c.id = im.collection_id "
        "LEFT JOIN imagesearch_document d ON d.id = im.document_id "
        "ORDER BY h.distance, h.image_id"
    )
    literal = "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
    ef = min(max(int(ef_search), k), 1000)  # pgvector's largest ef_search
    if connection.in_atomic_block or not connection.get_autocommit():  # local to the caller's transaction
        with connection.cursor() as cursor:
            _hnsw_settings(cursor, ef, local=True)
            cursor.execute(sql, [literal, *params, literal, k])
            return cursor.fetchall()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        # Autocommit, outside a transaction: set the session's settings once per connection and
        # value, so that a search is one round trip rather than five.
        # (A transaction-mode pooler such as pgbouncer's would lose them: use session mode.)
        if _session_ef_search.get(connection.connection) != ef:
            _hnsw_settings(cursor, ef, local=False)
            _session_ef_search[connection.connection] = ef
        cursor.execute(sql, [literal, *params, literal, k])
        return cursor.fetchall()


# ef_search last set on each (raw) database connection, outside any transaction
_session_ef_search: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hnsw_settings(cursor, ef_search: int, *, local: bool) -> None:
    # relaxed_order: keep scanning the graph until k rows pass the filters; the outer
    # ORDER BY restores exact order among them.
    cursor.execute("SELECT set_config('hnsw.ef_search', %s, %s), set_config('hnsw.iterative_scan', 'relaxed_order', %s)",
                   [str(ef_search), local, local])


# --- the dashboard ---------------------------------------------------------------------------


@dataclass
class VersionRow:
    version: ModelVersion
    embedded: int  # images with an embedding under it
    library: int  # images in the library
    val_accuracy: float | None  # on the criterion's held-out triplets, the same for every version
    held_out_triplets: int
    train_triplets: int | None
    seconds: float | None
    loss_points: list[tuple[int, float]]

    @property
    def coverage(self) -> float:
        return self.embedded / self.library if self.library else 0.0


def dashboard_versions(*, criterion: SimilarityCriterion,
                       triplets: list[tuple[int, int, int]] | None = None) -> list[VersionRow]:
    """The criterion's versions, newest first, with what the dashboard's table and charts show."""
    library = Image.objects.count()
    from labeling.selectors import training_triplets
    from ranking.services.evaluation import split_by_query
    from ranking.services.hyperparameters import default_hyperparameters

    versions = list(ModelVersion.objects.filter(criterion=criterion).select_related("parent", "training_job")
                    .order_by("-pk"))
    # every version scored on the same triplets: those of the queries held out of training (by default)
    hp = default_hyperparameters(ModelVersion.Kind.RANKING)
    triplets = training_triplets(criterion=criterion) if triplets is None else triplets
    _, held_out = split_by_query(triplets, hp["val_fraction"], hp["seed"])
    rows = []
    for version in versions:
        # counted on the (version, image) index, and only where embeddings are kept
        version.embedded = (Embedding.objects.filter(version=version).count()
                            if version.status in ModelVersion.EMBEDDED_STATUSES else 0)
        metrics = version.metrics or {}
        history = metrics.get("train_history") or []
        accuracy = None
        if version.embedded and held_out:
            outcomes = triplet_outcomes(version=version, triplets=held_out)
            accuracy = None if outcomes is None else float(outcomes.mean())
        rows.append(VersionRow(
            version=version, embedded=version.embedded, library=library, held_out_triplets=len(held_out),
            val_accuracy=accuracy, train_triplets=metrics.get("train_triplets"),
            seconds=metrics.get("seconds"),
            loss_points=[(h.get("epoch", n) + 1, h["loss"]) for n, h in enumerate(history) if "loss" in h],
        ))
    return rows


def previous_active_version(*, criterion_id: int) -> ModelVersion | None:
    """What a roll back activates: the latest version activated before the active one, still ready."""
    active = ModelVersion.objects.filter(criterion_id=criterion_id, status=ModelVersion.Status.ACTIVE).first()
    earlier = ModelVersion.objects.filter(criterion_id=criterion_id, status=ModelVersion.Status.READY,
                                          activated_at__isnull=False)
    if active is not None and active.activated_at is not None:
        earlier = earlier.filter(activated_at__lt=active.activated_at)
    return earlier.order_by("-activated_at").first()


# --- the training form's estimate ------------------------------------------------------------

# What a training costs on the 2-core development machine: a fixed part (loading the network and
# the cached features, saving), then per epoch a fixed part (held-out evaluation, progress) and a
# part per triplet. Fitted to bench.quality (2,196 triplets × 30 epochs: 59 s), a 185-triplet
# training from the dashboard (52 s, a busy machine) and a 54-triplet one (10 s; the earlier fit
# said 47 s) (docs/benchmarks.md): 66, 21 and 18 s. Used until the criterion has a finished
# training in the same mode, which then scales to its own machine.
CPU_TRAINING_COST = {"frozen": (8.0, 0.3, 0.00075), "fine_tune": (10.0, 2.0, 0.05), "full": (15.0, 1.0, 0.006)}
CPU_FEATURE_IMAGES_PER_SECOND = 45.0  # EfficientNet-Lite0 at 224 px, decoding and storing included
GPU_SPEEDUP = 20.0


def _training_seconds(mode: str, triplets: int, epochs: int) -> float:
    fixed, per_epoch, per_triplet = CPU_TRAINING_COST[mode]
    return fixed + epochs * (per_epoch + triplets * per_triplet)


@dataclass
class TrainingEstimate:
    seconds: float
    triplets: int
    features_to_compute: int
    basis: str  # where the per-step cost comes from
    held_out: int = 0  # judged triplets of held-out queries: what automatic activation decides on
    held_out_needed: int = 0
    train_needed: int = 0

    @property
    def text(self) -> str:
        if self.triplets - self.held_out < self.train_needed:
            return (f"Training needs at least {self.train_needed:,} usable judged triplets outside the held-out "
                    f"queries; there are {self.triplets - self.held_out:,}. Judge more on the labeling page.")
        span = f"{self.seconds:.0f} s" if self.seconds < 90 else f"{self.seconds / 60:.0f} min"
        parts = [f"{self.triplets:,} usable judged triplets"]
        if self.features_to_compute:
            parts.append(f"features to compute for {self.features_to_compute:,} images first")
        text = f"About {span} ({', '.join(parts)}; {self.basis})."
        if self.held_out < self.held_out_needed:
            text += (f" Only {self.held_out:,} of them are held out for the comparison; automatic activation "
                     f"decides on {self.held_out_needed:,} or more (about "
                     f"{max(0, self.held_out_needed - self.held_out) * 10:,} more usable judgments), so until "
                     "then an admin activates.")
        return text


def training_estimate(*, criterion: SimilarityCriterion, hyperparameters: dict, device: str,
                      triplets: list[tuple[int, int, int]] | None = None) -> TrainingEstimate:
    """How long a deep-ranking training with these settings would take on ``device`` ("cpu" or "cuda"),
    scaled by the criterion's last finished training in the same mode when there is one."""
    from labeling.selectors import training_triplets
    from ranking.models import FeatureExtractor, ImageFeature
    from ranking.services.evaluation import split_by_query
    from ranking.services.hyperparameters import resolved_backbone_mode

    mode = resolved_backbone_mode(hyperparameters, device)
    mode = mode if mode in CPU_TRAINING_COST else "full"
    triplets = training_triplets(criterion=criterion) if triplets is None else triplets
    train, held_out = split_by_query(triplets, hyperparameters.get("val_fraction", 0.1), hyperparameters.get("seed", 0))
    epochs = int(hyperparameters.get("epochs") or 0)
    if mode == "fine_tune":
        epochs += int(hyperparameters.get("fine_tune_epochs") or 0)
    seconds = _training_seconds(mode, len(train), epochs) / (GPU_SPEEDUP if device == "cuda" else 1)
    basis = "the development machine's measured speed" + (" ÷ 20 on a GPU" if device == "cuda" else "")
    last = (ModelVersion.objects.filter(criterion=criterion, kind=ModelVersion.Kind.RANKING,
                                        hyperparameters__backbone_mode=mode, trained_at__isnull=False)
            .order_by("-trained_at").first())
    metrics = (last.metrics or {}) if last else {}
    if metrics.get("seconds") and metrics.get("train_triplets"):
        last_epochs = len(metrics.get("train_history") or []) + len(metrics.get("fine_tune_history") or [])
        expected = _training_seconds(mode, metrics["train_triplets"], last_epochs or epochs)
        seconds = _training_seconds(mode, len(train), epochs) * metrics["seconds"] / expected
        basis = f"scaled from version {last.pk}, which took {metrics['seconds']:.0f} s"
    features = 0
    if mode != "full":
        judged = {i for t in triplets for i in t}
        extractor = FeatureExtractor.objects.filter(
            backbone=hyperparameters.get("backbone"), image_size=hyperparameters.get("image_size")).first()
        cached = 0 if extractor is None else ImageFeature.objects.filter(extractor=extractor,
                                                                        image_id__in=judged).count()
        features = len(judged) - cached
        seconds += features / (CPU_FEATURE_IMAGES_PER_SECOND * (GPU_SPEEDUP if device == "cuda" else 1))
    return TrainingEstimate(seconds=seconds, triplets=len(triplets), features_to_compute=features, basis=basis,
                            held_out=len(held_out), held_out_needed=settings.RANKING_ACTIVATION_MIN_TRIPLETS,
                            train_needed=int(hyperparameters.get("min_train_triplets") or 0))


# --- near-duplicates (ranking.services.duplicates finds the pairs) ---------------------------------

@dataclass
class DuplicateMember:
    image: Image
    distance: float | None  # to the group's reference; None: joined to it through other images only
    mark: str  # "duplicate", "distinct" (on its pair with the reference) or ""


@dataclass
class DuplicateGroup:
    """Images that are the same picture, as far as the distances and the marks say."""

    reference: Image  # the member with the most near pairs: what the others are compared with
    members: list[DuplicateMember]  # the others, nearest the reference first
    largest_distance: float  # the farthest pair that holds the group together


@dataclass
class DuplicateGroups:
    scan: DuplicateScan
    max_distance: float
    mutual: int  # pairs kept only when each image is among the other's this many nearest
    groups: list[DuplicateGroup]  # this page of them, the tightest first
    group_count: int
    images_in_groups: int


def duplicate_versions(*, criterion: SimilarityCriterion) -> list[ModelVersion]:
    """The criterion's versions a scan can use (embedded and indexed), the best for it first: max-pooled
    pretrained features, then the active version, then the others, newest first."""
    versions = list(ModelVersion.objects.filter(criterion=criterion, status__in=(
        ModelVersion.Status.READY, ModelVersion.Status.ACTIVE)).exclude(index_name="").order_by("-pk"))
    return sorted(versions, key=lambda v: (not duplicate_features(v), v.status != ModelVersion.Status.ACTIVE))


def duplicate_features(version: ModelVersion) -> bool:
    """Whether the version embeds with max-pooled pretrained features, the ones made for near-duplicates."""
    return version.kind == ModelVersion.Kind.PRETRAINED and (version.hyperparameters or {}).get("pooling") == "max"


def duplicate_features_preparing(*, criterion: SimilarityCriterion) -> ModelVersion | None:
    """A version of max-pooled pretrained features still training or embedding, if one is."""
    return ModelVersion.objects.filter(
        criterion=criterion, kind=ModelVersion.Kind.PRETRAINED, hyperparameters__pooling="max",
        status__in=(ModelVersion.Status.TRAINING, ModelVersion.Status.EMBEDDING)).first()


def duplicate_scan_latest(*, criterion: SimilarityCriterion) -> DuplicateScan | None:
    """The criterion's latest scan (finished or not)."""
    return DuplicateScan.objects.filter(criterion=criterion).select_related("job", "version").order_by("-pk").first()


def duplicate_groups(*, scan: DuplicateScan, max_distance: float | None = None, mutual: int | None = None,
                     offset: int = 0, limit: int = 20) -> DuplicateGroups:
    """The scan's images grouped as near-duplicates: the connected components of its pairs within
    ``max_distance`` (``DEFAULT_THRESHOLD`` unless given; at most the scan's) whose two images are each
    among the other's ``mutual`` nearest (``DEFAULT_MUTUAL`` unless given; the scan's ``neighbours``: any
    pair found), with the criterion's marks applied: a "duplicate" mark joins two images whatever their
    distance, a "distinct" one keeps them in different groups (the closest pairs join first, and a pair that
    would bring two images marked distinct together is left out). The tightest groups first (the smallest largest pair
    distance: the surest copies), larger ones first among equals.

    The mutual rule is what keeps look-alikes apart: two plain T-shirts can be as close as two copies of
    one, but each copy's nearest images are its other copies (``bench.duplicates``)."""
    from django.core.cache import cache
    from django.db.models import Count, Max

    from ranking.services.duplicates import DEFAULT_MUTUAL, DEFAULT_THRESHOLD

    threshold = min(DEFAULT_THRESHOLD if max_distance is None else float(max_distance), scan.max_distance)
    mutual = min(DEFAULT_MUTUAL if mutual is None else int(mutual), scan.neighbours)
    marks_of_criterion = DuplicateMark.objects.filter(criterion_id=scan.criterion_id)
    stamp = marks_of_criterion.aggregate(n=Count("pk"), last=Max("updated_at"))
    # the groups of one scan, threshold, rule and set of marks are the same for every page and viewer: computed
    # once (at a million pairs, seconds), then read from the cache; a new or changed mark makes a new key
    key = (f"duplicate-groups:{scan.pk}:{threshold:.6f}:{mutual}:{stamp['n']}:"
           f"{stamp['last'].timestamp() if stamp['last'] else 0}")
    ordered = cache.get(key)
    if ordered is None:
        ordered = _duplicate_components(scan, threshold, mutual, marks_of_criterion)
        cache.set(key, ordered, timeout=3600)
    page = ordered[offset:offset + limit]
    wanted = [pk for reference, others, _ in page for pk in (reference, *(o for o, _ in others))]
    images = Image.objects.select_related("document").in_bulk(wanted)
    marks = {(a, b): verdict for a, b, verdict in marks_of_criterion.filter(
        Q(image_a_id__in=wanted) | Q(image_b_id__in=wanted)).values_list("image_a_id", "image_b_id", "verdict")}
    groups = [DuplicateGroup(reference=images[reference],
                             members=[DuplicateMember(images[pk], distance, marks.get((min(pk, reference), max(pk, reference)), ""))
                                      for pk, distance in others],
                             largest_distance=widest)
              for reference, others, widest in page]
    return DuplicateGroups(scan=scan, max_distance=threshold, mutual=mutual, groups=groups, group_count=len(ordered),
                           images_in_groups=sum(1 + len(others) for _, others, _ in ordered))


def _duplicate_components(scan: DuplicateScan, threshold: float, mutual: int, marks_of_criterion) -> list[tuple]:
    """Every group, the tightest first, as (reference image id, [(other id, its distance to the reference or
    None)], the group's largest pair distance): what a page of groups needs, small enough to cache. (Largest
    first put a dozen look-alike sneakers before a photo's three copies 0.005 apart.)"""
    found = scan.pairs.filter(distance__lte=threshold)
    if mutual < scan.neighbours:
        found = found.filter(rank_a__lte=mutual, rank_b__lte=mutual)
    pairs = list(found.values_list("image_a_id", "image_b_id", "distance"))
    marks = {(a, b): verdict for a, b, verdict in marks_of_criterion.values_list("image_a_id", "image_b_id", "verdict")}
    edges = list(pairs)  # a pair marked distinct is refused below, with every pair that would join its two images
    near = {(a, b) for a, b, _ in edges}
    edges += [(a, b, 0.0) for (a, b), verdict in marks.items()
              if verdict == DuplicateMark.Verdict.DUPLICATE and (a, b) not in near]
    edges.sort(key=lambda edge: edge[2])  # the closest pairs join first; "same picture" marks at 0
    parent: dict[int, int] = {}
    # two images marked different never end in one group, not even through a third: each group's root keeps
    # the roots of the groups it may not join
    apart: dict[int, set[int]] = {}
    for (a, b), verdict in marks.items():
        if verdict == DuplicateMark.Verdict.DISTINCT:
            apart.setdefault(a, set()).add(b)
            apart.setdefault(b, set()).add(a)

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    used = []
    for a, b, d in edges:
        ra, rb = root(a), root(b)
        if ra == rb:
            used.append((a, b, d))
            continue
        if rb in apart.get(ra, ()):
            continue  # it would put two images marked different in one group
        keep, gone = min(ra, rb), max(ra, rb)
        parent[gone] = keep
        for other in apart.pop(gone, set()):
            apart[other].discard(gone)
            apart[other].add(keep)
            apart.setdefault(keep, set()).add(other)
        used.append((a, b, d))
    edges = used
    components: dict[int, list[int]] = {}
    for x in parent:
        components.setdefault(root(x), []).append(x)
    degree: dict[int, int] = {}
    widest: dict[int, float] = {}
    distance_of = {}
    for a, b, d in edges:
        degree[a] = degree.get(a, 0) + 1
        degree[b] = degree.get(b, 0) + 1
        widest[root(a)] = max(widest.get(root(a), 0.0), d)
        distance_of[(a, b)] = d
    out = []
    for ids in components.values():
        reference = max(ids, key=lambda pk: (degree.get(pk, 0), -pk))
        others = [(pk, distance_of.get((min(pk, reference), max(pk, reference)))) for pk in ids if pk != reference]
        others.sort(key=lambda o: (o[1] is None, o[1] or 0.0, o[0]))
        out.append((reference, others, widest.get(root(reference), 0.0)))
    out.sort(key=lambda group: (round(group[2], 3), -len(group[1]), group[0]))
    return out


# --- clusters and the map --------------------------------------------------------------------------


def map_latest(*, version: ModelVersion) -> EmbeddingMap | None:
    """The version's newest finished map, else its newest one (under way or failed, to say so)."""
    maps = EmbeddingMap.objects.filter(version=version).select_related("job", "version")
    return maps.filter(job__status=Job.Status.SUCCEEDED).first() or maps.first()


def map_versions(*, criterion: SimilarityCriterion) -> list[ModelVersion]:
    """The criterion's versions that have a map or could have one (embedded), the active one first."""
    versions = (ModelVersion.objects.filter(criterion=criterion).exclude(index_name="")
                .exclude(status__in=[ModelVersion.Status.RETIRED, ModelVersion.Status.FAILED]))
    return sorted(versions, key=lambda v: (v.status != ModelVersion.Status.ACTIVE, -v.pk))


@dataclass
class MapPoints:
    total: int  # points on the map
    image_ids: np.ndarray  # int32
    xy: np.ndarray  # (n, 2) float32
    clusters: np.ndarray  # uint16: cluster numbers (1…)
    labels: np.ndarray  # uint16: index into label_names, 0 for no label
    collections: np.ndarray  # uint16: index into collection_names
    label_names: list[str]
    collection_names: list[str]


def map_points(*, embedding_map: EmbeddingMap, limit: int,
               box: tuple[float, float, float, float] | None = None) -> MapPoints:
    """Up to ``limit`` of the map's points, a uniform sample (the first by ``sample_rank``), within ``box``
    (x0, y0, x1, y1) when given: zoomed out the page gets a sample of the whole map, zoomed in the points
    in view, so it never holds more than ``limit`` however large the library."""
    where, params = ["p.map_id = %s"], [embedding_map.pk]
    if box is not None:
        where.append("p.x BETWEEN %s AND %s AND p.y BETWEEN %s AND %s")
        params += [box[0], box[2], box[1], box[3]]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.image_id, p.x, p.y, c.number, i.label, i.collection_id FROM ranking_mappoint p "
            "JOIN ranking_mapcluster c ON c.id = p.cluster_id JOIN imagesearch_image i ON i.id = p.image_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.sample_rank LIMIT %s", [*params, limit])
        rows = cursor.fetchall()
    label_codes: dict[str, int] = {"": 0}
    collection_codes: dict[int, int] = {}
    labels = np.fromiter((label_codes.setdefault(r[4], min(len(label_codes), 65535)) for r in rows), np.uint16, len(rows))
    collections = np.fromiter((collection_codes.setdefault(r[5], min(len(collection_codes), 65535)) for r in rows),
                              np.uint16, len(rows))
    names = dict(Collection.objects.filter(pk__in=list(collection_codes)).values_list("pk", "name"))
    return MapPoints(
        total=embedding_map.point_count,
        image_ids=np.fromiter((r[0] for r in rows), np.int32, len(rows)),
        xy=np.array([(r[1], r[2]) for r in rows], dtype=np.float32).reshape(-1, 2),
        clusters=np.fromiter((r[3] for r in rows), np.uint16, len(rows)),
        labels=labels, collections=collections,
        label_names=list(label_codes), collection_names=[names.get(c, "") for c in collection_codes])


def map_selection(*, embedding_map: EmbeddingMap, polygon: list[tuple[float, float]]) -> list[int]:
    """The ids of every image of the map inside the polygon (a lasso; a box is four corners), not only
    of the points the page drew."""
    if len(polygon) < 3:
        return []
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    with connection.cursor() as cursor:
        cursor.execute("SELECT image_id, x, y FROM ranking_mappoint WHERE map_id = %s "
                       "AND x BETWEEN %s AND %s AND y BETWEEN %s AND %s ORDER BY image_id",
                       [embedding_map.pk, min(xs), max(xs), min(ys), max(ys)])
        rows = cursor.fetchall()
    if not rows:
        return []
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    inside = points_in_polygon(np.array([(r[1], r[2]) for r in rows], dtype=np.float64), np.asarray(polygon, float))
    return ids[inside].tolist()


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over the points: a boolean per row of ``points``."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < at)
    return inside


@dataclass
class ClusterRow:
    cluster: MapCluster
    representatives: list[Image]


def map_clusters(*, embedding_map: EmbeddingMap) -> list[ClusterRow]:
    """The map's clusters, largest first, each with the images nearest its centroid."""
    clusters = list(embedding_map.clusters.all())
    wanted = {i for c in clusters for i in c.representative_ids}
    images = Image.objects.select_related("collection", "document").in_bulk(wanted)
    return [ClusterRow(c, [images[i] for i in c.representative_ids if i in images]) for c in clusters]

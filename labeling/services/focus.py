"""Labeling focuses: what an admin offers labelers to work on (the founding study's targeted training).

A focus is the images of a collection or of a label (they follow the library: an image imported
into the collection later is in it), or a set listed when the focus is made: a cluster of a map, a
selection on the map, a saved search's results. Triplets are drawn within it (query and both
candidates), its queue fills on its own (``triplets.triplets_refill(focus=...)``), and the
dashboard shows its judgments and held-out accuracy per version (``labeling.selectors.focus_rows``).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from imagesearch.errors import AppError
from imagesearch.models import Collection, Image
from labeling.models import FocusImage, LabelingFocus
from ranking.models import SimilarityCriterion

MIN_IMAGES = 3  # a triplet's three
NAME_TAKEN = "A focus of this criterion is already called {name!r}."


class FocusNameTaken(AppError):
    """The criterion has a focus of that name already (``focus``): a second click on the same button, often."""

    def __init__(self, focus: LabelingFocus) -> None:
        super().__init__(NAME_TAKEN.format(name=focus.name), field="name")
        self.focus = focus


def focus_create(*, criterion: SimilarityCriterion, name: str, kind: str, collection: Collection | None = None,
                 label: str = "", image_ids: list[int] | None = None, description: str = "",
                 created_by=None) -> LabelingFocus:
    """Make a focus; a listed one (cluster, selection, search) keeps ``image_ids`` that are in the library."""
    name = name.strip()
    if not name:
        raise AppError("Name the focus: labelers choose it by its name.", field="name")
    if len(name) > LabelingFocus._meta.get_field("name").max_length:
        raise AppError("A focus's name is at most 200 characters.", field="name")
    if kind not in LabelingFocus.Kind.values:
        raise AppError(f"A focus is one of: {', '.join(LabelingFocus.Kind.values)}.", field="kind")
    listed = kind in LabelingFocus.LISTED
    if kind == LabelingFocus.Kind.COLLECTION and collection is None:
        raise AppError("Choose the collection to focus on.", field="collection")
    if kind == LabelingFocus.Kind.LABEL and not label.strip():
        raise AppError("Give the label to focus on.", field="label")
    ids = sorted(set(Image.objects.filter(pk__in=image_ids or []).values_list("pk", flat=True))) if listed else []
    if listed and len(ids) < MIN_IMAGES:
        raise AppError(f"A focus needs at least {MIN_IMAGES} images; this one has {len(ids)}.", field="images")
    if kind == LabelingFocus.Kind.LABEL:
        found = Image.objects.filter(label=label.strip()).count()
        if found < MIN_IMAGES:  # a typo, most likely: say which labels there are
            known = list(Image.objects.exclude(label="").order_by("label").values_list("label", flat=True)
                         .distinct()[:12])
            raise AppError(f"{found} image{'s' if found != 1 else ''} have the label “{label.strip()}”: a focus needs "
                           f"at least {MIN_IMAGES}. Labels in the library: {', '.join(known) or 'none yet'}.",
                           field="label")
    if kind == LabelingFocus.Kind.COLLECTION and collection.images.count() < MIN_IMAGES:
        raise AppError(f"The collection “{collection.name}” has fewer than {MIN_IMAGES} images: import into it first.",
                       field="collection")
    try:
        with transaction.atomic():
            focus = LabelingFocus.objects.create(
                criterion=criterion, name=name, kind=kind, description=description, created_by=created_by,
                collection=collection if kind == LabelingFocus.Kind.COLLECTION else None,
                label=label.strip() if kind == LabelingFocus.Kind.LABEL else "")
            for start in range(0, len(ids), 10_000):
                FocusImage.objects.bulk_create(FocusImage(focus=focus, image_id=i) for i in ids[start:start + 10_000])
    except IntegrityError:
        raise FocusNameTaken(LabelingFocus.objects.get(criterion=criterion, name=name)) from None
    return focus


def focus_make(*, criterion: SimilarityCriterion, kind: str, name: str = "", collection: int | None = None,
               label: str = "", cluster: int | None = None, image: int | None = None, count: int = 200,
               images: list[int] | None = None, created_by=None) -> LabelingFocus:
    """A focus of any kind from what a form or the API gives: ids, not objects."""
    if kind == LabelingFocus.Kind.CLUSTER:
        if cluster is None:
            raise AppError("Choose the cluster to focus on.", field="cluster")
        return focus_from_cluster(criterion=criterion, cluster_id=cluster, name=name, created_by=created_by)
    if kind == LabelingFocus.Kind.SEARCH:
        if image is None:
            raise AppError("Choose the image whose search to keep.", field="image")
        return focus_from_search(criterion=criterion, image_id=image, count=count, name=name, created_by=created_by)
    chosen = Collection.objects.filter(pk=collection).first() if collection is not None else None
    if collection is not None and chosen is None:
        raise AppError("There is no such collection.", field="collection")
    return focus_create(criterion=criterion, name=name, kind=kind, collection=chosen, label=label, image_ids=images,
                        created_by=created_by,
                        description=f"{len(images or []):,} images chosen by hand." if kind == LabelingFocus.Kind.SELECTION
                        else "")


def focus_from_cluster(*, criterion: SimilarityCriterion, cluster_id: int, name: str = "",
                       created_by=None) -> LabelingFocus:
    """A focus of a map cluster's images."""
    from ranking.models import MapCluster, MapPoint

    cluster = MapCluster.objects.select_related("map").filter(pk=cluster_id).first()
    if cluster is None:
        raise AppError("There is no such cluster.", field="cluster")
    ids = list(MapPoint.objects.filter(cluster=cluster).values_list("image_id", flat=True))
    return focus_create(criterion=criterion, name=name or f"Cluster {cluster.number} of version {cluster.map.version_id}",
                        kind=LabelingFocus.Kind.CLUSTER, image_ids=ids, created_by=created_by,
                        description=f"The {len(ids):,} images of cluster {cluster.number} on the map of version "
                                    f"{cluster.map.version_id}.")


def focus_from_search(*, criterion: SimilarityCriterion, image_id: int, count: int = 200, name: str = "",
                      created_by=None) -> LabelingFocus:
    """A saved search: the image and its ``count`` nearest images under the criterion's active version."""
    from imagesearch.selectors import SearchQuery, SearchRefused, search_answer

    if not 2 <= count <= 1000:
        raise AppError("A saved search keeps from 2 to 1,000 results.", field="count")
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise AppError("There is no such image.", field="image")
    try:
        answer = search_answer(query=SearchQuery(image_id=image_id), criterion=criterion, k=count)
    except SearchRefused as exc:
        raise AppError(str(exc)) from None
    ids = [image_id] + [hit.image.pk for hit in answer.hits]
    return focus_create(criterion=criterion, name=name or f"Like {image.title}"[:200], kind=LabelingFocus.Kind.SEARCH,
                        image_ids=ids, created_by=created_by,
                        description=f"Image {image_id} and its {len(ids) - 1} nearest images "
                                    f"under version {answer.version.pk}.")


def focus_archive(*, focus: LabelingFocus, archived: bool = True) -> LabelingFocus:
    """Stop (or start again) offering the focus to labelers; its triplets and judgments stay."""
    LabelingFocus.objects.filter(pk=focus.pk).update(archived=archived)
    focus.archived = archived
    return focus

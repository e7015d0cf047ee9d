"""Factories for test data. Images go through the real ingest service, files included."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from imagesearch.models import Collection, Image
from imagesearch.services.import_files import IMPORTED
from imagesearch.services.ingest import image_ingest_bytes
from tests import images


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def permissions(user, create, extracted, **kwargs):
        from django.contrib.auth.models import Permission

        user.save()
        for codename in extracted or []:
            app_label, perm = codename.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=perm))

    @factory.post_generation
    def roles(user, create, extracted, **kwargs):
        """``UserFactory(roles=["labeler"])``: the real role groups (imagesearch.services.accounts)."""
        from imagesearch.services.accounts import user_roles_set

        if extracted:
            user_roles_set(user=user, roles=list(extracted))


class CollectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Collection
        django_get_or_create = ["name"]

    name = factory.Sequence(lambda n: f"Collection {n}")


_seed = iter(range(10_000_000))


def make_image(*, collection: Collection | None = None, label: str = "", data: bytes | None = None,
               name: str = "photo.jpg") -> Image:
    """Import a freshly generated (unique) picture and return its Image row."""
    collection = collection or CollectionFactory()
    outcome = image_ingest_bytes(
        data=data or images.jpeg(seed=next(_seed)), original_name=name, collection=collection, label=label
    )
    assert outcome.status == IMPORTED, outcome.message
    return Image.objects.get(pk=outcome.image_ids[0])


def make_triplet(*, criterion=None, query: int | None = None, candidates: tuple[int, int] | None = None,
                 collection: Collection | None = None):
    """A triplet of the criterion (the default one if not given), through the labeling service (its
    candidates in id order); images not given are freshly imported ones."""
    from labeling.services.triplets import triplet_get_or_create
    from ranking.services.criteria import criterion_default

    criterion = criterion or criterion_default()
    if query is None:
        query = make_image(collection=collection).pk
    if candidates is None:
        candidates = (make_image(collection=collection).pk, make_image(collection=collection).pk)
    return triplet_get_or_create(criterion=criterion, query_id=query, candidate_ids=candidates)


def make_judgment(*, triplet=None, closer: int | None = None, answer: str | None = None, user=None,
                  source: str | None = None, seconds: float | None = None, criterion=None,
                  query: int | None = None, candidates: tuple[int, int] | None = None):
    """One judgment, through the labeling service: ``closer``, the candidate judged more similar to the
    query (or ``answer`` as given: "a", "b" or "unsure"), on ``triplet`` or on a triplet made of
    ``query`` and ``candidates`` (``make_triplet``). Simulated unless ``source`` says otherwise."""
    from labeling.models import TripletJudgment
    from labeling.services.judgments import judgment_record

    if triplet is None:
        triplet = make_triplet(criterion=criterion, query=query, candidates=candidates)
    if answer is None:
        closer = triplet.candidate_a_id if closer is None else closer
        answer = "a" if triplet.candidate_a_id == closer else "b"
    return judgment_record(triplet=triplet, answer=answer, user=user, seconds=seconds,
                           source=source or TripletJudgment.Source.SIMULATED)


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A model version row as the dashboard and the selectors read it (no weights: for tests that need
    none; a trained one comes from ``training_start`` and ``version_train``)."""

    class Meta:
        model = "ranking.ModelVersion"

    criterion = factory.LazyFunction(lambda: _criterion_default())
    kind = "autoencoder"
    status = "ready"
    hyperparameters = factory.LazyFunction(dict)


def _criterion_default():
    from ranking.services.criteria import criterion_default

    return criterion_default()

"""Factories for test data. Images go through the real ingest service, files included."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from imagesearch.models import Collection, Image
from imagesearch.services.ingest import IMPORTED, image_ingest_bytes
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

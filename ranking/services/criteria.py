"""Similarity criteria: a fresh install has one, and most never need another."""

from __future__ import annotations

from ranking.models import DEFAULT_CRITERION_NAME, DEFAULT_QUESTION, SimilarityCriterion


def criterion_default() -> SimilarityCriterion:
    """The criterion used when none is named: the oldest one, created on first use."""
    criterion = SimilarityCriterion.objects.order_by("id").first()
    if criterion is None:
        criterion, _ = SimilarityCriterion.objects.get_or_create(
            name=DEFAULT_CRITERION_NAME, defaults={"question": DEFAULT_QUESTION}
        )
    return criterion


def criterion_resolve(criterion: SimilarityCriterion | int | str | None) -> SimilarityCriterion:
    """A criterion from an instance, an id, a name, or None (the default)."""
    if criterion is None:
        return criterion_default()
    if isinstance(criterion, SimilarityCriterion):
        return criterion
    if isinstance(criterion, int) or str(criterion).isdigit():
        return SimilarityCriterion.objects.get(pk=int(criterion))
    return SimilarityCriterion.objects.get(name=criterion)


def criterion_create(*, name: str, question: str = DEFAULT_QUESTION, description: str = "") -> SimilarityCriterion:
    criterion = SimilarityCriterion(name=name, question=question, description=description)
    criterion.full_clean()
    criterion.save()
    return criterion

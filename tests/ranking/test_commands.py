"""The management commands a user runs: train, refresh_embeddings, activate_model, search."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from imagesearch.models import Image

from ranking.models import ModelVersion
from tests import images

pytestmark = pytest.mark.django_db

TINY = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "width=8", "--set", "embedding_dim=8"]


def test_train_refresh_activate_and_search_from_the_command_line(stripes_library, capsys, tmp_path):
    with pytest.raises(CommandError, match="no active model"):
        call_command("search", "1")

    call_command("train", "--kind", "autoencoder", "--inline", *TINY)
    out = capsys.readouterr()
    first = ModelVersion.objects.get()
    assert "is active" in out.out and first.status == ModelVersion.Status.ACTIVE

    call_command("train", "--kind", "autoencoder", "--inline", *TINY, "--set", "seed=3")
    second = ModelVersion.objects.exclude(pk=first.pk).get()
    assert second.status == ModelVersion.Status.READY  # a second autoencoder waits for an admin
    call_command("activate_model", str(second.pk))
    call_command("activate_model", "--list")
    out = capsys.readouterr().out
    assert f"Version {second.pk} of 'Similarity' is active." in out
    lines = out.splitlines()
    header = next(n for n, line in enumerate(lines) if line.split()[:3] == ["version", "kind", "status"])
    assert "held-out accuracy" in lines[header] and "held-out judged triplets" in lines[header - 1]
    rows = {int(line.split()[0]): line for line in lines[header + 1:]}
    assert list(rows) == [second.pk, first.pk]  # newest first
    assert "ready" in rows[first.pk] and "16 / 16" in rows[first.pk] and rows[first.pk].endswith("—")

    query = stripes_library["v"][0]
    call_command("search", str(query), "--k", "4")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and f"#{query} " not in "".join(lines[2:])
    assert lines[1].split() == ["rank", "closeness", "cosine", "image"]  # the columns are labelled
    assert "top " in lines[2]  # closeness against the version's random pairs

    upload = tmp_path / "q.png"
    upload.write_bytes(images.stripes(False, seed=77))
    call_command("search", str(upload), "--k", "2", "--label", "h")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("[h]" in line for line in lines[2:])

    with pytest.raises(CommandError, match="No library image 999999"):
        call_command("search", "999999")
    copy = tmp_path / "copy.png"  # a file with the bytes of a library image searches with that image
    copy.write_bytes((settings.MEDIA_ROOT / Image.objects.get(pk=query).file.name).read_bytes())
    call_command("search", str(copy), "--k", "3")
    assert f"#{query} " not in capsys.readouterr().out  # never returned as its own neighbour

    call_command("refresh_embeddings", str(second.pk), "--inline")
    assert "Embedding 0 images" in capsys.readouterr().out

    with pytest.raises(CommandError, match="unknown hyperparameters"):
        call_command("train", "--kind", "autoencoder", "--inline", "--set", "epoch=1")
    with pytest.raises(CommandError, match="is active"):
        call_command("activate_model", str(second.pk), "--retire")


def test_train_resume_finishes_a_version_left_training(stripes_library, capsys):
    from ranking.services.criteria import criterion_default
    from ranking.services.training import training_start

    version = training_start(criterion=criterion_default(), kind="autoencoder", dispatch=False,
                             hyperparameters={"epochs": 1, "batch_size": 8, "width": 8, "embedding_dim": 8})
    call_command("train", "--resume", str(version.pk), "--inline")
    assert ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.ACTIVE
    with pytest.raises(CommandError, match="not waiting for training"):
        call_command("train", "--resume", str(version.pk), "--inline")

"""The torch code alone: networks, a tiny overfit, checkpoints and resuming. No database."""

from __future__ import annotations

import math

import pytest
import torch

from ranking.checkpoints import load_checkpoint, load_model, save_model
from ranking.nets import ConvAutoencoder, DeepRankingNet
from ranking.inference import embed_images
from ranking.metrics import triplet_accuracy
from ranking.training import TrainConfig, fit_autoencoder, fit_ranking


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _tiny_ranking_net(size: int = 16) -> DeepRankingNet:
    torch.manual_seed(0)
    return DeepRankingNet("resnet_tiny", embedding_dim=16, image_size=size, shallow_channels=8)


@pytest.mark.parametrize("size", [16, 72])
def test_networks_give_unit_embeddings_of_the_configured_size(size):
    x = torch.rand(2, 3, size, size)
    net = DeepRankingNet("resnet_tiny", embedding_dim=24, image_size=size, shallow_channels=8).eval()
    ae = ConvAutoencoder(image_size=size if size % 16 == 0 else 64, embedding_dim=12).eval()
    with torch.no_grad():
        emb = net(x)
        ae_x = torch.rand(2, 3, ae.image_size, ae.image_size)
        assert ae(ae_x).shape == ae_x.shape
        ae_emb = ae.embed(ae_x)
    assert emb.shape == (2, 24) and ae_emb.shape == (2, 12)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(ae_emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_backbone_weights_load_from_a_local_file(tmp_path):
    import torchvision  # here: its import takes a second and most test processes never need it

    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    net = DeepRankingNet("resnet18", image_size=224, weights=tmp_path / "resnet18.pth")
    assert net.weights_used == str(tmp_path / "resnet18.pth")
    assert torch.equal(net.deep.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_missing_imagenet_weights_fall_back_to_random_init(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache: nothing is downloaded
    assert DeepRankingNet("resnet18", image_size=32, weights="imagenet").weights_used == "random"


def test_a_tiny_model_overfits_a_handful_of_triplets():
    images = _images(12)
    # each triplet contradicts what random features would say about half the time
    triplets = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [1, 0, 5], [4, 3, 8], [7, 6, 11], [10, 9, 2]])
    model = _tiny_ranking_net()
    cfg = TrainConfig(epochs=40, batch_size=8, lr=3e-3, warmup_epochs=0, margin=0.5, in_batch_weight=0,
                      augment=False, precision="fp32", weight_decay=0)
    fit_ranking(model, images, triplets, cfg)
    model.eval()  # the final check uses running BatchNorm statistics, as search will
    assert triplet_accuracy(embed_images(model, images, precision="fp32"), triplets) == 1.0


def test_training_resumes_from_its_checkpoint_and_ends_where_an_unbroken_run_does(tmp_path):
    images = _images(24, seed=1)
    triplets = torch.randint(0, 24, (32, 3), generator=torch.Generator().manual_seed(2))
    base = dict(batch_size=16, lr=1e-3, precision="fp32", warmup_epochs=0)

    unbroken = _tiny_ranking_net()
    fit_ranking(unbroken, images, triplets, TrainConfig(epochs=3, **base))

    interrupted = _tiny_ranking_net()
    ckpt = tmp_path / "run.ckpt"
    # a run "killed" after two epochs: its checkpoint says epoch 1 is done
    first = fit_ranking(interrupted, images, triplets, TrainConfig(epochs=3, checkpoint_path=str(ckpt), **base),
                        on_epoch=lambda epoch, m: _stop_after(epoch, 1))
    assert first is None or load_checkpoint(ckpt)["epoch"] == 1
    resumed_model = _tiny_ranking_net()
    resumed = fit_ranking(resumed_model, images, triplets, TrainConfig(epochs=3, checkpoint_path=str(ckpt), **base))

    assert resumed.resumed_from_epoch == 2 and len(resumed.history) == 3
    for name, tensor in unbroken.state_dict().items():
        assert torch.allclose(tensor.float(), resumed_model.state_dict()[name].float(), atol=1e-5), name


class _Killed(Exception):
    pass


def _stop_after(epoch: int, last: int) -> None:
    if epoch >= last:
        raise _Killed


@pytest.fixture(autouse=True)
def _swallow_kill(monkeypatch):
    """Let a test stop a training run from its epoch callback, as a dying worker would."""
    import ranking.training as training

    original = training._fit

    def fit(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except _Killed:
            return None

    monkeypatch.setattr(training, "_fit", fit)


def test_autoencoder_learns_to_reconstruct():
    images = _images(64, size=16, seed=3)
    torch.manual_seed(0)
    model = ConvAutoencoder(image_size=16, embedding_dim=8, width=8)
    result = fit_autoencoder(model, images, TrainConfig(epochs=8, batch_size=16, lr=3e-3, precision="fp32"))
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_saved_models_reload_with_weights_only_and_embed_identically(tmp_path):
    images = _images(5)
    model = _tiny_ranking_net().eval()
    params = {"backbone": "resnet_tiny", "embedding_dim": 16, "image_size": 16, "shallow_channels": 8}
    sha = save_model(model, tmp_path / "v1.pt", kind="ranking", params=params)
    assert len(sha) == 64 and not list(tmp_path.glob("*.tmp"))
    reloaded, kind, saved_params = load_model(tmp_path / "v1.pt")
    assert kind == "ranking" and saved_params == params
    assert torch.allclose(embed_images(model, images, precision="fp32"), embed_images(reloaded, images, precision="fp32"))


def test_judged_precision_at_k_on_condensed_lists():
    from ranking.metrics import judged_precision_at_k

    # query 0 at (1, 0); image 1 near it, 2 farther, 3 opposite
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [-1.0, 0.0]])
    right = torch.tensor([[0, 1, 3], [0, 2, 3]])  # 1 and 2 judged relevant, 3 not: ranked 1, 2, 3
    assert judged_precision_at_k(vectors, right, k=2) == 1.0
    assert judged_precision_at_k(vectors, right, k=10) == pytest.approx(2 / 3)
    wrong = torch.tensor([[0, 3, 1]])  # the far one judged more similar: the model ranks it last
    assert judged_precision_at_k(vectors, wrong, k=1) == 0.0
    # a candidate judged both ways counts as relevant only: with no other candidate the query is left out
    assert math.isnan(judged_precision_at_k(vectors, torch.tensor([[0, 1, 3], [0, 3, 1]]), k=1))

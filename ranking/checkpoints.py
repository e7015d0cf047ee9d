"""Writing and reading weights files: atomic, and loadable with ``weights_only=True``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ranking.nets import build_model


def save_atomic(obj: dict, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_model(model: nn.Module, path: str | Path, *, kind: str, params: dict) -> str:
    """Write a model's weights with what is needed to rebuild it; returns the file's SHA-256."""
    save_atomic({"kind": kind, "params": params, "state_dict": cpu_state(model)}, path)
    return file_sha256(path)


def load_model(path: str | Path) -> tuple[nn.Module, str, dict]:
    """Rebuild a model saved by ``save_model``: (model in eval mode, kind, params)."""
    saved = load_checkpoint(path)
    params = dict(saved["params"])
    # Pretrained weights were only a starting point: the saved state replaces them.
    if "weights" in params:
        params["weights"] = None
    model = build_model(saved["kind"], **params)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["kind"], saved["params"]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

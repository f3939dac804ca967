"""Inference speed: the batched path against a naive per-slice fp32 loop, measured side by side.

Prints slices/s of both, their ratio, the end-to-end study time, and the U-Net's achieved FLOP/s as a
fraction of a large matmul's FLOP/s on the same device. Rounds alternate between the two paths so
that machine noise hits both alike; medians are reported.

    python bench/inference.py [--model DIR] [--study FILE] [--rounds 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sagemaker"))

from discscope.artifact import load_weights, resolve_model_dir  # noqa: E402
from discscope.io import Volume, read_study  # noqa: E402
from discscope.models import UNet2D  # noqa: E402
from discscope.phantom import generate  # noqa: E402
from discscope.predictor import Predictor, segmentation_batch_size  # noqa: E402
from discscope.preprocess import Grid, normalize  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real-ivd" / "ivd20.mha"


def study(path: str | None, n_slices: int = 67) -> tuple[Volume, str]:
    if path:
        return read_study(path), path
    if REAL.is_file():
        return read_study(REAL), f"{REAL.name} (real, 67 slices)"
    image, _, _, spacing = generate(0)
    reps = -(-n_slices // image.shape[0])
    arr = np.concatenate([image] * reps)[:n_slices].astype(np.float32)
    return Volume(arr, spacing, "phantom"), f"phantom seed 0 tiled to {n_slices} slices"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_unet(model_dir: str, device: torch.device) -> torch.nn.Module:
    """The same weights loaded the plain way: BatchNorm kept, default memory layout."""
    model_path, tmp = resolve_model_dir(model_dir)
    weights, _ = load_weights(model_path)
    unet = UNet2D(**weights["unet_config"])
    unet.load_state_dict(weights["unet"])
    if tmp:
        tmp.cleanup()
    return unet.to(device).eval()


def naive(unet: torch.nn.Module, slices: np.ndarray, device: torch.device) -> np.ndarray:
    """One slice per forward pass, fp32, no autocast: what a first implementation would do."""
    out = []
    with torch.no_grad():
        for s in slices:
            x = torch.from_numpy(s[None, None].copy()).to(device)
            out.append(torch.sigmoid(unet(x))[0, 0].cpu().numpy())
    return np.stack(out)


def matmul_flops(device: torch.device, n: int = 4096, reps: int = 5) -> float:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "baseline"))
    parser.add_argument("--study")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device")
    args = parser.parse_args()

    predictor = Predictor(args.model, args.device)
    volume, what = study(args.study)
    grid = Grid.for_slices(volume.shape[1:], volume.spacing[1], volume.spacing[2])
    slices = grid.to_model(normalize(volume.array))
    n = len(slices)
    print(f"device {predictor.device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"study: {what}; model grid {slices.shape[1]}x{slices.shape[2]}, {n} slices")

    plain = naive_unet(args.model, predictor.device)
    predictor.segment(slices[:2])  # warm-up both paths
    naive(plain, slices[:2], predictor.device)
    t_batched, t_naive, t_study = [], [], []
    for _ in range(args.rounds):
        sync(predictor.device)
        t = time.perf_counter()
        fast = predictor.segment(slices)
        sync(predictor.device)
        t_batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        slow = naive(plain, slices, predictor.device)
        sync(predictor.device)
        t_naive.append(time.perf_counter() - t)
        t = time.perf_counter()
        predictor.predict(volume)
        t_study.append(time.perf_counter() - t)
    agree = float(np.mean((fast > 0.5) == (slow > 0.5)))
    b, s, e = statistics.median(t_batched), statistics.median(t_naive), statistics.median(t_study)

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        plain(torch.from_numpy(slices[:1, None]).to(predictor.device))  # the network's work, before folding
    flops = counter.get_total_flops() * n
    peak = matmul_flops(predictor.device)
    print(f"batched path : {b:7.3f} s  {n / b:7.1f} slices/s")
    print(f"naive loop   : {s:7.3f} s  {n / s:7.1f} slices/s")
    print(f"speed-up     : {s / b:7.2f}x  (voxel agreement of the two paths {agree:.4f}; "
          f"batch {segmentation_batch_size(predictor.device)}, BatchNorm folded, channels-last"
          f"{', fp16 autocast' if predictor.device.type == 'cuda' else ''})")
    print(f"whole study  : {e:7.3f} s end to end (read excluded: normalise, resample, segment, label, classify)")
    print(f"U-Net        : {flops / 1e9:.1f} GFLOP per study, {flops / b / 1e9:.1f} GFLOP/s achieved; "
          f"large matmul {peak / 1e9:.1f} GFLOP/s; fraction {flops / b / peak:.3f}")


if __name__ == "__main__":
    main()

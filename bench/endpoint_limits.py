"""The largest study the input limits allow, through the endpoint, against SageMaker's real-time limits.

SageMaker real-time endpoints answer within 60 s and return at most 6 MB. This builds a study at the
voxel limit (`discscope.io.Limits.max_voxels`, 128 Mi voxels: 512 sagittal slices of 512 x 512,
0.5 mm in-plane, from a phantom resampled up), stores it in S3 (a moto server), and sends it
the way the Infer step does (`{"s3_uri", "output_uri"}`), in one run:

    python bench/endpoint_limits.py [--model models/baseline] [--slices 512] [--side 512]

It prints the wall time (S3 read, analysis, rendering, S3 writes) against 60 s, the response size
with S3 keys against 6 MB, and what the response would have been with the artifacts inline.
The time is this machine's CPU; the endpoint runs on a GPU (see the README for what was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import boto3
import SimpleITK as sitk
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.aws import free_port  # noqa: E402
from discscope.io import DEFAULT_LIMITS  # noqa: E402
from discscope.phantom import write_case  # noqa: E402
from discscope.server import ModelHost  # noqa: E402
from discscope.serving import INVOCATION_TIMEOUT_S, RESPONSE_LIMIT_BYTES  # noqa: E402


def largest_study(folder: Path, slices: int, side: int) -> Path:
    """A phantom resampled to slices x side x side voxels (sagittal slices, 0.5 mm in-plane)."""
    write_case(folder, "base", seed=7)
    image = sitk.ReadImage(str(folder / "base.mha"))
    size = image.GetSize()  # (x, y, z) as SimpleITK orders it
    target = [side, side, slices] if size[2] == min(size) else [slices, side, side]
    spacing = [s * n / t for s, n, t in zip(image.GetSpacing(), size, target)]
    big = sitk.Resample(image, target, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                        image.GetDirection(), 0.0, image.GetPixelID())
    path = folder / "largest.mha"
    sitk.WriteImage(big, str(path), useCompression=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "baseline"))
    parser.add_argument("--slices", type=int, default=512)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    voxels = args.slices * args.side * args.side
    print(f"study: {args.slices} slices x {args.side} x {args.side} = {voxels / 2**20:.0f} Mi voxels "
          f"(limit {DEFAULT_LIMITS.max_voxels / 2**20:.0f} Mi)")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    s3 = boto3.client("s3")
    try:
        s3.create_bucket(Bucket="studies")
        with tempfile.TemporaryDirectory() as tmp:
            path = largest_study(Path(tmp), args.slices, args.side)
            s3.upload_file(str(path), "studies", "uploads/bench/largest.mha")
            print(f"file: {path.stat().st_size / 2**20:.1f} MiB (compressed MHA)")
        host = ModelHost(args.model)
        request = json.dumps({"s3_uri": "s3://studies/uploads/bench/largest.mha",
                              "output_uri": "s3://studies/results/bench/"}).encode()
        t0 = time.perf_counter()
        answer = host.invoke(request, "application/json")
        wall = time.perf_counter() - t0
        response = len(json.dumps(answer).encode())
        written = {name: s3.head_object(Bucket="studies", Key=key)["ContentLength"]
                   for name, key in answer["artifacts"].items()}
        inline = response + sum(4 * (n + 2) // 3 for n in written.values())  # base64 of each artifact
        print(f"discs found: {len(answer['discs'])}; endpoint timings (ms): {answer['timings_ms']}")
        print(f"wall time   : {wall:7.1f} s   limit {INVOCATION_TIMEOUT_S} s   ratio {wall / INVOCATION_TIMEOUT_S:.2f} (this CPU)")
        print(f"response    : {response:7d} B   limit {RESPONSE_LIMIT_BYTES} B   ratio {response / RESPONSE_LIMIT_BYTES:.4f} (S3 keys)")
        print(f"inline would: {inline:7d} B   ratio {inline / RESPONSE_LIMIT_BYTES:.2f} "
              f"({', '.join(f'{k} {v / 2**20:.2f} MiB' for k, v in written.items())})")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bad input through the endpoint's path: how long until the answer, and how much memory on the way.

Crafted files (the ones that used to read files of the server, blow up to gigabytes or come back as
"0 discs") go one by one through `ModelHost.invoke` (read, check, analyse, render) in a fresh
process each, with the model loaded and warmed first; each line gives the answer, the wall time and
the peak resident memory above the warmed process (Linux VmHWM, reset before the request once the
warm-up's freed memory is handed back with malloc_trim), and compares both with a valid study
measured the same way in the same run. It ends with the worst case of the refused files against the
budget: under a second, and under 64 MB + 2x the file's size.

    python bench/hostile_input.py [--model DIR] [--only NAME...] [--old GIT_REV]

`--old REV` runs the same files through the code at a git revision too (a fresh process each,
capped at --old-seconds and --old-memory-gb), for a before/after.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 1.0
BUDGET_FIXED_MB = 64.0
REFERENCE = REPO.parent / "shared" / "data" / "real-ivd" / "ivd20.mha"


# --- the files ---------------------------------------------------------------------------------


def mha(fields: dict[str, str], data: bytes) -> bytes:
    header = {"ObjectType": "Image", "NDims": "3", "BinaryData": "True", "BinaryDataByteOrderMSB": "False",
              "CompressedData": "False", "ElementSpacing": "1 1 1", "DimSize": "256 256 2",
              "ElementType": "MET_UCHAR"} | fields
    text = "".join(f"{k} = {v}\n" for k, v in header.items() if k != "ElementDataFile")
    return (text + f"ElementDataFile = {fields.get('ElementDataFile', 'LOCAL')}\n").encode() + data


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def nifti_header(dims: tuple[int, ...], datatype: int, bitpix: int) -> bytes:
    header = bytearray(352)
    header[0:4] = struct.pack("<i", 348)
    header[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    header[70:74] = struct.pack("<2h", datatype, bitpix)
    header[76:92] = struct.pack("<4f", 1, 1, 1, 1)
    header[108:112] = struct.pack("<f", 352)
    header[344:348] = b"n+1\0"
    return bytes(header)


def gz_stream(parts: list[tuple[bytes, int]]) -> bytes:
    """gzip of each (chunk, times) in turn, without building the uncompressed bytes."""
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [c.compress(chunk) for chunk, times in parts for _ in range(times)]
    return b"".join(out) + c.flush()


def make_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, why it is hostile)"""
    import numpy as np

    files: dict[str, tuple[bytes, str]] = {}
    secret = "/etc/services"
    pixels = np.random.default_rng(0).integers(0, 255, 256 * 256 * 2, dtype=np.uint8).tobytes()
    files["mha_40mm_pixels"] = (mha({"ElementSpacing": "40 40 4"}, pixels), "128 KB MHA, 40 mm pixels (was 128 s, +3.2 GB)")
    files["mha_200mm_pixels"] = (mha({"ElementSpacing": "200 200 4"}, pixels), "200 mm pixels (was a 9.5 GiB allocation)")
    files["mha_zero_spacing"] = (mha({"ElementSpacing": "0 1 1"}, pixels), "zero spacing (was raw ITK text)")
    files["mha_negative_spacing"] = (mha({"ElementSpacing": "-1 1 1"}, pixels), "negative spacing")
    files["mha_model_grid"] = (mha({"DimSize": "256 256 512", "ElementSpacing": "4 4 1", "CompressedData": "True"},
                                   zlib.compress(bytes(256 * 256 * 512), 1)), "plausible 4 mm pixels, 512 slices of 1 m")
    # sized so that the server file fills the image: what the old reader showed as the preview's pixels
    fits = {"DimSize": f"64 {os.path.getsize(secret) // 64} 1", "ElementDataFile": secret}
    files["mha_external_after_1k"] = (mha({f"Comment{i}": "x" * 60 for i in range(20)} | fits, b""),
                                      "ElementDataFile after the first KiB names a server file")
    raw_header = mha(fits, b"")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.mhd", raw_header)
        zf.writestr("services", bytes(256 * 256 * 2))
    files["zip_mhd_external"] = (buf.getvalue(), ".mhd in a ZIP naming /etc/services, decoy member beside it")
    stream = zlib.compress(pixels)
    files["mha_gz_dims_twice_data"] = (mha({"DimSize": "256 256 4", "CompressedData": "True"}, stream),
                                       "compressed, DimSize twice the data")
    files["mha_gz_corrupt_tail"] = (mha({"CompressedData": "True"}, stream[:-4] + b"\0\0\0\0"), "compressed, corrupt tail")
    files["mha_uchar_over_int16"] = (mha({}, pixels * 2), "MET_UCHAR header over int16 data")
    files["mha_truncated_header"] = (mha({}, pixels)[:120], "header cut before ElementDataFile")
    nan = np.full(64 * 256 * 256, np.nan, np.float32).tobytes()
    files["mha_all_nan"] = (mha({"DimSize": "256 256 64", "ElementType": "MET_FLOAT"}, nan), "16 MB of NaN")
    files["nii_gz_1gib"] = (gz_stream([(nifti_header((512, 512, 512), 64, 64), 1), (bytes(1 << 20), 1024)]),
                            "a .nii.gz expanding to 1 GiB of float64 (a 1 MB one was 151 s, +2.3 GB)")
    small = nifti_header((256, 256, 8), 2, 8)
    files["nii_gz_trailing_256mb"] = (gz_stream([(small, 1), (bytes(256 * 256 * 8), 1), (bytes(1 << 20), 256)]),
                                      "valid 512 KB image, then 256 MB more in the gzip stream")
    idat = zlib.compress(bytes(11501) * 11500, 9)
    files["png_11500x11500"] = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 11500, 11500, 8, 0, 0, 0, 0))
                                + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""), "128 KB PNG of 11500^2 (was 17 s, +3 GB)")
    files["jpeg_500_scans"] = (b"\xff\xd8\xff\xc2" + struct.pack(">HBHHB", 11, 8, 512, 512, 1) + b"\x01\x11\x00"
                               + (b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x00\x00\x3f\x00" + bytes(64)) * 500
                               + b"\xff\xd9", "progressive JPEG with 500 scans")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("bomb.png", "w", force_zip64=True) as fh:
            for _ in range(600):
                fh.write(bytes(1 << 20))
    files["zip_600mb_member"] = (buf.getvalue(), "ZIP whose member expands to 600 MB")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(5000):
            zf.writestr(f"s{i}.png", b"\x89PNG")
    files["zip_5000_members"] = (buf.getvalue(), "5000 members")
    blank = np.full(32 * 256 * 256, 9, np.uint8).tobytes()
    files["blank_volume"] = (mha({"DimSize": "256 256 32", "ElementSpacing": "0.9 0.9 4"}, blank),
                             "a valid volume with nothing in it: analysed, NO_SPINE_FOUND")
    out = {}
    for name, (data, why) in files.items():
        path = folder / name
        path.write_bytes(data)
        out[name] = (path, why)
    return out


# --- one measurement, in a fresh process -------------------------------------------------------


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(path: str, model: str, warm: str) -> dict:
    """In the child: load and warm the model, reset the peak, answer one request."""
    from discscope.errors import DiscScopeError
    from discscope.server import ModelHost

    host = ModelHost(model)
    host.invoke(Path(warm).read_bytes(), "application/octet-stream", "filename=warm.mha")
    print(json.dumps({"ready": time.time()}), flush=True)  # a crash below is timed from here
    data = Path(path).read_bytes()  # the request body, as the server holds it before invoke
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so that new allocations show in RSS
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = vm_rss_mb()
    start = time.perf_counter()
    try:
        result = host.invoke(data, "application/octet-stream", f"filename={Path(path).name}")
        answer = f"{len(result['discs'])} discs"
    except DiscScopeError as exc:
        answer = exc.code
    except MemoryError:
        answer = "MemoryError"
    seconds = time.perf_counter() - start
    return {"answer": answer, "seconds": seconds, "peak_mb": max(0.0, vm_hwm_mb() - before)}


def run_child(path: Path, model: str, warm: Path, pythonpath: str | None = None, seconds: float | None = None,
              memory_gb: float | None = None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    limit = None
    if memory_gb:
        cap = int(memory_gb * 2**30)

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    cmd = [sys.executable, __file__, "--child", str(path), "--model", model, "--warm", str(warm)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=limit)
    ready = json.loads(proc.stdout.readline() or '{"ready": 0}')["ready"]
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"answer": "still running", "seconds": time.time() - ready, "peak_mb": float("nan")}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:  # out of memory under the cap, or an abort
        tail = (err.strip().splitlines() or ["?"])[-1]
        answer = (f"over {memory_gb:.0f} GB cap" if memory_gb and ("alloc" in tail or "Memory" in tail)
                  else f"crashed: {tail[:30]}")
        return {"answer": answer, "seconds": time.time() - ready, "peak_mb": float("nan"), "error": tail[:80]}
    return json.loads(lines[-1])


def old_tree(rev: str, folder: Path) -> str:
    subprocess.run(f"git -C {REPO} archive {rev} | tar -x -C {folder}", shell=True, check=True)
    return f"{folder / 'sagemaker'}:{folder}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "baseline"))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--old", help="also run the files through the code at this git revision")
    parser.add_argument("--old-seconds", type=float, default=60.0)
    parser.add_argument("--old-memory-gb", type=float, default=4.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--warm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.model, args.warm)), flush=True)
        return 0

    with tempfile.TemporaryDirectory(prefix="discscope-bench-") as tmp:
        tmp = Path(tmp)
        sys.path.insert(0, str(REPO / "sagemaker"))
        from discscope.phantom import generate_dataset

        generate_dataset(tmp / "ph", 1, seed=3)
        warm = next((tmp / "ph").rglob("*_0000.mha"))
        reference = REFERENCE if REFERENCE.is_file() else warm
        files = make_files(tmp)
        if args.only:
            files = {k: v for k, v in files.items() if k in args.only}
        old = old_tree(args.old, Path(tempfile.mkdtemp(prefix="discscope-old-"))) if args.old else None

        valid = run_child(reference, args.model, warm)
        print("endpoint path (ModelHost.invoke), one request per fresh process, model loaded and warmed; "
              "peak = VmHWM above the warmed process holding the request")
        print(f"valid study {reference.name}: {valid['answer']}, {valid['seconds']:.2f} s, peak +{valid['peak_mb']:.0f} MB\n")
        head = f"{'file':<24}{'size':>9}  {'answer':<20}{'time':>9}{'peak':>10}{'t/valid':>9}{'m/valid':>9}"
        print(head + ("   old code: answer, time, peak" if old else ""))
        rows = []
        for name, (path, why) in files.items():
            r = run_child(path, args.model, warm)
            size = path.stat().st_size
            line = (f"{name:<24}{size / 1024:>7.0f}KB  {r['answer']:<20}{r['seconds']:>8.3f}s{r['peak_mb']:>8.1f}MB"
                    f"{r['seconds'] / valid['seconds']:>9.3f}{r['peak_mb'] / max(valid['peak_mb'], 1):>9.3f}")
            if old:
                o = run_child(path, args.model, warm, old, args.old_seconds, args.old_memory_gb)
                line += f"   {o['answer']:<26}{o['seconds']:>8.2f}s {o['peak_mb']:>8.0f}MB"
            print(line + f"   {why}", flush=True)
            rows.append((name, size, r))
        refused = [(n, s, r) for n, s, r in rows if r["answer"] != "NO_SPINE_FOUND" and "discs" not in r["answer"]]
        if not refused:
            return 0
        slowest = max(refused, key=lambda x: x[2]["seconds"])
        hungriest = max(refused, key=lambda x: x[2]["peak_mb"])
        over = [n for n, s, r in refused if r["seconds"] >= BUDGET_SECONDS or r["peak_mb"] > BUDGET_FIXED_MB + 2 * s / 2**20]
        print(f"\nworst refusal, time:   {slowest[0]} {slowest[2]['seconds']:.3f} s (budget {BUDGET_SECONDS:.0f} s; "
              f"{slowest[2]['seconds'] / valid['seconds']:.3f}x the valid study)")
        print(f"worst refusal, memory: {hungriest[0]} +{hungriest[2]['peak_mb']:.1f} MB for a {hungriest[1] / 2**20:.1f} MB "
              f"file (budget {BUDGET_FIXED_MB:.0f} MB + 2x the file; {hungriest[2]['peak_mb'] / max(valid['peak_mb'], 1):.3f}x "
              "the valid study)")
        print("over budget: " + (", ".join(over) if over else "none"))
        return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

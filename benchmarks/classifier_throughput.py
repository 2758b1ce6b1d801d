"""Benchmark 4: training and inference throughput of every registered model, eager vs the tuned path.

    .venv/bin/python benchmarks/classifier_throughput.py [--quick] [--size 224] [--device cpu|cuda]

For each model of :func:`classifier.list_models` at ``--size`` px (default 224):

* inference images/s (forward, eval mode, no grad) and training images/s (forward + Dirichlet-multinomial
  loss + backward + AdamW step), each measured as the median over timed batches after warm-up batches;
* ``eager``: float32, contiguous NCHW, no compilation; ``tuned``: the path ``fit`` and ``score`` take on a
  GPU by default (bf16 autocast, channels_last, ``torch.compile``), forced on here;
* forward GFLOPs per image (``torch.utils.flop_counter``; training counts 3x) and the achieved share of
  this machine's measured matmul peak (float32 peak for eager, bf16 peak for tuned).

Then the whole scoring pipeline (``classifier.score``: 5 MC-dropout samples from one backbone pass, BALD
over the 34 answers of the GZ DECaLS tree, embeddings), in galaxies/s and the time it would take for one
million galaxies at that rate; and BALD alone per galaxy. ``array`` rows score decoded images held in
memory (the model's rate); the ``files`` row scores, on the device's default path (tuned on CUDA, eager
on the CPU), the 470 real 424 px DECaLS JPEGs of ``../shared/realdata`` repeated to ``--files`` paths
(whole batches), through :func:`classifier.score_chunks` and its default loader workers: decoding
included, reads from the page cache (a catalogue on disk adds its reads; ``classifier_input_pipeline.py``
breaks the decoding down). Without the real data that row is left out.

On CUDA (``--device cuda`` or ``TORCH_DEVICE``) the same tables are measured on the GPU.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from classifier.devices import Speed, resolve_device
from classifier.losses import TreeLoss
from classifier.models import create_model, list_models
from classifier_common import RING_IMAGES, machine, real_images, repeated, save, table


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype, n: int = 2048, reps: int = 8) -> float:
    """GFLOP/s of an n x n matmul, best of ``reps`` (the practical peak of this machine's GEMM)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def forward_gflops(model, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.rand(1, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 1e9


def timed(step, warmup: int, iters: int, device) -> float:
    """Median seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_model(name: str, size: int, batch: int, device, speed: Speed, warmup: int, iters: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name, tree="gz_decals").to(device)
    loss_fn = TreeLoss(model.tree)
    x = torch.rand(batch, 3, size, size, device=device)
    votes = torch.randint(0, 10, (batch, len(model.columns)), device=device).float()
    if speed.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    net = speed.prepare(model)

    model.eval()

    def infer():
        with torch.no_grad(), speed.autocast(device):
            net(x)

    t0 = time.perf_counter()
    infer()                                   # the first call compiles, when compiling
    compile_infer = time.perf_counter() - t0
    t_inf = timed(infer, warmup, iters, device)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train():
        with speed.autocast(device):
            conc = net(x)
        loss = loss_fn(conc.float(), votes).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    train()
    compile_train = time.perf_counter() - t0
    t_train = timed(train, max(1, warmup // 2), max(2, iters // 2), device)
    return {"infer_img_s": batch / t_inf, "train_img_s": batch / t_train, "first_infer_s": compile_infer,
            "first_train_s": compile_train}


def measure_scoring(name: str, size: int, n: int, batch: int, device, tuned: bool | None, files: int = 0) -> dict:
    """Scoring galaxies/s: ``n`` decoded images in memory, or ``files`` real DECaLS JPEG paths when given.
    ``tuned`` None takes the device's default path (tuned on CUDA, eager on the CPU)."""
    from classifier.acquisition import create_acquisition
    from classifier.scoring import default_workers, score, score_chunks
    torch.manual_seed(0)
    model = create_model(name, tree="gz_decals")
    kw = dict(n_samples=5, acquisition="bald", image_size=size, batch_size=batch, device=device,
              amp=tuned, channels_last=tuned, compile=tuned)
    out = {}
    if files:
        paths = repeated(real_images()[0], files)
        score(model, paths[:batch], anomaly=False, **kw)   # warm-up (and compilation), the loader's first start
        out["workers"] = default_workers(device, paths, batch)
        t = time.perf_counter()
        for _ in score_chunks(model, paths, chunk_size=4096, **kw):
            pass
        sync(device)
        n = files
    else:
        images = np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)
        score(model, images[:batch], anomaly=False, **kw)   # warm-up (and compilation)
        t = time.perf_counter()
        score(model, images, anomaly=False, **kw)
        sync(device)
    rate = n / (time.perf_counter() - t)
    conc = 1 + 100 * torch.rand(5, 4096, 34, device=device)
    bald = create_acquisition("bald")
    bald(conc[:, :64], "gz_decals")
    sync(device)
    t = time.perf_counter()
    bald(conc, "gz_decals")
    sync(device)
    return {**out, "score_gal_s": rate, "bald_us_per_galaxy": (time.perf_counter() - t) / 4096 * 1e6}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: $TORCH_DEVICE / auto)")
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--files", type=int, default=None,
                    help="real JPEG paths scored from disk (default: 64 on CPU, 50,000 on CUDA; 0: none)")
    ap.add_argument("--quick", action="store_true", help="two small models, fewer timed batches")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models or (["test_convnext_tree", "convnext_atto_tree"] if args.quick else list_models())
    warmup, iters = (1, 3) if args.quick else (2, 6)
    batch = args.batch if device.type == "cpu" else max(args.batch, 128)
    print(f"# {machine()}; device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    peak32 = matmul_peak(device, torch.float32)
    peak16 = matmul_peak(device, torch.bfloat16)
    print(f"# measured matmul peak (2048^3, best of 8): float32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    print(f"# {args.size} px, batch {batch}; tuned = bf16 autocast + channels_last + torch.compile")
    rows, raw = [], {}
    for name in models:
        gflops = forward_gflops(create_model(name, tree="gz_decals").eval(), args.size)
        eager = measure_model(name, args.size, batch, device, Speed(False, False, False), warmup, iters)
        tuned = measure_model(name, args.size, batch, device, Speed(True, True, True), warmup, iters)
        raw[name] = {"gflops_fwd": gflops, "eager": eager, "tuned": tuned}
        rows.append({
            "model": name, "GFLOP/img": f"{gflops:.2f}",
            "infer eager img/s": f"{eager['infer_img_s']:.1f}", "infer tuned img/s": f"{tuned['infer_img_s']:.1f}",
            "train eager img/s": f"{eager['train_img_s']:.1f}", "train tuned img/s": f"{tuned['train_img_s']:.1f}",
            "infer % peak (eager/tuned)": f"{100 * eager['infer_img_s'] * gflops / peak32:.0f} / "
                                          f"{100 * tuned['infer_img_s'] * gflops / peak16:.0f}",
            "train % peak (eager/tuned)": f"{100 * eager['train_img_s'] * 3 * gflops / peak32:.0f} / "
                                          f"{100 * tuned['train_img_s'] * 3 * gflops / peak16:.0f}",
            "compile s (infer/train)": f"{tuned['first_infer_s']:.0f} / {tuned['first_train_s']:.0f}",
        })
        print(f"  {name}: {rows[-1]}", flush=True)
    print()
    print(table(rows, list(rows[0])))

    score_model = "convnext_nano_tree" if "convnext_nano_tree" in models else models[-1]
    n = 64 if device.type == "cpu" else 8192
    srows = []
    score_batch = batch if device.type == "cpu" else 512
    files = args.files if args.files is not None else (n if device.type == "cpu" else 50_000)
    files = files // score_batch * score_batch           # whole batches: no new shape to compile while timed
    if files and not RING_IMAGES.is_dir():
        print(f"\n# {RING_IMAGES} is absent: the scoring row from real JPEG files is left out.")
        files = 0
    for tuned, source in ((False, "array"), (True, "array"), (None, "files")):
        if source == "files" and not files:
            continue
        r = measure_scoring(score_model, args.size, n, score_batch, device, tuned,
                            files=files if source == "files" else 0)
        path = {False: "eager", True: "tuned", None: "default"}[tuned] + f", {source}"
        raw.setdefault("scoring", {})[path] = r
        if source == "files":
            path += f" ({files} JPEGs, {r['workers']} workers)"
        srows.append({"model": score_model, "path": path,
                      "galaxies/s (5 MC samples + BALD)": f"{r['score_gal_s']:.1f}",
                      "1M galaxies, min": f"{1e6 / r['score_gal_s'] / 60:.1f}",
                      "BALD alone, us/galaxy": f"{r['bald_us_per_galaxy']:.1f}"})
        print(f"  {srows[-1]}", flush=True)
    print()
    print(table(srows, list(srows[0])))
    if device.type == "cpu":
        print("\n# No CUDA device here: the GPU table (bf16, channels_last, torch.compile on CUDA) was not measured.")
    name = "classifier_throughput" + ("_quick" if args.quick else "") + "_" + device.type
    payload = {"peak_gflops": {"float32": peak32, "bf16": peak16}, "size": args.size, "batch": batch, "results": raw}
    print(f"\nwritten {save(name, payload)}")


if __name__ == "__main__":
    main()

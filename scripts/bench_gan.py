"""Benchmark the GAN training loop against a naive reference loop, and its FLOP/s against a conv benchmark.

    python scripts/bench_gan.py                      # CDCGAN, 64 px, width 64, batch 64, fp32
    python scripts/bench_gan.py --bf16 --model acgan # CPU bfloat16 autocast (gan.train.amp_cpu_bf16)

In one run, with the same model, batch and stabilisation:
- this loop: ``pipeline.gan.train.train_gan`` on an ingest cache (uint8 tensor in memory, one host sync per
  epoch, one fake batch per step), images/s over the epochs after the first (warm-up);
- the naive loop: PNG files decoded every step, ``.item()`` on every loss every step, fakes generated
  again for the G step;
- FLOPs of one step counted with ``torch.utils.flop_counter.FlopCounterMode`` -> achieved FLOP/s, against
  the FLOP/s of a plain conv layer (forward + backward) timed on the same machine.
Not a test: it prints a table (and ``--json FILE`` writes the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.gan.config import GanConfig  # noqa: E402
from pipeline.gan.models import build_models  # noqa: E402
from pipeline.gan.stabilise import add_instance_noise, d_targets, flip_targets  # noqa: E402
from pipeline.gan.step import GanStep, memory_format  # noqa: E402
from pipeline.gan.train import available_cores, pick_device, train_gan  # noqa: E402


def make_images(n: int, size: int, channels: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blurry blobs whose brightness depends on the class: enough structure for a realistic step."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = rs.randint(0, n_classes, n).astype(np.int64)
    images = np.empty((n, channels, size, size), np.uint8)
    for i, c in enumerate(labels):
        (cy, cx), r = rs.uniform(0.3, 0.7, 2) * size, size * rs.uniform(0.1, 0.25)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img = 40 + (100 + 50 * c) * blob + rs.normal(0, 10, blob.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)[None] * np.ones((channels, 1, 1), np.uint8)
    return images, labels


def write_cache(root: Path, images: np.ndarray, labels: np.ndarray, n_classes: int) -> Path:
    (root / "cache").mkdir(parents=True)
    ids = np.asarray([f"img{i}" for i in range(len(labels))])
    for split in ("train", "val", "test"):
        np.savez(root / "cache" / f"{split}.npz", images=images, labels=labels, image_ids=ids)
    meta = {"classes": [f"c{i}" for i in range(n_classes)], "channels": images.shape[1],
            "resolution_px": images.shape[-1], "modality": "bench"}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def write_pngs(root: Path, images: np.ndarray) -> list[Path]:
    root.mkdir(parents=True)
    paths = []
    for i, img in enumerate(images):
        path = root / f"img{i:05d}.png"
        Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(path)
        paths.append(path)
    return paths


def bench_config(args: argparse.Namespace, epochs: int) -> GanConfig:
    cfg = GanConfig()
    t = cfg.train
    t.epochs, t.batch_size, t.tracking, t.seed = epochs, args.batch, False, 0
    t.checkpoint_every_epochs, t.sample_every_epochs, t.log_every_steps = epochs, 0, 10**6
    t.amp_cpu_bf16, t.channels_last, t.num_threads, t.resume = args.bf16, args.channels_last, args.threads, "never"
    cfg.watch.every_epochs, cfg.watch.samples_per_class, cfg.watch.feature_epochs = 0, 8, 1
    m = cfg.model(args.model)
    m.resolution_px, m.base_channels = args.resolution, args.base_channels
    return cfg


def naive_loop(cfg: GanConfig, model: str, paths: list[Path], labels: np.ndarray, n_classes: int, channels: int,
               steps: int, device: torch.device) -> float:
    """The loop as often written first: decode files each step, sync every step, two G forwards."""
    m, s, t = cfg.model(model), cfg.stabilise, cfg.train
    torch.manual_seed(0)
    G, D = build_models(model, n_classes, channels, m.resolution_px, m.base_channels, m.z_dim, m.embed_dim,
                        m.d_conditioning, s.g_layer_noise_std, s.g_dropout)
    G.to(device)
    D.to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
    rs = np.random.RandomState(0)
    history = []
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        idx = rs.choice(len(paths), t.batch_size, replace=False)
        batch = [np.asarray(Image.open(paths[i]).convert("L" if channels == 1 else "RGB")) for i in idx]
        real = torch.from_numpy(np.stack(batch)).float().div(127.5).sub(1).to(device)
        real = real[:, None] if channels == 1 else real.permute(0, 3, 1, 2)
        y = torch.from_numpy(labels[idx]).to(device)
        z = torch.randn(t.batch_size, m.z_dim, device=device)
        real_t, fake_t = flip_targets(*d_targets(len(y), s.label_smoothing, s.real_target_range,
                                                 s.fake_target_range, device), s.label_flip_prob)
        out_real, aux_real = D(add_instance_noise(real, 0.1), y)
        out_fake, aux_fake = D(add_instance_noise(G(z, y).detach(), 0.1), y)
        loss_D = F.binary_cross_entropy_with_logits(out_real, real_t) + \
            F.binary_cross_entropy_with_logits(out_fake, fake_t)
        if aux_real is not None:
            loss_D = loss_D + F.cross_entropy(aux_real, y) + F.cross_entropy(aux_fake, y)
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        out_gen, aux_gen = D(add_instance_noise(G(z, y), 0.1), y)  # fakes made again
        loss_G = F.binary_cross_entropy_with_logits(out_gen, torch.ones_like(out_gen))
        if aux_gen is not None:
            loss_G = loss_G + F.cross_entropy(aux_gen, y)
        opt_G.zero_grad()
        loss_G.backward()
        opt_G.step()
        history.append((loss_D.item(), loss_G.item(), torch.sigmoid(out_real).mean().item()))  # host syncs
        times.append(time.perf_counter() - t0)
    return t.batch_size / statistics.median(times[2:])  # median step after warm-up


def step_flops(cfg: GanConfig, model: str, n_classes: int, channels: int, device: torch.device) -> int:
    m = cfg.model(model)
    G, D = build_models(model, n_classes, channels, m.resolution_px, m.base_channels, m.z_dim, m.embed_dim,
                        m.d_conditioning, cfg.stabilise.g_layer_noise_std, cfg.stabilise.g_dropout)
    step = GanStep(G.to(device), D.to(device), model, cfg.train, cfg.stabilise, m, device)
    real = torch.rand(cfg.train.batch_size, channels, m.resolution_px, m.resolution_px, device=device) * 2 - 1
    y = torch.randint(0, n_classes, (cfg.train.batch_size,), device=device)
    with FlopCounterMode(display=False) as counter:
        step(real, y, 0.1)
    return counter.get_total_flops()


def conv_flops_per_s(device: torch.device, bf16: bool, channels_last: bool, batch: int = 64) -> float:
    """A plain 4x4 stride-2 conv (DCGAN's layer shape, 128 -> 256 channels at 16 px), forward + backward."""
    conv = torch.nn.Conv2d(128, 256, 4, 2, 1, bias=False).to(device)
    x = torch.randn(batch, 128, 16, 16, device=device, requires_grad=True)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.detach().contiguous(
            memory_format=torch.channels_last).requires_grad_(True)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def once() -> None:
        with ctx:
            out = conv(x)
        out.float().sum().backward()

    with FlopCounterMode(display=False) as counter:
        once()
    flops = counter.get_total_flops()
    for _ in range(3):
        once()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cdcgan", choices=["cdcgan", "acgan"])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--base-channels", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1, choices=[1, 3])
    ap.add_argument("--images", type=int, default=256, help="images in the toy data set (one epoch)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of this loop (the first is warm-up)")
    ap.add_argument("--naive-steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--bf16", action="store_true", help="CPU bfloat16 autocast (gan.train.amp_cpu_bf16)")
    ap.add_argument("--channels-last", default="auto", choices=["auto", "always", "never"],
                    help="NHWC memory format (gan.train.channels_last; auto = CUDA only)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)

    n_classes = 3
    torch.set_num_threads(args.threads or available_cores())
    device = pick_device("auto")
    images, labels = make_images(args.images, args.resolution, args.channels, n_classes)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = write_cache(tmp / "data", images, labels, n_classes)
        paths = write_pngs(tmp / "png", images)

        cfg = bench_config(args, args.epochs)
        os.environ["PIPELINE_TRACKING"] = "0"
        result = train_gan(cfg, args.model, data_dir, tmp / "run", "bench")
        loop_ips = statistics.median(r["images_per_s"] for r in result.history[1:])
        naive_ips = naive_loop(cfg, args.model, paths, labels, n_classes, args.channels, args.naive_steps, device)
        flops = step_flops(cfg, args.model, n_classes, args.channels, device)
        conv = conv_flops_per_s(device, args.bf16, memory_format(cfg.train, device) == torch.channels_last)

    achieved = flops * loop_ips / args.batch
    out = {
        "device": str(device), "threads": torch.get_num_threads(), "model": args.model,
        "resolution_px": args.resolution, "base_channels": args.base_channels, "batch": args.batch,
        "bf16": args.bf16, "channels_last": args.channels_last,
        "loop_images_per_s": loop_ips, "naive_images_per_s": naive_ips, "speedup": loop_ips / naive_ips,
        "gflop_per_step": flops / 1e9, "loop_gflop_per_s": achieved / 1e9, "conv_gflop_per_s": conv / 1e9,
        "fraction_of_conv": achieved / conv,
    }
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

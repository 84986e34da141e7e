"""Benchmark suite (``make bench``): writes reports/benchmarks.md with the machine's description.

    python scripts/bench.py            # every section (~5 minutes on 2 CPU cores)
    python scripts/bench.py --quick    # smaller sizes (~2 minutes)
    python scripts/bench.py --full     # + end-to-end `dvc repro -f` and a no-op `dvc repro` in a temporary
                                       #   clone of HEAD (the whole default pipeline: ~20+ minutes on 2 cores)
    python scripts/bench.py --sections gan,generate --out /tmp/bench.md

Every comparison is a ratio of two numbers measured in the same run on the same machine, so a busy
machine slows both sides (the report gives the load average). Sections:

- ``gan``: images/s of the project's training loop (:mod:`pipeline.gan.train`, one :class:`GanStep` per
  batch) against a naive reference loop (files decoded every step, ``.item()`` every step, fakes generated
  twice), and the loop's achieved FLOP/s (FLOPs counted by ``torch.utils.flop_counter``) against a plain
  conv layer timed here. On CUDA also AMP (bfloat16) + channels_last, at 64 and 128 px.
- ``ingest``: files/s of :func:`pipeline.data.ingest.ingest_dataset` against a plain per-file pydicom / PIL
  read loop over the same files.
- ``generate``: images/s of a trained generator through the generate stage's batched sampler against one
  image per call.
- ``evaluate``: the evaluate stage's time from its metrics JSON (``--full``: timed in this run).
- ``dvc``: no-op ``dvc repro`` (or, when the workspace is not up to date, ``dvc status``), ``--full``: the
  end-to-end ``dvc repro -f``.
- ``memory``: peak resident memory (ru_maxrss) of this process and of its child processes.

``scripts/bench_gan.py`` is the command line of the ``gan`` part alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from pipeline.io import write_bytes_atomic  # noqa: E402
from pipeline.gan.config import GanConfig  # noqa: E402
from pipeline.gan.recipes import apply_recipe  # noqa: E402
from pipeline.schema import build  # noqa: E402
from pipeline.gan.models import build_models  # noqa: E402
from pipeline.runtime import available_cores, cpu_flags, has_cpu_bf16, pick_device, use_cpu_bf16  # noqa: E402
from pipeline.gan.stabilise import add_instance_noise, d_targets, flip_targets  # noqa: E402
from pipeline.gan.step import GanStep, memory_format  # noqa: E402
from pipeline.gan.train import train_gan  # noqa: E402

BIN = Path(sys.executable).parent
BUDGET_END_TO_END_S = 15 * 60  # issue 8: default `make run` on 2 CPU cores
BUDGET_NOOP_S = 10.0           # issue 8: a second `dvc repro` with nothing changed
BUDGET_MEMORY_MIB = 4096       # issue 8: peak memory
SECTIONS = ("machine", "gan", "ingest", "generate", "evaluate", "dvc", "memory")


@dataclass
class Sizes:
    """How much work each section does; ``--quick`` picks the smaller set."""

    gan_base_channels: tuple[int, ...] = (16, 32)  # G's last / D's first conv width (params.yaml default: 16)
    gan_resolution_px: int = 64
    gan_batch: int = 64
    gan_images: int = 256      # toy data set: one epoch
    gan_epochs: int = 2        # of the project's loop per round; the first is warm-up
    gan_naive_steps: int = 8   # of the naive loop; the first 2 are warm-up
    gan_rounds: int = 3        # loop and naive loop alternately, medians (a busy machine's load comes and goes)
    gan_cuda_resolutions: tuple[int, ...] = (64, 128)
    gan_cuda_base_channels: int = 64
    conv_repeats: int = 20
    ingest_max_per_class: int = 0   # 0 = every file
    ingest_real_data: bool = True   # ../shared/data/mias too, when present
    gen_images: int = 1024     # batched sampling
    gen_naive_images: int = 64  # one image per call
    gen_checkpoints: int = 4   # at most this many checkpoints under models/


SIZES = {
    "default": Sizes(),
    "quick": Sizes(gan_images=128, gan_epochs=2, gan_naive_steps=5, gan_rounds=1, conv_repeats=8,
                   ingest_max_per_class=20, ingest_real_data=False, gen_images=256, gen_naive_images=16,
                   gen_checkpoints=1),
}


@dataclass
class Section:
    key: str
    title: str
    how: str                   # what was measured, and how
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0       # wall time of the section


# ============================================================================ helpers
def fmt(value: Any) -> str:
    """Numbers for a table: ~3 significant digits, thousands separated from 100 on, an exponent below 0.001."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"
    return str(value)


def rss_mib(ru_maxrss: int) -> float:
    """ru_maxrss in MiB (it is KiB on Linux, bytes on macOS)."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 1024


def maxrss_mib(who: int) -> float:
    return rss_mib(resource.getrusage(who).ru_maxrss)


@dataclass
class Timed:
    seconds: float
    returncode: int
    output: str
    child_peak_mib: float  # largest ru_maxrss among the command and its descendants


# Runs a command and reports its wall time and the peak RSS of its process tree (the wrapper is a fresh
# process, so RUSAGE_CHILDREN covers exactly this command; waited-for grandchildren count too).
_WRAPPER = ("import resource, subprocess, sys, time\n"
            "t0 = time.perf_counter(); rc = subprocess.call(sys.argv[1:]); t = time.perf_counter() - t0\n"
            "sys.stdout.flush()\n"
            "print(f'@@bench {t} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', flush=True)\n"
            "sys.exit(rc)\n")


COMMAND_PEAKS: list[tuple[str, float]] = []  # (command, peak MiB of its process tree) for the memory section


def timed_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 3600) -> Timed:
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], cwd=cwd, env=env or tool_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    lines = proc.stdout.rstrip().splitlines()
    seconds, rss = next((ln.split()[1:] for ln in reversed(lines) if ln.startswith("@@bench ")), ("nan", "0"))
    output = "\n".join(ln for ln in lines if not ln.startswith("@@bench "))
    peak = rss_mib(int(rss))
    COMMAND_PEAKS.append((" ".join([Path(cmd[0]).name, *cmd[1:]]), peak))
    return Timed(float(seconds), proc.returncode, output, peak)


def tool_env(**extra: str) -> dict[str, str]:
    """dvc and the stages from this venv, without analytics."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.update(extra)
    return env


# ============================================================================ machine
def machine_section(device: torch.device) -> Section:
    model = platform.processor() or platform.machine()
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram_gib = float("nan")
    flags = cpu_flags()
    simd = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "unknown"
    gpu = (f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, "
           f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)" if device.type == "cuda"
           else "none (torch.cuda.is_available() is False)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True)
    rows = [["CPU", model], ["cores (usable by this process)", f"{os.cpu_count()} ({available_cores()})"],
            ["SIMD", simd], ["RAM", f"{ram_gib:.1f} GiB"], ["GPU", gpu], ["device used", str(device)],
            ["torch", f"{torch.__version__} ({torch.get_num_threads()} threads)"],
            ["python", platform.python_version()], ["OS", platform.platform()],
            ["load average (1, 5, 15 min) at start", ", ".join(f"{x:.2f}" for x in os.getloadavg())],
            ["nice", str(os.nice(0))],
            ["git commit", commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")]]
    return Section("machine", "Machine", "Read from /proc/cpuinfo, sysconf, torch and git at the start of the run.",
                   ["", ""], rows)


# ============================================================================ gan
@dataclass
class GanBench:
    """One configuration of the GAN step benchmark (the defaults are ``scripts/bench_gan.py``'s)."""

    model: str = "cdcgan"
    resolution_px: int = 64
    base_channels: int = 64
    batch: int = 64
    channels: int = 1
    images: int = 256
    epochs: int = 3
    naive_steps: int = 8
    rounds: int = 1              # loop and naive loop measured alternately this many times; medians reported
    threads: int = 0
    bf16: str = "auto"           # gan.train.cpu_bf16 (auto = the shipped default: on where the CPU has
    # AVX512-BF16/AMX) and, when not "off", CUDA AMP bfloat16 (gan.train.amp)
    channels_last: str = "auto"  # gan.train.channels_last: auto = CUDA only


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


def bench_config(b: GanBench) -> GanConfig:
    """The case study's GAN step (one D step, no EMA or DiffAugment: what the naive loop also runs)."""
    cfg = build(GanConfig, apply_recipe({}, "case_study"), "gan")
    t = cfg.train
    t.epochs, t.batch_size, t.tracking, t.seed = b.epochs, b.batch, False, 0
    t.checkpoint_every_epochs, t.sample_every_epochs, t.log_every_steps = b.epochs, 0, 10**6
    t.amp, t.amp_dtype, t.cpu_bf16 = b.bf16 != "off", "bfloat16", b.bf16
    t.channels_last, t.num_threads, t.resume = b.channels_last, b.threads, "never"
    cfg.watch.every_epochs, cfg.watch.samples_per_class, cfg.watch.feature_epochs = 0, 8, 1
    m = cfg.model(b.model)
    m.resolution_px, m.base_channels = b.resolution_px, b.base_channels
    return cfg


def resolved_bf16(b: GanBench, device: torch.device) -> bool:
    """Whether the loop under test runs in bfloat16 (what gan.train.cpu_bf16 / amp resolve to)."""
    if device.type == "cuda":
        return b.bf16 != "off"
    return device.type == "cpu" and use_cpu_bf16(b.bf16)


def naive_loop(cfg: GanConfig, model: str, paths: list[Path], labels: np.ndarray, n_classes: int, channels: int,
               steps: int, device: torch.device) -> float:
    """The loop as often written first: decode files each step, sync every step, two G forwards (fp32)."""
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
    for _ in range(steps):
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
    return t.batch_size / statistics.median(times[min(2, steps - 1):])  # median step after warm-up


def step_flops(cfg: GanConfig, model: str, n_classes: int, channels: int, device: torch.device) -> int:
    """FLOPs of one GanStep (D step + G step, forward and backward) at the configured batch."""
    m = cfg.model(model)
    G, D = build_models(model, n_classes, channels, m.resolution_px, m.base_channels, m.z_dim, m.embed_dim,
                        m.d_conditioning, cfg.stabilise.g_layer_noise_std, cfg.stabilise.g_dropout)
    step = GanStep(G.to(device), D.to(device), model, cfg.train, cfg.stabilise, m, device)
    real = torch.rand(cfg.train.batch_size, channels, m.resolution_px, m.resolution_px, device=device) * 2 - 1
    y = torch.randint(0, n_classes, (cfg.train.batch_size,), device=device)
    with FlopCounterMode(display=False) as counter:
        step(real, y, 0.1)
    return counter.get_total_flops()


def conv_flops_per_s(device: torch.device, bf16: bool, channels_last: bool, batch: int = 64,
                     repeats: int = 20) -> float:
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
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times)


def gan_throughput(b: GanBench, device: torch.device, conv_cache: dict | None = None,
                   conv_repeats: int = 20) -> dict:
    """This loop vs the naive loop and vs the conv benchmark, for one configuration; the numbers as a dict."""
    n_classes = 3
    images, labels = make_images(b.images, b.resolution_px, b.channels, n_classes)
    cfg = bench_config(b)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = write_cache(tmp / "data", images, labels, n_classes)
        paths = write_pngs(tmp / "png", images)
        previous = os.environ.get("PIPELINE_TRACKING")
        os.environ["PIPELINE_TRACKING"] = "0"
        loop_runs, naive_runs = [], []
        try:  # alternate the two sides, so a load that comes and goes on a shared machine hits both
            for _ in range(max(1, b.rounds)):
                result = train_gan(cfg, b.model, data_dir, tmp / "run", "bench")
                loop_runs.append(statistics.median(r["images_per_s"] for r in result.history[1:] or result.history))
                naive_runs.append(naive_loop(cfg, b.model, paths, labels, n_classes, b.channels, b.naive_steps,
                                             device))
        finally:
            if previous is None:
                os.environ.pop("PIPELINE_TRACKING", None)
            else:
                os.environ["PIPELINE_TRACKING"] = previous
        loop_ips, naive_ips = statistics.median(loop_runs), statistics.median(naive_runs)
        round_ratios = [a / n for a, n in zip(loop_runs, naive_runs)]
    flops = step_flops(cfg, b.model, n_classes, b.channels, device)
    nhwc = memory_format(cfg.train, device) == torch.channels_last
    bf16 = resolved_bf16(b, device)
    key = (bf16, nhwc)
    cache = conv_cache if conv_cache is not None else {}
    if key not in cache:
        cache[key] = conv_flops_per_s(device, bf16, nhwc, repeats=conv_repeats)
    conv = cache[key]
    achieved = flops * loop_ips / b.batch
    return {
        "device": str(device), "threads": torch.get_num_threads(), "model": b.model,
        "resolution_px": b.resolution_px, "base_channels": b.base_channels, "batch": b.batch,
        "bf16": bf16, "bf16_setting": b.bf16, "channels_last": nhwc,
        "loop_images_per_s": loop_ips, "naive_images_per_s": naive_ips, "speedup": loop_ips / naive_ips,
        "rounds": len(round_ratios), "speedup_min": min(round_ratios), "speedup_max": max(round_ratios),
        "gflop_per_step": flops / 1e9, "loop_gflop_per_s": achieved / 1e9, "conv_gflop_per_s": conv / 1e9,
        "fraction_of_conv": achieved / conv,
    }


def gan_section(sizes: Sizes, device: torch.device) -> Section:
    common = dict(batch=sizes.gan_batch, epochs=sizes.gan_epochs, naive_steps=sizes.gan_naive_steps,
                  rounds=sizes.gan_rounds)
    runs = [GanBench(resolution_px=sizes.gan_resolution_px, base_channels=base, images=sizes.gan_images, **common)
            for base in sizes.gan_base_channels]
    notes = []
    if device.type == "cuda":
        for px in sizes.gan_cuda_resolutions:
            for bf16, nhwc in (("off", "never"), ("on", "always")):
                runs.append(GanBench(resolution_px=px, base_channels=sizes.gan_cuda_base_channels,
                                     images=max(sizes.gan_images, 4 * sizes.gan_batch), bf16=bf16,
                                     channels_last=nhwc, **common))
    else:
        notes.append("CUDA rows (AMP bfloat16 + channels_last, and fp32, at "
                     f"{' and '.join(str(p) for p in sizes.gan_cuda_resolutions)} px, base "
                     f"{sizes.gan_cuda_base_channels}): skipped, no CUDA device here (torch.cuda.is_available() is "
                     "False). The code path runs them when a GPU is present.")
        if has_cpu_bf16():  # the shipped default (auto) is bf16 here: add the fp32 row it is measured against
            runs.append(dataclasses.replace(runs[0], bf16="off"))
        else:
            notes.append("The shipped default (gan.train.cpu_bf16: auto) runs fp32 on this CPU: it has neither "
                         "AVX512-BF16 nor AMX (bf16 is emulated there and measured ~15x slower).")
    conv_cache: dict = {}
    rows = []
    for b in runs:
        r = gan_throughput(b, device, conv_cache, sizes.conv_repeats)
        precision = (f"{b.bf16}: " if b.bf16 == "auto" else "") + ("bf16 autocast" if r["bf16"] else "fp32") + \
            (" + channels_last" if r["channels_last"] else "")
        rows.append([b.model, b.resolution_px, b.base_channels, b.batch, precision, r["loop_images_per_s"],
                     r["naive_images_per_s"], r["speedup"],
                     f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f} ({r['rounds']})", r["gflop_per_step"],
                     r["loop_gflop_per_s"],
                     r["conv_gflop_per_s"], r["fraction_of_conv"]])
    how = (f"Toy data set of {sizes.gan_images} blob images (3 classes, 1 channel) written as an ingest cache "
           "(uint8, held in memory) and as PNG files. **This loop**: `pipeline.gan.train.train_gan` with the "
           f"default stabilisation (gan.stabilise), {sizes.gan_epochs} epochs, median images/s of the epochs after "
           "the first (one host sync per epoch, fakes made once per step). **Naive loop**: the same models, batch "
           "and stabilisation, PNGs decoded every step, `.item()` on every loss every step, fakes generated again "
           f"for the G step; median of {sizes.gan_naive_steps} steps after 2 warm-up steps. The two loops run "
           f"alternately, {sizes.gan_rounds} time(s) each; the table gives the medians and the range of the "
           "per-round speed-ups. **FLOPs**: one "
           "GanStep (D + G, forward + backward) counted by `torch.utils.flop_counter.FlopCounterMode`; loop "
           "GFLOP/s = FLOPs per image x loop images/s. **Conv**: one 4x4 stride-2 conv, 128 -> 256 channels at "
           f"16 px, batch 64, forward + backward, median of {sizes.conv_repeats} runs, same precision and layout.")
    return Section("gan", "GAN step throughput and achieved FLOP/s", how,
                   ["model", "px", "base ch", "batch", "precision", "this loop img/s", "naive img/s",
                    "speed-up (x)", "speed-up range (rounds)", "GFLOP/step", "loop GFLOP/s", "conv GFLOP/s",
                    "loop / conv"], rows, notes)


# ============================================================================ ingest
def ingest_datasets(sizes: Sizes) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name, DatasetConfig) of params.yaml's data sets whose files exist, plus mini-MIAS; and skip notes."""
    from pipeline.config import dataset, load_params

    params = load_params(REPO / "params.yaml")
    found, notes = [], []
    for name in params.datasets:
        cfg = dataset(params, name, "params.yaml")
        root = REPO / (cfg.source.root or "")
        if root.exists():
            found.append((name, cfg))
        else:
            notes.append(f"{name}: skipped, {cfg.source.root} is absent (run `dvc repro phantoms` first).")
    mias_preset = REPO / "presets" / "mias.yaml"
    if sizes.ingest_real_data and mias_preset.is_file():
        preset = load_params(mias_preset)
        cfg = dataset(preset, "mias", str(mias_preset))
        if (REPO / cfg.source.root).exists():
            found.append(("mias", cfg))
        else:
            notes.append(f"mias: skipped, {cfg.source.root} is absent (real data is not part of the repo).")
    elif not sizes.ingest_real_data:
        notes.append("mias (../shared/data/mias): not run in --quick mode.")
    return found, notes


def plain_read(paths: list[Path], reader: str) -> None:
    """The plain loop: pydicom's pixel_array for DICOM, PIL decode for everything else; nothing more."""
    import pydicom

    for path in paths:
        if reader == "dicom":
            pydicom.dcmread(path).pixel_array
        else:
            with Image.open(path) as img:
                np.asarray(img)


def ingest_section(datasets: list[tuple[str, Any]], sizes: Sizes, notes: list[str] | None = None) -> Section:
    from pipeline.data.ingest import cap_per_class, ingest_dataset, map_labels
    from pipeline.data.readers import list_items

    rows, notes = [], list(notes or [])
    cwd = os.getcwd()
    os.chdir(REPO)  # data set roots in params files are relative to the repository
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, cfg in datasets:
                if sizes.ingest_max_per_class:
                    cfg = dataclasses.replace(cfg, max_per_class=sizes.ingest_max_per_class)
                items = list_items(cfg.source)
                map_labels(items, cfg, f"datasets.{name}")
                items = cap_per_class(items, cfg.max_per_class, cfg.split.seed)
                patches = cfg.modality == "mammography" and cfg.task == "patches"
                paths = [it.path for it in items if not (patches and it.label != "normal" and not it.lesions)]
                for path in paths:  # warm the page cache, so neither side pays for the first disk read
                    Path(path).read_bytes()
                t0 = time.perf_counter()
                plain_read(paths, cfg.source.reader)
                plain_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                try:
                    metrics = ingest_dataset(name, cfg, "bench", Path(tmp) / name, Path(tmp) / f"{name}.json")
                except Exception as exc:  # a capped subset can be too small to split: say so, go on
                    notes.append(f"{name}: ingest failed on this subset ({type(exc).__name__}: {exc}).")
                    continue
                ingest_s = time.perf_counter() - t0
                rows.append([name, cfg.source.reader, len(paths), metrics["n_images"], len(paths) / plain_s,
                             len(paths) / ingest_s, plain_s / ingest_s, ingest_s])
    finally:
        os.chdir(cwd)
    subset = (f"at most {sizes.ingest_max_per_class} files per class" if sizes.ingest_max_per_class
              else "every file")
    how = ("Files of each data set (" + subset + "; mammography films without a lesion position are left out "
           "on both sides, as ingest leaves them out), read once beforehand so both sides find them in the page "
           "cache. **Plain loop**: `pydicom.dcmread(path).pixel_array` (DICOM) or `np.asarray(PIL.Image.open(path))`"
           " per file, nothing else. **Ingest**: `pipeline.data.ingest.ingest_dataset` in this process (listing, "
           "decoding with modality/VOI LUTs, lesion or tissue patches, resizing, quality gate, patient split, "
           "writing the npz cache), timed from call to return; Python start-up and imports are not included.")
    return Section("ingest", "Ingest throughput", how,
                   ["data set", "reader", "files", "images out", "plain read files/s", "ingest files/s",
                    "ingest / plain", "ingest s"], rows, notes)


# ============================================================================ generate
def generation_section(sizes: Sizes) -> Section:
    from pipeline.gan.checkpoint import load_generator
    from pipeline.generate.run import write_png
    from pipeline.generate.sampling import image_seed, latents, sample, to_uint8

    batch = 256
    try:
        from pipeline.config import load_params

        batch = load_params(REPO / "params.yaml").generate.batch_size
    except Exception:  # params without a generate section: the stage's default
        pass
    checkpoints = sorted(REPO.glob("models/*/*/best.pt"))[:sizes.gen_checkpoints]
    generators, notes = [], []
    for path in checkpoints:
        G, state = load_generator(path)
        generators.append((f"{path.parent.parent.name}/{path.parent.name} (best.pt, epoch {state.get('epoch')})", G))
    if not generators:
        cfg = GanConfig()
        m = cfg.cdcgan
        G, _ = build_models("cdcgan", 3, 1, 64, 16, m.z_dim, m.embed_dim)
        generators.append(("untrained CDCGAN, 64 px, base 16", G.eval()))
        notes.append("No checkpoint under models/ (run `dvc repro train_gan` first): timed an untrained generator "
                     "of the default architecture instead; throughput does not depend on the weights.")
    rows = []
    for label, G in generators:
        G.eval()
        n_classes = G.n_classes
        seeds = [image_seed(0, 0, i) for i in range(sizes.gen_images)]
        sample(G, seeds[:8], 0, G.z_dim)  # warm-up
        t0 = time.perf_counter()
        images = [sample(G, seeds[i:i + batch], (i // batch) % n_classes, G.z_dim)
                  for i in range(0, len(seeds), batch)]
        batched_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for img in torch.cat(images).numpy():
            write_png(io.BytesIO(), img)
        png_s = time.perf_counter() - t0
        naive_z = latents(seeds[:sizes.gen_naive_images], G.z_dim)
        t0 = time.perf_counter()
        for k, z in enumerate(naive_z):  # one image per call, autograd on, synced by .numpy()
            to_uint8(G(z[None], torch.tensor([k % n_classes]))).numpy()
        naive_s = time.perf_counter() - t0
        batched_ips, naive_ips = sizes.gen_images / batched_s, sizes.gen_naive_images / naive_s
        rows.append([label, G.last_width, batch, batched_ips, naive_ips, batched_ips / naive_ips,
                     sizes.gen_images / png_s])
    how = (f"**Batched**: `pipeline.generate.sampling.sample` (what the generate stage calls: one seeded latent "
           f"per image, G in eval mode, no autograd, uint8 out) on {sizes.gen_images} images in batches of the "
           f"generate stage's batch size. **One per call**: the same generator on {sizes.gen_naive_images} images "
           "one at a time with autograd on. **PNG encode**: the batched images encoded to PNG in memory with the "
           "stage's `write_png` (the stage also runs the copy gate and the classifier filter on every image; "
           "those are not included).")
    return Section("generate", "Generation throughput", how,
                   ["generator", "base ch", "batch", "batched img/s", "one-per-call img/s", "batched / one",
                    "PNG encode img/s"], rows, notes)


# ============================================================================ evaluate
def evaluate_section(results_dir: Path, source: str) -> Section:
    rows, notes = [], []
    for path in sorted(results_dir.glob("*/details.json")):
        m = json.loads(path.read_text())
        arms, seeds = len(m.get("arms", {})), m.get("n_seeds")
        fits = arms * seeds if seeds else None
        fit_s = m.get("train_time_s_mean")
        time_s = m.get("time_s")
        busy = fits * fit_s / time_s if fits and fit_s and time_s else None
        rows.append([path.parent.name, time_s, arms, seeds, fits, fit_s, m.get("train_cpu_s_mean"), busy,
                     time_s / BUDGET_END_TO_END_S if time_s else None])
    if not rows:
        notes.append(f"No {results_dir}/*/details.json: run `dvc repro evaluate` (or `--full`) first; "
                     "nothing measured.")
    how = (f"{source} The stage trains the classifier once per arm and seed; `time_s` is its wall time, "
           "`train_time_s_mean` (`train_cpu_s_mean`) the mean wall (CPU) time of one classifier fit. The fits run "
           "in worker processes, one per core, so summed fit time / stage time near the number of cores means "
           "the workers were fitting nearly all the time. Not re-timed by default: one run takes 1.5-2 minutes "
           "per data set on 2 cores.")
    return Section("evaluate", "Evaluate-stage time", how,
                   ["data set", "stage s", "arms", "seeds", "classifier fits", "mean fit s", "mean fit CPU s",
                    "summed fit s / stage s", "stage / 15 min budget"], rows, notes)


def lock_commit(repo: Path) -> str:
    out = subprocess.run(["git", "log", "-1", "--format=%h (%ad)", "--date=short", "--", "dvc.lock"], cwd=repo,
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# ============================================================================ dvc
def dvc_section(repo: Path, full: bool, workdir: Path | None = None) -> tuple[Section, Path | None]:
    """No-op repro (or status), and with ``full`` the end-to-end ``dvc repro -f`` in a temporary clone.

    Returns the section and, after ``full``, the clone's results folder (the caller removes workdir).
    """
    dvc = str(BIN / "dvc")
    rows, notes = [], []
    startup = timed_command([dvc, "--version"], repo)
    rows.append(["`dvc --version` (start-up floor of any dvc command)", "this checkout", startup.seconds, None,
                 startup.child_peak_mib])
    status = timed_command([dvc, "status"], repo)
    clean = status.returncode == 0 and "up to date" in status.output
    if clean:
        noop = timed_command([dvc, "repro"], repo)
        rows.append(["no-op `dvc repro` (workspace up to date)", "this checkout", noop.seconds,
                     noop.seconds / BUDGET_NOOP_S, noop.child_peak_mib])
        if noop.returncode != 0:
            notes.append(f"no-op repro FAILED (exit {noop.returncode}): {noop.output[-300:]}")
    else:
        changed = sorted({ln.rstrip(":").strip() for ln in status.output.splitlines()
                          if ln and not ln.startswith(("\t", " ")) and ln.rstrip().endswith(":")})
        rows.append(["`dvc status` (workspace NOT up to date: no-op repro not measurable here)", "this checkout",
                     status.seconds, status.seconds / BUDGET_NOOP_S, status.child_peak_mib])
        notes.append(f"The workspace is not up to date ({len(changed)} stages changed or without outputs: "
                     f"{', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}), so `dvc repro` would run "
                     "stages; `dvc status` does the same hashing and dependency checks a no-op repro does and was "
                     "timed instead." + ("" if full else " `--full` measures a real no-op repro in a clone."))
    evaluate_dir = None
    if full:
        clone = (workdir or Path(tempfile.mkdtemp())) / "clone"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        env = tool_env(PIPELINE_ID_SALT="bench", MLFLOW_TRACKING_URI=f"sqlite:///{clone / 'mlflow.db'}")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                                text=True).stdout.strip()
        e2e = timed_command([dvc, "repro", "-f"], clone, env, timeout_s=6 * 3600)
        rows.append([f"end-to-end `dvc repro -f` (fresh clone of {commit}, empty DVC cache)", "clone",
                     e2e.seconds, e2e.seconds / BUDGET_END_TO_END_S, e2e.child_peak_mib])
        if e2e.returncode != 0:
            notes.append(f"end-to-end repro FAILED (exit {e2e.returncode}): {e2e.output[-500:]}")
        else:
            noop = timed_command([dvc, "repro"], clone, env)
            rows.append(["no-op `dvc repro` right after it", "clone", noop.seconds, noop.seconds / BUDGET_NOOP_S,
                         noop.child_peak_mib])
            evaluate_dir = clone / "results"
    else:
        notes.append("End-to-end `dvc repro -f` not run (it takes the whole default pipeline, ~20+ minutes on 2 "
                     "cores); `scripts/bench.py --full` runs it in a temporary clone of HEAD.")
    how = ("Wall time of each dvc command run as a child process (Python start-up included), with the peak "
           "resident memory of its process tree (ru_maxrss of the children, which covers the stage processes "
           "`dvc repro` starts). Budgets from issue 8: no-op repro 10 s, end-to-end 15 min.")
    return Section("dvc", "DVC: end-to-end and no-op `dvc repro`", how,
                   ["command", "where", "s", "/ budget", "peak MiB"], rows, notes), evaluate_dir


# ============================================================================ memory
def memory_section(marks: list[tuple[str, float]], commands: list[tuple[str, float]]) -> Section:
    rows = [[f"this benchmark process, after section {name}", mib, mib / BUDGET_MEMORY_MIB] for name, mib in marks]
    rows += [[f"`{cmd}` and its child processes", mib, mib / BUDGET_MEMORY_MIB] for cmd, mib in commands]
    how = ("ru_maxrss from `resource.getrusage`. This process: RUSAGE_SELF read after each section, i.e. the "
           "peak so far (GAN loops, ingest and generation run in-process). Commands: each dvc command runs "
           "under a small Python wrapper whose RUSAGE_CHILDREN is the largest peak in that command's process "
           "tree (the stage processes `dvc repro` starts included); read in this process, RUSAGE_CHILDREN would "
           "count the benchmark's own size, which a forked child inherits before exec. Budget from issue 8: 4 GB.")
    return Section("memory", "Peak memory", how, ["what", "peak MiB", "/ 4 GB budget"], rows)


# ============================================================================ report
def render(sections: list[Section], header: dict[str, str]) -> str:
    lines = ["# Benchmarks", "", "Written by `scripts/bench.py` (`make bench`). Every ratio compares two numbers "
             "measured in the same run on this machine.", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()] + [""]
    for s in sections:
        lines += [f"## {s.title}", "", s.how + f" (section took {s.seconds:.0f} s)", ""]
        if s.rows:
            lines.append("| " + " | ".join(s.columns) + " |")
            lines.append("|" + "|".join("---" for _ in s.columns) + "|")
            lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in s.rows]
            lines.append("")
        lines += [f"- {n}" for n in s.notes] + ([""] if s.notes else [])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: about 2 minutes on 2 cores")
    ap.add_argument("--full", action="store_true", help="also the end-to-end `dvc repro -f` in a temporary clone")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all usable cores)")
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks.md"))
    ap.add_argument("--json", help="also write the tables here")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        ap.error(f"--sections: unknown {', '.join(unknown)}; use {', '.join(SECTIONS)}")
    sizes = SIZES["quick" if args.quick else "default"]
    torch.set_num_threads(args.threads or available_cores())
    device = pick_device("auto")
    started = time.perf_counter()
    start_time = dt.datetime.now().astimezone()
    load_at_start = os.getloadavg()[0]

    sections: list[Section] = []
    marks: list[tuple[str, float]] = []
    evaluate_dir = None
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        steps: dict[str, Callable[[], Section]] = {
            "machine": lambda: machine_section(device),
            "gan": lambda: gan_section(sizes, device),
            "ingest": lambda: ingest_section(*_ingest_args(sizes)),
            "generate": lambda: generation_section(sizes),
        }
        for key in ("machine", "gan", "ingest", "generate", "dvc", "evaluate"):
            if key not in wanted:
                continue
            print(f"bench: {key} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if key == "dvc":
                section, evaluate_dir = dvc_section(REPO, args.full, Path(work))
            elif key == "evaluate":
                if evaluate_dir is not None:
                    section = evaluate_section(evaluate_dir, "Timed in this run: read from the details of the "
                                                             "`--full` end-to-end repro in the clone.")
                else:
                    section = evaluate_section(REPO / "results",
                                               "Read from results/<data set>/details.json of the last full "
                                               f"`dvc repro` (dvc.lock last committed in {lock_commit(REPO)}), "
                                               "not timed in this run.")
            else:
                section = steps[key]()
            section.seconds = time.perf_counter() - t0
            sections.append(section)
            marks.append((key, maxrss_mib(resource.RUSAGE_SELF)))
    if "memory" in wanted:
        sections.append(memory_section(marks, COMMAND_PEAKS))
    order = {k: i for i, k in enumerate(SECTIONS)}
    sections.sort(key=lambda s: order[s.key])

    total = time.perf_counter() - started
    header = {"command": " ".join(["scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]),
              "mode": ("quick" if args.quick else "default") + (" + full" if args.full else ""),
              "date": start_time.isoformat(timespec="seconds"), "total time": f"{total:.0f} s",
              "load average (1, 5, 15 min) at the end": ", ".join(f"{x:.2f}" for x in os.getloadavg())}
    if load_at_start >= available_cores() * 0.75:
        header["**busy machine**"] = (f"the 1-minute load average was {load_at_start:.1f} on {available_cores()} "
                                      f"usable cores when the run started, at nice {os.nice(0)}: other jobs were "
                                      "running, so absolute figures are below an idle machine's; each ratio "
                                      "compares two sides under the same load but is noisier than on an idle one")
    out = Path(args.out)
    write_bytes_atomic(out, render(sections, header).encode())
    if args.json:
        write_bytes_atomic(Path(args.json), json.dumps({"header": header, "sections": [dataclasses.asdict(s)
                                                                                 for s in sections]}, indent=2,
                                                 default=str).encode() + b"\n")
    print(f"bench: wrote {out} in {total:.0f} s", file=sys.stderr)
    return 0


def _ingest_args(sizes: Sizes) -> tuple[list, Sizes, list[str]]:
    datasets, notes = ingest_datasets(sizes)
    return datasets, sizes, notes


if __name__ == "__main__":
    sys.exit(main())

"""Train a class-conditional GAN (CDCGAN or ACGAN) on an ingested data set: one flat loop, nanoGPT style.

Reads top to bottom: processes and device, data (the uint8 cache held as a tensor on the device),
models and :class:`GanStep`, resume, the collapse watch, MLflow, then the epoch loop, which every
few epochs scores the generator, writes a sample grid and an atomic checkpoint.

Single process: ``python -m stages.train_gan --dataset D --model M``. Several GPUs (or CPU processes
with gloo): ``torchrun --nproc_per_node N -m stages.train_gan ...``; each process takes its share of
the batch through a DistributedSampler, rank 0 alone logs and writes files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from pipeline.data.cache import load_meta, load_split
from pipeline.errors import ConfigError, DataError
from pipeline.gan.checkpoint import (FORMAT, load_checkpoint, load_generator, rng_state, save_checkpoint,
                                     set_rng_state)
from pipeline.gan.config import GanConfig
from pipeline.gan.models import build_models
from pipeline.gan.records import TrainSummary
from pipeline.gan.samples import generate_grid, save_grid
from pipeline.gan.stabilise import instance_noise_std
from pipeline.gan.step import STATS, GanStep, memory_format
from pipeline.gan.watch import CollapseWatch
from pipeline.runtime import available_cores, pick_device
from pipeline.quality.features import data_fingerprint, load_or_train_feature_net, to_signed_unit
from pipeline.progress import progress, quiet_mlflow_transfers, show_progress
from pipeline.tracking import Tracker, flatten, start_run

GRID_COLUMNS = 8
# Params that change neither the weights nor the RNG stream: a checkpoint made under other values resumes.
RESUME_NEUTRAL = {"train.epochs", "train.max_minutes", "train.tracking", "train.log_every_steps", "train.checkpoint_every_epochs",
                  "train.sample_every_epochs", "train.num_threads", "train.resume", "work_dir"}


@dataclass
class TrainResult:
    run_dir: Path
    last: Path
    best: Path
    samples: list[Path]
    history: list[dict]  # one row per epoch (the loss-curve CSV)
    summary: TrainSummary  # everything about the run (models/<dataset>/<model>/train_summary.json)


def headline_metrics(summary: TrainSummary) -> dict:
    """The metrics file of ``dvc metrics show`` from a run's ``summary``: steps, best FD, images/s and the lowest
    per-class diversity ratio at the best epoch (the most collapsed class; final value when none was measured)."""
    ratios = [v for v in summary.best_diversity_ratio_per_class.values() if v is not None]
    return {"steps": summary.steps, "epochs_done": summary.epochs_done, "best_epoch": summary.best_epoch,
            "best_fd": summary.best_quality_fd,
            "lowest_diversity_ratio": min(ratios) if ratios else summary.final.get("diversity_ratio"),
            "images_per_s": summary.images_per_s}


def registered_name(dataset: str, model: str) -> str:
    """The registry name of a data set's generator: ``<dataset>-<gan>``, e.g. ``mammography-acgan``."""
    return f"{dataset}-{model}"


def register_best_generator(tracker: Tracker, best_path: Path, dataset: str, model: str, best: dict) -> str | None:
    """Log the generator of ``best_path`` (its EMA weights when it has them, as generate uses it) as the MLflow
    model ``generator`` of this run and register it as a new version of :func:`registered_name`, with the data
    set, classes, resolution and quality figures as version tags. Returns the version (None: not registered)."""
    quiet_mlflow_transfers()
    G, state = load_generator(best_path, "cpu", prefer_ema=True)
    arch, classes = state["arch"], [str(c) for c in state["classes"]]
    weights = "ema" if state.get("G_ema") is not None else "G"
    example = {"z": np.random.RandomState(0).randn(2, arch["z_dim"]).astype(np.float32),
               "y": np.arange(2, dtype=np.int64) % len(classes)}
    about = {"dataset": dataset, "gan": model, "classes": classes, "channels": int(arch["channels"]),
             "resolution_px": int(arch["resolution_px"]), "z_dim": int(arch["z_dim"]), "weights": weights}
    if tracker.log_torch_model(G, "generator", example, best_path, metadata={"medsynth": about}) != "mlflow_model":
        return None
    quality = {"best_quality_fd": best.get("score"), **{f"fd.{c}": v for c, v in best.get("fd", {}).items()},
               **{f"diversity_ratio.{c}": v for c, v in best.get("diversity", {}).items()}}
    tags = {**about, "classes": ",".join(classes), "best_epoch": best.get("epoch", 0), "epoch": state.get("epoch", 0),
            **{k: f"{v:.4g}" for k, v in quality.items() if isinstance(v, (int, float)) and math.isfinite(v)}}
    name = registered_name(dataset, model)
    description = (f"{model.upper()} generator of data set {dataset!r}: {tags['resolution_px']} px, "
                   f"{tags['channels']} channel(s), classes {', '.join(classes)}. Draw images with "
                   f"`medsynth generate --checkpoint models:/{name}/<version> --label <class> -n 100 --out DIR`.")
    version = tracker.register_model("generator", name, tags, description)
    if version:
        tqdm.write(f"{dataset}/{model}: registered the best generator (epoch {tags['best_epoch']}) as "
                   f"models:/{name}/{version}", file=sys.stderr)
    return version


def resize_uint8(images: torch.Tensor, size_px: int) -> torch.Tensor:
    """Resize a uint8 batch once at load time (antialiased bilinear), so no step ever resizes."""
    if images.shape[-1] == size_px and images.shape[-2] == size_px:
        return images
    x = F.interpolate(images.float(), size=(size_px, size_px), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def run_fingerprint(cfg: GanConfig, model: str, data_key: str, world: int) -> str:
    flat = {k: v for k, v in flatten(cfg).items() if k not in RESUME_NEUTRAL and not k.startswith("watch.")}
    other = "acgan" if model == "cdcgan" else "cdcgan"
    flat = {k: v for k, v in flat.items() if not k.startswith(f"{other}.")}
    blob = json.dumps({"cfg": flat, "model": model, "data": data_key, "world": world}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_tier(q: dict, floor: float) -> int:
    """0: every class's diversity ratio >= ``floor``; 1: below it somewhere but none collapsed; 2: collapsed."""
    if q["collapsed"]:
        return 2
    return 0 if q.get("diversity_ratio", math.inf) >= floor else 1


def better_check(q: dict, best: dict, floor: float = 0.0) -> bool:
    """Is this collapse-watch check the new best checkpoint? Lowest mean FD within the best tier of
    :func:`check_tier`: a low FD can hide one image per class, so a check whose every class keeps
    ``floor`` x the real diversity wins over a lower-FD check that does not."""
    if math.isnan(q["quality_fd"]):
        return False
    tier = check_tier(q, floor)
    best_tier = check_tier({"collapsed": best.get("collapsed", True), "diversity_ratio":
                            min(best.get("diversity", {}).values(), default=math.inf)}, floor)
    if tier != best_tier:
        return tier < best_tier
    return q["quality_fd"] < best["score"]


def train_gan(cfg: GanConfig, model: str, data_dir: str | Path, run_dir: str | Path,
              dataset: str = "") -> TrainResult | None:
    """Train ``model`` on the cache in ``data_dir``; checkpoints and samples go to ``run_dir``.

    Returns the result on rank 0 (``None`` on other DDP ranks).
    """
    mcfg, tcfg, scfg, wcfg = cfg.model(model), cfg.train, cfg.stabilise, cfg.watch
    run_dir = Path(run_dir)
    dataset = dataset or Path(data_dir).name

    # ---------------------------------------------------------------- processes, device, threads
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ddp = world > 1
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(tcfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts: one GPU per process
    if ddp and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    torch.set_num_threads(tcfg.num_threads or max(1, available_cores() // local_world))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not tcfg.deterministic
        if tcfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # CPU kernels are deterministic for a fixed thread count; the switch matters on GPUs only (and
        # importing what it needs costs seconds, so it is not touched on CPU).
        torch.use_deterministic_algorithms(tcfg.deterministic, warn_only=True)
    if tcfg.batch_size % world:
        raise ConfigError(f"gan.train.batch_size: {tcfg.batch_size} does not split over {world} processes; "
                          f"use a multiple of {world}")
    local_bs = tcfg.batch_size // world

    try:
        # ------------------------------------------------------------ data: uint8 tensors on the device
        meta = load_meta(data_dir)
        classes = [str(c) for c in meta["classes"]]
        train_split, val_split = load_split(data_dir, "train"), load_split(data_dir, "val")
        resolution = mcfg.resolution_px or int(meta["resolution_px"])
        images = resize_uint8(torch.from_numpy(train_split.images), resolution).to(device)
        labels = torch.from_numpy(train_split.labels).to(device)
        val_images = resize_uint8(torch.from_numpy(val_split.images), resolution).to(device)
        val_labels = torch.from_numpy(val_split.labels).to(device)
        channels = images.shape[1]
        if channels not in (1, 3) or len(classes) < 2:
            raise DataError(f"{data_dir}: need 1 or 3 channels and >= 2 classes, got {channels} channels, "
                            f"classes {classes}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{data_dir}/cache/train.npz: labels outside 0..{len(classes) - 1}; re-run ingest")
        if len(labels) < tcfg.batch_size * tcfg.d_steps:
            raise DataError(f"{data_dir}: the train split has {len(labels)} images, fewer than gan.train.batch_size "
                            f"{tcfg.batch_size} x d_steps {tcfg.d_steps}; lower the batch size or d_steps")
        data_key = data_fingerprint(images, labels)

        # ------------------------------------------------------------ collapse watch and grid latents (rank 0)
        # Before the training RNG is seeded or restored: nothing here may shift it (own generators only).
        watch = None
        if master:
            run_dir.mkdir(parents=True, exist_ok=True)
            feature_net = load_or_train_feature_net(run_dir / "features.pt", images, labels, len(classes),
                                                    wcfg.feature_dim, wcfg.feature_epochs, tcfg.seed)
            watch = CollapseWatch(feature_net, val_images, val_labels, images, labels, classes,
                                  wcfg.samples_per_class, mcfg.z_dim, tcfg.seed, wcfg.min_diversity_ratio)
            grid_gen = torch.Generator(device=device).manual_seed(tcfg.seed + 104729)
            grid_z = torch.randn(GRID_COLUMNS, mcfg.z_dim, generator=grid_gen, device=device)

        # ------------------------------------------------------------ models, optimisers, the step
        torch.manual_seed(tcfg.seed)  # identical initial weights on every rank
        G, D = build_models(model, len(classes), channels, resolution, mcfg.base_channels, mcfg.z_dim,
                            mcfg.embed_dim, mcfg.d_conditioning, scfg.g_layer_noise_std, scfg.g_dropout,
                            mcfg.g_upsample, mcfg.g_norm, mcfg.d_norm, mcfg.skip_excitation,
                            mcfg.d_self_supervised, mcfg.acgan_twin, mcfg.d_minibatch_std)
        fmt = memory_format(tcfg, device)
        G.to(device, memory_format=fmt)
        D.to(device, memory_format=fmt)
        arch = {"n_classes": len(classes), "channels": channels, "resolution_px": resolution,
                "base_channels": mcfg.base_channels, "z_dim": mcfg.z_dim, "embed_dim": mcfg.embed_dim,
                "d_conditioning": mcfg.d_conditioning, "layer_noise_std": scfg.g_layer_noise_std,
                "dropout": scfg.g_dropout, "upsample": mcfg.g_upsample, "norm": mcfg.g_norm,
                "skip_excitation": mcfg.skip_excitation}

        # ------------------------------------------------------------ resume from last.pt when params match
        last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
        fingerprint = run_fingerprint(cfg, model, data_key, world)
        ckpt = None
        if tcfg.resume == "auto" and last_path.is_file():
            ckpt = load_checkpoint(last_path)  # on the CPU: RNG states must stay there; weights are copied over
            if ckpt.get("fingerprint") != fingerprint:
                if master:
                    print(f"{last_path}: trained with other params or data; starting a new run", file=sys.stderr)
                ckpt = None
        step_fn = GanStep(G, D, model, tcfg, scfg, mcfg, device)
        if ckpt is not None:
            step_fn.load_state_dict(ckpt)
        if ddp:  # wrap after loading, so DDP's initial broadcast sends the loaded weights
            step_fn.wrap_ddp()
        start_epoch, step = (ckpt["epoch"], ckpt["step"]) if ckpt else (0, 0)
        history: list[dict] = list(ckpt["history"]) if ckpt else []
        best = dict(ckpt["best"]) if ckpt else {"score": math.inf, "epoch": 0}
        if ckpt is not None:  # the fingerprint holds the world size: one saved RNG state per rank
            set_rng_state(ckpt["rng"][rank], device)
        else:
            torch.manual_seed(tcfg.seed + rank)  # other noise on every rank
            np.random.seed(tcfg.seed + rank)
            random.seed(tcfg.seed + rank)
            if master:  # a fresh run: drop what an older run left
                best_path.unlink(missing_ok=True)
                shutil.rmtree(run_dir / "samples", ignore_errors=True)
        sampler = DistributedSampler(range(len(labels)), num_replicas=world, rank=rank, shuffle=True,
                                     seed=tcfg.seed, drop_last=True)
        step_bs = local_bs * tcfg.d_steps  # real images one G step consumes: one batch per D step
        steps_per_epoch = len(sampler) // step_bs

        tags = {"resolution_px": resolution, "classes": ",".join(classes)}
        with start_run("train_gan", dataset, model, enabled=master and tcfg.tracking, params=flatten(cfg, "gan"),
                       run_id=ckpt.get("mlflow_run_id") if ckpt else None, tags=tags) as tracker:
            loop_seconds, images_done = 0.0, 0
            last_quality: dict = {}
            # time-based limits count this process's training time (a resumed run starts its clock again)
            minutes_at_check = 0.0
            if master:
                tqdm.write(f"{dataset}/{model}: {step_fn.precision}, {torch.get_num_threads()} thread(s), "
                           f"{'channels_last' if fmt == torch.channels_last else 'contiguous'} on {device}",
                           file=sys.stderr)
                tracker.set_tags({"precision": step_fn.precision, "num_threads": torch.get_num_threads()})
            # A timed run counts training minutes (it stops at max_minutes, long before its epochs), else epochs.
            timed = tcfg.max_minutes > 0
            bar = progress(desc=f"{dataset}/{model}", unit="min" if timed else "epoch",
                           total=tcfg.max_minutes if timed else tcfg.epochs, initial=0 if timed else start_epoch,
                           bar_format="{l_bar}{bar}| {n:.1f}/{total:g} min [{elapsed}<{remaining}{postfix}]"
                           if timed else None, disable=not (master and show_progress()))
            for epoch in range(start_epoch, tcfg.epochs):
                # ---------------------------------------------------- one epoch
                t_epoch = time.perf_counter()
                sampler.set_epoch(epoch)  # the permutation of this epoch depends on (seed, epoch) only
                order = torch.tensor(list(sampler), device=device)
                noise_std = instance_noise_std(epoch, scfg.instance_noise_std, scfg.instance_noise_decay_epochs,
                                               scfg.instance_noise_schedule)
                epoch_sum = torch.zeros(len(STATS), device=device)
                window = torch.zeros(len(STATS), device=device)
                for i in range(steps_per_epoch):
                    idx = order[i * step_bs:(i + 1) * step_bs]
                    stats = step_fn(to_signed_unit(images[idx]), labels[idx], noise_std)
                    epoch_sum += stats
                    window += stats
                    step += 1
                    if step % tcfg.log_every_steps == 0 and master:  # the only host sync inside an epoch
                        vals = (window / tcfg.log_every_steps).tolist()
                        tracker.log_metrics({f"step_{k}": v for k, v in zip(STATS, vals)}, step=step)
                        bar.set_postfix(loss_D=f"{vals[0]:.3f}", loss_G=f"{vals[1]:.3f}", refresh=False)
                        window.zero_()
                    elif step % tcfg.log_every_steps == 0:
                        window.zero_()
                if ddp:
                    dist.all_reduce(epoch_sum)
                    epoch_sum /= world
                means = (epoch_sum / max(steps_per_epoch, 1)).tolist()  # syncs: the epoch's work is done
                seconds = time.perf_counter() - t_epoch
                loop_seconds += seconds
                images_done += steps_per_epoch * tcfg.batch_size * tcfg.d_steps
                minutes = loop_seconds / 60.0
                out_of_time = tcfg.max_minutes > 0 and minutes >= tcfg.max_minutes
                timed_check = wcfg.every_minutes > 0 and minutes - minutes_at_check >= wcfg.every_minutes
                if ddp and (tcfg.max_minutes > 0 or wcfg.every_minutes > 0):
                    # rank 0's clock decides for every rank: they stop, check and gather at the same epoch
                    flags = torch.tensor([float(out_of_time), float(timed_check)], device=device)
                    dist.broadcast(flags, 0)
                    out_of_time, timed_check = (bool(f) for f in flags.tolist())

                # ---------------------------------------------------- every few epochs: score, grid, checkpoint
                done = epoch + 1
                is_last = done == tcfg.epochs or out_of_time
                do_eval = is_last or timed_check or (wcfg.every_epochs > 0 and done % wcfg.every_epochs == 0)
                do_grid = is_last or timed_check or (tcfg.sample_every_epochs > 0 and done % tcfg.sample_every_epochs == 0)
                if timed_check:
                    minutes_at_check = minutes
                do_ckpt = is_last or done % tcfg.checkpoint_every_epochs == 0
                rng_all = None
                if do_eval or do_ckpt:  # every rank takes part in the gather
                    rng_all = [rng_state(device)]
                    if ddp:
                        rng_all = [None] * world
                        dist.all_gather_object(rng_all, rng_state(device))
                if master:
                    row = {"epoch": done, "step": step, **dict(zip(STATS, means)), "noise_std": noise_std,
                           "images_per_s": steps_per_epoch * step_bs * world / max(seconds, 1e-9),
                           "train_minutes": minutes, "augment_p": step_fn.augment_p}
                    improved = False
                    if do_eval:
                        q = watch(step_fn.generator)
                        last_quality = q
                        row.update(quality_fd=q["quality_fd"], diversity_ratio=q["diversity_ratio"])
                        tracker.log_metrics({**{f"fd_{c}": v for c, v in q["fd"].items()},
                                             **{f"diversity_{c}": v for c, v in q["diversity"].items()},
                                             "collapsed_classes": len(q["collapsed"])}, step=done)
                        if q["collapsed"]:
                            msg = (f"epoch {done}: diversity of {', '.join(q['collapsed'])} fell below "
                                   f"{wcfg.min_diversity_ratio} x the real images' (mode collapse?)")
                            warnings.warn(msg, stacklevel=1)
                            tracker.set_tags({"collapse_warning": msg})
                        improved = better_check(q, best, wcfg.best_min_diversity)
                        if improved:
                            best = {"score": q["quality_fd"], "epoch": done, "fd": q["fd"], "diversity": q["diversity"],
                                    "collapsed": q["collapsed"]}
                    history.append(row)
                    tracker.log_metrics({k: v for k, v in row.items() if k not in ("epoch",)}, step=done)
                    if do_grid:
                        path = save_grid(generate_grid(step_fn.generator, grid_z, len(classes)), len(classes),
                                         run_dir / "samples" / f"epoch_{done:04d}.png", classes)
                        tracker.log_artifact(path, "samples")
                    if rng_all is not None:
                        state = {"format": FORMAT, "model": model, "arch": arch, "classes": classes,
                                 "dataset": dataset, **step_fn.state_dict(), "epoch": done, "step": step,
                                 "instance_noise_std": noise_std, "rng": rng_all,
                                 "sampler": {"seed": tcfg.seed, "epoch": done}, "best": best,
                                 "history": history, "config": dataclasses.asdict(cfg),
                                 "fingerprint": fingerprint, "mlflow_run_id": tracker.run_id}
                        if improved:
                            save_checkpoint(state, best_path)
                        if timed_check or (is_last and wcfg.every_minutes > 0):  # quality against minutes: one
                            # generator per check (and the last), kept for later scoring
                            save_checkpoint({**state, "watch": last_quality},
                                            run_dir / "snapshots" / f"minute_{minutes:06.1f}.pt")
                        if do_ckpt:
                            save_checkpoint(state, last_path)
                    postfix = {"epoch": f"{done}/{tcfg.epochs}"} if timed else {}
                    bar.set_postfix(postfix, loss_D=f"{means[0]:.3f}", loss_G=f"{means[1]:.3f}",
                                    fd=f"{last_quality.get('quality_fd', float('nan')):.2f}", refresh=False)
                    bar.update(min(seconds / 60.0, tcfg.max_minutes - bar.n) if timed else 1)
                    if do_eval:  # one line per check, also in logs where the progress bar is off
                        tqdm.write(f"{dataset}/{model} epoch {done}/{tcfg.epochs}: loss_D {means[0]:.3f} "
                                   f"loss_G {means[1]:.3f} D(x) {means[2]:.2f} D(G(z)) {means[3]:.2f} "
                                   f"FD {row['quality_fd']:.2f} diversity {row['diversity_ratio']:.2f} "
                                   f"{row['images_per_s']:.0f} img/s", file=sys.stderr)
                if ddp:
                    dist.barrier()
                if out_of_time:
                    if master:
                        tqdm.write(f"{dataset}/{model}: stopped after epoch {done} at {minutes:.1f} training minutes "
                                   f"(gan.train.max_minutes {tcfg.max_minutes})", file=sys.stderr)
                    break

            bar.close()
            if not master:
                return None
            if not best_path.is_file():  # no score could be computed (no class with 2 real images): use the last
                shutil.copy2(last_path, best_path)
            # ---------------------------------------------------------- the best generator in MLflow's registry
            if tracker.enabled:
                register_best_generator(tracker, best_path, dataset, model, best)
                tracker.log_metrics({"best_quality_fd": best["score"], "best_epoch": best["epoch"]})
            samples = sorted((run_dir / "samples").glob("*.png"))
            final = history[-1] if history else {}
            summary = TrainSummary(
                dataset=dataset, model=model, epochs=tcfg.epochs,
                epochs_done=final.get("epoch", 0), steps=step,
                train_minutes=loop_seconds / 60.0, precision=step_fn.precision,
                best_epoch=best["epoch"], best_quality_fd=best["score"],
                best_fd_per_class=best.get("fd", {}), best_diversity_ratio_per_class=best.get("diversity", {}),
                final={k: final.get(k) for k in (*STATS, "noise_std", "quality_fd", "diversity_ratio")},
                final_fd_per_class=last_quality.get("fd", {}),
                final_diversity_ratio_per_class=last_quality.get("diversity", {}),
                images_per_s=images_done / loop_seconds if loop_seconds else None,
                device=str(device), world_size=world, mlflow_run_id=tracker.run_id,
            )
            return TrainResult(run_dir, last_path, best_path, samples, history, summary)
    finally:
        if ddp and dist.is_initialized():
            dist.destroy_process_group()

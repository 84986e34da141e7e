"""The ``gan`` section of params.yaml: typed, with ranges (no torch: names come from :mod:`pipeline.names`).

The defaults are the CPU default run: the ``data_efficient`` recipe (pipeline/gan/recipes.py) at base
width 16 for 600 epochs; params.yaml writes them out. The case study's DCGAN (width 64, Adam 2e-4 both
ways, batch 64, dropout 0.3, no EMA or DiffAugment) is the ``case_study`` recipe, and its run length and
size on a GPU is ``presets/gpu.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.names import DIFFAUGMENT_POLICIES, GAN_LOSSES, GANS, LABEL_SMOOTHING, NOISE_SCHEDULES, policy_names
from pipeline.schema import rng

MODELS = GANS


@dataclass
class ModelConfig:
    """One architecture; ``gan.cdcgan`` and ``gan.acgan`` are both of this type."""

    resolution_px: int = field(default=0, metadata={"choices": [0, 16, 32, 64, 128, 256]})  # 0 = the cache's
    base_channels: int = field(default=16, metadata=rng(4, 1024))  # CPU default (case study: 64); width: G's last / D's first conv channels
    z_dim: int = field(default=100, metadata=rng(1, 4096))  # Gaussian latent size
    embed_dim: int = field(default=50, metadata=rng(1, 1024))  # class embedding fed to G with z
    d_conditioning: Literal["channels", "projection"] = "projection"  # cdcgan: label as one-hot maps or projection
    aux_weight: float = field(default=1.0, metadata=rng(0.0, 100.0))  # acgan: weight of the class cross-entropy
    g_upsample: Literal["transposed", "nearest"] = "nearest"  # nearest: x2 nearest + 3x3 conv (no lattice)
    g_norm: Literal["batch", "conditional_batch"] = "batch"  # conditional_batch: class-dependent gain and bias
    d_norm: Literal["batch", "spectral"] = "spectral"  # spectral: spectral norm on every D weight, no BatchNorm
    skip_excitation: bool = False  # FastGAN skip-layer excitation in G (8x8 map gates the last hidden map)
    d_self_supervised: bool = False  # FastGAN: D also reconstructs real images from its 8x8 features
    d_minibatch_std: bool = False  # ProGAN minibatch-std channel in D: lets D see fakes that do not vary with z
    acgan_fake_aux_in_d: bool = False  # acgan: D's class loss also on fakes (original ACGAN); false: real only
    acgan_twin: bool = True  # acgan: TAC-GAN twin class head on fakes (removes ACGAN's bias to easy images)


@dataclass
class TrainConfig:
    """The loop, optimisers, losses and the options beside the case-study stabilisation."""

    epochs: int = field(default=600, metadata=rng(1, 100000))
    batch_size: int = field(default=32, metadata=rng(2, 65536))  # global; each DDP process takes batch/world
    lr_g: float = field(default=1e-4, metadata=rng(0.0, 1.0))  # Adam learning rate of G
    lr_d: float = field(default=4e-4, metadata=rng(0.0, 1.0))  # Adam learning rate of D (TTUR: set apart)
    beta1: float = field(default=0.5, metadata=rng(0.0, 1.0))
    beta2: float = field(default=0.999, metadata=rng(0.0, 1.0))
    loss: str = field(default="non_saturating", metadata={"choices": list(GAN_LOSSES)})  # adversarial loss
    r1_gamma: float = field(default=0.0, metadata=rng(0.0, 1000.0))  # R1 penalty on real inputs; 0 = off
    ema_decay: float = field(default=0.999, metadata=rng(0.0, 0.99999))  # EMA of G weights; 0 = off (e.g. 0.999)
    diffaugment: str = "color,translation"  # DiffAugment policy, e.g. "color,translation,cutout"; "" = off
    diffaugment_p: float = field(default=0.0, metadata=rng(0.0, 1.0))  # per-image probability of each transform
    diffaugment_adaptive: bool = True  # ADA heuristic: move p so that r_t = E[sign(D(real))] stays near ada_target
    ada_target: float = field(default=0.6, metadata=rng(0.0, 1.0))  # r_t target (StyleGAN2-ADA: 0.6)
    ada_kimg: float = field(default=20.0, metadata=rng(0.1, 100000.0))  # thousand images for p to move 0 -> 1
    ada_interval_steps: int = field(default=4, metadata=rng(1, 100000))  # D steps between p updates
    d_steps: int = field(default=2, metadata=rng(1, 10))  # D updates per G update, each on its own real batch
    mode_seeking_weight: float = field(default=0.05, metadata=rng(0.0, 100.0))  # MSGAN term in G's loss; 0 = off
    cond_transition_steps: list[int] = field(default_factory=lambda: [0, 0])  # [start, end] G steps: class
    # conditioning weight 0 before start, linear to 1 at end (Shahbazi et al. 2022); [0, 0] = off
    max_minutes: float = field(default=0.0, metadata=rng(0.0, 100000.0))  # stop at the first epoch end after
    # this many minutes of training (equal-time ablations); 0 = run all epochs
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"  # auto: cuda, then mps, then cpu
    amp: bool = True  # CUDA only: mixed precision autocast
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  # bfloat16: no loss scaling, no host sync per step;
    # float16 (GPUs before Ampere; chosen anyway where bfloat16 is missing) adds a GradScaler
    cpu_bf16: Literal["auto", "on", "off"] = "auto"  # CPU bfloat16 autocast; auto: on where the CPU has
    # AVX512-BF16 or AMX (~1.9x faster), off elsewhere (~15x slower on AVX2-only CPUs)
    channels_last: Literal["auto", "always", "never"] = "auto"  # NHWC; auto: CUDA only (~10% slower on AVX2 CPUs)
    num_threads: int = field(default=0, metadata=rng(0, 1024))  # torch CPU threads; 0 = cores / processes
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))
    deterministic: bool = True  # deterministic kernels (always exact on CPU; slower cuDNN choice on CUDA)
    log_every_steps: int = field(default=20, metadata=rng(1, 1000000))  # host sync for step metrics
    checkpoint_every_epochs: int = field(default=100, metadata=rng(1, 100000))  # last.pt (atomic)
    sample_every_epochs: int = field(default=100, metadata=rng(0, 100000))  # per-class grid PNG; 0 = end only
    resume: Literal["auto", "never"] = "auto"  # auto: continue from last.pt when its params match
    tracking: bool = True  # MLflow; env PIPELINE_TRACKING=0 turns it off too

    def validate(self, prefix: str, where: str) -> None:
        steps = self.cond_transition_steps
        if len(steps) != 2 or not 0 <= steps[0] <= steps[1]:
            raise ConfigError(f"{where}: {prefix}.cond_transition_steps: {steps} must be "
                              f"[start, end] G steps with 0 <= start <= end ([0, 0] = off)")
        for name in policy_names(self.diffaugment):
            if name not in DIFFAUGMENT_POLICIES:
                raise ConfigError(f"{where}: {prefix}.diffaugment: unknown policy {name!r}; "
                                  f"use a comma-separated list of {', '.join(DIFFAUGMENT_POLICIES)}")


@dataclass
class StabiliseConfig:
    """Case-study stabilisation; each part switches off on its own for ablations."""

    instance_noise_std: float = field(default=0.1, metadata=rng(0.0, 10.0))  # on every D input; 0 = off
    instance_noise_schedule: str = field(default="linear", metadata={"choices": list(NOISE_SCHEDULES)})
    instance_noise_decay_epochs: int = field(default=300, metadata=rng(1, 100000))  # std is 0 from here on
    g_layer_noise_std: float = field(default=0.1, metadata=rng(0.0, 10.0))  # Gaussian noise after each G layer
    label_smoothing: str = field(default="two_sided", metadata={"choices": list(LABEL_SMOOTHING)})  # D target scheme
    real_target_range: list[float] = field(default_factory=lambda: [0.8, 1.2])  # soft real targets, uniform
    fake_target_range: list[float] = field(default_factory=lambda: [0.0, 0.3])  # soft fake targets (two_sided)
    label_flip_prob: float = field(default=0.05, metadata=rng(0.0, 0.5))  # swap a D target's side; 0 = off
    g_dropout: float = field(default=0.0, metadata=rng(0.0, 0.9))  # dropout after each hidden G block; 0 = off

    def validate(self, prefix: str, where: str) -> None:
        for name in ("real_target_range", "fake_target_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ConfigError(f"{where}: {prefix}.{name}: {lo_hi} must be [low, high] with low <= high")
            if lo_hi[0] < 0 or lo_hi[1] > 2:
                raise ConfigError(f"{where}: {prefix}.{name}: {lo_hi} must lie within [0, 2]")


@dataclass
class WatchConfig:
    """Collapse watch and best checkpoint: per-class Frechet distance and diversity on real val images."""

    every_epochs: int = field(default=100, metadata=rng(0, 100000))  # 0 = only at the end
    samples_per_class: int = field(default=50, metadata=rng(2, 100000))  # fakes per class per check
    feature_epochs: int = field(default=5, metadata=rng(1, 1000))  # training of the in-project feature CNN
    feature_dim: int = field(default=64, metadata=rng(2, 1024))  # penultimate width of that CNN
    min_diversity_ratio: float = field(default=0.5, metadata=rng(0.0, 10.0))  # warn below this x real diversity
    best_min_diversity: float = field(default=0.7, metadata=rng(0.0, 10.0))  # best checkpoint: lowest FD among
    # checks whose every class keeps this x real diversity, if any does (then among those not collapsed)
    every_minutes: float = field(default=0.0, metadata=rng(0.0, 100000.0))  # also check (and write a grid) at the
    # first epoch end after this many training minutes since the last check; 0 = by epochs only


@dataclass
class GanConfig:
    """Root of ``gan:``."""

    train: TrainConfig = field(default_factory=TrainConfig)
    stabilise: StabiliseConfig = field(default_factory=StabiliseConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    cdcgan: ModelConfig = field(default_factory=ModelConfig)
    acgan: ModelConfig = field(default_factory=ModelConfig)
    work_dir: str = "runs"  # checkpoints + feature cache per run, outside DVC outs so resume survives repro

    def validate(self, prefix: str, where: str) -> None:
        if self.train.loss == "hinge" and self.stabilise.label_smoothing != "none":
            raise ConfigError(f"{where}: {prefix}.train.loss hinge has no soft targets, so "
                              f"{prefix}.stabilise.label_smoothing {self.stabilise.label_smoothing!r} would do "
                              f"nothing; set it to none (flips still apply) or use loss non_saturating")

    def model(self, name: str) -> ModelConfig:
        if name not in MODELS:
            raise ConfigError(f"--model {name!r}: unknown GAN; use one of {', '.join(MODELS)}")
        return getattr(self, name)

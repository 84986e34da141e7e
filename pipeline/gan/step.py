"""One GAN update (``d_steps`` D steps then a G step) with the case-study stabilisation and the modern options.

:class:`GanStep` owns G, D, the EMA of G, both optimisers and grad scalers; the epoch loop in
:mod:`pipeline.gan.train` calls it once per batch and checkpoints its :meth:`GanStep.state_dict`.
Per-step statistics come back as a tensor on the device, so the loop decides when to sync the host.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from pipeline.gan.augment import AdaptiveP, diff_augment
from pipeline.gan.config import ModelConfig, StabiliseConfig, TrainConfig
from pipeline.gan.losses import LOSSES, aux_loss
from pipeline.gan.models import Discriminator, Generator, set_cond_weight
from pipeline.runtime import precision_name, use_cpu_bf16
from pipeline.gan.stabilise import add_instance_noise, d_targets, flip_targets

STATS = ("loss_D", "loss_G", "D_x", "D_G_z", "aux_acc")  # what __call__ returns, in this order


class GanStep:
    """``step(real, y, noise_std)`` updates D ``d_steps`` times and G once; returns ``STATS`` as a detached tensor.

    ``real`` and ``y`` hold ``d_steps`` batches back to back: each D update gets its own real batch.
    """

    def __init__(self, G: Generator, D: Discriminator, model: str, train: TrainConfig, stabilise: StabiliseConfig,
                 model_cfg: ModelConfig, device: torch.device):
        self.G_raw, self.D_raw = G, D
        self.acgan = model == "acgan"
        self.train_cfg, self.stab, self.model_cfg, self.aux_weight = train, stabilise, model_cfg, model_cfg.aux_weight
        self.loss = LOSSES[train.loss]
        self.device = device
        self.memory_format = memory_format(train, device)
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False) if train.ema_decay > 0 else None
        self.ema_updates = 0  # for the warm-up of the EMA decay; checkpointed
        self.g_steps = 0  # G updates done: the clock of the conditioning transition; checkpointed
        self.ada = (AdaptiveP(train.diffaugment_p, train.ada_target, train.ada_kimg, train.ada_interval_steps)
                    if train.diffaugment_adaptive and train.diffaugment else None)
        self.opt_G = torch.optim.Adam(G.parameters(), lr=train.lr_g, betas=(train.beta1, train.beta2))
        self.opt_D = torch.optim.Adam(D.parameters(), lr=train.lr_d, betas=(train.beta1, train.beta2))
        # float16 needs loss scaling against gradient underflow (and GradScaler syncs the host every step to
        # skip steps with inf gradients); bfloat16 has float32's range and needs neither.
        cuda_amp = train.amp and device.type == "cuda"
        bf16 = train.amp_dtype == "bfloat16" and (not cuda_amp or torch.cuda.is_bf16_supported())
        cpu_bf16 = device.type == "cpu" and use_cpu_bf16(train.cpu_bf16)
        self.precision = precision_name(device, cuda_amp, bf16, cpu_bf16)
        self.scaler_G = torch.amp.GradScaler("cuda", enabled=cuda_amp and not bf16)
        self.scaler_D = torch.amp.GradScaler("cuda", enabled=cuda_amp and not bf16)
        if cuda_amp:
            self.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
        elif cpu_bf16:
            self.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            self.autocast = nullcontext
        self.G, self.D = G, D  # what the D step calls: DDP wrappers after wrap_ddp()

    def wrap_ddp(self) -> None:
        """Average gradients over processes (call after loading a checkpoint: DDP broadcasts rank 0's weights)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.G, self.D = DDP(self.G_raw, device_ids=ids), DDP(self.D_raw, device_ids=ids)

    @property
    def generator(self) -> Generator:
        """The generator to sample from: the EMA when there is one."""
        return self.G_ema if self.G_ema is not None else self.G_raw

    @property
    def augment_p(self) -> float:
        return self.ada.p if self.ada is not None else self.train_cfg.diffaugment_p

    def d_input(self, x: torch.Tensor, noise_std: float) -> torch.Tensor:
        """What D sees: DiffAugment (same policy and probability for real and fake), then instance noise."""
        return add_instance_noise(diff_augment(x, self.train_cfg.diffaugment, self.augment_p), noise_std)

    def d_update(self, real: torch.Tensor, y: torch.Tensor, fake: torch.Tensor, noise_std: float,
                 y_fake: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One D update on a real batch and a (detached) fake batch (labels ``y_fake``, default ``y``);
        returns loss, D(real), D(fake), aux(real)."""
        n, stab, loss, mcfg = len(y), self.stab, self.loss, self.model_cfg
        y_fake = y if y_fake is None else y_fake
        with self.autocast():
            real_t, fake_t = d_targets(n, stab.label_smoothing, stab.real_target_range, stab.fake_target_range,
                                       self.device)
            real_t, fake_t = flip_targets(real_t, fake_t, stab.label_flip_prob)
            real_in = self.d_input(real, noise_std)
            if self.train_cfg.r1_gamma > 0:
                real_in = real_in.detach().requires_grad_(True)
            out_real, aux_real, _, recon = self.D(real_in, y, extras=True)
            out_fake, aux_fake, twin_fake, _ = self.D(self.d_input(fake, noise_std), y_fake, extras=True)
            loss_D = loss.d_term(out_real.float(), real_t) + loss.d_term(out_fake.float(), fake_t)
            if self.acgan:  # ACGAN: D classifies real images (and fakes, in the original recipe)
                aux_d = aux_loss(aux_real.float(), y)
                if mcfg.acgan_fake_aux_in_d:
                    aux_d = aux_d + aux_loss(aux_fake.float(), y_fake)
                if twin_fake is not None:  # TAC-GAN: the twin head learns which class a fake was drawn for
                    aux_d = aux_d + aux_loss(twin_fake.float(), y_fake)
                loss_D = loss_D + self.aux_weight * aux_d
            if recon is not None:  # FastGAN: D must also describe the real image it saw
                loss_D = loss_D + F.mse_loss(recon[0].float(), recon[1].float())
        if self.train_cfg.r1_gamma > 0:  # R1 (Mescheder 2018): penalise D's gradient on real inputs
            (grad,) = torch.autograd.grad(out_real.float().sum(), real_in, create_graph=True)
            loss_D = loss_D + 0.5 * self.train_cfg.r1_gamma * grad.float().pow(2).flatten(1).sum(1).mean()
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler_D.scale(loss_D).backward()
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        if self.ada is not None:
            self.ada.accumulate(out_real)
        return loss_D, out_real, out_fake, aux_real

    def __call__(self, real: torch.Tensor, y: torch.Tensor, noise_std: float) -> torch.Tensor:
        d_steps = self.train_cfg.d_steps
        n = len(y) // d_steps
        real = real.contiguous(memory_format=self.memory_format)
        weight = cond_weight(self.g_steps, *self.train_cfg.cond_transition_steps)
        set_cond_weight(weight, self.G_raw, self.D_raw, self.G_ema)

        # ---- D steps. Fakes of the earlier D steps are made without a graph; the last fake batch is made
        # once, detached for D and reused with its graph in the G step. Fake labels follow the real batch,
        # so D cannot tell fakes by how often a class appears.
        mode_seeking = self.train_cfg.mode_seeking_weight > 0
        for k in range(d_steps):
            r, yk = real[k * n:(k + 1) * n], y[k * n:(k + 1) * n]
            z = torch.randn(n, self.G_raw.z_dim, device=self.device)
            yf = yk
            if mode_seeking:  # fakes in pairs of one class: (z_i, y_i) and (z_{i+n/2}, y_i)
                h = n // 2
                yf = torch.cat([yk[:h], yk[:n - h]])
            last = k == d_steps - 1
            with self.autocast(), (nullcontext() if last else torch.no_grad()):
                fake = self.G(z, yf)
            loss_D, out_real, out_fake, aux_real = self.d_update(r, yk, fake.detach(), noise_std, yf)

        # ---- G step through the raw D with its weights frozen: no D gradients, no DDP reduction for D.
        self.D_raw.requires_grad_(False)
        with self.autocast():
            out_gen, aux_gen, twin_gen, _ = self.D_raw(self.d_input(fake, noise_std), yf, extras=True)
            loss_G = self.loss.g_term(out_gen.float())
            if self.acgan:  # the class term is phased in with the conditioning transition
                aux_g = aux_loss(aux_gen.float(), yf)
                if twin_gen is not None:  # TAC-GAN: match the class distribution, not only its easy centre
                    aux_g = aux_g - aux_loss(twin_gen.float(), yf)
                loss_G = loss_G + weight * self.aux_weight * aux_g
            if mode_seeking:
                loss_G = loss_G + self.train_cfg.mode_seeking_weight * mode_seeking_term(fake, z)
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler_G.scale(loss_G).backward()
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        self.D_raw.requires_grad_(True)
        self.g_steps += 1
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G_raw, ema_decay_at(self.train_cfg.ema_decay, self.ema_updates))
            self.ema_updates += 1
        set_cond_weight(1.0, self.G_raw, self.G_ema)  # sampling outside the step is conditional

        with torch.no_grad():
            aux_acc = ((aux_real.argmax(1) == yk).float().mean() if self.acgan
                       else torch.zeros((), device=self.device))
            return torch.stack([loss_D.detach().float(), loss_G.detach().float(),
                                torch.sigmoid(out_real.detach().float()).mean(),
                                torch.sigmoid(out_fake.detach().float()).mean(), aux_acc])

    def state_dict(self) -> dict:
        return {"G": self.G_raw.state_dict(), "D": self.D_raw.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
                "ema_updates": self.ema_updates, "g_steps": self.g_steps,
                "ada": self.ada.state_dict() if self.ada is not None else None,
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "scaler_G": self.scaler_G.state_dict(), "scaler_D": self.scaler_D.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.G_raw.load_state_dict(state["G"])
        self.D_raw.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
            self.ema_updates = int(state.get("ema_updates", 0))
        self.g_steps = int(state.get("g_steps", 0))
        if self.ada is not None and state.get("ada"):
            self.ada.load_state_dict(state["ada"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if state.get("scaler_G"):
            self.scaler_G.load_state_dict(state["scaler_G"])
        if state.get("scaler_D"):
            self.scaler_D.load_state_dict(state["scaler_D"])


def memory_format(train: TrainConfig, device: torch.device) -> torch.memory_format:
    """NHWC (channels_last) speeds convolutions up on GPUs; on an AVX2 CPU it measured ~10% slower."""
    nhwc = train.channels_last == "always" or (train.channels_last == "auto" and device.type == "cuda")
    return torch.channels_last if nhwc else torch.contiguous_format


def mode_seeking_term(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode seeking (Mao et al. 2019, MSGAN): 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|) over pairs of one class.

    The fakes come in pairs (i, i + n/2) drawn for the same class; minimising the inverse ratio pushes G to
    turn different latents into different images, against the per-class collapse of conditional GANs.
    """
    h = len(z) // 2
    images = (fake[:h].float() - fake[h:2 * h].float()).abs().flatten(1).mean(1)
    latents = (z[:h] - z[h:2 * h]).abs().mean(1)
    return 1.0 / ((images / latents).mean() + eps)


def cond_weight(step: int, start: int, end: int) -> float:
    """Conditioning transition (Shahbazi et al. 2022): 0 before ``start`` G steps, linear to 1 at ``end``.

    Conditioning a GAN on classes from the first step makes small data sets collapse per class; starting
    unconditional lets G learn what all the images share first. ``start == end == 0`` is off (always 1).
    """
    if end <= 0 or step >= end:
        return 1.0
    if step < start:
        return 0.0
    return (step - start) / max(end - start, 1)


def ema_decay_at(decay: float, updates: int) -> float:
    """Warmed-up EMA decay: min(decay, (1 + n) / (10 + n)) after n updates (TensorFlow's ``num_updates`` rule).

    Without it an EMA of 0.999 still weighs the random initial weights by 0.999^n (half after 700 steps),
    so a short run's EMA generator draws flat grey averages and the collapse watch reads them as collapse.
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for weights; BatchNorm statistics are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)

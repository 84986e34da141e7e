"""One classifier training: a network from scratch, checkpoint selection on the real validation split.

Read top to bottom: :func:`build_classifier`, :class:`TrainImages` (the arm's training set as a Dataset),
:func:`train_classifier` (one flat loop: cosine learning rate, smoothed validation score, best window's
weights restored) and :func:`predict_proba`. Every arm calls this with the same
:class:`~pipeline.classify.config.BudgetConfig`; only the :class:`~pipeline.classify.arms.TrainSet` differs.

Deterministic on CPU for a seed and a thread count: ``torch.manual_seed(seed)`` fixes the initial weights
(the same for every arm of a seed, which makes the arms' comparison paired from the first step), a seeded
generator fixes the batch order, the arm's augmentation has its own seeded stream, and deterministic
algorithms are switched on.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch.utils.data import BatchSampler, Dataset, RandomSampler, WeightedRandomSampler

from pipeline.classify.arms import TrainSet
from pipeline.classify.config import BudgetConfig, ClassifierConfig
from pipeline.data.cache import SplitArrays


def build_classifier(channels: int, n_classes: int, resolution_px: int, cfg: ClassifierConfig) -> torch.nn.Module:
    """The network ``cfg.network`` names, with fresh weights (torch's global seed decides them)."""
    if cfg.network == "monai_resnet":
        from monai.networks.nets import ResNet

        # 3x3 stride-2 stem, no max pool: 64 px -> 32 px into the first stage (the 7x7 stem of ImageNet
        # ResNets with its max pool would leave 2 px for the last stage).
        return ResNet("basic", list(cfg.blocks), list(cfg.channels), spatial_dims=2, n_input_channels=channels,
                      conv1_t_size=3, conv1_t_stride=2, no_max_pool=True, num_classes=n_classes)
    if cfg.network == "monai_densenet":
        from monai.networks.nets import DenseNet

        return DenseNet(spatial_dims=2, in_channels=channels, out_channels=n_classes, init_features=cfg.channels[0],
                        growth_rate=cfg.growth_rate, block_config=tuple(cfg.blocks), bn_size=4,
                        dropout_prob=cfg.dropout)
    return compact_cnn(channels, n_classes, resolution_px, cfg)


def compact_cnn(channels: int, n_classes: int, resolution_px: int, cfg: ClassifierConfig) -> torch.nn.Module:
    """A compact CNN: per width one stride-2 block (3x3 conv, batch norm, ReLU), then the head and a linear layer.

    The design of MONAI's ``Classifier`` (stride-2 conv blocks, then a linear layer) in plain torch: importing
    MONAI costs about 6 s of CPU per process, more than a whole training here. Head ``flatten`` (MONAI's) keeps
    where things are, which suits centred patches and cells (on the phantoms it beat ``avgpool``, global average
    pooling, by 0.1 to 0.3 macro-F1); ``avgpool`` is translation invariant. The 16-32-64-128 default trains at
    several hundred 64 px images/s on one CPU core.
    """
    layers: list[torch.nn.Module] = []
    c_in, side = channels, resolution_px
    for width in cfg.channels:
        if cfg.block == "conv_pool":  # VGG-like: the 3x3 conv sees every pixel, max pooling halves the map
            layers += [torch.nn.Conv2d(c_in, width, 3, padding=1, bias=False), torch.nn.BatchNorm2d(width),
                       torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2, ceil_mode=True)]
        else:
            layers += [torch.nn.Conv2d(c_in, width, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(width),
                       torch.nn.ReLU(inplace=True)]
        c_in, side = width, (side + 1) // 2
    if cfg.head == "avgpool":
        layers.append(torch.nn.AdaptiveAvgPool2d(1))
        side = 1
    layers += [torch.nn.Flatten(), torch.nn.Dropout(cfg.dropout), torch.nn.Linear(c_in * side * side, n_classes)]
    return torch.nn.Sequential(*layers)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [-1, 1] (the GANs' range, so real and synthetic are treated alike)."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)


class TrainImages(Dataset):
    """An arm's training set: pre-converted tensors, or the arm's transform applied to uint8 HWC every time."""

    def __init__(self, train: TrainSet):
        self.labels = torch.from_numpy(train.labels.astype(np.int64))
        self.transform = train.transform
        if self.transform is None:
            self.inputs = to_input(train.images)
        else:
            self.hwc = np.ascontiguousarray(train.images.transpose(0, 2, 3, 1))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([i])
        return x[0], y[0]

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.transform is None:
            return self.inputs[indices], self.labels[indices]
        images = np.stack([self.transform(self.hwc[i]) for i in indices])
        return to_input(images.transpose(0, 3, 1, 2)), self.labels[indices]


@dataclass
class TrainResult:
    model: torch.nn.Module  # with the selected epoch's weights restored
    best_epoch: int  # 1-based: the last epoch of the best monitor window
    epochs_run: int
    train_time_s: float
    history: list[dict] = field(default_factory=list)  # per epoch: lr, train_loss, val_* and the smoothed monitor


def _optimizer(model: torch.nn.Module, budget: BudgetConfig) -> torch.optim.Optimizer:
    if budget.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=budget.lr, momentum=budget.momentum,
                               weight_decay=budget.weight_decay)
    cls = torch.optim.AdamW if budget.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)


def lr_factor(epoch: int, budget: BudgetConfig) -> float:
    """Multiplier of ``budget.lr`` during 1-based ``epoch``: linear warm-up from 0.1, then half a cosine to 0
    at ``max_epochs`` (a run stopped early ends with some learning rate left); 1.0 for ``constant``."""
    if budget.lr_schedule == "constant":
        return 1.0
    if epoch <= budget.warmup_epochs:
        return 0.1 + 0.9 * (epoch - 1) / budget.warmup_epochs
    span = max(budget.max_epochs - budget.warmup_epochs, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1 - budget.warmup_epochs) / span))


@torch.no_grad()
def _logits(model: torch.nn.Module, inputs: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(inputs[i:i + chunk]).float() for i in range(0, len(inputs), chunk)])


def validation_scores(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Unweighted loss, class-balanced loss (mean of the per-class mean losses), macro-F1 and balanced accuracy
    (mean recall over the classes present)."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    present = [k for k in range(n_classes) if (labels == k).any()]
    pred = logits.argmax(dim=1)
    f1 = f1_score(labels.numpy(), pred.numpy(), labels=list(range(n_classes)), average="macro", zero_division=0)
    return {"val_loss": float(ce.mean()),
            "val_balanced_loss": float(torch.stack([ce[labels == k].mean() for k in present]).mean()),
            "val_macro_f1": float(f1),
            "val_balanced_accuracy": float(np.mean([(pred[labels == k] == k).float().mean().item() for k in present]))}


def monitor_value(history: list[dict], monitor: str, window: int) -> float:
    """The selection score after the last epoch of ``history``: the mean of ``monitor`` over the last ``window``
    epochs (fewer at the start), sign-flipped for a loss so that larger is always better."""
    recent = [h[monitor] for h in history[-window:]]
    value = float(np.mean(recent))
    return -value if monitor.endswith("loss") else value


def train_classifier(train: TrainSet, val: SplitArrays, n_classes: int, model_cfg: ClassifierConfig,
                     budget: BudgetConfig, seed: int) -> TrainResult:
    """Train from scratch (or from the arm's ``train.init_model``) and keep the epoch that ends the best window
    of the smoothed validation ``monitor``; stop at ``max_epochs``, or after ``min_epochs`` once ``patience``
    epochs brought no better window. Ties go to the earlier epoch (the first to reach the score)."""
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    channels, resolution = train.images.shape[1], train.images.shape[-1]
    model = train.init_model() if train.init_model is not None else \
        build_classifier(channels, n_classes, resolution, model_cfg)
    optimizer = _optimizer(model, budget)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: lr_factor(done + 1, budget))
    data = TrainImages(train)
    generator = torch.Generator().manual_seed(seed)
    if train.sample_weights is not None:
        sampler = WeightedRandomSampler(torch.as_tensor(train.sample_weights, dtype=torch.double), len(data),
                                        replacement=True, generator=generator)
    else:
        sampler = RandomSampler(range(len(data)), generator=generator)
    batches = BatchSampler(sampler, budget.batch_size, drop_last=False)
    weight = None if train.class_weights is None else torch.as_tensor(train.class_weights, dtype=torch.float32)
    val_inputs, val_labels = to_input(val.images), torch.from_numpy(val.labels.astype(np.int64))
    device_type = "cuda" if next(model.parameters()).is_cuda else "cpu"

    start = time.perf_counter()
    best_value, best_state, best_epoch, history = None, None, 0, []
    for epoch in range(1, budget.max_epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for indices in batches:
            if len(indices) < 2:  # batch norm cannot train on one image
                continue
            inputs, labels = data.batch(indices)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=budget.bf16):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), labels, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(indices)
            seen += len(indices)
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=budget.bf16):
            scores = validation_scores(_logits(model, val_inputs), val_labels, n_classes)
        history.append({"epoch": epoch, "lr": lr, "train_loss": total / max(seen, 1), **scores})
        value = monitor_value(history, budget.monitor, budget.monitor_window_epochs)
        history[-1]["monitor_smoothed"] = abs(value)
        if best_value is None or value > best_value:
            best_value, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= budget.patience and epoch >= budget.min_epochs:
            break
    model.load_state_dict(best_state)
    for row in history:
        row["selected"] = int(row["epoch"] == best_epoch)
    return TrainResult(model, best_epoch, epoch, time.perf_counter() - start, history)


def predict_proba(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, K) as float64 (rows sum to 1 for the metrics)."""
    return torch.softmax(_logits(model, to_input(images)).double(), dim=1).numpy()

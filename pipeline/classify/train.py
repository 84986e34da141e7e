"""One classifier training: a compact CNN from scratch, early stopping on the real validation split.

Read top to bottom: :func:`build_classifier`, :class:`TrainImages` (the arm's training set as a Dataset),
:func:`train_classifier` (one flat loop) and :func:`predict_proba`. Every arm calls this with the same
:class:`~pipeline.classify.config.BudgetConfig`; only the :class:`~pipeline.classify.arms.TrainSet` differs.

Deterministic on CPU for a seed and a thread count: ``torch.manual_seed(seed)`` fixes the initial weights
(the same for every arm of a seed, which makes the arms' comparison paired from the first step), a seeded
generator fixes the batch order, the arm's augmentation has its own seeded stream, and deterministic
algorithms are switched on.
"""
from __future__ import annotations

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
    model: torch.nn.Module  # with the best epoch's weights restored
    best_epoch: int  # 1-based
    epochs_run: int
    train_time_s: float
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_loss, val_balanced_loss, ...


def _optimizer(model: torch.nn.Module, budget: BudgetConfig) -> torch.optim.Optimizer:
    if budget.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=budget.lr, momentum=budget.momentum,
                               weight_decay=budget.weight_decay)
    cls = torch.optim.AdamW if budget.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)


@torch.no_grad()
def _logits(model: torch.nn.Module, inputs: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(inputs[i:i + chunk]) for i in range(0, len(inputs), chunk)])


def validation_scores(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Unweighted loss, class-balanced loss (mean of the per-class mean losses) and macro-F1."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    per_class = [ce[labels == k].mean() for k in range(n_classes) if (labels == k).any()]
    pred = logits.argmax(dim=1).numpy()
    return {"val_loss": float(ce.mean()), "val_balanced_loss": float(torch.stack(per_class).mean()),
            "val_macro_f1": float(f1_score(labels.numpy(), pred, labels=list(range(n_classes)), average="macro",
                                           zero_division=0))}


def _rank(scores: dict[str, float], monitor: str) -> tuple[float, ...]:
    """Larger is better; macro-F1 ties (frequent on a small split) go to the lower loss."""
    if monitor == "val_macro_f1":
        return (scores["val_macro_f1"], -scores["val_loss"])
    return (-scores[monitor],)


def train_classifier(train: TrainSet, val: SplitArrays, n_classes: int, model_cfg: ClassifierConfig,
                     budget: BudgetConfig, seed: int) -> TrainResult:
    """Train from scratch; stop after ``patience`` epochs without a better ``monitor`` value on the real
    validation split (not before ``min_epochs``) and restore the best epoch's weights."""
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    channels, resolution = train.images.shape[1], train.images.shape[-1]
    model = build_classifier(channels, n_classes, resolution, model_cfg)
    optimizer = _optimizer(model, budget)
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

    start = time.perf_counter()
    best_rank, best_state, best_epoch, history = None, None, 0, []
    for epoch in range(1, budget.max_epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for indices in batches:
            if len(indices) < 2:  # batch norm cannot train on one image
                continue
            inputs, labels = data.batch(indices)
            loss = F.cross_entropy(model(inputs), labels, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(indices)
            seen += len(indices)
        scores = validation_scores(_logits(model, val_inputs), val_labels, n_classes)
        history.append({"epoch": epoch, "train_loss": total / max(seen, 1), **scores})
        rank = _rank(scores, budget.monitor)
        if best_rank is None or rank > best_rank:
            best_rank, best_epoch = rank, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= budget.patience and epoch >= budget.min_epochs:
            break
    model.load_state_dict(best_state)
    return TrainResult(model, best_epoch, epoch, time.perf_counter() - start, history)


def predict_proba(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, K) as float64 (rows sum to 1 for the metrics)."""
    return torch.softmax(_logits(model, to_input(images)).double(), dim=1).numpy()

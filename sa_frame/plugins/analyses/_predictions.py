"""Predictions of a run's network under single augmentations and guided masks.

For every batch of evaluation images and every input condition (the original image, or
one augmentation with `n_inner` parameter draws), ONE forward pass evaluates all masking
configurations at once: the batch is repeated K times and the hooks multiply each
copy's checkpoint output by its own mask factor. Only the top-n classes and their
probabilities are kept (never activations), in a resumable store of part files, one per
batch, each written atomically; the parameters are a function of (seed, batch), so a
resumed store equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from sa_frame import Augmentation, Rebuilt, StackedMasking, UsageError, mask_factor

ORIGINAL = "original"
NO_MASK = "none"


@dataclass(frozen=True)
class MaskConfig:
    """One way of applying a variable's mask: raw, inverted, or thresholded (alpha, q)."""

    variable: str
    mode: str
    alpha: float = 0.0
    q: float = 0.0

    @property
    def label(self) -> str:
        if self.mode == NO_MASK:
            return NO_MASK
        if self.mode == "threshold":
            return f"{self.variable}:alpha={self.alpha:.2f},q={self.q:.2f}"
        return f"{self.variable}:{self.mode}"


def feature_labels(alphas: Sequence[float], quantiles: Sequence[float]) -> list[str]:
    """The 17 masking features of a (input, variable) pair: thresholds (alpha-major), raw, invert."""
    return [f"alpha={a:.2f},q={q:.2f}" for a in alphas for q in quantiles] + ["raw", "invert"]


def mask_configs(variables: Sequence[str], alphas: Sequence[float], quantiles: Sequence[float]) -> list[MaskConfig]:
    """No mask first, then each variable's configurations in feature order."""
    configs = [MaskConfig("", NO_MASK)]
    for v in variables:
        configs += [MaskConfig(v, "threshold", a, q) for a in alphas for q in quantiles]
        configs += [MaskConfig(v, "raw"), MaskConfig(v, "invert")]
    return configs


def mask_factors(masks: Mapping[str, Mapping[str, Tensor]], configs: Sequence[MaskConfig]) -> dict[str, Tensor]:
    """checkpoint -> (K, *shape) multipliers, one per configuration (ones for no mask)."""
    out = {}
    for checkpoint, per_variable in masks.items():
        some = next(iter(per_variable.values()))
        factors = [torch.ones_like(some) if c.mode == NO_MASK else
                   mask_factor(per_variable[c.variable], c.mode, c.alpha, c.q) for c in configs]
        out[checkpoint] = torch.stack(factors)
    return out


def draw_params(aug: Augmentation, batch: int, n_inner: int, generator: torch.Generator) -> list[dict[str, Tensor]]:
    """`n_inner` independent parameter sets per image (one, with no values, if parameter-free)."""
    if not aug.params:
        return [{}]
    return [{name: variable.from_unit(torch.rand(batch, generator=generator, dtype=torch.float64)).float()
             for name, variable in aug.params.items()} for _ in range(n_inner)]


def input_conditions(augmentations: Sequence[Augmentation], images: Tensor, n_inner: int,
                     generator: torch.Generator) -> Iterator[tuple[str, Tensor]]:
    """(input key, [0, 1] images) for the original and each draw of each augmentation."""
    yield ORIGINAL, images
    for aug in augmentations:
        for params in draw_params(aug, images.shape[0], n_inner, generator):
            yield aug.name, aug(images, {k: v.to(images.device) for k, v in params.items()})


def conditions(augmentations: Sequence[Augmentation], n_inner: int) -> int:
    """Input conditions per image: the original, and each augmentation alone per draw."""
    return 1 + sum(n_inner if aug.params else 1 for aug in augmentations)


@dataclass(frozen=True)
class StoreIdentity:
    """What determines a prediction store's contents (compared before reusing parts)."""

    results: str
    configs: tuple[str, ...]
    checkpoints: tuple[str, ...]
    value: str
    per_class: int
    partition: str
    n_inner: int
    seed: int
    top_n: int
    batch_size: int


class PredictionStore:
    """A folder of part files `batch-<k>.h5` (each written atomically) plus `identity.json` (the
    settings that determine them); settings that differ get their own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def prepare(self, identity: StoreIdentity, force: bool = False) -> PredictionStore:
        """The store of these settings: sub-folder `<hash of the settings>` of this folder, created
        or reused (its finished part files are kept unless `force`)."""
        wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(identity).items()}
        digest = hashlib.sha1(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:12]
        store = PredictionStore(self.folder / digest)
        if force and store.folder.exists():
            shutil.rmtree(store.folder)
        store.folder.mkdir(parents=True, exist_ok=True)
        manifest = store.folder / "identity.json"
        if not manifest.exists():
            manifest.write_text(json.dumps(wanted, indent=1))
        return store

    def identity(self) -> dict[str, Any]:
        manifest = self.folder / "identity.json"
        if not manifest.exists():
            raise UsageError(f"{self.folder} is not a prediction store (no identity.json)")
        return json.loads(manifest.read_text())

    def parts(self) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Every stored batch in order."""
        for path in sorted(self.folder.glob("batch-*.h5")):
            yield self.read(int(path.stem.split("-")[1]))

    def part(self, batch: int) -> Path:
        return self.folder / f"batch-{batch:06d}.h5"

    def done(self, batch: int) -> bool:
        return self.part(batch).exists()

    def write(self, batch: int, labels: np.ndarray, top: Mapping[str, np.ndarray], proba: Mapping[str, np.ndarray]) \
            -> None:
        tmp = self.folder / f".batch-{batch:06d}.{os.getpid()}.tmp"
        with h5py.File(tmp, "w") as f:
            f["labels"] = labels.astype(np.int32)
            for key in top:
                f[f"top/{key}"] = top[key]
                f[f"proba/{key}"] = proba[key]
        os.replace(tmp, self.part(batch))

    def read(self, batch: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(labels (B,), {input key: top-n classes (draws, K, B, n)})."""
        with h5py.File(self.part(batch), "r") as f:
            return f["labels"][()], {key: f[f"top/{key}"][()] for key in f["top"]}


def predict_batch(replay: Rebuilt, masking: StackedMasking | None, images: Tensor, n_configs: int, max_rows: int,
                  top_n: int, progress: Callable[[int], None] = lambda _n: None) -> tuple[np.ndarray, np.ndarray]:
    """Top-n classes and probabilities (K, B, n) of one input batch under all K configurations;
    `progress(evaluations)` after each forward."""
    batch = images.shape[0]
    inputs = replay.inputs(images.to(replay.device))
    per_forward = max(1, max_rows // batch)
    tops, probas = [], []
    for start in range(0, n_configs, per_forward):
        k = min(per_forward, n_configs - start)
        if masking is not None:
            masking.active, masking.batch = slice(start, start + k), batch
        logits = None
        if masking is not None and masking.shared_prefix and k > 1:
            try:
                logits = replay.net(inputs)
            except RuntimeError:  # a skip connection around the first masked checkpoint
                logits = None
            if logits is None or logits.shape[0] != k * batch:
                masking.shared_prefix, logits = False, None
        if logits is None:
            logits = replay.net(inputs.repeat(k, 1, 1, 1))
        proba, top = torch.softmax(logits.float(), dim=-1).topk(top_n, dim=-1)
        tops.append(top.view(k, batch, top_n).cpu())
        probas.append(proba.view(k, batch, top_n).cpu())
        progress(k * batch)
    return torch.cat(tops).numpy().astype(np.int32), torch.cat(probas).numpy()


def compute_predictions(replay: Rebuilt, store: PredictionStore, masks: Mapping[str, Mapping[str, Tensor]],
                        configs: Sequence[MaskConfig], settings: StoreIdentity, max_rows: int,
                        progress: Callable[[int], None]) -> int:
    """Fill the store batch by batch (skipping stored batches) with the predictions of the
    images, draws and batches `settings` describe; `progress(n)` counts evaluations (an image
    under one input condition and one masking configuration); returns the number of images."""
    batch_size, top_n, seed, n_inner = settings.batch_size, settings.top_n, settings.seed, settings.n_inner
    classes, index, partition = replay.evaluation_images(settings.per_class, settings.partition or None)
    n_images = classes.numel()
    factors = mask_factors({c: {v: m.to(replay.device) for v, m in per.items()} for c, per in masks.items()},
                           configs) if masks else {}
    masking = StackedMasking(replay.net, factors) if factors else None
    with torch.no_grad(), (masking or contextlib.nullcontext()):
        for b, start in enumerate(range(0, n_images, batch_size)):
            rows = slice(start, min(start + batch_size, n_images))
            if store.done(b):
                progress((rows.stop - rows.start) * len(configs) * conditions(replay.augmentations, n_inner))
                continue
            generator = torch.Generator().manual_seed(seed * 1_000_003 + b)
            images = replay.source.load(classes[rows], index[rows], partition[rows])
            top: dict[str, list[np.ndarray]] = {}
            proba: dict[str, list[np.ndarray]] = {}
            for key, batch_images in input_conditions(replay.augmentations, images, n_inner, generator):
                t, p = predict_batch(replay, masking, batch_images, len(configs), max_rows, top_n, progress)
                top.setdefault(key, []).append(t)
                proba.setdefault(key, []).append(p)
            store.write(b, replay.network_labels(classes[rows]).numpy(), {k: np.stack(v) for k, v in top.items()},
                        {k: np.stack(v) for k, v in proba.items()})
    return n_images


def accuracies(parts: Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """{input key: (2, K) top-1 and top-5 accuracy}, averaged over images per draw, then over draws."""
    hits: dict[str, np.ndarray] = {}
    n = 0
    for labels, tops in parts:
        n += labels.shape[0]
        for key, top in tops.items():  # (draws, K, B, n)
            correct = top == labels[None, None, :, None]
            counts = np.stack([correct[..., 0].sum(-1), correct[..., :5].any(-1).sum(-1)])  # (2, draws, K)
            hits[key] = hits.get(key, 0) + counts
    if n == 0:
        raise UsageError("no evaluation images: the data has no image in the chosen partition")
    return {key: (h / n).mean(axis=1) for key, h in hits.items()}


def jaccard_sums(parts: Iterator[tuple[np.ndarray, dict[str, np.ndarray]]], sensitive: np.ndarray) \
        -> dict[str, np.ndarray]:
    """{input key: (K, n_sets) mean Jaccard index between each sensitive set (n_sets, k) and the top-k
    predictions}, averaged over images per draw, then over draws."""
    sums: dict[str, np.ndarray] = {}
    n = 0
    k = sensitive.shape[1]
    for labels, tops in parts:
        n += labels.shape[0]
        for key, top in tops.items():  # (draws, K, B, n)
            if top.shape[-1] < k:
                raise UsageError(f"the prediction store keeps the top {top.shape[-1]} classes; k must not exceed it")
            inter = intersections(top[..., :k], sensitive)
            union = 2 * k - inter
            sums[key] = sums.get(key, 0) + (inter / union).sum(axis=2)  # (draws, K, sets)
    return {key: (s / n).mean(axis=0) for key, s in sums.items()}


def intersections(top: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
    """|S_s ∩ P| for every prediction P (..., n) and set S_s (sets, k): shape (..., sets)."""
    return (top[..., None, :, None] == sensitive[:, None, :]).any(-1).sum(-1)

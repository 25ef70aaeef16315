"""Frozen-encoder representation probes: does pretraining give features a simple classifier can read?

A probe freezes the encoder, turns every labelled sample into one feature vector (`extract_features`) and fits a
k-nearest-neighbour vote (`knn_probe`) or a multinomial logistic regression (`linear_probe`) on the training
features; its test accuracy measures how much of the label the features hold in a simple form. A number alone says
little, so `compare_representations` probes, on the same split and the same inputs:

- the pretrained encoder;
- the same architecture at random initialisation, for several seeds (mean, std and range): what the architecture
  and the input scaling give without any learning;
- `raw_band_statistics`: the per-band mean and std of the valid pixels of the model's inputs, the "no learning, no
  network" baseline;
- the majority class of the training set.

Pretraining has demonstrably learnt something when the pretrained encoder beats the random-init spread and the raw
statistics. `ProbeCallback` runs the k-NN probe during pretraining, so that the curve appears next to the loss.
"""

import copy
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import TrainerCallback

from .modeling_s2mae import S2MAEModel, token_weights_from_pixel_mask

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "pooler", "mean_spectral"]
POOLINGS: tuple[str, ...] = ("mean", "pooler", "mean_spectral")
"""`mean`: mean over tokens weighted by their valid pixels (the model's pooler without its LayerNorm), (N, D);
`pooler`: the model's `pooler_output` (that mean, then LayerNorm), (N, D); `mean_spectral`: the same weighted mean
over space, taken per spectral group and concatenated, (N, G * D)."""

KNN_WEIGHTINGS: tuple[str, ...] = ("dino", "majority")
"""`dino`: each of the k neighbours votes exp(cosine / temperature) for its class (Caron et al., 2021);
`majority`: one vote each (ties go to the class with the larger summed similarity)."""

DEFAULT_L2_GRID: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""L2 penalties tried by `linear_probe` (on the mean cross-entropy of standardised features), chosen by
cross-validation on the training set."""

ProbeInputs = Mapping[str, torch.Tensor] | Iterable[Mapping[str, Any]]
"""Labelled model inputs: a mapping of stacked tensors {"pixel_values": (N, C, H, W), "pixel_mask": (N, H, W)
(optional), "labels": (N,) class ids, "band_wavelengths" / "band_bandwidths": (N, C) or (C,) in nm (optional)}, or an
iterable of per-sample dicts with the same keys without the batch axis (e.g. a `SampleDataset` with a
`SampleTransform(..., with_labels=True)`, or a dataset made by `to_model_inputs`). With band wavelengths, a
wavelength model (`position_embedding_type="wavelength"`) places the bands by wavelength."""


# ---- features ----------------------------------------------------------------------------------------------------


def encoder_of(model: nn.Module) -> S2MAEModel:
    """The `S2MAEModel` of a model: itself, or the `s2mae` encoder of `S2MAEForPreTraining` / a classifier.

    Raises:
        ValueError: the model holds no S2MAE encoder.
    """
    model = getattr(model, "module", model)  # DistributedDataParallel and similar wrappers
    if isinstance(model, S2MAEModel):
        return model
    encoder = getattr(model, "s2mae", None)
    if isinstance(encoder, S2MAEModel):
        return encoder
    raise ValueError(
        f"Expected an S2MAEModel, S2MAEForPreTraining or S2MAEForImageClassification, got {type(model).__name__}."
    )


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Run `module` in eval mode without gradients, then restore every submodule's own train / eval flag."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        for submodule, training in modes:
            submodule.training = training


def _hidden_state_index(encoder: S2MAEModel, layer: int) -> int | None:
    """Index into `hidden_states` for `layer`, or None for the last block (use `last_hidden_state`)."""
    depth = encoder.config.num_hidden_layers
    if not isinstance(layer, int) or not -(depth + 1) <= layer <= depth:
        raise ValueError(
            f"layer must be an int in [{-(depth + 1)}, {depth}] for an encoder of {depth} blocks (0: the embeddings, "
            f"i: the output of block i, -1: the encoder output), got {layer!r}."
        )
    index = layer % (depth + 1)
    return None if index == depth else index


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")


def encode_batch(
    encoder: S2MAEModel,
    pixel_values: torch.Tensor,
    pixel_mask: torch.Tensor | None = None,
    *,
    layer: int = -1,
    pooling: Pooling = "mean",
    band_wavelengths: torch.Tensor | None = None,
    band_bandwidths: torch.Tensor | None = None,
    interpolate_pos_encoding: bool = False,
) -> torch.Tensor:
    """One feature vector per sample of a batch, from a frozen encoder (call it inside `frozen(encoder)`).

    Args:
        encoder: An `S2MAEModel` (see `encoder_of`).
        pixel_values: (B, C, H, W) model inputs.
        pixel_mask: (B, H, W), 1 for valid pixels; tokens are weighted by their valid fraction. None: all valid.
        band_wavelengths, band_bandwidths: (B, C) or (C,) centre wavelengths / bandwidths in nm of the input's bands,
            passed to the encoder (a wavelength model places the bands by them); None: the config's bands.
        interpolate_pos_encoding: Passed to the encoder: another image size, or another band count placed by
            interpolating the position tables over indices.
        layer: Which hidden state: 0 the embeddings, i the output of block i, negative counts from the end. The last
            block (-1) is the encoder output `last_hidden_state` (after the final LayerNorm when the config has one);
            the others are the raw block outputs of `output_hidden_states`.
        pooling: See `POOLINGS`.

    Returns:
        (B, D) float32 for "mean" and "pooler", (B, G * D) for "mean_spectral".

    Raises:
        ValueError: a bad layer or pooling, "pooler" on an encoder without a pooler or on another layer, or a sample
            without any valid pixel.
    """
    _check_pooling(pooling)
    index = _hidden_state_index(encoder, layer)
    config = encoder.config
    if pooling == "pooler":
        if encoder.pooler is None:
            raise ValueError(
                "pooling='pooler' needs an encoder with a pooling layer; the encoder of S2MAEForPreTraining has none. "
                "Use pooling='mean' (the same mean without the LayerNorm) or load the checkpoint with "
                "S2MAEModel.from_pretrained."
            )
        if index is not None:
            raise ValueError(f"pooling='pooler' pools the encoder output (layer -1), not layer {layer}.")
    device = encoder.device
    pixel_values = pixel_values.to(device)
    pixel_mask = pixel_mask.to(device) if pixel_mask is not None else None
    bands = {
        key: value.to(device) if isinstance(value, torch.Tensor) else value
        for key, value in (("band_wavelengths", band_wavelengths), ("band_bandwidths", band_bandwidths))
        if value is not None
    }
    outputs = encoder(
        pixel_values,
        pixel_mask=pixel_mask,
        output_hidden_states=index is not None,
        return_dict=True,
        interpolate_pos_encoding=interpolate_pos_encoding,
        **bands,
    )
    if pooling == "pooler":
        return outputs.pooler_output.float()
    tokens = (outputs.last_hidden_state if index is None else outputs.hidden_states[index]).float()  # (B, L, D)
    batch_size, num_tokens, width = tokens.shape
    num_groups = -(-pixel_values.shape[1] // config.spectral_patch_size)  # ceil: spectral_padding="repeat" pads
    if pixel_mask is None:
        weights = tokens.new_ones(batch_size, num_tokens)
    else:
        weights = token_weights_from_pixel_mask(pixel_mask, num_groups, config.patch_size).float()  # (B, L)
    if bool((weights.sum(dim=1) == 0).any()):
        raise ValueError("A sample has no valid pixel (pixel_mask is all zero): it has no feature.")
    if pooling == "mean":
        return (tokens * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True)  # (B, D)
    tokens = tokens.view(batch_size, num_groups, num_tokens // num_groups, width)  # (B, G, h * w, D)
    weights = weights.view(batch_size, num_groups, num_tokens // num_groups, 1)
    return ((tokens * weights).sum(dim=2) / weights.sum(dim=2)).flatten(1)  # (B, G * D)


def raw_band_statistics(pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-band mean and standard deviation (population, ddof 0) of the valid pixels: the no-learning baseline.

    Args:
        pixel_values: (N, C, H, W).
        pixel_mask: (N, H, W), 1 for valid pixels; None: all valid.

    Returns:
        (N, 2 * C) float32: the C means, then the C standard deviations.

    Raises:
        ValueError: a wrong shape, or a sample without any valid pixel.
    """
    if pixel_values.ndim != 4:
        raise ValueError(f"pixel_values must have shape (N, C, H, W), got {tuple(pixel_values.shape)}.")
    values = pixel_values.double()
    if pixel_mask is None:
        valid = values.new_ones(values.shape[0], 1, *values.shape[2:])
    else:
        if pixel_mask.shape != (values.shape[0], *values.shape[2:]):
            raise ValueError(
                f"pixel_mask must have shape {(values.shape[0], *values.shape[2:])}, got {tuple(pixel_mask.shape)}."
            )
        valid = pixel_mask.to(values.device, torch.float64)[:, None]  # (N, 1, H, W)
    count = valid.sum(dim=(2, 3))  # (N, 1)
    if bool((count == 0).any()):
        raise ValueError("A sample has no valid pixel (pixel_mask is all zero): it has no band statistics.")
    mean = (values * valid).sum(dim=(2, 3)) / count  # (N, C)
    variance = (((values - mean[..., None, None]) ** 2) * valid).sum(dim=(2, 3)) / count
    return torch.cat([mean, variance.sqrt()], dim=1).float()


INPUT_KEYS: tuple[str, ...] = ("pixel_values", "pixel_mask", "labels", "band_wavelengths", "band_bandwidths")
"""Keys of `ProbeInputs` that probes read; `band_wavelengths` / `band_bandwidths` (nm, (N, C) stacked or (C,) per
sample) let a wavelength model place the bands by wavelength (see `S2MAEModel.forward`)."""

_BAND_KEYS: tuple[str, ...] = ("band_wavelengths", "band_bandwidths")


def _as_batch(item: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(item[key]) for key in INPUT_KEYS if key in item and item[key] is not None}


def iter_batches(inputs: ProbeInputs, batch_size: int = 64) -> Iterator[dict[str, torch.Tensor]]:
    """Batches {"pixel_values" (B, C, H, W), "pixel_mask" (B, H, W), "labels" (B,)} of `ProbeInputs`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if isinstance(inputs, Mapping):
        if "pixel_values" not in inputs:
            raise ValueError(f"Probe inputs need 'pixel_values' (N, C, H, W); got keys {sorted(inputs)}.")
        stacked = _as_batch(inputs)
        total = stacked["pixel_values"].shape[0]
        for key in _BAND_KEYS:  # one band set for all samples: (C,) -> (N, C)
            if key in stacked and stacked[key].ndim == 1:
                stacked[key] = stacked[key].expand(total, -1)
        for key, value in stacked.items():
            if value.shape[0] != total:
                raise ValueError(f"'{key}' has {value.shape[0]} samples but 'pixel_values' has {total}.")
        for start in range(0, total, batch_size):
            yield {key: value[start : start + batch_size] for key, value in stacked.items()}
        return
    pending: list[dict[str, torch.Tensor]] = []
    for item in inputs:
        if not isinstance(item, Mapping) or "pixel_values" not in item:
            raise ValueError(
                "Probe inputs must be a mapping of stacked tensors or an iterable of per-sample dicts with "
                f"'pixel_values' (C, H, W); got an item of type {type(item).__name__}."
            )
        pending.append(_as_batch(item))
        if len(pending) == batch_size:
            yield {key: torch.stack([sample[key] for sample in pending]) for key in pending[0]}
            pending = []
    if pending:
        yield {key: torch.stack([sample[key] for sample in pending]) for key in pending[0]}


def stack_inputs(inputs: ProbeInputs, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Read `ProbeInputs` once into stacked CPU tensors (e.g. to probe the same set many times)."""
    batches = [{key: value.cpu() for key, value in batch.items()} for batch in iter_batches(inputs, batch_size)]
    if not batches:
        raise ValueError("The probe inputs are empty.")
    return {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}


def extract_features(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor],
    *,
    layer: int = -1,
    pooling: Pooling = "mean",
    batch_size: int = 64,
    interpolate_pos_encoding: bool = False,
) -> torch.Tensor:
    """Features of a frozen S2MAE encoder; no masking. The model's train / eval flags are restored afterwards.

    Args:
        model: An `S2MAEModel`, `S2MAEForPreTraining` or `S2MAEForImageClassification` (its `s2mae` encoder is used).
        batches: Batches {"pixel_values": (B, C, H, W), "pixel_mask": (B, H, W) (optional), "band_wavelengths" /
            "band_bandwidths": (B, C) nm (optional)}, or one mapping of stacked tensors (cut into `batch_size`
            batches; there the band keys may also be (C,), one band set for all). Other keys are ignored.
        layer, pooling, interpolate_pos_encoding: See `encode_batch`.
        batch_size: Only for a mapping of stacked tensors.

    Returns:
        (N, D) float32 on the CPU ((N, G * D) for "mean_spectral").
    """
    encoder = encoder_of(model)
    if isinstance(batches, Mapping):
        batches = iter_batches(batches, batch_size)
    features = []
    with frozen(encoder):
        for batch in batches:
            features.append(
                encode_batch(
                    encoder,
                    batch["pixel_values"],
                    batch.get("pixel_mask"),
                    layer=layer,
                    pooling=pooling,
                    interpolate_pos_encoding=interpolate_pos_encoding,
                    **{key: batch[key] for key in _BAND_KEYS if batch.get(key) is not None},
                ).cpu()
            )
    if not features:
        raise ValueError("No batch to extract features from.")
    return torch.cat(features)


# ---- probes ------------------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """Scores of one probe on one test set.

    Attributes:
        accuracy: Share of test samples classified right.
        balanced_accuracy: Mean recall over the classes present in the test set.
        macro_f1: Mean F1 over the classes present in the test labels or the predictions.
        num_train, num_test: Sample counts.
        num_classes: Classes in the training set.
        details: Probe settings actually used (k, weighting, l2, cross-validation accuracy, ...).
    """

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    num_train: int
    num_test: int
    num_classes: int
    details: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1}


METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1")


def classification_metrics(true: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 of predicted class ids (N,) against true ones (N,)."""
    true, predicted = torch.as_tensor(true).long().cpu(), torch.as_tensor(predicted).long().cpu()
    accuracy = (true == predicted).double().mean().item()
    recalls, f1s = [], []
    for label in torch.unique(torch.cat([true, predicted])).tolist():
        is_true, is_predicted = true == label, predicted == label
        hits = (is_true & is_predicted).sum().item()
        if is_true.any():
            recalls.append(hits / is_true.sum().item())
        denominator = is_true.sum().item() + is_predicted.sum().item()
        f1s.append(2 * hits / denominator)
    return {"accuracy": accuracy, "balanced_accuracy": sum(recalls) / len(recalls), "macro_f1": sum(f1s) / len(f1s)}


def _check_probe_data(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train_x, test_x = torch.as_tensor(train_x), torch.as_tensor(test_x)
    train_y, test_y = torch.as_tensor(train_y), torch.as_tensor(test_y)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.ndim != 2:
            raise ValueError(f"{name}_x must be features of shape (N, D), got {tuple(x.shape)}.")
        if y.ndim != 1 or y.is_floating_point() or y.is_complex():
            raise ValueError(
                f"{name}_y must be integer class ids of shape (N,), got {y.dtype} {tuple(y.shape)}; probes are "
                "single-label (multi-label targets are not supported)."
            )
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{name}_x has {len(x)} rows and {name}_y {len(y)} labels; need the same number, >= 1.")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}_x holds NaN or infinite features.")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has {train_x.shape[1]} features per sample but test_x {test_x.shape[1]}.")
    return train_x.cpu().double(), train_y.cpu().long(), test_x.cpu().double(), test_y.cpu().long()


def _result(test_y: torch.Tensor, predicted: torch.Tensor, train_y: torch.Tensor, **details: Any) -> ProbeResult:
    return ProbeResult(
        **classification_metrics(test_y, predicted),
        num_train=len(train_y),
        num_test=len(test_y),
        num_classes=len(torch.unique(train_y)),
        details=details,
    )


def knn_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    *,
    weighting: Literal["dino", "majority"] = "dino",
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> ProbeResult:
    """k-nearest-neighbour classification by cosine similarity.

    Args:
        train_x: (N_train, D) features; train_y: (N_train,) integer class ids.
        test_x: (N_test, D) features; test_y: (N_test,) integer class ids.
        k: Neighbours per test sample (at most N_train; a larger k is reduced to N_train, recorded in `details`).
        weighting: See `KNN_WEIGHTINGS`.
        temperature: Of the "dino" vote.
        chunk_size: Test samples compared at once (memory: chunk_size x N_train similarities).

    Returns:
        A `ProbeResult`; `details` = {"k", "weighting", "temperature"}.
    """
    train_x, train_y, test_x, test_y = _check_probe_data(train_x, train_y, test_x, test_y)
    if weighting not in KNN_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {KNN_WEIGHTINGS}, got {weighting!r}.")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    k_used = min(k, len(train_x))
    if k_used < k:
        logger.warning("knn_probe: k=%d is more than the %d training samples; using k=%d.", k, len(train_x), k_used)
    classes, train_index = torch.unique(train_y, return_inverse=True)
    train_x = nn.functional.normalize(train_x, dim=1)
    predictions = []
    for start in range(0, len(test_x), chunk_size):
        chunk = nn.functional.normalize(test_x[start : start + chunk_size], dim=1)
        similarity, neighbours = (chunk @ train_x.T).topk(k_used, dim=1)  # (n, k)
        neighbour_class = train_index[neighbours]
        votes = torch.zeros(len(chunk), len(classes), dtype=torch.float64)
        if weighting == "dino":
            votes.scatter_add_(1, neighbour_class, (similarity / temperature).exp())
        else:
            votes.scatter_add_(1, neighbour_class, torch.ones_like(similarity))
            tie_break = torch.zeros_like(votes).scatter_add_(1, neighbour_class, similarity + 1.0)  # in (0, 2k]
            votes += tie_break / (2.0 * k_used + 1.0)
        predictions.append(classes[votes.argmax(dim=1)])
    return _result(
        test_y, torch.cat(predictions), train_y, k=k_used, weighting=weighting, temperature=float(temperature)
    )


def _fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression: minimise mean cross-entropy + l2 / 2 * |W|^2 with L-BFGS from zero."""
    weight = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(x @ weight + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _stratified_folds(y: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """A fold id (0 .. folds - 1) per sample, each class spread evenly over the folds in a seeded random order."""
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(y), dtype=torch.long)
    offset = 0
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        fold[members] = (torch.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    l2: float | None = None,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    folds: int = 3,
    max_iter: int = 300,
    seed: int = 0,
) -> ProbeResult:
    """Multinomial logistic regression on features standardised with the training set's mean and std.

    The L2 penalty is `l2`, or the value of `l2_grid` with the best `folds`-fold stratified cross-validation accuracy
    on the training set (ties: the stronger penalty); the test set is never used to choose it. With fewer than
    2 x `folds` training samples the middle of the grid is used.

    Args:
        train_x: (N_train, D) features; train_y: (N_train,) integer class ids.
        test_x: (N_test, D) features; test_y: (N_test,) integer class ids.
        l2: Fixed penalty on the weights (mean cross-entropy + l2 / 2 * |W|^2); None: cross-validated.
        l2_grid, folds: The cross-validation.
        max_iter: L-BFGS iterations per fit.
        seed: Seed of the fold assignment.

    Returns:
        A `ProbeResult`; `details` = {"l2", "l2_selection", "cv_accuracy" (per grid value, when cross-validated)}.
    """
    train_x, train_y, test_x, test_y = _check_probe_data(train_x, train_y, test_x, test_y)
    mean, std = train_x.mean(dim=0), train_x.std(dim=0, unbiased=False).clamp(min=1e-8)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    classes, target = torch.unique(train_y, return_inverse=True)
    if len(classes) == 1:
        return _result(test_y, classes.expand(len(test_y)), train_y, l2=None, l2_selection="one class")
    details: dict[str, Any] = {}
    if l2 is None:
        grid = sorted({float(value) for value in l2_grid}, reverse=True)  # strongest penalty first
        if not grid or min(grid) < 0:
            raise ValueError(f"l2_grid must hold penalties >= 0, got {list(l2_grid)}.")
        if len(train_x) >= 2 * folds:
            fold = _stratified_folds(target, folds, seed)
            scores = []
            for value in grid:
                correct = 0
                for index in range(folds):
                    held_out = fold == index
                    weight, bias = _fit_logistic(train_x[~held_out], target[~held_out], len(classes), value, max_iter)
                    predicted = (train_x[held_out] @ weight + bias).argmax(dim=1)
                    correct += int((predicted == target[held_out]).sum())
                scores.append(correct / len(train_x))
            l2 = grid[max(range(len(grid)), key=lambda i: (scores[i], -i))]
            details.update(l2_selection=f"{folds}-fold cross-validation", cv_accuracy=dict(zip(grid, scores)))
        else:
            l2 = grid[len(grid) // 2]
            details["l2_selection"] = f"middle of the grid (fewer than {2 * folds} training samples)"
    elif l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}.")
    else:
        details["l2_selection"] = "given"
    weight, bias = _fit_logistic(train_x, target, len(classes), float(l2), max_iter)
    predicted = classes[(test_x @ weight + bias).argmax(dim=1)]
    return _result(test_y, predicted, train_y, l2=float(l2), **details)


def majority_class_baseline(train_y: torch.Tensor, test_y: torch.Tensor) -> ProbeResult:
    """Predict the most frequent training class for every test sample (ties: the smallest class id)."""
    train_y, test_y = torch.as_tensor(train_y).long().cpu(), torch.as_tensor(test_y).long().cpu()
    classes, counts = torch.unique(train_y, return_counts=True)
    majority = classes[counts.argmax()]
    return _result(test_y, majority.expand(len(test_y)), train_y, predicted_class=int(majority))


# ---- comparison --------------------------------------------------------------------------------------------------

PRETRAINED, RANDOM_INIT, RAW_STATISTICS, MAJORITY = (
    "pretrained",
    "random_init",
    "raw_band_statistics",
    "majority_class",
)
_ROW_NAMES = {PRETRAINED: "pretrained", RANDOM_INIT: "random init", RAW_STATISTICS: "raw band statistics"}
_PROBE_NAMES = {"knn": "k-NN", "linear": "linear"}
_METRIC_NAMES = {"accuracy": "acc", "balanced_accuracy": "bal. acc", "macro_f1": "macro-F1"}


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std (ddof 1; 0 for one value), min and max of a list of scores."""
    values = [float(value) for value in values]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": len(values)}


@dataclass
class ProbeScores:
    """One representation probed one way, over one run or one run per random-init seed.

    Attributes:
        representation: "pretrained", "random_init", "raw_band_statistics" or "majority_class".
        probe: "knn", "linear" or "none" (the majority class).
        feature_dim: Features per sample (None for the majority class).
        runs: One `ProbeResult` per seed (one for the others).
        seeds: The random-init seeds, in `runs` order (empty otherwise).
    """

    representation: str
    probe: str
    feature_dim: int | None
    runs: list[ProbeResult]
    seeds: list[int] = field(default_factory=list)

    def summary(self, metric: str = "accuracy") -> dict[str, float]:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
        return summarize([getattr(run, metric) for run in self.runs])

    def to_dict(self) -> dict[str, Any]:
        return {
            "representation": self.representation,
            "probe": self.probe,
            "feature_dim": self.feature_dim,
            "seeds": list(self.seeds),
            "metrics": {
                metric: {**self.summary(metric), "values": [getattr(run, metric) for run in self.runs]}
                for metric in METRICS
            },
            "details": [run.details for run in self.runs],
        }


def _format_score(summary: dict[str, float]) -> str:
    if summary["n"] == 1:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} ± {summary['std']:.3f} [{summary['min']:.3f}, {summary['max']:.3f}]"


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ProbeReport:
    """Probe scores of the pretrained encoder and its baselines on one split; `str(report)` is the table.

    Attributes:
        settings: How the probes were run (model, layer, pooling, k, seeds, sample and class counts).
        scores: One `ProbeScores` per (representation, probe).
    """

    settings: dict[str, Any]
    scores: list[ProbeScores]

    def score(self, representation: str, probe: str) -> ProbeScores:
        for scores in self.scores:
            if scores.representation == representation and scores.probe == probe:
                return scores
        raise KeyError(f"No scores for {representation!r} with probe {probe!r}.")

    def margins(self, metric: str = "accuracy") -> dict[str, dict[str, float]]:
        """Per probe: pretrained minus the random-init mean, the best random-init seed, and the raw statistics."""
        margins = {}
        for probe in ("knn", "linear"):
            try:
                pretrained = self.score(PRETRAINED, probe).summary(metric)["mean"]
            except KeyError:
                continue
            entry = {}
            for name, representation, statistic in (
                ("over_random_init_mean", RANDOM_INIT, "mean"),
                ("over_random_init_best", RANDOM_INIT, "max"),
                ("over_raw_band_statistics", RAW_STATISTICS, "mean"),
            ):
                try:
                    entry[name] = pretrained - self.score(representation, probe).summary(metric)[statistic]
                except KeyError:
                    continue
            margins[probe] = entry
        return margins

    def standard_errors(self) -> dict[str, float]:
        """Per probe, sqrt(p (1 - p) / N_test) of the pretrained accuracy p: differences of about twice this size or
        less are within the noise of the test set alone."""
        errors = {}
        for scores in self.scores:
            if scores.representation == PRETRAINED:
                accuracy, count = scores.runs[0].accuracy, scores.runs[0].num_test
                errors[scores.probe] = math.sqrt(accuracy * (1.0 - accuracy) / count)
        return errors

    def table(self, metrics: Sequence[str] = ("accuracy", "balanced_accuracy")) -> str:
        """A side-by-side text table: one row per representation, one column per probe and metric."""
        probes = [probe for probe in ("knn", "linear") if any(s.probe == probe for s in self.scores)]
        columns = [(probe, metric) for probe in probes for metric in metrics]
        settings = self.settings
        lines = [
            f"Frozen-encoder probes of {settings.get('model', 'the model')}: {settings['num_train']} train / "
            f"{settings['num_test']} test samples, {settings['num_classes']} classes; layer {settings['layer']}, "
            f"pooling {settings['pooling']!r}, cosine k-NN k={settings['k']} ({settings['knn_weighting']} vote), logistic "
            "regression on standardised features (L2 by cross-validation on train)."
        ]
        seeds = settings.get("random_init_seeds") or []
        header = ["representation", "dim"] + [f"{_PROBE_NAMES[p]} {_METRIC_NAMES[m]}" for p, m in columns]
        rows = [header]
        for representation in (PRETRAINED, RANDOM_INIT, RAW_STATISTICS):
            found = {s.probe: s for s in self.scores if s.representation == representation}
            if not found:
                continue
            name = _ROW_NAMES[representation]
            if representation == RANDOM_INIT:
                name += f" (seeds {', '.join(str(seed) for seed in seeds)})"
            dim = next(iter(found.values())).feature_dim
            cells = [_format_score(found[p].summary(m)) if p in found else "-" for p, m in columns]
            rows.append([name, str(dim), *cells])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append(
                "  ".join(
                    cell.ljust(width) if i != 1 else cell.rjust(width)
                    for i, (cell, width) in enumerate(zip(row, widths))
                ).rstrip()
            )
        try:
            majority = self.score(MAJORITY, "none").runs[0]
            lines.append(
                "majority class (always the most frequent training class): "
                + ", ".join(f"{_METRIC_NAMES[m]} {getattr(majority, m):.3f}" for m in metrics)
            )
        except KeyError:
            pass
        errors = self.standard_errors()
        for probe, entry in self.margins(metrics[0]).items():
            parts = [
                f"{value:+.3f} {name.replace('over_', 'over ').replace('_', ' ')}" for name, value in entry.items()
            ]
            line = f"pretrained {_PROBE_NAMES[probe]} {_METRIC_NAMES[metrics[0]]}: " + ", ".join(parts)
            if metrics[0] == "accuracy":
                line += f" (binomial standard error of its accuracy on this test set: {errors[probe]:.3f})"
            lines.append(line)
        lines.append("random-init cells: mean ± sample std [min, max] over seeds.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return _json_ready(
            {
                "settings": self.settings,
                "results": [scores.to_dict() for scores in self.scores],
                "margins": {metric: self.margins(metric) for metric in METRICS},
                "pretrained_accuracy_standard_error": self.standard_errors(),
            }
        )

    def write_json(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def random_init_encoder(encoder: S2MAEModel, seed: int) -> S2MAEModel:
    """The same architecture as `encoder` (config, pooler, dtype, device), freshly initialised from `seed`.

    The global torch random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = S2MAEModel(copy.deepcopy(encoder.config), add_pooling_layer=encoder.pooler is not None)
    return fresh.to(device=encoder.device, dtype=encoder.dtype)


def _labels_of(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if "labels" not in batch:
        raise ValueError("Probe inputs need 'labels' (integer class ids) next to 'pixel_values'.")
    labels = batch["labels"]
    if labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(
            f"Probe labels must be integer class ids (one per sample), got {labels.dtype} of shape "
            f"{tuple(labels.shape)}; multi-label probes are not supported."
        )
    return labels.long().cpu()


def _all_features(
    encoders: Mapping[str, S2MAEModel],
    inputs: ProbeInputs,
    layer: int,
    pooling: Pooling,
    batch_size: int,
    interpolate_pos_encoding: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One pass over the inputs: features of every encoder and the raw band statistics; and the labels."""
    features: dict[str, list[torch.Tensor]] = {name: [] for name in (*encoders, RAW_STATISTICS)}
    labels = []
    for batch in iter_batches(inputs, batch_size):
        labels.append(_labels_of(batch))
        mask = batch.get("pixel_mask")
        bands = {key: batch[key] for key in _BAND_KEYS if batch.get(key) is not None}
        for name, encoder in encoders.items():
            features[name].append(
                encode_batch(
                    encoder,
                    batch["pixel_values"],
                    mask,
                    layer=layer,
                    pooling=pooling,
                    interpolate_pos_encoding=interpolate_pos_encoding,
                    **bands,
                ).cpu()
            )
        features[RAW_STATISTICS].append(raw_band_statistics(batch["pixel_values"], mask))
    if not labels:
        raise ValueError("The probe inputs are empty.")
    return {name: torch.cat(parts) for name, parts in features.items()}, torch.cat(labels)


def compare_representations(
    model_or_path: nn.Module | str | os.PathLike[str],
    train_inputs: ProbeInputs,
    test_inputs: ProbeInputs,
    *,
    random_init_seeds: Sequence[int] = (0, 1, 2),
    layer: int = -1,
    pooling: Pooling = "mean",
    k: int = 20,
    knn_weighting: Literal["dino", "majority"] = "dino",
    linear: bool = True,
    l2: float | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    interpolate_pos_encoding: bool = False,
) -> ProbeReport:
    """Probe the pretrained encoder, random-init copies of it and the raw band statistics on the same split.

    All representations see the same inputs in one pass over the data (the random-init encoders are kept in memory
    next to the pretrained one: (1 + seeds) x the encoder's size).

    Args:
        model_or_path: A model (`S2MAEModel`, `S2MAEForPreTraining`, a classifier) or a checkpoint folder / repo id
            (loaded with `S2MAEModel.from_pretrained`, which also reads pretraining checkpoints).
        train_inputs, test_inputs: Labelled `ProbeInputs`, prepared with the checkpoint's image processor.
        random_init_seeds: One random-init encoder per seed; empty: none.
        layer, pooling: See `encode_batch`.
        k, knn_weighting: Of `knn_probe`.
        linear: Also run `linear_probe` (with `l2`; None: cross-validated).
        batch_size: Samples per forward pass.
        device: Where the encoders run (a given model is moved there, in place); default: the model's device, or
            CUDA when available for a path.
        interpolate_pos_encoding: See `encode_batch` (band wavelengths in the inputs are always passed on).

    Returns:
        A `ProbeReport` (print it for the table; `write_json` for the numbers).
    """
    _check_pooling(pooling)
    if isinstance(model_or_path, (str, os.PathLike)):
        name = str(model_or_path)
        encoder = S2MAEModel.from_pretrained(model_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    else:
        encoder = encoder_of(model_or_path)
        name = getattr(encoder.config, "_name_or_path", "") or type(model_or_path).__name__
    if device is not None:
        encoder = encoder.to(device)
    _hidden_state_index(encoder, layer)
    seeds = [int(seed) for seed in random_init_seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"random_init_seeds must be distinct, got {seeds}.")
    encoders = {PRETRAINED: encoder} | {f"{RANDOM_INIT}/{seed}": random_init_encoder(encoder, seed) for seed in seeds}
    with frozen(encoder):
        for seed in seeds:
            encoders[f"{RANDOM_INIT}/{seed}"].eval()
        options = {"interpolate_pos_encoding": interpolate_pos_encoding}
        train_features, train_y = _all_features(encoders, train_inputs, layer, pooling, batch_size, **options)
        test_features, test_y = _all_features(encoders, test_inputs, layer, pooling, batch_size, **options)

    classes, counts = torch.unique(train_y, return_counts=True)
    settings = {
        "model": name,
        "layer": layer,
        "pooling": pooling,
        "k": k,
        "knn_weighting": knn_weighting,
        "interpolate_pos_encoding": interpolate_pos_encoding,
        "random_init_seeds": seeds,
        "num_train": len(train_y),
        "num_test": len(test_y),
        "num_classes": len(classes),
        "train_class_counts": dict(zip(classes.tolist(), counts.tolist())),
        "test_class_counts": dict(zip(*(t.tolist() for t in torch.unique(test_y, return_counts=True)))),
    }

    def probe_all(representation: str, keys: list[str], probe_seeds: list[int]) -> list[ProbeScores]:
        rows = [
            ProbeScores(
                representation,
                "knn",
                train_features[keys[0]].shape[1],
                [
                    knn_probe(train_features[key], train_y, test_features[key], test_y, k, weighting=knn_weighting)
                    for key in keys
                ],
                probe_seeds,
            )
        ]
        if linear:
            runs = [linear_probe(train_features[key], train_y, test_features[key], test_y, l2=l2) for key in keys]
            rows.append(ProbeScores(representation, "linear", train_features[keys[0]].shape[1], runs, probe_seeds))
        return rows

    scores = probe_all(PRETRAINED, [PRETRAINED], [])
    if seeds:
        scores += probe_all(RANDOM_INIT, [f"{RANDOM_INIT}/{seed}" for seed in seeds], seeds)
    scores += probe_all(RAW_STATISTICS, [RAW_STATISTICS], [])
    scores.append(ProbeScores(MAJORITY, "none", None, [majority_class_baseline(train_y, test_y)]))
    return ProbeReport(settings=settings, scores=scores)


# ---- during training ---------------------------------------------------------------------------------------------


class ProbeCallback(TrainerCallback):
    """Run the k-NN probe on the model under training every `every_n_steps` and log it through `Trainer.log`.

    The metrics `probe_knn_accuracy` and `probe_knn_balanced_accuracy` go wherever the loss goes (the console,
    `trainer.state.log_history`, TensorBoard with `--report_to tensorboard`). The encoder is frozen for the probe and
    every submodule's train / eval flag is restored afterwards. Logging needs the trainer, so attach the callback::

        trainer = Trainer(model=model, args=args, ...)
        ProbeCallback(train_inputs, test_inputs, every_n_steps=500).attach(trainer)

    Every process runs the probe (the same numbers under DDP; only the main process writes logs). The probe sets are
    read once and kept in memory: keep them to a few hundred samples. FSDP is not supported.

    Args:
        train_inputs, test_inputs: Labelled `ProbeInputs` (already processed to the model's size and bands).
        every_n_steps: Probe when the global step is a multiple of it.
        k: Of `knn_probe`.
        layer, pooling: See `encode_batch` ("mean" for `S2MAEForPreTraining`, whose encoder has no pooler).
        batch_size: Samples per forward pass.
        probe_at_start: Also probe before the first step (the random-init reference of this run).
    """

    def __init__(
        self,
        train_inputs: ProbeInputs,
        test_inputs: ProbeInputs,
        every_n_steps: int = 500,
        k: int = 20,
        *,
        layer: int = -1,
        pooling: Pooling = "mean",
        batch_size: int = 64,
        probe_at_start: bool = True,
    ):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}.")
        _check_pooling(pooling)
        self.train_inputs = stack_inputs(train_inputs, batch_size)
        self.test_inputs = stack_inputs(test_inputs, batch_size)
        _labels_of(self.train_inputs), _labels_of(self.test_inputs)  # single-label class ids, checked now
        self.every_n_steps = every_n_steps
        self.k = k
        self.layer = layer
        self.pooling = pooling
        self.batch_size = batch_size
        self.probe_at_start = probe_at_start
        self.trainer = None

    def attach(self, trainer: Any) -> "ProbeCallback":
        """Give the callback the `Trainer` it logs through, adding it to the trainer's callbacks if needed."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def probe(self, model: nn.Module) -> dict[str, float]:
        """Run the k-NN probe on `model` now; returns {"probe_knn_accuracy", "probe_knn_balanced_accuracy"}."""
        options = {"layer": self.layer, "pooling": self.pooling, "batch_size": self.batch_size}
        train_x = extract_features(model, self.train_inputs, **options)
        test_x = extract_features(model, self.test_inputs, **options)
        result = knn_probe(train_x, self.train_inputs["labels"], test_x, self.test_inputs["labels"], self.k)
        return {"probe_knn_accuracy": result.accuracy, "probe_knn_balanced_accuracy": result.balanced_accuracy}

    def _probe_and_log(self, control: Any, model: nn.Module) -> None:
        if self.trainer is None:
            raise ValueError(
                "ProbeCallback logs through the Trainer: attach it with ProbeCallback(...).attach(trainer)."
            )
        metrics = self.probe(model)
        should_log = control.should_log  # Trainer.log resets it; keep the loss log of this step
        self.trainer.log(metrics)
        control.should_log = should_log

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any):
        if self.probe_at_start:
            self._probe_and_log(control, model)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any):
        if state.global_step % self.every_n_steps == 0:
            self._probe_and_log(control, model)
        return control


__all__ = [
    "DEFAULT_L2_GRID",
    "INPUT_KEYS",
    "KNN_WEIGHTINGS",
    "METRICS",
    "POOLINGS",
    "ProbeCallback",
    "ProbeInputs",
    "ProbeReport",
    "ProbeResult",
    "ProbeScores",
    "classification_metrics",
    "compare_representations",
    "encode_batch",
    "encoder_of",
    "extract_features",
    "frozen",
    "iter_batches",
    "knn_probe",
    "linear_probe",
    "majority_class_baseline",
    "random_init_encoder",
    "raw_band_statistics",
    "stack_inputs",
    "summarize",
]

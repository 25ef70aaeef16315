"""Convert an original-format checkpoint (.pth, the layout of the lab's SpectralGPT releases) into an S2MAE folder.

The original layout is described in docs/s2mae-method.md ("Original checkpoint layout"). The converter

1. loads the .pth with `torch.load(weights_only=True)`, allow-listing only `argparse.Namespace` (the training
   arguments the original loop saves); a file holding any other Python object is refused, never re-read
   with the unsafe unpickler;
2. infers the architecture from the tensor shapes (width, depth, MLP width, image size, band count, cube size,
   decoder, number of labels) and takes what shapes cannot tell (attention heads, band names) from a preset or
   flags;
3. maps every original key onto this package's names; an original key left unused or a parameter of ours left
   unfilled is an error;
4. runs the converted model and an independent functional implementation of the original architecture
   (`conversion.original_reference`) on the same seeded input and masking noise, and writes nothing when they
   differ by more than the tolerance;
5. writes config.json, model.safetensors, preprocessor_config.json and README.md, and optionally uploads them.

Usage:
    python -m conversion.convert_original_to_hf S2MAE-ViT-B.pth converted/s2mae-vit-b --preset vit-b
    python -m conversion.convert_original_to_hf finetuned.pth converted/eurosat --preset vit-b --num-channels 12
    python -m conversion.convert_original_to_hf ckpt.pth out --num-heads 12 --band-names B02 B03 B04 B08 B11 B12 \
        --push_to_hub my-org/s2mae-custom
"""

import argparse
import dataclasses
import hashlib
import math
import os
import pickle
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from conversion import original_reference as reference
from modeling_s2mae import (
    S2MAE_PRESETS,
    SENTINEL2_BANDS,
    SENTINEL2_WAVELENGTHS_NM,
    S2MAEConfig,
    S2MAEForImageClassification,
    S2MAEForPreTraining,
    S2MAEImageProcessor,
)
from modeling_s2mae.hub import prepare_for_remote_code
from modeling_s2mae.model_card import write_model_card

CheckpointKind = Literal["pretraining", "classifier"]
Logger = Callable[[str], None]

ALLOWED_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
"""The only non-tensor Python objects an original checkpoint may hold (the training loop's `args`)."""

DEFAULT_TOLERANCE = 1e-4
"""Largest accepted max absolute difference between the converted model and the reference."""

DEFAULT_DECODER_NUM_HEADS = 16


_BLOCK_RULES: tuple[tuple[str, str], ...] = (
    ("norm1.{p}", "layernorm_before.{p}"),
    ("norm2.{p}", "layernorm_after.{p}"),
    ("attn.q.{p}", "attention.q_proj.{p}"),
    ("attn.k.{p}", "attention.k_proj.{p}"),
    ("attn.v.{p}", "attention.v_proj.{p}"),
    ("attn.proj.{p}", "attention.o_proj.{p}"),
    ("mlp.fc1.{p}", "mlp.fc1.{p}"),
    ("mlp.fc2.{p}", "mlp.fc2.{p}"),
)

ENCODER_RULES: tuple[tuple[str, str], ...] = (
    ("patch_embed.proj.{p}", "s2mae.embeddings.cube_embeddings.projection.{p}"),
    *((f"blocks.{{i}}.{old}", f"s2mae.encoder.layers.{{i}}.{new}") for old, new in _BLOCK_RULES),
)
"""Original -> ours, for keys every checkpoint has. `{i}` is a block index, `{p}` "weight" or "bias"."""

PRETRAINING_RULES: tuple[tuple[str, str], ...] = (
    *ENCODER_RULES,
    ("pos_embed_spatial", "s2mae.embeddings.position_embeddings.spatial"),
    ("pos_embed_temporal", "s2mae.embeddings.position_embeddings.spectral"),
    ("norm.{p}", "s2mae.layernorm.{p}"),
    ("decoder_embed.{p}", "decoder.decoder_embed.{p}"),
    ("mask_token", "decoder.mask_token"),
    ("decoder_pos_embed_spatial", "decoder.position_embeddings.spatial"),
    ("decoder_pos_embed_temporal", "decoder.position_embeddings.spectral"),
    *((f"decoder_blocks.{{i}}.{old}", f"decoder.decoder_layers.layers.{{i}}.{new}") for old, new in _BLOCK_RULES),
    ("decoder_norm.{p}", "decoder.decoder_norm.{p}"),
    ("decoder_pred.{p}", "decoder.decoder_pred.{p}"),
)
"""Original -> ours for pretraining checkpoints (-> `S2MAEForPreTraining`)."""

CLASSIFIER_RULES: tuple[tuple[str, str], ...] = (
    *ENCODER_RULES,
    ("pos_embed", "s2mae.embeddings.position_embeddings.joint"),
    ("norm.{p}", "s2mae.pooler.layernorm.{p}"),
    ("head.{p}", "classifier.{p}"),
)
"""Original -> ours for fine-tuned classifiers (-> `S2MAEForImageClassification`); `norm` follows the pooling."""

_PLACEHOLDERS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>weight|bias)"}


class ConversionError(ValueError):
    """The checkpoint cannot be converted faithfully; the message says why and what to do. Nothing was written."""


@dataclasses.dataclass
class ConversionResult:
    """What `convert_checkpoint` produced.

    Args:
        kind: "pretraining" or "classifier".
        config: The inferred `S2MAEConfig`.
        model: The converted model (eval mode, the checkpoint's dtype).
        max_abs_differences: Output name -> max absolute difference to the reference.
        output_dir: The folder written, or None when `output_dir` was not given.
    """

    kind: CheckpointKind
    config: S2MAEConfig
    model: S2MAEForPreTraining | S2MAEForImageClassification
    max_abs_differences: dict[str, float]
    output_dir: Path | None = None


# ----------------------------------------------------------------------------------------------------- loading


def load_original_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], argparse.Namespace | None]:
    """Read an original .pth safely.

    Accepts a dict with a 'model' state_dict (the training loop's `{'model', 'optimizer', 'epoch', 'scaler',
    'args'}`) or a bare state_dict; a 'module.' prefix (DistributedDataParallel) is removed.

    Returns:
        (state_dict with original key names, the saved `args` Namespace or None).

    Raises:
        ConversionError: The file is missing, not a PyTorch checkpoint, truncated, holds a Python object other
            than tensors, containers and `argparse.Namespace`, or holds no state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"Checkpoint {path} does not exist or is not a file.")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise ConversionError(
                f"{path} holds a Python object of type {found.group(1)}, which is not allow-listed (only tensors, "
                "plain containers and argparse.Namespace are). Unpickling it could run arbitrary code, so "
                "it is refused. Re-save the state_dict alone with torch.save({'model': state_dict}, path) from a trusted "
                "environment."
            ) from None
        raise ConversionError(f"{path} is not a readable PyTorch checkpoint ({_first_line(error)}).") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, TypeError) as error:
        raise ConversionError(
            f"{path} is not a readable PyTorch checkpoint: wrong file type, or truncated / corrupted "
            f"({type(error).__name__}: {_first_line(error)})."
        ) from None

    args = None
    if isinstance(payload, Mapping) and "model" in payload:
        state_dict = payload["model"]
        args = payload.get("args")
        if args is not None and not isinstance(args, argparse.Namespace):
            args = None
    elif isinstance(payload, Mapping):
        state_dict = payload
    else:
        raise ConversionError(
            f"{path} holds a {type(payload).__name__}, expected a dict (a state_dict or {{'model': ...}})."
        )
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ConversionError(f"{path} holds no state_dict under 'model' (got {type(state_dict).__name__}).")
    not_tensors = sorted(
        repr(key)
        for key, value in state_dict.items()
        if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    )
    if not_tensors:
        raise ConversionError(
            f"{path} is not a state_dict: entries {not_tensors[:10]} are not name -> tensor pairs. Pass a checkpoint "
            "whose 'model' entry (or the whole file) maps parameter names to tensors."
        )
    return strip_module_prefix(dict(state_dict)), args


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the 'module.' prefix DistributedDataParallel adds (from every key that has it)."""
    stripped: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name in stripped:
            raise ConversionError(f"Key {name!r} appears both with and without the 'module.' prefix.")
        stripped[name] = value
    return stripped


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


# ----------------------------------------------------------------------------------------------------- key mapping


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{[ip]\})", template)
    return re.compile("".join(_PLACEHOLDERS[part[1]] if part in ("{i}", "{p}") else re.escape(part) for part in parts))


def _translate(key: str, rules: Sequence[tuple[str, str]], reverse: bool = False) -> str | None:
    for original, ours in rules:
        source, target = (ours, original) if reverse else (original, ours)
        match = _template_regex(source).fullmatch(key)
        if match:
            return target.format(**match.groupdict())
    return None


def rules_for(kind: CheckpointKind) -> tuple[tuple[str, str], ...]:
    return PRETRAINING_RULES if kind == "pretraining" else CLASSIFIER_RULES


def map_original_key(key: str, kind: CheckpointKind) -> str | None:
    """Our parameter name for an original key, or None when the key has no counterpart."""
    return _translate(key, rules_for(kind))


def original_key_for(name: str, kind: CheckpointKind) -> str | None:
    """The original key expected to fill one of our parameters, or None."""
    return _translate(name, rules_for(kind), reverse=True)


def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> CheckpointKind:
    """'pretraining' when decoder keys are present, 'classifier' for a joint `pos_embed` with a `head`."""
    if any(key.startswith(("decoder_", "mask_token")) for key in state_dict):
        return "pretraining"
    if "pos_embed" in state_dict and "head.weight" in state_dict:
        return "classifier"
    raise ConversionError(
        "Cannot tell the checkpoint type: it has neither decoder keys (decoder_embed, mask_token, ...: a pretraining "
        "checkpoint) nor a joint pos_embed with head.* (a fine-tuned classifier). First keys: "
        f"{sorted(state_dict)[:12]}."
    )


def map_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    kind: CheckpointKind,
    expected: Mapping[str, torch.Size],
) -> dict[str, torch.Tensor]:
    """Rename every original key to ours and check that the result fills `expected` exactly.

    Args:
        state_dict: Original keys -> tensors.
        kind: Checkpoint type.
        expected: Our parameter names -> shapes (from the model to fill).

    Raises:
        ConversionError: Listing every original key not used, every parameter of ours not filled (with the
            original key that should have filled it) and every shape mismatch.
    """
    converted: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    mismatched: dict[str, str] = {}
    for key, tensor in state_dict.items():
        name = map_original_key(key, kind)
        if name is None or name not in expected:
            unused.append(key)
        elif tuple(tensor.shape) != tuple(expected[name]):
            mismatched[name] = f"{key} {tuple(tensor.shape)} -> {name} {tuple(expected[name])}"
        else:
            converted[name] = tensor
    unfilled = [name for name in expected if name not in converted and name not in mismatched]
    problems = []
    if unused:
        problems.append("original keys not used: " + ", ".join(sorted(unused)))
    if unfilled:
        described = [f"{name} (from original {original_key_for(name, kind) or '?'})" for name in unfilled]
        problems.append("parameters not filled: " + ", ".join(described))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched.values()))
    if problems:
        raise ConversionError(f"Incomplete conversion of a {kind} checkpoint. " + ". ".join(problems) + ".")
    return converted


# ----------------------------------------------------------------------------------------------------- inference


def _get(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    if key not in state_dict:
        raise ConversionError(f"The checkpoint lacks {key!r}, needed to infer the architecture.")
    tensor = state_dict[key]
    if tensor.ndim != ndim:
        raise ConversionError(f"{key} has shape {tuple(tensor.shape)}, expected {ndim} dimensions.")
    return tensor


def _stack_depth(state_dict: Mapping[str, torch.Tensor], stack: str) -> int:
    indices = reference.block_indices(state_dict, stack)
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise ConversionError(f"The checkpoint's {stack} are not numbered 0..n-1: no key for {stack} {missing}.")
    return len(indices)


def _mlp_width(state_dict: Mapping[str, torch.Tensor], stack: str, depth: int) -> int:
    for index in range(depth):
        key = f"{stack}.{index}.mlp.fc1.weight"
        if key in state_dict:
            return int(_get(state_dict, key, 2).shape[0])
    raise ConversionError(f"No {stack}.<i>.mlp.fc1.weight in the checkpoint: cannot infer the MLP width.")


def resolve_num_heads(preset: str | None, num_heads: int | None, hidden_size: int) -> int:
    """Encoder heads from `--num-heads` or a preset (whose width must match the checkpoint)."""
    if preset is not None:
        if preset not in S2MAE_PRESETS:
            raise ConversionError(f"Unknown preset {preset!r}; choose one of {sorted(S2MAE_PRESETS)}.")
        if S2MAE_PRESETS[preset]["hidden_size"] != hidden_size:
            raise ConversionError(
                f"Preset {preset!r} is {S2MAE_PRESETS[preset]['hidden_size']} wide but the checkpoint is {hidden_size} "
                "wide: choose the matching preset or pass --num-heads."
            )
        preset_heads = S2MAE_PRESETS[preset]["num_attention_heads"]
        if num_heads is not None and num_heads != preset_heads:
            raise ConversionError(f"--num-heads {num_heads} contradicts preset {preset!r} ({preset_heads} heads).")
        return preset_heads
    if num_heads is None:
        matching = [name for name, sizes in S2MAE_PRESETS.items() if sizes["hidden_size"] == hidden_size]
        hint = f" (width {hidden_size} matches preset {', '.join(matching)})" if matching else ""
        raise ConversionError(
            "The number of attention heads cannot be read from the weights: pass --preset (vit-b: 12, vit-l: 16, "
            f"vit-h: 16 heads) or --num-heads{hint}."
        )
    return num_heads


def _spectral_spatial_split(
    num_tokens: int,
    spectral_patch_size: int,
    patch_size: int,
    num_channels: int | None,
    image_size: int | None,
) -> tuple[int, int]:
    """(G, grid side) of a joint table of `num_tokens` tokens, from the band count or the image size."""
    if num_channels is not None:
        if num_channels % spectral_patch_size:
            raise ConversionError(
                f"{num_channels} bands are not divisible by the checkpoint's spectral patch {spectral_patch_size}."
            )
        groups = num_channels // spectral_patch_size
        side = math.isqrt(num_tokens // groups) if num_tokens % groups == 0 else 0
        if side * side * groups != num_tokens:
            raise ConversionError(
                f"The checkpoint's pos_embed has {num_tokens} tokens, which is not {groups} spectral groups "
                f"({num_channels} bands / {spectral_patch_size}) times a square grid: the band count disagrees with "
                "the checkpoint."
            )
        if image_size is not None and image_size != side * patch_size:
            raise ConversionError(f"--image-size {image_size} disagrees with the checkpoint ({side * patch_size} px).")
        return groups, side
    if image_size is not None:
        if image_size % patch_size:
            raise ConversionError(
                f"--image-size {image_size} is not divisible by the checkpoint's patch size {patch_size}."
            )
        spatial = (image_size // patch_size) ** 2
        if num_tokens % spatial:
            raise ConversionError(
                f"The checkpoint's {num_tokens} tokens are not a multiple of {spatial} ({image_size} px)."
            )
        return num_tokens // spatial, image_size // patch_size
    candidates = [
        f"{groups * spectral_patch_size} bands at {math.isqrt(num_tokens // groups) * patch_size} px"
        for groups in range(1, num_tokens + 1)
        if num_tokens % groups == 0 and math.isqrt(num_tokens // groups) ** 2 == num_tokens // groups
    ]
    raise ConversionError(
        f"A classifier's joint pos_embed ({num_tokens} tokens) does not say how many bands and pixels it covers: "
        f"pass --band-names, --num-channels or --image-size (possible: {'; '.join(candidates)})."
    )


def _training_arguments(args: argparse.Namespace | None, log: Logger) -> dict[str, Any]:
    """mask_ratio and norm_pix_loss from the saved training arguments, when present and well-typed."""
    found: dict[str, Any] = {}
    if args is None:
        return found
    mask_ratio = getattr(args, "mask_ratio", None)
    if isinstance(mask_ratio, float | int) and not isinstance(mask_ratio, bool) and 0.0 <= mask_ratio < 1.0:
        found["mask_ratio"] = float(mask_ratio)
    norm_pix_loss = getattr(args, "norm_pix_loss", None)
    if isinstance(norm_pix_loss, bool):
        found["norm_pix_loss"] = norm_pix_loss
    if found:
        log(f"From the checkpoint's training arguments: {found}")
    return found


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    kind: CheckpointKind,
    *,
    preset: str | None = None,
    num_heads: int | None = None,
    decoder_num_heads: int = DEFAULT_DECODER_NUM_HEADS,
    band_names: Sequence[str] | None = None,
    num_channels: int | None = None,
    image_size: int | None = None,
    num_labels: int | None = None,
    training_args: argparse.Namespace | None = None,
    log: Logger = print,
) -> S2MAEConfig:
    """Build the `S2MAEConfig` the checkpoint's shapes imply.

    Shapes give width, depth, MLP widths, q/k/v bias, cube size (s, p), image size, band count (s * G), decoder
    width and depth, and the label count. Heads come from `preset` / `num_heads`; band names from `band_names`
    (default: the 12 Sentinel-2 bands for a 12-band checkpoint, placeholders otherwise).

    Raises:
        ConversionError: On a malformed checkpoint, or flags that disagree with it (band count, image size, labels,
            preset width).
    """
    if band_names is not None:
        band_names = list(band_names)
        if num_channels is not None and num_channels != len(band_names):
            raise ConversionError(f"--num-channels {num_channels} but {len(band_names)} --band-names were given.")
        num_channels = len(band_names)

    projection = _get(state_dict, "patch_embed.proj.weight", 5)
    hidden_size, in_channels, spectral_patch_size, patch_size, patch_width = (int(v) for v in projection.shape)
    if in_channels != 1 or patch_size != patch_width:
        raise ConversionError(
            f"patch_embed.proj.weight has shape {tuple(projection.shape)}; expected (D, 1, s, p, p), a Conv3d over "
            "(B, 1, C, H, W) with square cubes."
        )
    depth = _stack_depth(state_dict, "blocks")
    if depth == 0:
        raise ConversionError("The checkpoint has no encoder blocks (blocks.<i>.*).")
    heads = resolve_num_heads(preset, num_heads, hidden_size)
    fields: dict[str, Any] = {
        "patch_size": patch_size,
        "spectral_patch_size": spectral_patch_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": depth,
        "num_attention_heads": heads,
        "intermediate_size": _mlp_width(state_dict, "blocks", depth),
        "qkv_bias": any(f"blocks.{index}.attn.q.bias" in state_dict for index in range(depth)),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
    }

    if kind == "pretraining":
        spatial = _get(state_dict, "pos_embed_spatial", 3)
        spectral = _get(state_dict, "pos_embed_temporal", 3)
        side = math.isqrt(spatial.shape[1])
        if side * side != spatial.shape[1]:
            raise ConversionError(f"pos_embed_spatial has {spatial.shape[1]} positions, not a square grid.")
        groups = int(spectral.shape[1])
        inferred_channels, inferred_size = groups * spectral_patch_size, side * patch_size
        if num_channels is not None and num_channels != inferred_channels:
            raise ConversionError(
                f"The checkpoint covers {inferred_channels} bands ({groups} spectral groups x {spectral_patch_size} bands "
                f"per cube) but {num_channels} were given (--band-names / --num-channels). Give one name per band "
                "the checkpoint was trained on, in its order."
            )
        if image_size is not None and image_size != inferred_size:
            raise ConversionError(f"--image-size {image_size} disagrees with the checkpoint ({inferred_size} px).")
        decoder_embed = _get(state_dict, "decoder_embed.weight", 2)
        decoder_depth = _stack_depth(state_dict, "decoder_blocks")
        decoder_width = int(decoder_embed.shape[0])
        predicted = _get(state_dict, "decoder_pred.weight", 2).shape[0]
        if predicted != spectral_patch_size * patch_size**2:
            raise ConversionError(
                f"decoder_pred predicts {predicted} values per token, expected s * p * p = "
                f"{spectral_patch_size * patch_size**2} for the checkpoint's {spectral_patch_size} x {patch_size} x "
                f"{patch_size} cubes."
            )
        fields.update(
            decoder_hidden_size=decoder_width,
            decoder_num_hidden_layers=decoder_depth,
            decoder_num_attention_heads=decoder_num_heads,
            decoder_intermediate_size=(
                _mlp_width(state_dict, "decoder_blocks", decoder_depth) if decoder_depth else 4 * decoder_width
            ),
            **_training_arguments(training_args, log),
        )
    else:
        table = _get(state_dict, "pos_embed", 3)
        groups, side = _spectral_spatial_split(
            int(table.shape[1]), spectral_patch_size, patch_size, num_channels, image_size
        )
        inferred_channels, inferred_size = groups * spectral_patch_size, side * patch_size
        labels = int(_get(state_dict, "head.weight", 2).shape[0])
        if num_labels is not None and num_labels != labels:
            raise ConversionError(f"--num-labels {num_labels} but the checkpoint's head has {labels} outputs.")
        fields.update(
            position_embedding_type="joint",
            pooling="mean_skip_first",
            num_labels=labels,
            use_final_layernorm=False,  # original classifiers normalise only the pooled vector
        )

    fields["image_size"] = inferred_size
    if band_names is not None:
        fields["band_names"] = band_names
    elif inferred_channels == len(SENTINEL2_BANDS):
        fields.update(band_names=list(SENTINEL2_BANDS), band_wavelengths=list(SENTINEL2_WAVELENGTHS_NM))
        log(f"No --band-names given: assuming the 12 Sentinel-2 bands {', '.join(SENTINEL2_BANDS)}.")
    else:
        fields["num_channels"] = inferred_channels
        log(
            f"No --band-names given for a {inferred_channels}-band checkpoint: the config gets placeholder names "
            "band_00, ...; pass --band-names so the image processor can select bands by name."
        )
    try:
        return S2MAEConfig(**fields)
    except ValueError as error:
        raise ConversionError(f"The inferred architecture is not a valid S2MAEConfig: {error}") from None


# ----------------------------------------------------------------------------------------------------- model + parity


def model_class_for(kind: CheckpointKind) -> type[S2MAEForPreTraining] | type[S2MAEForImageClassification]:
    return S2MAEForPreTraining if kind == "pretraining" else S2MAEForImageClassification


def build_model(
    state_dict: Mapping[str, torch.Tensor], config: S2MAEConfig, kind: CheckpointKind
) -> S2MAEForPreTraining | S2MAEForImageClassification:
    """Our model holding the converted float32 weights (eval mode); raises `ConversionError` when incomplete."""
    model = model_class_for(kind)(config)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    converted = map_state_dict(state_dict, kind, expected)
    model.load_state_dict({name: tensor.detach().to(torch.float32) for name, tensor in converted.items()}, strict=True)
    return model.eval()


def parity_inputs(config: S2MAEConfig, batch_size: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed input: pixel values (B, C, H, W) uniform in [0, 1] and masking noise (B, L), from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.rand(
        batch_size, config.num_channels, config.image_size, config.image_size, generator=generator
    )
    noise = torch.rand(batch_size, config.num_tokens, generator=generator)
    return pixel_values, noise


@torch.no_grad()
def compare_with_reference(
    model: S2MAEForPreTraining | S2MAEForImageClassification,
    state_dict: Mapping[str, torch.Tensor],
    kind: CheckpointKind,
    batch_size: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Max absolute differences between our model and `original_reference` on `parity_inputs`.

    Pretraining: encoder output without masking (B, L, D), encoder output of the visible tokens (B, K, D) and the
    reconstruction (B, L, s * p * p) under the same noise. Classifier: logits (B, num_labels).
    """
    config = model.config
    original = {key: tensor.detach().to(torch.float32) for key, tensor in state_dict.items()}
    settings = reference.ReferenceSettings(
        num_heads=config.num_attention_heads,
        spectral_patch_size=config.spectral_patch_size,
        patch_size=config.patch_size,
        decoder_num_heads=config.decoder_num_attention_heads,
        layer_norm_eps=config.layer_norm_eps,
    )
    pixel_values, noise = parity_inputs(config, batch_size, seed)

    def difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
        if ours.shape != theirs.shape:
            raise ConversionError(f"Output shapes differ: ours {tuple(ours.shape)}, reference {tuple(theirs.shape)}.")
        return float((ours.float() - theirs.float()).abs().max())

    if kind == "classifier":
        logits = model(pixel_values).logits
        return {"classifier logits": difference(logits, reference.classifier_logits(original, pixel_values, settings))}

    full = reference.encode(original, pixel_values, settings)
    masked, reconstruction = reference.pretraining_forward(original, pixel_values, noise, settings, config.mask_ratio)
    ours_full = model.s2mae(pixel_values).last_hidden_state
    ours_masked = model.s2mae(pixel_values, noise=noise)
    ours = model(pixel_values, noise=noise, return_loss=False)
    if not torch.equal(ours_masked.mask, masked.mask) or not torch.equal(ours.mask, masked.mask):
        raise ConversionError("The converted model hides other tokens than the reference for the same noise.")
    return {
        "encoder output (no masking)": difference(ours_full, full.latent),
        "encoder output (visible tokens)": difference(ours_masked.last_hidden_state, masked.latent),
        "reconstruction logits": difference(ours.logits, reconstruction),
    }


# ----------------------------------------------------------------------------------------------------- writing


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def conversion_summary(
    kind: CheckpointKind,
    source: Path,
    sha256: str,
    differences: Mapping[str, float],
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """The model card's "Training" paragraph for converted weights: where they come from and the parity check."""
    rows = "\n".join(f"| {name} | {value:.2e} |" for name, value in differences.items())
    return f"""Not trained here: these are the weights of the original-format {kind} checkpoint `{source.name}`
(sha256 `{sha256}`), converted by `conversion/convert_original_to_hf.py` of the `s2mae` package. Training data,
recipe and licence are those of the original checkpoint: check its source before use.

Conversion check: max absolute difference between this model and an independent implementation of the original
architecture, on a fixed random input in [0, 1] and fixed masking noise (tolerance {tolerance:g}):

| output | max abs difference |
| --- | --- |
{rows}"""


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"Output path {output_dir} exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(f"Output folder {output_dir} is not empty; pass --overwrite to replace its files.")


def write_folder(
    model: S2MAEForPreTraining | S2MAEForImageClassification,
    output_dir: Path,
    *,
    model_name: str,
    training_summary: str,
    license: str = "other",
    repo_id: str | None = None,
    overwrite: bool = False,
) -> None:
    """Write config.json, model.safetensors, preprocessor_config.json, README.md and the modeling files (for
    `trust_remote_code=True`) into `output_dir`.

    The README is `modeling_s2mae.model_card.write_model_card`'s card. Everything is first written to a temporary
    sibling folder, so a failure leaves `output_dir` untouched.

    Args:
        model_name: Title of the model card.
        training_summary: The card's "Training" paragraph (see `conversion_summary`).
        license: Licence id for the card's metadata; "other" by default, since the original's licence is not known
            here.
        repo_id: Hub id the card's quick start loads (default: the folder's path).
    """
    check_output_dir(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        processor = S2MAEImageProcessor.from_model_config(model.config)
        processor.save_pretrained(staging)
        # the modeling files and a complete auto_map: loadable with trust_remote_code=True without the package
        prepare_for_remote_code(staging)
        write_model_card(
            staging,
            model.config,
            processor,
            model_name=model_name,
            license=license,
            training_summary=training_summary,
            task="pretraining" if isinstance(model, S2MAEForPreTraining) else "image-classification",
            repo_id=repo_id or str(output_dir.resolve()),
        )
        if not output_dir.exists():
            os.replace(staging, output_dir)
            return
        for item in staging.iterdir():
            os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def push_folder_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create `repo_id` (if needed) and upload `folder` to it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        commit_message="Upload S2MAE checkpoint converted from the original format",
    )
    return str(commit)


# ----------------------------------------------------------------------------------------------------- entry points


def _uniform_float_dtype(state_dict: Mapping[str, torch.Tensor]) -> torch.dtype:
    dtypes = {tensor.dtype for tensor in state_dict.values() if tensor.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def convert_checkpoint(
    checkpoint_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    preset: str | None = None,
    num_heads: int | None = None,
    decoder_num_heads: int = DEFAULT_DECODER_NUM_HEADS,
    band_names: Sequence[str] | None = None,
    num_channels: int | None = None,
    image_size: int | None = None,
    num_labels: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    parity_batch_size: int = 2,
    parity_seed: int = 0,
    model_name: str | None = None,
    license: str = "other",
    overwrite: bool = False,
    push_to_hub: str | None = None,
    private: bool = False,
    log: Logger = print,
) -> ConversionResult:
    """Load, infer, map, check parity and (when `output_dir` is given) write and optionally upload.

    Nothing is written unless every check passes. See the module docstring for the steps.

    Args:
        checkpoint_path: The original .pth.
        output_dir: Folder to write; None converts and checks without writing.
        preset: "vit-b", "vit-l", "vit-h" (or "vit-s"): gives the head count; its width must match the weights.
        num_heads: Encoder heads, instead of `preset`.
        decoder_num_heads: Decoder heads (pretraining checkpoints).
        band_names: The checkpoint's bands, in its order; their count must match the weights.
        num_channels: Band count, checked against the weights (needed for classifiers without `band_names`).
        image_size: Image side, checked against the weights (or, for classifiers, used to split the joint table).
        num_labels: Checked against a classifier's head.
        tolerance: Largest accepted max absolute difference to the reference.
        parity_batch_size, parity_seed: Size and seed of the random parity input.
        model_name: Title of the model card (default: width and source file name).
        license: Licence id for the model card ("other": that of the original checkpoint).
        overwrite: Replace files in a non-empty `output_dir`.
        push_to_hub: Hub repository id to upload the written folder to.
        private: Create that repository as private.
        log: Receives the progress lines (default `print`).

    Raises:
        ConversionError: With the reason; nothing was written.
    """
    checkpoint_path = Path(checkpoint_path)
    if push_to_hub and output_dir is None:
        raise ConversionError("push_to_hub needs an output_dir to write the folder to upload.")
    if output_dir is not None:
        check_output_dir(Path(output_dir), overwrite)
    state_dict, training_args = load_original_checkpoint(checkpoint_path)
    kind = detect_kind(state_dict)
    log(f"{checkpoint_path.name}: {kind} checkpoint with {len(state_dict)} tensors")
    config = infer_config(
        state_dict,
        kind,
        preset=preset,
        num_heads=num_heads,
        decoder_num_heads=decoder_num_heads,
        band_names=band_names,
        num_channels=num_channels,
        image_size=image_size,
        num_labels=num_labels,
        training_args=training_args,
        log=log,
    )
    log(
        f"Architecture: width {config.hidden_size}, depth {config.num_hidden_layers}, heads {config.num_attention_heads}, "
        f"{config.image_size} px, {config.num_channels} bands, cubes {config.spectral_patch_size}x{config.patch_size}x"
        f"{config.patch_size}, {config.num_tokens} tokens"
        + (
            f"; decoder width {config.decoder_hidden_size}, depth {config.decoder_num_hidden_layers}"
            if kind == "pretraining"
            else f"; {config.num_labels} labels"
        )
    )
    model = build_model(state_dict, config, kind)
    differences = compare_with_reference(model, state_dict, kind, parity_batch_size, parity_seed)
    for name, value in differences.items():
        log(f"max abs difference, {name}: {value:.3e}")
    failed = {name: value for name, value in differences.items() if not value <= tolerance}
    if failed:
        raise ConversionError(f"Parity check failed (tolerance {tolerance:g}): {failed}. Nothing was written.")

    source_dtype = _uniform_float_dtype(state_dict)
    if source_dtype != torch.float32:
        model = model.to(source_dtype)
    result = ConversionResult(kind=kind, config=config, model=model, max_abs_differences=differences)
    if output_dir is None:
        return result
    output_dir = Path(output_dir)
    summary = conversion_summary(kind, checkpoint_path, file_sha256(checkpoint_path), differences, tolerance)
    write_folder(
        model,
        output_dir,
        model_name=model_name or f"S2MAE {config.hidden_size}-wide, converted from {checkpoint_path.name}",
        training_summary=summary,
        license=license,
        repo_id=push_to_hub,
        overwrite=overwrite,
    )
    result.output_dir = output_dir
    log(f"Wrote {output_dir}")
    if push_to_hub:
        log(f"Uploaded to {push_folder_to_hub(output_dir, push_to_hub, private=private)}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert an original-format S2MAE checkpoint (.pth) into a Transformers folder, with a parity check."
    )
    parser.add_argument(
        "checkpoint", type=Path, help="Original .pth ({'model': state_dict, ...} or a bare state_dict)."
    )
    parser.add_argument("output_dir", type=Path, help="Folder to write (must be empty or absent unless --overwrite).")
    parser.add_argument("--preset", choices=sorted(S2MAE_PRESETS), help="Encoder size, for the head count.")
    parser.add_argument("--num-heads", type=int, help="Encoder attention heads (instead of --preset).")
    parser.add_argument(
        "--decoder-num-heads",
        type=int,
        default=DEFAULT_DECODER_NUM_HEADS,
        help="Decoder attention heads (default 16).",
    )
    parser.add_argument("--band-names", nargs="+", help="Names of the checkpoint's bands, in its order.")
    parser.add_argument("--num-channels", type=int, help="Band count (checked against the checkpoint).")
    parser.add_argument("--image-size", type=int, help="Image side in pixels (needed for some classifiers).")
    parser.add_argument("--num-labels", type=int, help="Label count of a classifier (checked against its head).")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="Max accepted abs difference.")
    parser.add_argument("--model-name", help="Title of the model card.")
    parser.add_argument(
        "--license", default="other", help="Licence id for the model card (default 'other': the original's licence)."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace files in a non-empty output folder.")
    parser.add_argument(
        "--push_to_hub", "--push-to-hub", dest="push_to_hub", metavar="REPO_ID", help="Upload to the Hub."
    )
    parser.add_argument("--private", action="store_true", help="Create the Hub repository as private.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        convert_checkpoint(
            args.checkpoint,
            args.output_dir,
            preset=args.preset,
            num_heads=args.num_heads,
            decoder_num_heads=args.decoder_num_heads,
            band_names=args.band_names,
            num_channels=args.num_channels,
            image_size=args.image_size,
            num_labels=args.num_labels,
            tolerance=args.tolerance,
            model_name=args.model_name,
            license=args.license,
            overwrite=args.overwrite,
            push_to_hub=args.push_to_hub,
            private=args.private,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "CLASSIFIER_RULES",
    "ConversionError",
    "ConversionResult",
    "PRETRAINING_RULES",
    "build_model",
    "compare_with_reference",
    "convert_checkpoint",
    "detect_kind",
    "infer_config",
    "load_original_checkpoint",
    "main",
    "map_original_key",
    "map_state_dict",
    "original_key_for",
    "push_folder_to_hub",
    "write_folder",
]


if __name__ == "__main__":
    sys.exit(main())

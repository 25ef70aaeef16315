"""Convert an original-format checkpoint (.pth, the layout of the lab's SpectralGPT releases) into an S2MAE folder.

The layout is described in docs/s2mae-method.md ("Original checkpoint layout"). `convert_checkpoint`

1. loads the .pth with `torch.load(weights_only=True)`, allow-listing only `argparse.Namespace` (the training
   arguments the original loop saves), and refuses any other Python object and any tensor whose shape claims more
   data than its storage holds (e.g. stride-0 expanded tensors);
2. infers the architecture from the tensor shapes (width, depth, MLP width, image size, band count, cube size,
   decoder, number of labels); what shapes cannot tell (attention heads, band names) comes from a preset or flags;
3. renames the keys with the `KEY_MAPS` table and loads them with `load_state_dict(strict=True)`: an original key
   left unused, a parameter left unfilled or a shape mismatch is a `ConversionError`;
4. runs the converted model and `original_reference`, an independent functional implementation of the original
   architecture, on the same seeded input and masking noise, and writes nothing when they differ by more than the
   tolerance;
5. writes config.json, model.safetensors, preprocessor_config.json, README.md and the remote-code files, and
   optionally uploads them.

Error messages name the command-line flags of conversion/convert_original_to_hf.py (`--num-heads`); the keyword
arguments of `convert_checkpoint` have the same names with underscores.
"""

import argparse
import hashlib
import logging
import math
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..configuration_s2mae import S2MAE_PRESETS, S2MAEConfig
from ..hub import save_with_remote_code
from ..image_processing_s2mae import S2MAEImageProcessor
from ..model_card import write_model_card
from ..modeling_s2mae import S2MAEForImageClassification, S2MAEForPreTraining
from ..sensors import SENTINEL2_BANDS
from . import original_reference as reference

logger = logging.getLogger(__name__)

CheckpointKind = Literal["pretraining", "classifier"]
ConvertedModel = S2MAEForPreTraining | S2MAEForImageClassification

ALLOWED_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
"""The only non-tensor Python objects an original checkpoint may hold (the training loop's `args`)."""

DEFAULT_TOLERANCE = 1e-4
"""Largest accepted max absolute difference between the converted model and the reference."""

DEFAULT_DECODER_NUM_HEADS = 16

_BLOCK_PARTS = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.q": "attention.q_proj",
    "attn.k": "attention.k_proj",
    "attn.v": "attention.v_proj",
    "attn.proj": "attention.o_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _block_keys(original_stack: str, our_stack: str) -> list[tuple[str, str]]:
    """The `KEY_MAPS` rows of one stack of transformer blocks (`{original_stack}.<i>.<part>.weight|bias`)."""
    return [
        (rf"{original_stack}\.(\d+)\.{re.escape(old)}\.(weight|bias)", rf"{our_stack}.\1.{new}.\2")
        for old, new in _BLOCK_PARTS.items()
    ]


_ENCODER_KEYS = [
    (r"patch_embed\.proj\.(weight|bias)", r"s2mae.embeddings.cube_embeddings.projection.\1"),
    *_block_keys("blocks", "s2mae.encoder.layers"),
]

KEY_MAPS: dict[str, list[tuple[str, str]]] = {
    "pretraining": [
        *_ENCODER_KEYS,
        (r"pos_embed_spatial", "s2mae.embeddings.position_embeddings.spatial"),
        (r"pos_embed_temporal", "s2mae.embeddings.position_embeddings.spectral"),
        (r"norm\.(weight|bias)", r"s2mae.layernorm.\1"),
        (r"decoder_embed\.(weight|bias)", r"decoder.decoder_embed.\1"),
        (r"mask_token", "decoder.mask_token"),
        (r"decoder_pos_embed_spatial", "decoder.position_embeddings.spatial"),
        (r"decoder_pos_embed_temporal", "decoder.position_embeddings.spectral"),
        *_block_keys("decoder_blocks", "decoder.decoder_layers.layers"),
        (r"decoder_norm\.(weight|bias)", r"decoder.decoder_norm.\1"),
        (r"decoder_pred\.(weight|bias)", r"decoder.decoder_pred.\1"),
    ],
    "classifier": [
        *_ENCODER_KEYS,
        (r"pos_embed", "s2mae.embeddings.position_embeddings.joint"),
        (r"norm\.(weight|bias)", r"s2mae.pooler.layernorm.\1"),  # original classifiers normalise the pooled vector
        (r"head\.(weight|bias)", r"classifier.\1"),
    ],
}
"""Checkpoint kind -> (regex matching a whole original key, template of our name) rows, first match wins.

Pretraining checkpoints become `S2MAEForPreTraining`, fine-tuned classifiers `S2MAEForImageClassification`."""


class ConversionError(ValueError):
    """The checkpoint cannot be converted faithfully; the message says why and what to do. Nothing was written."""


@dataclass
class ConversionResult:
    """What `convert_checkpoint` produced.

    Args:
        kind: "pretraining" or "classifier".
        config: The inferred `S2MAEConfig`.
        model: The converted model (eval mode, the checkpoint's dtype).
        max_abs_differences: Output name -> max absolute difference to the reference.
        output_dir: The folder written, or None when no `output_dir` was given.
    """

    kind: CheckpointKind
    config: S2MAEConfig
    model: ConvertedModel
    max_abs_differences: dict[str, float]
    output_dir: Path | None = None


# ----------------------------------------------------------------------------------------------------- loading


def _check_storage(path: Path, key: str, tensor: torch.Tensor) -> None:
    """Refuse a tensor whose shape addresses more elements than its storage holds (stride 0, overlapping views):
    materialising it could allocate far more memory than the file holds."""
    needed = tensor.numel() * tensor.element_size()
    stored = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    zero_stride = any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride()))
    if zero_stride or needed > stored:
        raise ConversionError(
            f"{path}: tensor {key!r} of shape {tuple(tensor.shape)} (strides {tensor.stride()}) claims {needed} bytes "
            f"but its storage holds {stored}: an expanded or malformed tensor, refused. Re-save the state_dict with "
            "contiguous tensors ({k: v.contiguous() for k, v in state_dict.items()})."
        )


def load_original_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], argparse.Namespace | None]:
    """Read an original .pth safely.

    Accepts a dict with a 'model' state_dict (the training loop's `{'model', 'optimizer', 'epoch', 'scaler',
    'args'}`) or a bare state_dict; a 'module.' prefix (DistributedDataParallel) is removed.

    Returns:
        (state_dict with original key names, the saved `args` Namespace or None).

    Raises:
        ConversionError: The file is missing, not a PyTorch checkpoint, truncated, holds a Python object other
            than tensors, containers and `argparse.Namespace`, holds no state_dict, or holds a tensor whose shape
            claims more data than its storage.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"Checkpoint {path} does not exist or is not a file.")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        KeyError,
        ValueError,
        OSError,
        IndexError,
        TypeError,
    ) as error:
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", str(error)):
            raise ConversionError(
                f"{path} holds a Python object of type {found.group(1)}, which is not allow-listed (only tensors, "
                "plain containers and argparse.Namespace are). Unpickling it could run arbitrary code, so it is "
                "refused. Re-save the state_dict alone with torch.save({'model': state_dict}, path) from a trusted "
                "environment."
            ) from None
        first_line = (str(error).strip() or "no message").splitlines()[0]
        raise ConversionError(
            f"{path} is not a readable PyTorch checkpoint: wrong file type, truncated, or corrupted (e.g. a tensor "
            f"whose shape claims more data than its storage holds) ({type(error).__name__}: {first_line})."
        ) from None

    args = None
    state_dict = payload
    if isinstance(payload, Mapping) and "model" in payload:
        state_dict = payload["model"]
        args = payload.get("args") if isinstance(payload.get("args"), argparse.Namespace) else None
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ConversionError(
            f"{path} holds no state_dict (got {type(state_dict).__name__}): expected a dict of tensors or "
            "{'model': state_dict, ...}."
        )
    not_tensors = sorted(repr(k) for k, v in state_dict.items() if not isinstance(k, str) or not torch.is_tensor(v))
    if not_tensors:
        raise ConversionError(
            f"{path} is not a state_dict: entries {not_tensors[:10]} are not name -> tensor pairs. Pass a checkpoint "
            "whose 'model' entry (or the whole file) maps parameter names to tensors."
        )
    for key, tensor in state_dict.items():
        _check_storage(path, key, tensor)
    stripped = {key.removeprefix("module."): tensor for key, tensor in state_dict.items()}
    if len(stripped) != len(state_dict):
        raise ConversionError(f"{path} holds some keys both with and without the 'module.' prefix.")
    return stripped, args


def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> CheckpointKind:
    """'pretraining' when decoder keys are present, 'classifier' for a joint `pos_embed` with a `head`."""
    if any(key.startswith(("decoder_", "mask_token")) for key in state_dict):
        return "pretraining"
    if "pos_embed" in state_dict and "head.weight" in state_dict:
        return "classifier"
    raise ConversionError(
        "Cannot tell the checkpoint type: it has neither decoder keys (decoder_embed, mask_token, ...: a pretraining "
        f"checkpoint) nor a joint pos_embed with head.* (a fine-tuned classifier). First keys: {sorted(state_dict)[:12]}."
    )


# ----------------------------------------------------------------------------------------------------- inference


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(f"The checkpoint lacks {key!r}, needed to infer the architecture.")
    shape = tuple(state_dict[key].shape)
    if len(shape) != ndim:
        raise ConversionError(f"{key} has shape {shape}, expected {ndim} dimensions.")
    return shape


def _depth(state_dict: Mapping[str, torch.Tensor], stack: str) -> int:
    indices = reference.block_indices(state_dict, stack)
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise ConversionError(f"The checkpoint's {stack} are not numbered 0..n-1: no key for {stack} {missing}.")
    return len(indices)


def _num_heads(preset: str | None, num_heads: int | None, hidden_size: int) -> int:
    """Encoder heads from `num_heads` or a preset (whose width must match the checkpoint)."""
    if preset is None and num_heads is None:
        matching = [name for name, sizes in S2MAE_PRESETS.items() if sizes["hidden_size"] == hidden_size]
        raise ConversionError(
            "The number of attention heads cannot be read from the weights: pass --preset (vit-b: 12, vit-l: 16, "
            f"vit-h: 16 heads) or --num-heads (width {hidden_size} matches preset(s) {matching or 'none'})."
        )
    if preset is None:
        return num_heads
    sizes = S2MAE_PRESETS.get(preset, {"hidden_size": None, "num_attention_heads": None})
    if sizes["hidden_size"] != hidden_size or num_heads not in (None, sizes["num_attention_heads"]):
        raise ConversionError(
            f"Preset {preset!r} (width {sizes['hidden_size']}, {sizes['num_attention_heads']} heads; presets: "
            f"{sorted(S2MAE_PRESETS)}) disagrees with the checkpoint's width {hidden_size}"
            + (f" or with --num-heads {num_heads}" if num_heads is not None else "")
            + ": choose the matching preset or pass --num-heads alone."
        )
    return sizes["num_attention_heads"]


def _joint_table_split(
    num_tokens: int, spectral_patch_size: int, patch_size: int, num_channels: int | None, image_size: int | None
) -> tuple[int, int]:
    """(G, grid side) with G * side**2 = `num_tokens` for a classifier's joint table, chosen by the band count or
    the image size (the table alone does not say how it splits)."""
    splits = [
        (groups, math.isqrt(num_tokens // groups))
        for groups in range(1, num_tokens + 1)
        if num_tokens % groups == 0 and math.isqrt(num_tokens // groups) ** 2 == num_tokens // groups
    ]
    possible = "; ".join(f"{groups * spectral_patch_size} bands at {side * patch_size} px" for groups, side in splits)
    if num_channels is None and image_size is None:
        raise ConversionError(
            f"A classifier's joint pos_embed ({num_tokens} tokens) does not say how many bands and pixels it covers: "
            f"pass --band-names, --num-channels or --image-size (possible: {possible})."
        )
    matching = [
        (groups, side)
        for groups, side in splits
        if num_channels in (None, groups * spectral_patch_size) and image_size in (None, side * patch_size)
    ]
    if not matching:
        raise ConversionError(
            f"The checkpoint's pos_embed has {num_tokens} tokens, which does not fit {num_channels or 'any'} bands at "
            f"{image_size or 'any'} px with {spectral_patch_size}-band, {patch_size}-px cubes (possible: {possible})."
        )
    return matching[0]


def _training_arguments(args: argparse.Namespace | None) -> dict[str, Any]:
    """mask_ratio and norm_pix_loss from the saved training arguments, when present and well-typed."""
    found: dict[str, Any] = {}
    mask_ratio = getattr(args, "mask_ratio", None)
    if isinstance(mask_ratio, float | int) and not isinstance(mask_ratio, bool) and 0.0 <= mask_ratio < 1.0:
        found["mask_ratio"] = float(mask_ratio)
    if isinstance(getattr(args, "norm_pix_loss", None), bool):
        found["norm_pix_loss"] = args.norm_pix_loss
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
    log: Callable[[str], None] = logger.info,
) -> S2MAEConfig:
    """Build the `S2MAEConfig` the checkpoint's shapes imply.

    Shapes give width, depth, MLP widths, q/k/v bias, cube size (s, p), image size, band count (s * G), decoder
    width and depth, and the label count. Heads come from `preset` / `num_heads`; band names from `band_names`
    (default: the 12 Sentinel-2 bands for a 12-band checkpoint, placeholders otherwise); `mask_ratio` and
    `norm_pix_loss` from the saved `training_args` when present.

    Raises:
        ConversionError: On a malformed checkpoint, or flags that disagree with it (band count, image size, labels,
            preset width).
    """
    if band_names is not None:
        if num_channels is not None and num_channels != len(band_names):
            raise ConversionError(f"--num-channels {num_channels} but {len(band_names)} --band-names were given.")
        num_channels = len(band_names)
    hidden_size, in_channels, spectral_patch_size, patch_size, patch_width = _shape(
        state_dict, "patch_embed.proj.weight", 5
    )
    if in_channels != 1 or patch_size != patch_width:
        raise ConversionError(
            f"patch_embed.proj.weight has shape {(hidden_size, in_channels, spectral_patch_size, patch_size, patch_width)}"
            "; expected (D, 1, s, p, p), a Conv3d over (B, 1, C, H, W) with square cubes."
        )
    depth = _depth(state_dict, "blocks")
    fields: dict[str, Any] = {
        "patch_size": patch_size,
        "spectral_patch_size": spectral_patch_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": depth,
        "num_attention_heads": _num_heads(preset, num_heads, hidden_size),
        "intermediate_size": _shape(state_dict, "blocks.0.mlp.fc1.weight", 2)[0],
        "qkv_bias": "blocks.0.attn.q.bias" in state_dict,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
    }
    if kind == "pretraining":
        num_spatial, groups = (
            _shape(state_dict, "pos_embed_spatial", 3)[1],
            _shape(state_dict, "pos_embed_temporal", 3)[1],
        )
        side = math.isqrt(num_spatial)
        if side * side != num_spatial:
            raise ConversionError(f"pos_embed_spatial has {num_spatial} positions, not a square grid.")
        decoder_width = _shape(state_dict, "decoder_embed.weight", 2)[0]
        decoder_depth = _depth(state_dict, "decoder_blocks")
        fields.update(
            decoder_hidden_size=decoder_width,
            decoder_num_hidden_layers=decoder_depth,
            decoder_num_attention_heads=decoder_num_heads,
            decoder_intermediate_size=(
                _shape(state_dict, "decoder_blocks.0.mlp.fc1.weight", 2)[0] if decoder_depth else 4 * decoder_width
            ),
        )
        if saved := _training_arguments(training_args):
            log(f"From the checkpoint's training arguments: {saved}")
            fields.update(saved)
    else:
        num_tokens = _shape(state_dict, "pos_embed", 3)[1]
        groups, side = _joint_table_split(num_tokens, spectral_patch_size, patch_size, num_channels, image_size)
        labels = _shape(state_dict, "head.weight", 2)[0]
        if num_labels is not None and num_labels != labels:
            raise ConversionError(f"--num-labels {num_labels} but the checkpoint's head has {labels} outputs.")
        fields.update(
            position_embedding_type="joint", pooling="mean_skip_first", num_labels=labels, use_final_layernorm=False
        )

    channels, fields["image_size"] = groups * spectral_patch_size, side * patch_size
    if num_channels is not None and num_channels != channels:
        raise ConversionError(
            f"The checkpoint covers {channels} bands ({groups} spectral groups x {spectral_patch_size} bands per "
            f"cube) but {num_channels} were given (--band-names / --num-channels). Give one name per band the "
            "checkpoint was trained on, in its order."
        )
    if image_size is not None and image_size != fields["image_size"]:
        raise ConversionError(f"--image-size {image_size} disagrees with the checkpoint ({fields['image_size']} px).")
    if band_names is not None:
        fields["band_names"] = list(band_names)
    elif channels == len(SENTINEL2_BANDS):  # the config's default bands, with their wavelengths
        log(f"No --band-names given: assuming the 12 Sentinel-2 bands {', '.join(SENTINEL2_BANDS)}.")
    else:
        fields["num_channels"] = channels
        log(
            f"No --band-names given for a {channels}-band checkpoint: the config gets placeholder names band_00, ...; "
            "pass --band-names so the image processor can select bands by name."
        )
    try:
        return S2MAEConfig(**fields)
    except ValueError as error:
        raise ConversionError(f"The inferred architecture is not a valid S2MAEConfig: {error}") from None


# ----------------------------------------------------------------------------------------------------- model + parity


def map_key(key: str, kind: CheckpointKind) -> str:
    """Our name for an original key by the first matching `KEY_MAPS[kind]` row; unmatched keys are returned as is."""
    for regex, template in KEY_MAPS[kind]:
        if found := re.fullmatch(regex, key):
            return found.expand(template)
    return key


def build_model(state_dict: Mapping[str, torch.Tensor], config: S2MAEConfig, kind: CheckpointKind) -> ConvertedModel:
    """Our model holding the converted weights in float32 (eval mode). Keys are renamed with `map_key`; a key no
    `KEY_MAPS` row matches keeps its original name, so that `load_state_dict` reports it as unexpected.

    Raises:
        ConversionError: naming every original key left unused, every parameter left unfilled and every shape
            mismatch (what `load_state_dict(strict=True)` reports).
    """
    model = (S2MAEForPreTraining if kind == "pretraining" else S2MAEForImageClassification)(config)
    mapped = {map_key(key, kind): tensor for key, tensor in state_dict.items()}
    if len(mapped) != len(state_dict):
        raise ConversionError("The checkpoint holds keys of this package's naming next to the original keys.")
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as error:
        details = " ".join(line.strip() for line in str(error).splitlines()[1:])  # after "Error(s) in loading ..."
        raise ConversionError(
            f"The {kind} checkpoint does not fill {type(model).__name__} exactly (missing: our parameters no original "
            f"key maps to; unexpected: original keys KEY_MAPS does not map). {details}"
        ) from None
    return model.eval()


@torch.no_grad()
def compare_with_reference(
    model: ConvertedModel,
    state_dict: Mapping[str, torch.Tensor],
    kind: CheckpointKind,
    batch_size: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Max absolute differences between our model and `original_reference` on a seeded input.

    The input is pixel values (B, C, H, W) uniform in [0, 1] and masking noise (B, L). Pretraining: encoder output
    without masking (B, L, D), encoder output of the visible tokens (B, K, D) and the reconstruction
    (B, L, s * p * p) under the same noise. Classifier: logits (B, num_labels).
    """
    config = model.config
    original = {key: tensor.to(torch.float32) for key, tensor in state_dict.items()}
    settings = reference.ReferenceSettings(
        num_heads=config.num_attention_heads,
        spectral_patch_size=config.spectral_patch_size,
        patch_size=config.patch_size,
        decoder_num_heads=config.decoder_num_attention_heads,
        layer_norm_eps=config.layer_norm_eps,
    )
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.rand(
        batch_size, config.num_channels, config.image_size, config.image_size, generator=generator
    )
    noise = torch.rand(batch_size, config.num_tokens, generator=generator)

    def difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
        if ours.shape != theirs.shape:
            raise ConversionError(f"Output shapes differ: ours {tuple(ours.shape)}, reference {tuple(theirs.shape)}.")
        return float((ours.float() - theirs.float()).abs().max())

    if kind == "classifier":
        logits = reference.classifier_logits(original, pixel_values, settings)
        return {"classifier logits": difference(model(pixel_values).logits, logits)}
    full = reference.encode(original, pixel_values, settings)
    masked, reconstruction = reference.pretraining_forward(original, pixel_values, noise, settings, config.mask_ratio)
    ours_masked = model.s2mae(pixel_values, noise=noise)
    ours = model(pixel_values, noise=noise, return_loss=False)
    if not torch.equal(ours_masked.mask, masked.mask) or not torch.equal(ours.mask, masked.mask):
        raise ConversionError("The converted model hides other tokens than the reference for the same noise.")
    return {
        "encoder output (no masking)": difference(model.s2mae(pixel_values).last_hidden_state, full.latent),
        "encoder output (visible tokens)": difference(ours_masked.last_hidden_state, masked.latent),
        "reconstruction logits": difference(ours.logits, reconstruction),
    }


# ----------------------------------------------------------------------------------------------------- writing


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"Output path {output_dir} exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(f"Output folder {output_dir} is not empty; pass --overwrite to replace its files.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _training_summary(kind: str, source: Path, differences: Mapping[str, float], tolerance: float) -> str:
    """The model card's "Training" paragraph for converted weights: where they come from and the parity check."""
    rows = "\n".join(f"| {name} | {value:.2e} |" for name, value in differences.items())
    return f"""Not trained here: these are the weights of the original-format {kind} checkpoint `{source.name}`
(sha256 `{_sha256(source)}`), converted by `modeling_s2mae.conversion` of the `s2mae` package. Training data,
recipe and licence are those of the original checkpoint: check its source before use.

Conversion check: max absolute difference between this model and an independent implementation of the original
architecture, on a fixed random input in [0, 1] and fixed masking noise (tolerance {tolerance:g}):

| output | max abs difference |
| --- | --- |
{rows}"""


def _write_folder(model: ConvertedModel, output_dir: Path, **card: Any) -> None:
    """Weights, config, processor, remote-code files and model card (`card`: `write_model_card` arguments), staged
    in a temporary sibling folder so that a failure leaves `output_dir` untouched."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        processor = S2MAEImageProcessor.from_model_config(model.config)
        save_with_remote_code(model, processor, staging)
        task = "pretraining" if isinstance(model, S2MAEForPreTraining) else "image-classification"
        write_model_card(staging, model.config, processor, task=task, **card)
        if output_dir.exists():
            for item in staging.iterdir():
                os.replace(item, output_dir / item.name)
        else:
            os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------- entry point


def convert_checkpoint(
    checkpoint_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    parity_batch_size: int = 2,
    parity_seed: int = 0,
    model_name: str | None = None,
    license: str = "other",
    overwrite: bool = False,
    push_to_hub: str | None = None,
    private: bool = False,
    log: Callable[[str], None] = logger.info,
    **architecture: Any,
) -> ConversionResult:
    """Load, infer, map, check parity and (when `output_dir` is given) write and optionally upload.

    Nothing is written unless every check passes. See the module docstring for the steps.

    Args:
        checkpoint_path: The original .pth.
        output_dir: Folder to write (absent or empty unless `overwrite`); None converts and checks without writing.
        tolerance: Largest accepted max absolute difference to the reference.
        parity_batch_size, parity_seed: Size and seed of the random parity input.
        model_name: Title of the model card (default: width and source file name).
        license: Licence id for the model card ("other": that of the original checkpoint).
        overwrite: Replace files in a non-empty `output_dir`.
        push_to_hub: Hub repository id to upload the written folder to.
        private: Create that repository as private.
        log: Receives the progress lines (default: this module's logger at INFO).
        **architecture: What the shapes cannot tell, or values to check them against, for `infer_config`: `preset`,
            `num_heads`, `decoder_num_heads`, `band_names`, `num_channels`, `image_size`, `num_labels`.

    Raises:
        ConversionError: With the reason; nothing was written.
    """
    checkpoint_path = Path(checkpoint_path)
    if push_to_hub and output_dir is None:
        raise ConversionError("push_to_hub needs an output_dir to write the folder to upload.")
    if output_dir is not None:
        _check_output_dir(Path(output_dir), overwrite)
    state_dict, training_args = load_original_checkpoint(checkpoint_path)
    kind = detect_kind(state_dict)
    log(f"{checkpoint_path.name}: {kind} checkpoint with {len(state_dict)} tensors")
    config = infer_config(state_dict, kind, training_args=training_args, log=log, **architecture)
    log(
        f"Architecture: width {config.hidden_size}, depth {config.num_hidden_layers}, {config.num_attention_heads} "
        f"heads, {config.num_channels} bands at {config.image_size} px in {config.num_tokens} cubes of "
        f"{config.spectral_patch_size}x{config.patch_size}x{config.patch_size}"
    )
    model = build_model(state_dict, config, kind)
    differences = compare_with_reference(model, state_dict, kind, parity_batch_size, parity_seed)
    for name, value in differences.items():
        log(f"max abs difference, {name}: {value:.3e}")
    failed = {name: value for name, value in differences.items() if not value <= tolerance}
    if failed:
        raise ConversionError(f"Parity check failed (tolerance {tolerance:g}): {failed}. Nothing was written.")

    float_dtypes = {tensor.dtype for tensor in state_dict.values() if tensor.is_floating_point()}
    if len(float_dtypes) == 1:  # save in the checkpoint's precision
        model = model.to(float_dtypes.pop())
    result = ConversionResult(kind=kind, config=config, model=model, max_abs_differences=differences)
    if output_dir is None:
        return result
    result.output_dir = Path(output_dir)
    _write_folder(
        model,
        result.output_dir,
        model_name=model_name or f"S2MAE {config.hidden_size}-wide, converted from {checkpoint_path.name}",
        training_summary=_training_summary(kind, checkpoint_path, differences, tolerance),
        license=license,
        repo_id=push_to_hub or str(result.output_dir.resolve()),
    )
    log(f"Wrote {result.output_dir}")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=push_to_hub,
            repo_type="model",
            folder_path=result.output_dir,
            commit_message="Upload S2MAE checkpoint converted from the original format",
        )
        log(f"Uploaded to {commit.commit_url}")
    return result


__all__ = [
    "ALLOWED_GLOBALS",
    "DEFAULT_TOLERANCE",
    "KEY_MAPS",
    "ConversionError",
    "ConversionResult",
    "build_model",
    "compare_with_reference",
    "convert_checkpoint",
    "detect_kind",
    "infer_config",
    "load_original_checkpoint",
    "map_key",
]

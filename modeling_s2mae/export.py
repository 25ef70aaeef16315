"""Export S2MAE models with `torch.export` and to ONNX, and run ONNX files with ONNX Runtime.

What is dynamic in an exported graph:

- the batch dimension, always, for every model class;
- height and width, when asked (`dynamic_hw=True`), for `S2MAEModel` and `S2MAEForImageClassification`: any H and W
  that are multiples of `config.patch_size`, from 2 patches up to `max_image_size` pixels (default
  `DYNAMIC_HW_MAX_SCALE` x `config.image_size`) per side, H != W allowed. The graph is traced with
  `interpolate_pos_encoding=True`, so it interpolates the position tables to the input's grid (bicubic for learnable
  spatial tables, recomputed for sin-cos tables) at every size, the configured one included, where this reproduces
  the stored table. Without `dynamic_hw` (the default), H and W are fixed to `config.image_size` (the image
  processor resizes to it) and the graph holds the stored tables as they are;
- never the band count: the graph takes the config's bands.

An ONNX file records whether its H and W are dynamic, and their range, in its metadata (`s2mae_dynamic_hw`,
`s2mae_image_size_range`); `S2MAEOnnxModel` refuses sizes the file does not take with a `ValueError` (ONNX Runtime
itself does not check the range), and a `torch.export` program checks its input shapes itself.

`S2MAEForPreTraining` exports with a dynamic batch only: its `noise` input has one value per token, G * h * w (or
h * w with tube masking), a product of two dynamic sizes that `torch.export.Dim` cannot express (only linear
functions of one size are), and its kept-token count K = int(L * (1 - mask_ratio)) is computed from the grid in
Python, which fixes the grid in the traced graph. `dynamic_hw=True` with it is a `ValueError`.

The traced graphs hold no data-dependent branch: the value checks that eager mode makes (a sample with no valid
pixel, class ids out of range) are skipped while tracing, see `modeling_s2mae.modeling_s2mae.is_tracing`.

Graph inputs and outputs, by model class (`pixel_mask` only with `pixel_mask=True`, the default):

| model | inputs | outputs |
| --- | --- | --- |
| `S2MAEModel` | `pixel_values` (B, C, H, W) float32, `pixel_mask` (B, H, W) int64 | `last_hidden_state` (B, L, D), `pooler_output` (B, D) |
| `S2MAEForImageClassification` | `pixel_values`, `pixel_mask` | `logits` (B, num_labels) |
| `S2MAEForPreTraining` | `pixel_values`, `noise` (masking noise, see `masking.token_noise`), `pixel_mask` | `loss` (), `logits` (B, L, s*p*p), `mask` (B, L), `ids_restore` (B, L) |

The pretraining graph takes the masking noise as an input (draw it uniformly in [0, 1)) so that it is
deterministic and comparable with PyTorch; its mask ratio is the config's, fixed at export.
"""

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.utils import logging

from .configuration_s2mae import S2MAEConfig
from .masking import noise_shape
from .modeling_s2mae import (
    RAW_VALUE_WARNING_THRESHOLD,
    S2MAEForImageClassification,
    S2MAEForPreTraining,
    S2MAEForPreTrainingOutput,
    S2MAEModel,
    S2MAEModelOutput,
)

logger = logging.get_logger(__name__)

ONNX_FILE_NAME = "model.onnx"
"""The file name `export_onnx` is given by `examples/export_onnx.py` and that `S2MAEOnnxModel.from_pretrained` reads."""

DYNAMIC_HW_MAX_SCALE = 8
"""With `dynamic_hw=True` and no `max_image_size`, H and W may reach this many times `config.image_size`."""

_EXTERNAL_DATA_BYTES = 1_800_000_000  # ONNX protobuf files are limited to 2 GiB: larger weights go to a .data file


def graph_signature(model: nn.Module, pixel_mask: bool = True) -> tuple[list[str], list[str]]:
    """(input names, output names) of the exported graph of `model`, in order (see the module docstring).

    Raises:
        ValueError: for a model that is not one of the three S2MAE classes.
    """
    mask_input = ["pixel_mask"] if pixel_mask else []
    if isinstance(model, S2MAEForPreTraining):
        return ["pixel_values", "noise", *mask_input], ["loss", "logits", "mask", "ids_restore"]
    if isinstance(model, S2MAEForImageClassification):
        return ["pixel_values", *mask_input], ["logits"]
    if isinstance(model, S2MAEModel):
        outputs = ["last_hidden_state"] + (["pooler_output"] if model.pooler is not None else [])
        return ["pixel_values", *mask_input], outputs
    raise ValueError(
        f"Can export S2MAEModel, S2MAEForImageClassification or S2MAEForPreTraining, got {type(model).__name__}."
    )


class ExportWrapper(nn.Module):
    """A model with positional tensor inputs and a tuple of tensor outputs, in `graph_signature` order.

    `interpolate_pos_encoding` is passed to the model on every call (True for a graph with a dynamic height / width).
    """

    def __init__(self, model: nn.Module, pixel_mask: bool = True, interpolate_pos_encoding: bool = False):
        super().__init__()
        self.model = model
        self.interpolate_pos_encoding = interpolate_pos_encoding
        self.input_names, self.output_names = graph_signature(model, pixel_mask)

    def forward(
        self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None, pixel_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Inputs by name (see `graph_signature`) -> the outputs of `graph_signature`, in order."""
        kwargs = {"noise": noise} if noise is not None else {}
        if self.interpolate_pos_encoding:
            kwargs["interpolate_pos_encoding"] = True
        outputs = self.model(pixel_values, pixel_mask=pixel_mask, **kwargs, return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def example_inputs(
    model: nn.Module,
    batch_size: int = 2,
    pixel_mask: bool = True,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Random inputs of the graph of `model`, by name, on the model's device: pixel values (B, C, H, W) in [0, 1],
    an all-valid pixel mask (B, H, W), noise (pretraining). Drawn on the CPU from `seed`, the same on every device.

    Args:
        model: One of the three S2MAE model classes.
        batch_size: B (use 2 or more for an export with a dynamic batch: a batch of 1 is specialised).
        pixel_mask: Include `pixel_mask`.
        seed: Seed of the values.
        image_size: H (= W) or (H, W) in pixels, multiples of `config.patch_size`; default `config.image_size`.
    """
    config: S2MAEConfig = model.config
    generator = torch.Generator().manual_seed(seed)
    height, width = _image_size(config, image_size)
    inputs = {"pixel_values": torch.rand(batch_size, config.num_channels, height, width, generator=generator)}
    if isinstance(model, S2MAEForPreTraining):
        patch = config.patch_size
        spatial = (height // patch) * (width // patch)
        shape = noise_shape(config.masking_strategy, batch_size, config.num_spectral_groups, spatial)
        inputs["noise"] = torch.rand(shape, generator=generator)
    if pixel_mask:
        inputs["pixel_mask"] = torch.ones(batch_size, height, width, dtype=torch.long)
    input_names, _ = graph_signature(model, pixel_mask)
    device = next(model.parameters()).device
    return {name: inputs[name].to(device) for name in input_names}


def _image_size(config: S2MAEConfig, image_size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) from an int, a pair or None (the config's), checked to be multiples of the patch size."""
    if image_size is None:
        image_size = config.image_size
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    patch = config.patch_size
    if height % patch or width % patch or height < patch or width < patch:
        raise ValueError(f"image_size must be positive multiples of patch_size {patch}, got {height}x{width}.")
    return height, width


def dynamic_hw_range(config: S2MAEConfig, max_image_size: int | None = None) -> tuple[int, int]:
    """(smallest, largest) H or W in pixels that a graph exported with `dynamic_hw=True` takes.

    The smallest is 2 patches (`torch.export` specialises a size of 1); the largest is `max_image_size`, by default
    `DYNAMIC_HW_MAX_SCALE` x `config.image_size`, rounded down to a multiple of the patch size.

    Raises:
        ValueError: when `max_image_size` is below 2 patches or below `config.image_size` (the traced size).
    """
    patch = config.patch_size
    largest = DYNAMIC_HW_MAX_SCALE * config.image_size if max_image_size is None else int(max_image_size)
    largest -= largest % patch
    if largest < max(2 * patch, config.image_size):
        raise ValueError(
            f"max_image_size must be at least config.image_size ({config.image_size}, the traced size) and 2 "
            f"patches ({2 * patch} px), got {max_image_size}."
        )
    return 2 * patch, largest


def _dynamic_shapes(
    input_names: list[str], config: S2MAEConfig, dynamic_hw: bool, max_image_size: int | None
) -> dict[str, dict[int, Any]]:
    """`torch.export` dynamic shapes: the batch of every input and, with `dynamic_hw`, H = p * h and W = p * w of
    `pixel_values` (B, C, H, W) and `pixel_mask` (B, H, W), with h, w patches per side."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes: dict[str, dict[int, Any]] = {name: {0: batch} for name in input_names}
    if dynamic_hw:
        patch = config.patch_size
        smallest, largest = dynamic_hw_range(config, max_image_size)
        height = patch * torch.export.Dim("h_patches", min=smallest // patch, max=largest // patch)
        width = patch * torch.export.Dim("w_patches", min=smallest // patch, max=largest // patch)
        shapes["pixel_values"].update({2: height, 3: width})
        if "pixel_mask" in shapes:
            shapes["pixel_mask"].update({1: height, 2: width})
    return shapes


def _check_dynamic_hw(model: nn.Module, dynamic_hw: bool) -> None:
    if dynamic_hw and isinstance(model, S2MAEForPreTraining):
        raise ValueError(
            "S2MAEForPreTraining cannot be exported with a dynamic height / width: its noise input has one value "
            "per token (a product of the two dynamic sizes, which torch.export cannot express) and its kept-token "
            "count is fixed by the grid. Export it with dynamic_hw=False (fixed config.image_size), or export "
            "S2MAEModel / S2MAEForImageClassification with dynamic_hw=True."
        )


def export_program(
    model: nn.Module,
    batch_size: int = 2,
    pixel_mask: bool = True,
    dynamic_hw: bool = False,
    max_image_size: int | None = None,
) -> torch.export.ExportedProgram:
    """`torch.export` of `model` (in eval mode) with a dynamic batch dimension, and optionally a dynamic H and W.

    Call the result with `program.module()(**example_inputs(model))`; it returns the outputs of
    `graph_signature` as a tuple. The program checks its input shapes: with `dynamic_hw`, an H or W that is not a
    multiple of `config.patch_size` or outside `dynamic_hw_range` fails there; without it, any H, W other than
    `config.image_size`.

    Args:
        model: One of the three S2MAE model classes.
        batch_size: Batch size of the example inputs traced (>= 2).
        pixel_mask: Include `pixel_mask` as an input.
        dynamic_hw: Make H and W dynamic (multiples of `config.patch_size`; S2MAEModel and
            S2MAEForImageClassification only): the graph interpolates the position tables to the input's grid, as
            the model does with `interpolate_pos_encoding=True`. Traced at `config.image_size`.
        max_image_size: Largest H or W in pixels with `dynamic_hw` (default `DYNAMIC_HW_MAX_SCALE` x
            `config.image_size`).

    Raises:
        ValueError: for batch_size < 2, or `dynamic_hw` with `S2MAEForPreTraining` (see the module docstring).
    """
    if batch_size < 2:
        raise ValueError(f"Trace with batch_size >= 2 so that the batch stays dynamic, got {batch_size}.")
    _check_dynamic_hw(model, dynamic_hw)
    wrapper = ExportWrapper(model, pixel_mask, interpolate_pos_encoding=dynamic_hw).eval()
    inputs = example_inputs(model, batch_size, pixel_mask)
    shapes = _dynamic_shapes(wrapper.input_names, model.config, dynamic_hw, max_image_size)
    with _eval_mode(model):
        return torch.export.export(wrapper, (), inputs, dynamic_shapes=shapes)


class _eval_mode:
    """Puts a module in eval mode for a `with` block and restores its mode afterwards."""

    def __init__(self, module: nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self) -> nn.Module:
        return self.module.eval()

    def __exit__(self, *exc: Any) -> None:
        self.module.train(self.was_training)


@dataclass
class OnnxExportReport:
    """What `export_onnx` wrote and how closely ONNX Runtime reproduced PyTorch."""

    path: str
    input_names: list[str]
    output_names: list[str]
    check_batch_size: int
    max_abs_diff: dict[str, float]
    """Largest absolute difference per output, over every checked image size."""
    atol: float
    dynamic_hw: bool = False
    """H and W are dynamic (multiples of the patch size within `image_size_range`); else fixed to the config's."""
    image_size_range: tuple[int, int] | None = None
    """(smallest, largest) H or W in pixels with `dynamic_hw`, else None."""
    check_image_sizes: list[tuple[int, int]] | None = None
    """The (H, W) sizes the check ran at: the traced one and, with `dynamic_hw`, another one."""


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ONNX Runtime is needed to run or check ONNX files: pip install 's2mae[onnx]' (or onnxruntime)."
        ) from error
    return onnxruntime


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    pixel_mask: bool = True,
    opset_version: int | None = None,
    atol: float = 1e-4,
    check: bool = True,
    check_batch_size: int = 3,
    dynamic_hw: bool = False,
    max_image_size: int | None = None,
) -> OnnxExportReport:
    """Export `model` to an ONNX file with a dynamic batch (and optionally a dynamic H and W) and check it against
    PyTorch with ONNX Runtime.

    The check runs the file on a fresh random batch of `check_batch_size` (another size than the one traced) and
    compares every output with the PyTorch model's. With `dynamic_hw` it runs at the traced size
    (`config.image_size`) and at `(image_size + 2 * patch_size, image_size + patch_size)`, against the PyTorch model
    with `interpolate_pos_encoding=True`.

    Args:
        model: One of the three S2MAE model classes (exported in eval mode, float32).
        path: The .onnx file to write; weights over 1.8 GB go to `<path>.data` next to it.
        pixel_mask: Include `pixel_mask` as an input.
        opset_version: ONNX opset (default: the exporter's).
        atol: Largest absolute difference allowed between ONNX Runtime and PyTorch in any output.
        check: Run the ONNX Runtime check (needs `onnxruntime`).
        check_batch_size: Batch size of the check.
        dynamic_hw: Make H and W dynamic (see `export_program`; S2MAEModel and S2MAEForImageClassification only).
        max_image_size: Largest H or W in pixels with `dynamic_hw` (default `DYNAMIC_HW_MAX_SCALE` x
            `config.image_size`); `S2MAEOnnxModel` refuses larger inputs.

    Returns:
        An `OnnxExportReport` with the largest absolute difference per output (empty without the check).

    Raises:
        ValueError: when an output differs by more than `atol`, or for `dynamic_hw` with `S2MAEForPreTraining`.
    """
    _check_dynamic_hw(model, dynamic_hw)
    config: S2MAEConfig = model.config
    size_range = dynamic_hw_range(config, max_image_size) if dynamic_hw else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model, pixel_mask, interpolate_pos_encoding=dynamic_hw).eval()
    inputs = example_inputs(model, 2, pixel_mask)
    with _eval_mode(model), warnings.catch_warnings():
        # every input shares the one batch dimension; the exporter warns that it names it once
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
        program = torch.onnx.export(
            wrapper,
            (),
            kwargs=inputs,
            input_names=wrapper.input_names,
            output_names=wrapper.output_names,
            dynamic_shapes=_dynamic_shapes(wrapper.input_names, config, dynamic_hw, max_image_size),
            opset_version=opset_version,
            dynamo=True,
            verbose=False,
        )
    metadata = {
        "s2mae_model_class": type(model).__name__,
        "s2mae_config": config.to_json_string(use_diff=False),
        "s2mae_dynamic_hw": json.dumps(size_range is not None),
    }
    if size_range is not None:
        metadata["s2mae_image_size_range"] = json.dumps(list(size_range))
    program.model.metadata_props.update(metadata)
    size = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    program.save(str(path), external_data=size > _EXTERNAL_DATA_BYTES)

    differences: dict[str, float] = {}
    sizes = [(config.image_size, config.image_size)]
    if dynamic_hw:
        sizes.append((config.image_size + 2 * config.patch_size, config.image_size + config.patch_size))
    if check:
        runtime = S2MAEOnnxModel(path)
        for size in sizes:
            check_inputs = example_inputs(model, check_batch_size, pixel_mask, seed=1, image_size=size)
            if pixel_mask:  # a few invalid pixels, so that the weighted pooling and the masked loss are exercised
                check_inputs["pixel_mask"][:, : config.patch_size, :] = 0
            with _eval_mode(model), torch.no_grad():
                expected = wrapper(**check_inputs)
            got = runtime.run({name: value.cpu().numpy() for name, value in check_inputs.items()})
            for name, reference in zip(wrapper.output_names, expected):
                difference = float(np.abs(got[name].astype(np.float64) - reference.double().cpu().numpy()).max())
                differences[name] = max(difference, differences.get(name, 0.0))
        worst = max(differences.values())
        if worst > atol:
            raise ValueError(
                f"The ONNX file {path} differs from PyTorch by up to {worst:.3g} (per output: {differences}, image "
                f"sizes {sizes}), more than atol={atol}. Export in float32 with attn_implementation='sdpa' or 'eager'."
            )
    return OnnxExportReport(
        str(path),
        wrapper.input_names,
        wrapper.output_names,
        check_batch_size,
        differences,
        atol,
        dynamic_hw=dynamic_hw,
        image_size_range=size_range,
        check_image_sizes=sizes if check else None,
    )


class S2MAEOnnxModel:
    """Run an ONNX file written by `export_onnx` with ONNX Runtime and get the PyTorch model's output classes.

    >>> model = S2MAEOnnxModel("exported/model.onnx")  # doctest: +SKIP
    >>> out = model(**processor(tile, return_tensors="pt"))  # S2MAEModelOutput with torch tensors  # doctest: +SKIP

    Args:
        path: The .onnx file.
        providers: ONNX Runtime execution providers (default CPU).
        session_options: `onnxruntime.SessionOptions`, e.g. with `intra_op_num_threads` set.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, session_options: Any = None):
        onnxruntime = _require_onnxruntime()
        self.path = str(path)
        self.session = onnxruntime.InferenceSession(
            self.path, sess_options=session_options, providers=providers or ["CPUExecutionProvider"]
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "s2mae_model_class" not in metadata:
            raise ValueError(f"{self.path} was not written by modeling_s2mae.export.export_onnx (no S2MAE metadata).")
        self.model_class: str = metadata["s2mae_model_class"]
        self.config = S2MAEConfig.from_dict(json.loads(metadata["s2mae_config"]))
        self.dynamic_hw: bool = json.loads(metadata.get("s2mae_dynamic_hw", "false"))
        """H and W are dynamic (files written before dynamic exports existed have fixed sizes)."""
        self.image_size_range: tuple[int, int] | None = (
            tuple(json.loads(metadata["s2mae_image_size_range"])) if self.dynamic_hw else None
        )
        """(smallest, largest) H or W in pixels of a dynamic graph, else None."""
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]
        self._input_types = {node.name: node.type for node in self.session.get_inputs()}

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs: Any) -> "S2MAEOnnxModel":
        """Load `<directory>/model.onnx` (as written by `examples/export_onnx.py`)."""
        path = Path(directory) / ONNX_FILE_NAME
        if not path.is_file():
            raise ValueError(f"No {ONNX_FILE_NAME} in {directory}: export one with examples/export_onnx.py.")
        return cls(path, **kwargs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on numpy inputs named as in `self.input_names`; returns the outputs by name."""
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise ValueError(f"Missing inputs {missing}: this graph takes {self.input_names}.")
        cast = {"tensor(float)": np.float32, "tensor(int64)": np.int64}
        arrays = {
            name: np.ascontiguousarray(feeds[name], dtype=cast[self._input_types[name]]) for name in self.input_names
        }
        return dict(zip(self.output_names, self.session.run(self.output_names, arrays)))

    def __call__(
        self,
        pixel_values: torch.Tensor | np.ndarray,
        pixel_mask: torch.Tensor | np.ndarray | None = None,
        noise: torch.Tensor | np.ndarray | None = None,
        band_wavelengths: torch.Tensor | np.ndarray | None = None,
        band_bandwidths: torch.Tensor | np.ndarray | None = None,
    ) -> S2MAEModelOutput | ImageClassifierOutput | S2MAEForPreTrainingOutput:
        """Run like the PyTorch model: `pixel_values` (B, C, H, W) in [0, 1], optional `pixel_mask` (B, H, W) and,
        for a pretraining graph, `noise` (drawn uniformly when None). Returns the PyTorch model's output class.

        `band_wavelengths` / `band_bandwidths` (as the image processor returns them) are accepted when they are the
        model's own: the graph was exported for the config's bands and cannot place others.
        """
        for name, given in (("band_wavelengths", band_wavelengths), ("band_bandwidths", band_bandwidths)):
            expected = getattr(self.config, name, None)
            if given is None or expected is None:
                continue
            given = np.asarray(_to_numpy(given), dtype=np.float64)
            if given.ndim not in (1, 2) or given.shape[-1] != len(expected):
                raise ValueError(
                    f"{name} must have shape ({len(expected)},) or (batch, {len(expected)}), one value per band of "
                    f"this graph, got shape {given.shape}."
                )
            given = given.reshape(-1, len(expected))
            if not np.allclose(given, np.asarray(expected, dtype=np.float64)[None], atol=1e-3):
                raise ValueError(
                    f"This ONNX graph was exported for {name} {list(expected)}; it cannot place other bands. Export "
                    "a model for these bands, or run the PyTorch model (which places bands by wavelength)."
                )
        pixels = _to_numpy(pixel_values)
        if pixels.ndim != 4:
            raise ValueError(f"pixel_values must have shape (batch, bands, height, width), got {pixels.shape}.")
        self._check_pixel_shape(pixels.shape)
        self._check_pixel_values(pixels)
        batch_size = pixels.shape[0]
        feeds = {"pixel_values": pixels}
        if "pixel_mask" in self.input_names:
            if pixel_mask is None:
                feeds["pixel_mask"] = np.ones((batch_size, *pixels.shape[2:]), np.int64)
            else:
                feeds["pixel_mask"] = self._checked_pixel_mask(_to_numpy(pixel_mask), pixels.shape)
        elif pixel_mask is not None:
            raise ValueError("This ONNX graph was exported without a pixel_mask input (export with pixel_mask=True).")
        if "noise" in self.input_names:
            config = self.config
            shape = noise_shape(config.masking_strategy, batch_size, config.num_spectral_groups, config.grid_size**2)
            if noise is None:
                noise = np.random.default_rng().random(shape, dtype=np.float32)
            noise = _to_numpy(noise)
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(
                    f"noise for {config.masking_strategy!r} masking must have shape {tuple(shape)}, got "
                    f"{tuple(noise.shape)} (see modeling_s2mae.masking.token_noise), or pass none."
                )
            if not np.isfinite(noise).all():
                raise ValueError("noise holds NaN or inf: the hidden tokens would be arbitrary. Pass finite values.")
            feeds["noise"] = noise
        outputs = {name: torch.from_numpy(value) for name, value in self.run(feeds).items()}
        if self.model_class == "S2MAEForPreTraining":
            return S2MAEForPreTrainingOutput(**outputs)
        if self.model_class == "S2MAEForImageClassification":
            return ImageClassifierOutput(**outputs)
        return S2MAEModelOutput(**outputs)

    def _check_pixel_values(self, pixels: np.ndarray) -> None:
        """The value checks the PyTorch model makes (which the graph cannot): a float dtype (integers are raw digital
        numbers, which the graph would silently cast), at least one image, finite values; a warning (once) for
        values that look like raw digital numbers.

        Args:
            pixels: (B, C, H, W).
        """
        if not np.issubdtype(pixels.dtype, np.floating):
            raise ValueError(
                f"pixel_values must be floating point scaled to [0, 1], got {pixels.dtype}: prepare images with the "
                "exported S2MAEImageProcessor, which scales raw digital numbers."
            )
        if pixels.shape[0] == 0:
            raise ValueError(f"pixel_values is an empty batch of shape {pixels.shape}: pass at least one image.")
        if not np.isfinite(pixels).all():
            bad = np.flatnonzero(~np.isfinite(pixels).reshape(len(pixels), -1).all(axis=1)).tolist()
            raise ValueError(
                f"pixel_values hold NaN or inf in images {bad[:10]}: every output of those images would be NaN. Mark "
                "missing pixels in pixel_mask and write a finite value there (S2MAEImageProcessor writes 0)."
            )
        largest = float(np.abs(pixels).max())
        if largest > RAW_VALUE_WARNING_THRESHOLD and not getattr(self, "_warned_raw_values", False):
            self._warned_raw_values = True
            logger.warning(
                f"pixel_values reach {largest:g}, but the model takes values scaled to [0, 1]: these look like raw "
                "digital numbers. Prepare images with the exported S2MAEImageProcessor. Shown once per model."
            )

    def _checked_pixel_mask(self, mask: np.ndarray, pixel_shape: tuple[int, ...]) -> np.ndarray:
        """`mask` as the graph's int64 (B, H, W), after the checks the PyTorch model makes: its shape, values 0 / 1
        only (the graph casts to int64, which would turn 0.5 into 0), and a valid pixel in every image of a pooling
        model (in the whole batch for pretraining)."""
        expected = (pixel_shape[0], *pixel_shape[2:])
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"pixel_mask must have shape (B, H, W) = {expected} for pixel_values of shape {tuple(pixel_shape)}, "
                f"got {tuple(mask.shape)}. A mask is never broadcast: take it from S2MAEImageProcessor."
            )
        if mask.dtype != np.bool_ and not np.isin(mask, (0, 1)).all():
            raise ValueError(
                "pixel_mask must hold 1 for valid pixels and 0 for invalid ones, got other values "
                f"(e.g. {np.unique(mask[~np.isin(mask, (0, 1))])[:5].tolist()})."
            )
        valid = mask.reshape(len(mask), -1).any(axis=1)
        if self.model_class == "S2MAEForPreTraining" and not valid.any():
            raise ValueError("pixel_mask marks no pixel valid in the batch: the loss is undefined.")
        if self.model_class != "S2MAEForPreTraining" and not valid.all():
            raise ValueError(
                f"Images {np.flatnonzero(~valid)[:10].tolist()} have no valid pixel (pixel_mask is all zero): nothing "
                "to pool. Leave them out of the batch."
            )
        return mask.astype(np.int64)

    def _check_pixel_shape(self, shape: tuple[int, ...]) -> None:
        """Raise a `ValueError` saying what the graph takes when `pixel_values` of `shape` (B, C, H, W) does not fit."""
        config = self.config
        bands, height, width = shape[1:]
        if not self.dynamic_hw:
            expected = (config.num_channels, config.image_size, config.image_size)
            if (bands, height, width) != expected:
                raise ValueError(
                    f"This ONNX graph takes pixel_values of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                    f"got {tuple(shape)}: prepare images with the exported S2MAEImageProcessor, or export with "
                    "dynamic_hw=True (examples/export_onnx.py --dynamic_hw) for other image sizes."
                )
            return
        smallest, largest = self.image_size_range
        patch = config.patch_size
        fits = all(size % patch == 0 and smallest <= size <= largest for size in (height, width))
        if bands != config.num_channels or not fits:
            raise ValueError(
                f"This ONNX graph takes pixel_values of shape (B, {config.num_channels}, H, W) with H and W multiples "
                f"of patch_size {patch} from {smallest} to {largest} pixels, got {tuple(shape)}: resize or pad the "
                f"images (S2MAEImageProcessor resizes), or export with a larger max_image_size."
            )


def _to_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


__all__ = [
    "DYNAMIC_HW_MAX_SCALE",
    "ONNX_FILE_NAME",
    "ExportWrapper",
    "OnnxExportReport",
    "S2MAEOnnxModel",
    "dynamic_hw_range",
    "example_inputs",
    "export_onnx",
    "export_program",
    "graph_signature",
]

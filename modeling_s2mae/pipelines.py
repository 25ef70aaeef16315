"""A Transformers pipeline that embeds multiband (multispectral) images with an S2MAE encoder.

Transformers' `image-feature-extraction` pipeline converts every image to 3-band RGB; this one takes arrays of any
band count, lets `S2MAEImageProcessor` select the model's bands by name, scale and resize them, and returns pooled or
per-token features. It is registered (at package import) as the task `multispectral-feature-extraction`:

>>> import modeling_s2mae  # registers the task  # doctest: +SKIP
>>> from transformers import pipeline  # doctest: +SKIP
>>> extractor = pipeline("multispectral-feature-extraction", model="ckpt")  # doctest: +SKIP
>>> extractor(tile, input_band_names=modeling_s2mae.EUROSAT_MS_BANDS)  # (D,) list of floats  # doctest: +SKIP
>>> extractor([tile_a, tile_b], pool=False, return_tensors=True)  # [(L, D) tensor, ...]  # doctest: +SKIP
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

PIPELINE_TASK = "multispectral-feature-extraction"


class MultispectralFeatureExtractionPipeline(Pipeline):
    """Features of multiband images from an S2MAE encoder (`S2MAEModel`, or the encoder of a head model).

    Each input is one image: a numpy array or tensor (C, H, W) or (H, W, C) of raw values in any dtype the image
    processor accepts (a numpy masked array, as `rasterio`'s `read(masked=True)` gives, has its masked pixels left
    out), or a `RasterSample` from `modeling_s2mae.data` (its band names and nodata are used unless given); pass
    several images as a list.

    Call arguments:
        input_band_names: Names of the input's bands, in order (default: the processor's setting); the processor
            selects and reorders the model's bands from them.
        nodata: Nodata value of the input (left out of the statistics and of the pooling).
        input_data_format: "channels_first" or "channels_last", for a shape whose first and last axes both have
            the band count (default: inferred).
        pool: True (default) for the pooled features (D,) (mean over valid tokens, then LayerNorm); False for the
            per-token features (L, D) after the final LayerNorm.
        return_tensors: Return torch tensors rather than nested lists.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(
        self,
        input_band_names: Sequence[str] | None = None,
        nodata: float | None = None,
        pool: bool | None = None,
        return_tensors: bool | None = None,
        input_data_format: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        if kwargs:
            raise ValueError(
                f"Unknown arguments {sorted(kwargs)}: the {PIPELINE_TASK} pipeline takes input_band_names, nodata, "
                "input_data_format, pool and return_tensors."
            )
        preprocess = {}
        if input_band_names is not None:
            preprocess["input_band_names"] = list(input_band_names)
        if nodata is not None:
            preprocess["nodata"] = nodata
        if input_data_format is not None:
            preprocess["input_data_format"] = input_data_format
        postprocess = {}
        if pool is not None:
            postprocess["pool"] = bool(pool)
        if return_tensors is not None:
            postprocess["return_tensors"] = bool(return_tensors)
        return preprocess, {}, postprocess

    def preprocess(self, image: np.ndarray | torch.Tensor, **processor_kwargs: Any) -> dict[str, torch.Tensor]:
        """One image -> `pixel_values` (1, C, size, size) and `pixel_mask` (1, size, size)."""
        if hasattr(image, "array") and hasattr(image, "band_names"):  # a RasterSample: (C, H, W), named bands
            processor_kwargs.setdefault("input_band_names", list(image.band_names))
            if image.nodata is not None:
                processor_kwargs.setdefault("nodata", image.nodata)
            processor_kwargs.setdefault("input_data_format", "channels_first")
            image = image.array
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise ValueError(
                f"The {PIPELINE_TASK} pipeline takes one image per input, an array of shape (C, H, W) or (H, W, C); "
                f"got {type(image).__name__} of shape {getattr(image, 'shape', None)}. Pass several images as a list."
            )
        inputs = self.image_processor(image, return_tensors="pt", **processor_kwargs)
        return {"pixel_values": inputs["pixel_values"].to(self.dtype), "pixel_mask": inputs["pixel_mask"]}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        encoder = getattr(self.model, "s2mae", self.model)  # a head model's encoder
        outputs = encoder(**model_inputs, return_dict=True)
        return {"last_hidden_state": outputs.last_hidden_state, "pooler_output": outputs.pooler_output}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], pool: bool = True, return_tensors: bool = False
    ) -> list | torch.Tensor:
        """(D,) pooled or (L, D) per-token features of the image, as a tensor or nested lists."""
        if pool and model_outputs["pooler_output"] is None:
            raise ValueError(
                "This model's encoder has no pooling layer (a pretraining model's): load the checkpoint with "
                "AutoModel (S2MAEModel), or call the pipeline with pool=False for per-token features."
            )
        features = model_outputs["pooler_output" if pool else "last_hidden_state"][0]
        return features if return_tensors else features.tolist()


__all__ = ["PIPELINE_TASK", "MultispectralFeatureExtractionPipeline"]

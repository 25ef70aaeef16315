"""Hugging Face model cards for S2MAE checkpoints, written for remote-sensing users.

`write_model_card` writes `README.md` into a saved checkpoint folder: Hub metadata (library, pipeline tag, tags,
license, datasets, base model, evaluation results) and a body that says which bands the model reads in which order,
exactly how the image processor scales them, how the model was trained, what it is for, its limits, a quick start
that runs as written, and the citation of the paper.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .configuration_s2mae import S2MAEConfig
from .image_processing_s2mae import SIGMA_RANGE, S2MAEImageProcessor
from .sensors import SENTINEL2, SENTINEL2_13_BANDS, is_sentinel2

TASKS: dict[str, str] = {
    "pretraining": "image-feature-extraction",
    "feature-extraction": "image-feature-extraction",
    "image-classification": "image-classification",
}
"""The accepted `task` values and the Hub `pipeline_tag` each one gets."""

INSTALL_COMMAND = "pip install -e ."
"""How the card tells users to install the package that provides `modeling_s2mae`."""

CITATION = """@inproceedings{li2024s2mae,
  author    = {Li, Xuyang and Hong, Danfeng and Chanussot, Jocelyn},
  title     = {S2MAE: A Spatial-Spectral Pretraining Foundation Model for Spectral Remote Sensing Data},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  month     = {June},
  year      = {2024},
  pages     = {24088--24097}
}"""

_MODEL_CLASS_BY_TASK = {
    "pretraining": "S2MAEForPreTraining",
    "feature-extraction": "S2MAEModel",
    "image-classification": "S2MAEForImageClassification",
}
_BASE_TAGS = ("remote-sensing", "earth-observation", "multispectral", "masked-autoencoder", "s2mae")


def _number(value: float) -> str:
    """A number as Python writes it back exactly (no rounding in the card)."""
    return repr(value) if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _eval_results(
    task: str,
    datasets: list[str],
    metrics: Mapping[str, float] | None,
    eval_results: Sequence[EvalResult] | None,
) -> list[EvalResult] | None:
    """`eval_results` as given, else one `EvalResult` per metric when the metrics' dataset is known (one dataset)."""
    if eval_results is not None:
        for result in eval_results:
            if not isinstance(result, EvalResult):
                raise ValueError(
                    f"eval_results must be huggingface_hub.EvalResult objects, got {type(result).__name__}."
                )
        return list(eval_results)
    if not metrics or len(datasets) != 1:
        return None
    return [
        EvalResult(
            task_type=TASKS[task],
            dataset_type=datasets[0],
            dataset_name=datasets[0],
            metric_type=name,
            metric_value=value,
        )
        for name, value in metrics.items()
    ]


def _has_remote_code(output_dir: Path) -> bool:
    config_path = output_dir / "config.json"
    if not config_path.is_file():
        return False
    with open(config_path, encoding="utf-8") as handle:
        return "AutoModel" in json.load(handle).get("auto_map", {})


def _example_band_names(band_names: list[str]) -> list[str]:
    """The input band order shown in the quick start: a full 13-band Sentinel-2 L1C file when the model's bands are
    Sentinel-2 bands (so the example shows selection by name), else the model's own bands."""
    return list(SENTINEL2_13_BANDS) if is_sentinel2(band_names) else list(band_names)


def _summary_section(config: S2MAEConfig, task: str, model_name: str, base_model: str | None) -> str:
    purpose = {
        "pretraining": "a self-supervised S2MAE masked autoencoder (encoder + reconstruction decoder)",
        "feature-extraction": "an S2MAE encoder that turns a multispectral image into features",
        "image-classification": "an S2MAE encoder with a classification head",
    }[task]
    lines = [
        f"# {model_name}",
        "",
        f"`{_MODEL_CLASS_BY_TASK[task]}`: {purpose}, for {config.num_channels}-band multispectral imagery "
        f"({', '.join(config.band_names)}).",
        "",
        "S2MAE (Li, Hong, Chanussot, CVPR 2024) cuts an image into small spatial-spectral cubes, hides most of them "
        "and learns to reconstruct them. This checkpoint uses the `s2mae` package, an independent implementation "
        "of the method written from the paper: the authors published neither code nor weights, so these weights "
        "are not the paper's and its numbers are not claimed for them.",
    ]
    if base_model:
        lines += ["", f"Fine-tuned from [{base_model}](https://huggingface.co/{base_model})."]
    return "\n".join(lines)


def _model_section(config: S2MAEConfig, task: str) -> str:
    s, p = config.spectral_patch_size, config.patch_size
    rows = [
        ("input `pixel_values`", f"(batch, {config.num_channels}, {config.image_size}, {config.image_size}) float32"),
        ("image size", f"{config.image_size} x {config.image_size} px"),
        ("cube (one token)", f"{s} bands x {p} x {p} px = {config.cube_dim} values"),
        (
            "tokens",
            f"{config.num_spectral_groups} spectral groups x {config.grid_size} x {config.grid_size} positions = "
            f"{config.num_tokens}",
        ),
        (
            "encoder",
            f"{config.num_hidden_layers} layers, width {config.hidden_size}, {config.num_attention_heads} heads, "
            f"MLP {config.intermediate_size}",
        ),
        ("position embeddings", config.position_embedding_type),
    ]
    if task == "pretraining":
        rows += [
            (
                "decoder",
                f"{config.decoder_num_hidden_layers} layers, width {config.decoder_hidden_size}, "
                f"{config.decoder_num_attention_heads} heads, MLP {config.decoder_intermediate_size}",
            ),
            ("masking", f"{config.masking_strategy}, ratio {_number(config.mask_ratio)}"),
            ("reconstruction target", "the input cubes" + (", each normalised" if config.norm_pix_loss else "")),
        ]
    else:
        rows.append(("pooling", f"{config.pooling} over tokens, then LayerNorm"))
    if task == "image-classification":
        rows.append(("problem type", config.problem_type or "inferred from the labels"))
        labels = ", ".join(f"{index}: {config.id2label[index]}" for index in sorted(config.id2label))
        rows.append((f"labels ({config.num_labels})", labels))
    return "## Model\n\n" + _table(("", ""), rows)


def _bands_section(config: S2MAEConfig, processor: S2MAEImageProcessor | None) -> str:
    sentinel2 = is_sentinel2(config.band_names)
    wavelengths = config.band_wavelengths
    if wavelengths is None and sentinel2:
        wavelengths = [SENTINEL2[name].wavelength_nm for name in config.band_names]
    with_stats = processor is not None and processor.band_mean is not None and processor.band_std is not None
    header = ["index", "band", "centre wavelength (nm)"]
    header += ["native resolution (m)"] if sentinel2 else []
    header += ["mean", "std"] if with_stats else []
    rows = []
    for index, name in enumerate(config.band_names):
        row = [index, name, "unknown" if wavelengths is None else _number(wavelengths[index])]
        row += [SENTINEL2[name].resolution_m] if sentinel2 else []
        row += [_number(processor.band_mean[name]), _number(processor.band_std[name])] if with_stats else []
        rows.append(row)
    text = [
        "## Bands",
        "",
        f"The model reads these {config.num_channels} bands in this order (`config.band_names`):",
        "",
        _table(header, rows),
        "",
        "The image processor selects and orders bands **by name**: pass the names of your array's bands, in your "
        "array's order, as `input_band_names`. Extra bands are dropped; a missing band is an error. Files disagree "
        "on band order (EuroSAT-MS stores B8A last, most Sentinel-2 products right after B08), so never rely on "
        "position alone.",
    ]
    if sentinel2 and "B10" not in config.band_names:
        text += ["", "B10 (cirrus, 1373.5 nm) is not used; it is dropped if your file has it."]
    if processor is not None and processor.input_band_names is not None:
        text += [
            "",
            f"The saved processor's default `input_band_names` is {processor.input_band_names}: arrays in that order "
            "need no `input_band_names`; pass it for any other order.",
        ]
    if with_stats:
        text += ["", "`mean` and `std` are the per-band statistics the image processor scales with (input units)."]
    return "\n".join(text)


def _scaling_formula(processor: S2MAEImageProcessor) -> str:
    if processor.scaling == "minmax":
        return (
            f"`x' = (x - min_b) / (max_b - min_b + {_number(processor.minmax_eps)})`, where `min_b` and `max_b` are "
            "the minimum and maximum of band b over the valid pixels **of the same image** (per image and per band; "
            "no dataset statistics). Result in [0, 1]."
        )
    if processor.scaling == "reflectance":
        offset = processor.reflectance_offset
        shifted = "x" if offset == 0 else f"(x {'-' if offset < 0 else '+'} {_number(abs(offset))})"
        return f"`x' = clip({shifted} / {_number(processor.reflectance_scale)}, 0, 1)` for every band."
    if processor.scaling == "standardize":
        return (
            "`x' = (x - mean_b) / std_b` with the per-band `mean` and `std` of the band table. **Not** clipped and "
            "not in [0, 1]: roughly zero mean and unit variance."
        )
    return (
        f"`x' = clip((x - (mean_b - {_number(SIGMA_RANGE)} * std_b)) / ({_number(2 * SIGMA_RANGE)} * std_b), 0, 1)`: "
        f"mean +/- {_number(SIGMA_RANGE)} standard deviations of each band (band table) mapped onto [0, 1]."
    )


def _scaling_section(config: S2MAEConfig, processor: S2MAEImageProcessor | None) -> str:
    if processor is None:
        return (
            "## Input scaling\n\n"
            "No image processor was saved with this checkpoint. Give `pixel_values` of shape "
            f"(batch, {config.num_channels}, {config.image_size}, {config.image_size}), float32, bands in the order "
            "above, scaled to [0, 1] the way the training data was (see Training)."
        )
    units = (
        "For Sentinel-2 L1C / L2A products these are digital numbers, reflectance x 10000, usually uint16."
        if is_sentinel2(config.band_names)
        else "Give the values in the units the training data had."
    )
    invalid = "pixels that are NaN or infinite in any band"
    if processor.nodata is not None:
        invalid += f", or equal to `{_number(processor.nodata)}` (`nodata`) in any band"
    else:
        invalid += " (`nodata` is not set: pass `nodata=` to the processor if your files have a fill value)"
    clamp = "" if processor.scaling == "standardize" else " Values are clamped to [0, 1] after resizing."
    steps = [
        "1. Select and order the bands by name (`input_band_names` -> the band table).",
        f"2. Mark invalid pixels: {invalid}.",
        f'3. Scale (`scaling="{processor.scaling}"`): {_scaling_formula(processor)}',
        f"4. Resize to {processor.size} x {processor.size} px (`{processor.resample}`, antialiased when "
        f"downsampling; `torch.nn.functional.interpolate`).{clamp}",
        "5. Set invalid pixels to 0 and return `pixel_mask` (batch, H, W): 1 where a pixel is valid in every band. "
        "The model leaves invalid pixels out of pooling.",
    ]
    return "\n".join(
        [
            "## Input scaling (what the image processor does)",
            "",
            "The image processor (`S2MAEImageProcessor`, saved in `preprocessor_config.json`) takes numpy arrays or "
            "torch tensors of shape (C, H, W) or (H, W, C), or a batch of them, of any real dtype, in the units of "
            f"the file as stored. {units}",
            "",
            *steps,
            "",
            "Output: `pixel_values` (batch, "
            f"{config.num_channels}, {processor.size}, {processor.size}) float32 in the band order above, and "
            "`pixel_mask`.",
        ]
    )


def _training_section(training_summary: str | None, datasets: list[str]) -> str:
    text = ["## Training", "", training_summary.strip() if training_summary else "Not documented for this checkpoint."]
    if datasets:
        text += [
            "",
            "Datasets: " + ", ".join(f"[{name}](https://huggingface.co/datasets/{name})" for name in datasets),
        ]
    return "\n".join(text)


def _evaluation_section(metrics: Mapping[str, float] | None, eval_results: Sequence[EvalResult] | None) -> str | None:
    """The explicit `eval_results` and the `metrics`, each as a table (metrics turned into `model-index` entries are
    the same numbers, shown once)."""
    tables = []
    if eval_results:
        rows = [
            (
                result.dataset_name,
                result.dataset_split or "",
                result.metric_name or result.metric_type,
                result.metric_value,
            )
            for result in eval_results
        ]
        tables.append(_table(("dataset", "split", "metric", "value"), rows))
    if metrics:
        tables.append(_table(("metric", "value"), [(name, value) for name, value in metrics.items()]))
    return "\n\n".join(["## Evaluation", *tables]) if tables else None


def _uses_section(config: S2MAEConfig, task: str) -> str:
    sentinel2 = is_sentinel2(config.band_names)
    uses = {
        "pretraining": "Starting point for fine-tuning on multispectral imagery (`AutoModelForImageClassification"
        ".from_pretrained` adds a new classification head; dense tasks such as segmentation or change detection "
        "need a head of your own on `last_hidden_state`); frozen features "
        "(`AutoModel`: `pooler_output` per image, `last_hidden_state` per cube) for retrieval, clustering or linear "
        "probes; masked reconstruction for inspecting what the model learned.",
        "feature-extraction": "Frozen features (`pooler_output` per image, `last_hidden_state` per cube) for "
        "retrieval, clustering, linear probes, or as a backbone to fine-tune.",
        "image-classification": "Classifying image chips of the kind it was fine-tuned on, into the labels above.",
    }[task]
    limits = [
        "- **Band order by name.** Always pass `input_band_names`; an array in another order gives wrong results "
        "without any error if the band count happens to match.",
    ]
    if sentinel2:
        limits.append(
            "- **Sentinel-2 L1C vs L2A.** L1C is top-of-atmosphere, L2A bottom-of-atmosphere reflectance, and L2A has "
            "no B10. Atmospheric correction is not a per-band linear map, so a model trained on one level sees a "
            "domain shift on the other: evaluate on your level and fine-tune if needed. Products of processing "
            "baseline 04.00 or later (from January 2022) add an offset of +1000 to the digital numbers: with "
            '`scaling="reflectance"` set `reflectance_offset=-1000` for them; per-image `"minmax"` scaling cancels a '
            "per-band offset or gain."
        )
    limits += [
        "- **Other sensors** (Landsat, PlanetScope, hyperspectral, SAR) need fine-tuning: the cube embedding and "
        "the spectral position table are tied to these bands and this order.",
        f"- **Image size.** The processor resizes every input to {config.image_size} x {config.image_size} px, "
        "whatever its ground resolution: tile large scenes into chips of about the training size and resolution "
        "instead of resizing a whole scene.",
        "- **Clouds, shadows and no-data** are not detected by the model; mark fill values with `nodata` and screen "
        "clouds beforehand.",
    ]
    return "\n".join(["## Intended uses", "", uses, "", "## Limitations", "", *limits])


def _quickstart_code(config: S2MAEConfig, task: str, model_id: str) -> str:
    band_names = _example_band_names(config.band_names)
    band_list = ", ".join(f'"{name}"' for name in band_names)
    lines = [
        "import numpy as np",
        "import torch",
    ]
    if task == "image-classification":
        lines.append("from transformers import AutoImageProcessor, AutoModelForImageClassification")
    elif task == "pretraining":
        lines.append("from transformers import AutoImageProcessor, AutoModel, AutoModelForPreTraining")
    else:
        lines.append("from transformers import AutoImageProcessor, AutoModel")
    lines += [
        "",
        "import modeling_s2mae  # noqa: F401  (registers S2MAE with the Auto classes)",
        "",
        f'repo_id = "{model_id}"',
        "processor = AutoImageProcessor.from_pretrained(repo_id)",
        "",
        "# The bands of your array, in your array's order; the processor picks the model's bands by name.",
        f"input_band_names = [{band_list}]",
        "# Stand-in for a real (C, H, W) uint16 tile, e.g. `with rasterio.open(path) as src: image = src.read()`",
        "image = np.random.default_rng(0).integers(1, 10000, size=(len(input_band_names), 120, 120), dtype=np.uint16)",
        'inputs = processor(image, input_band_names=input_band_names, return_tensors="pt")',
        "",
    ]
    if task == "image-classification":
        lines += [
            "model = AutoModelForImageClassification.from_pretrained(repo_id).eval()",
            "with torch.no_grad():",
            "    logits = model(**inputs).logits  # (1, num_labels)",
        ]
        if config.problem_type == "multi_label_classification":
            lines += [
                "probabilities = logits.sigmoid()[0]",
                "print([model.config.id2label[i] for i, p in enumerate(probabilities.tolist()) if p > 0.5])",
            ]
        else:
            lines += [
                "probabilities = logits.softmax(-1)[0]",
                "best = int(probabilities.argmax())",
                "print(model.config.id2label[best], float(probabilities[best]))",
            ]
    else:
        lines += [
            "model = AutoModel.from_pretrained(repo_id).eval()",
            "with torch.no_grad():",
            "    outputs = model(**inputs)",
            "features = outputs.pooler_output  # (1, hidden_size): one vector per image",
            "cube_features = outputs.last_hidden_state  # (1, number of cubes, hidden_size)",
            "print(features.shape, cube_features.shape)",
        ]
    if task == "pretraining":
        lines += [
            "",
            "mae = AutoModelForPreTraining.from_pretrained(repo_id).eval()",
            "with torch.no_grad():",
            "    reconstruction = mae(**inputs)  # hides config.mask_ratio of the cubes at random",
            "images = mae.unpatchify(reconstruction.logits)  # (1, C, H, W), scaled like pixel_values",
            'print(f"MSE on the hidden cubes: {reconstruction.loss.item():.4f}")',
        ]
    return "\n".join(lines)


def _usage_section(config: S2MAEConfig, task: str, model_id: str, remote_code: bool) -> str:
    text = [
        "## How to use",
        "",
        f"Install the s2mae package, which provides `modeling_s2mae` (in a clone of its repository: `{INSTALL_COMMAND}`), "
        "and import it before loading: "
        "the import registers S2MAE with the Transformers Auto classes.",
        "",
        "```python",
        _quickstart_code(config, task, model_id),
        "```",
    ]
    if task == "pretraining":
        text += [
            "",
            "`AutoModel` loads the encoder alone and leaves the decoder weights unused. Pretraining does not train "
            "the LayerNorm of `pooler_output`: it starts as the identity (weight 1, bias 0) and is not in the "
            "checkpoint.",
        ]
    if remote_code:
        text += [
            "",
            "Without installing the package, pass `trust_remote_code=True` to `from_pretrained` (for the model and "
            "for `AutoImageProcessor`): Transformers then runs the Python files of this repository, so read them "
            "first, and pin `revision=` to a commit you have read.",
        ]
    if task == "image-classification":
        pipeline_note = (
            "The Transformers `image-classification` pipeline accepts one (C, H, W) array, or a list of them (not a "
            "stacked 4-D batch: it would return the first image's scores only), when the processor is built with "
            'the array\'s band names: `pipeline("image-classification", model=repo_id, image_processor='
            "AutoImageProcessor.from_pretrained(repo_id, input_band_names=input_band_names), "
            "trust_remote_code=False)`."
        )
    else:
        pipeline_note = (
            "The Transformers `image-feature-extraction` pipeline cannot take multispectral input: it converts "
            "every input to an RGB PIL image. Use the processor and model as above."
        )
    if remote_code:
        pipeline_note += (
            " Pass `trust_remote_code` to `pipeline` explicitly (`False` with the package, `True` without it): left "
            "unset, the pipeline asks on the terminal whether to run this repository's code."
        )
    text += ["", pipeline_note]
    return "\n".join(text)


def write_model_card(
    output_dir: str | Path,
    config: S2MAEConfig,
    processor: S2MAEImageProcessor | None = None,
    *,
    model_name: str,
    base_model: str | None = None,
    datasets: str | Sequence[str] | None = None,
    license: str = "apache-2.0",
    training_summary: str | None = None,
    metrics: Mapping[str, float] | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    task: str = "pretraining",
    repo_id: str | None = None,
    remote_code: bool | None = None,
) -> ModelCard:
    """Write `README.md`, a Hub model card, into `output_dir` and return it.

    Args:
        output_dir: The checkpoint folder (created if needed).
        config: The model's config; bands, sizes and labels are read from it.
        processor: The image processor saved with the model; the card states its exact scaling. `None`: the card
            says that no processor was saved.
        model_name: Title of the card and name of its `model-index` entry.
        base_model: Hub id of the checkpoint this one was fine-tuned from.
        datasets: Hub ids of the training / evaluation datasets.
        license: SPDX-style licence id for the metadata.
        training_summary: Markdown paragraph on how the model was trained (data, epochs, recipe).
        metrics: Evaluation results by metric id, e.g. `{"accuracy": 0.981}`. With exactly one dataset they also
            become `model-index` entries; with several, pass `eval_results` to say which dataset each belongs to.
        eval_results: Explicit `huggingface_hub.EvalResult`s for `model-index` (take precedence over `metrics`).
        task: "pretraining", "feature-extraction" or "image-classification"; sets the pipeline tag and the quick
            start.
        repo_id: Hub id the quick start loads; `None` uses the absolute path of `output_dir`.
        remote_code: Whether the card mentions `trust_remote_code=True`; `None` checks `config.json` in `output_dir`
            for an `auto_map` (see `modeling_s2mae.hub.prepare_for_remote_code`, to call before this).

    Returns:
        The `huggingface_hub.ModelCard`, also saved as `output_dir/README.md`.

    Raises:
        ValueError: an unknown task, a processor whose bands or size differ from the config's, or `eval_results`
            that are not `EvalResult`s.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}.")
    if processor is not None:
        if list(processor.band_names) != list(config.band_names):
            raise ValueError(
                f"The processor's band_names {processor.band_names} differ from the config's {config.band_names}: "
                "the card would describe an input the model does not read."
            )
        if processor.size != config.image_size:
            raise ValueError(
                f"The processor resizes to {processor.size} px but the model's image_size is {config.image_size}."
            )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    if remote_code is None:
        remote_code = _has_remote_code(output_dir)
    results = _eval_results(task, datasets, metrics, eval_results)

    tags = list(_BASE_TAGS)
    if is_sentinel2(config.band_names):
        tags.insert(3, "sentinel-2")
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=TASKS[task],
        license=license,
        tags=tags,
        datasets=datasets or None,
        base_model=base_model,
        metrics=list(metrics) if metrics else None,
        eval_results=results,
    )
    sections = [
        _summary_section(config, task, model_name, base_model),
        _model_section(config, task),
        _bands_section(config, processor),
        _scaling_section(config, processor),
        _usage_section(config, task, repo_id or str(output_dir.resolve()), remote_code),
        _training_section(training_summary, datasets),
        _evaluation_section(metrics, eval_results),
        _uses_section(config, task),
        "## Citation\n\n```bibtex\n" + CITATION + "\n```",
    ]
    body = "\n\n".join(section for section in sections if section)
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")
    card.save(output_dir / "README.md")
    return card


__all__ = ["CITATION", "INSTALL_COMMAND", "TASKS", "write_model_card"]

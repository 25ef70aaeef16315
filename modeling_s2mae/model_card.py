"""Hugging Face model cards for S2MAE checkpoints, written for remote-sensing users.

`write_model_card` writes `README.md` into a saved checkpoint folder with `huggingface_hub.ModelCard.from_template`:
the metadata (library, pipeline tag, tags, license, datasets, base model, evaluation results) goes through
`ModelCardData`; this module computes the values of the body (band table, the processor's exact scaling formula,
the quick start) and `templates/model_card_template.md` lays them out. `training_summary` writes the "Training"
paragraph of a Trainer run, and `hub_id` tells a Hub id from a local folder, for the example scripts.
"""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .configuration_s2mae import S2MAEConfig
from .image_processing_s2mae import SIGMA_RANGE, S2MAEImageProcessor
from .safe_io import write_text_safely
from .sensors import SENTINEL2, SENTINEL2_13_BANDS, is_sentinel2

if TYPE_CHECKING:
    from transformers import TrainingArguments

TASKS: dict[str, str] = {
    "pretraining": "image-feature-extraction",
    "feature-extraction": "image-feature-extraction",
    "image-classification": "image-classification",
    "semantic-segmentation": "image-segmentation",
    "change-detection": "image-segmentation",
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

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card_template.md"
"""The Jinja template of the card body (shipped as package data)."""

_MODEL_CLASS_BY_TASK = {
    "pretraining": "S2MAEForPreTraining",
    "feature-extraction": "S2MAEModel",
    "image-classification": "S2MAEForImageClassification",
    "semantic-segmentation": "S2MAEForSemanticSegmentation",
    "change-detection": "S2MAEForChangeDetection",
}
_BASE_TAGS = ("remote-sensing", "earth-observation", "multispectral", "masked-autoencoder", "s2mae")


def _number(value: float) -> str:
    """A number as Python writes it back exactly (no rounding in the card)."""
    return repr(value) if isinstance(value, float) else str(value)


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


def _model_rows(config: S2MAEConfig, task: str) -> list[tuple[str, str]]:
    """The rows of the "Model" table: shapes, token layout and architecture."""
    s, p, size = config.spectral_patch_size, config.patch_size, config.image_size
    rows = [
        ("input `pixel_values`", f"(batch, {config.num_channels}, {size}, {size}) float32"),
        ("image size", f"{size} x {size} px"),
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
    if task in ("semantic-segmentation", "change-detection"):
        rows.append(("decoder", f"UPerNet on encoder stages {list(getattr(config, 'out_indices', None) or [])}"))
        labels = ", ".join(f"{index}: {config.id2label[index]}" for index in sorted(config.id2label))
        rows.append((f"labels ({config.num_labels})", labels))
    if task == "image-classification":
        rows.append(("problem type", config.problem_type or "inferred from the labels"))
        labels = ", ".join(f"{index}: {config.id2label[index]}" for index in sorted(config.id2label))
        rows.append((f"labels ({config.num_labels})", labels))
    return rows


def _band_table(config: S2MAEConfig, processor: S2MAEImageProcessor | None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the "Bands" table, one row per model band in order: index, name, centre wavelength
    (`config.band_wavelengths`, else the Sentinel-2 table when every band is a Sentinel-2 band, else "unknown"),
    native resolution (Sentinel-2 only) and the processor's band statistics when it has them."""
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
        row = [str(index), name, "unknown" if wavelengths is None else _number(wavelengths[index])]
        row += [_number(SENTINEL2[name].resolution_m)] if sentinel2 else []
        row += [_number(processor.band_mean[name]), _number(processor.band_std[name])] if with_stats else []
        rows.append(row)
    return header, rows


def _scaling_formula(processor: S2MAEImageProcessor) -> str:
    """The processor's scaling as a formula with its exact constants (markdown)."""
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
    if processor.scaling == "sigma":
        return (
            f"`x' = clip((x - (mean_b - {_number(SIGMA_RANGE)} * std_b)) / ({_number(2 * SIGMA_RANGE)} * std_b), "
            f"0, 1)`: mean +/- {_number(SIGMA_RANGE)} standard deviations of each band (band table) mapped onto "
            "[0, 1]."
        )
    if processor.scaling == "dataset_range":
        return (
            "`x' = clip((x - low_b) / (high_b - low_b), 0, 1)` with dataset-level per-band bounds `low_b` / `high_b` "
            "(`band_low` / `band_high` in `preprocessor_config.json`, computed on the training data over valid pixels; "
            "its `band_statistics` holds the counts, mean, std, min, max and percentiles they come from). The same "
            "bounds for every image, so absolute radiometry is kept."
        )
    raise ValueError(f"The card cannot describe the processor's scaling {processor.scaling!r}.")


def _quickstart(config: S2MAEConfig, task: str, model_id: str) -> str:
    """Python source that loads the checkpoint from `model_id` and runs it on a stand-in tile. For Sentinel-2 models
    the tile has all 13 Sentinel-2 bands in file order, so the example shows band selection by name."""
    example_bands = SENTINEL2_13_BANDS if is_sentinel2(config.band_names) else config.band_names
    auto_classes = {
        "pretraining": "AutoModel, AutoModelForPreTraining",
        "feature-extraction": "AutoModel",
        "image-classification": "AutoModelForImageClassification",
        "semantic-segmentation": "AutoModelForSemanticSegmentation",
        "change-detection": "AutoModel",
    }[task]
    band_list = ", ".join(json.dumps(name) for name in example_bands)
    code = f"""import numpy as np
import torch
from transformers import AutoImageProcessor, {auto_classes}

import modeling_s2mae  # noqa: F401  (registers S2MAE with the Auto classes)

repo_id = {json.dumps(model_id)}
processor = AutoImageProcessor.from_pretrained(repo_id)

# The bands of your array, in your array's order; the processor picks the model's bands by name.
input_band_names = [{band_list}]
# Stand-in for a real (C, H, W) uint16 tile, e.g. `with rasterio.open(path) as src: image = src.read()`
image = np.random.default_rng(0).integers(1, 10000, size=(len(input_band_names), 120, 120), dtype=np.uint16)
inputs = processor(image, input_band_names=input_band_names, return_tensors="pt")
"""
    if task == "image-classification":
        code += """
model = AutoModelForImageClassification.from_pretrained(repo_id).eval()
with torch.no_grad():
    logits = model(**inputs).logits  # (1, num_labels)
"""
        if config.problem_type == "multi_label_classification":
            code += """probabilities = logits.sigmoid()[0]
print([model.config.id2label[i] for i, p in enumerate(probabilities.tolist()) if p > 0.5])"""
        else:
            code += """probabilities = logits.softmax(-1)[0]
best = int(probabilities.argmax())
print(model.config.id2label[best], float(probabilities[best]))"""
        return code
    if task == "semantic-segmentation":
        return (
            code
            + """
model = AutoModelForSemanticSegmentation.from_pretrained(repo_id).eval()
with torch.no_grad():
    logits = model(**inputs).logits  # (1, num_labels, H, W)
class_map = logits.argmax(1)[0]  # (H, W) class ids, names in model.config.id2label"""
        )
    if task == "change-detection":
        return (
            code.replace(
                "from transformers import AutoImageProcessor, AutoModel", "from transformers import AutoImageProcessor"
            )
            + """
from modeling_s2mae import S2MAEForChangeDetection

later = processor(image[:, ::-1].copy(), input_band_names=input_band_names, return_tensors="pt")  # the second date
model = S2MAEForChangeDetection.from_pretrained(repo_id).eval()
with torch.no_grad():
    logits = model(pixel_values=inputs["pixel_values"], pixel_values_2=later["pixel_values"]).logits  # (1, 2, H, W)
change_map = logits.argmax(1)[0]  # (H, W), 1 where it changed"""
        )
    code += """
model = AutoModel.from_pretrained(repo_id).eval()
with torch.no_grad():
    outputs = model(**inputs)
features = outputs.pooler_output  # (1, hidden_size): one vector per image
cube_features = outputs.last_hidden_state  # (1, number of cubes, hidden_size)
print(features.shape, cube_features.shape)"""
    if task == "pretraining":
        code += """

mae = AutoModelForPreTraining.from_pretrained(repo_id).eval()
with torch.no_grad():
    reconstruction = mae(**inputs)  # hides config.mask_ratio of the cubes at random
images = mae.unpatchify(reconstruction.logits)  # (1, C, H, W), scaled like pixel_values
print(f"MSE on the hidden cubes: {reconstruction.loss.item():.4f}")"""
    return code


def _card_context(
    config: S2MAEConfig,
    processor: S2MAEImageProcessor | None,
    *,
    model_name: str,
    task: str,
    model_id: str,
    remote_code: bool,
    training_summary: str | None,
    metrics: Mapping[str, float] | None,
    eval_results: Sequence[EvalResult] | None,
) -> dict[str, Any]:
    """Every value the template reads besides the card metadata (`base_model`, `datasets`, `card_data`)."""
    band_header, band_rows = _band_table(config, processor)
    sentinel2 = is_sentinel2(config.band_names)
    context: dict[str, Any] = {
        "model_name": model_name,
        "task": task,
        "model_class": _MODEL_CLASS_BY_TASK[task],
        "num_channels": config.num_channels,
        "band_list": ", ".join(config.band_names),
        "image_size": config.image_size,
        "model_rows": _model_rows(config, task),
        "band_header": band_header,
        "band_rows": band_rows,
        "sentinel2": sentinel2,
        "drops_b10": sentinel2 and "B10" not in config.band_names,
        "wavelengths_known": band_rows[0][2] != "unknown",
        "default_input_band_names": None,
        "with_stats": "mean" in band_header,
        "processor": processor is not None,
        "scaling": None,
        "scaling_formula": None,
        "nodata": None,
        "resample": None,
        "install_command": INSTALL_COMMAND,
        "quickstart": _quickstart(config, task, model_id),
        "remote_code": remote_code,
        "training_summary": training_summary.strip() if training_summary else None,
        "eval_rows": [
            (
                result.dataset_name,
                result.dataset_split or "",
                result.metric_name or result.metric_type,
                result.metric_value,
            )
            for result in eval_results or []
        ],
        "metric_rows": list((metrics or {}).items()),
        "citation": CITATION,
    }
    if processor is not None:
        context.update(
            default_input_band_names=None if processor.input_band_names is None else list(processor.input_band_names),
            scaling=processor.scaling,
            scaling_formula=_scaling_formula(processor),
            nodata=None if processor.nodata is None else _number(processor.nodata),
            resample=processor.resample,
        )
    return context


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
        training_summary: Markdown paragraph on how the model was trained (data, epochs, recipe); see
            `training_summary`.
        metrics: Evaluation results by metric id, e.g. `{"accuracy": 0.981}`. With exactly one dataset they also
            become `model-index` entries; with several, pass `eval_results` to say which dataset each belongs to.
        eval_results: Explicit `huggingface_hub.EvalResult`s for `model-index` (take precedence over `metrics`).
        task: "pretraining", "feature-extraction", "image-classification", "semantic-segmentation" or
            "change-detection"; sets the pipeline tag and the quick start.
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
        eval_results=_eval_results(task, datasets, metrics, eval_results),
    )
    context = _card_context(
        config,
        processor,
        model_name=model_name,
        task=task,
        model_id=repo_id or str(output_dir.resolve()),
        remote_code=_has_remote_code(output_dir) if remote_code is None else remote_code,
        training_summary=training_summary,
        metrics=metrics,
        eval_results=eval_results,
    )
    card = ModelCard.from_template(card_data, template_path=str(TEMPLATE_PATH), **context)
    write_text_safely(output_dir / "README.md", str(card))  # never through a link planted in the folder
    return card


def training_summary(
    training_args: "TrainingArguments",
    *,
    task: str,
    data: str,
    steps: int | None = None,
    script: str | None = None,
    start_from: str | None = None,
    details: Sequence[str] = (),
    notes: str | None = None,
) -> str:
    """The "Training" paragraph of a model card for a `Trainer` run.

    "{how it started} with `{script}` on {data}: {details}, {steps} steps, batch {per device} x {processes}
    process(es) [x {accumulation} accumulation steps], learning rate {lr}. {notes}"

    Args:
        training_args: The run's `transformers.TrainingArguments` (batch size, processes, gradient accumulation and
            learning rate are read from it).
        task: "pretraining", "feature-extraction" or "image-classification" (how the sentence starts).
        data: What the model was trained on, in words or as a Hub id.
        steps: Optimizer steps taken (`trainer.state.global_step`); left out when `None`.
        script: The script that trained it, e.g. "examples/run_pretrain.py".
        start_from: The checkpoint training started from (Hub id or folder); `None`: from scratch.
        details: Recipe items listed before the step count, e.g. `["mask ratio 0.9 (random masking)"]`.
        notes: Sentences appended after the summary.

    Returns:
        One markdown paragraph.

    Raises:
        ValueError: an unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}.")
    if task in ("image-classification", "semantic-segmentation", "change-detection"):
        opening = f"Fine-tuned from the encoder of `{start_from}`" if start_from else "Trained from scratch"
    else:
        opening = "Pretrained" + (f" starting from `{start_from}`" if start_from else "")
    batch = f"batch {training_args.per_device_train_batch_size} x {training_args.world_size} process(es)"
    if training_args.gradient_accumulation_steps > 1:
        batch += f" x {training_args.gradient_accumulation_steps} accumulation steps"
    items = [*details, *([f"{steps} steps"] if steps is not None else []), batch]
    items.append(f"learning rate {_number(training_args.learning_rate)}")
    script_text = f" with `{script}`" if script else ""
    summary = f"{opening}{script_text} on {data}: {', '.join(items)}."
    return f"{summary} {notes.strip()}" if notes else summary


def hub_id(path_or_repo_id: str | os.PathLike | None) -> str | None:
    """`path_or_repo_id` when it names a Hub repo, `None` when it is `None`, empty or an existing local folder: only a
    Hub id makes a valid `base_model` or `datasets` entry (name local folders in the training summary instead)."""
    if not path_or_repo_id or os.path.isdir(path_or_repo_id):
        return None
    return str(path_or_repo_id)


__all__ = ["CITATION", "INSTALL_COMMAND", "TASKS", "TEMPLATE_PATH", "hub_id", "training_summary", "write_model_card"]

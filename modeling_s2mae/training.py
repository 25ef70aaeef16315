"""Training helpers the example scripts share: configs from presets, the image processor of a checkpoint, layer-wise
learning-rate decay driven by the model itself, freezing, and safe resumption.

Resumption: `find_resume_checkpoint` returns the newest *complete* `checkpoint-N` of an output folder (its
`trainer_state.json` parses and its weights exist); an incomplete one (a run killed while saving, a full disk) is
renamed `checkpoint-N.incomplete` with a warning instead of breaking every later run. `check_resume_compatible`
refuses to resume a checkpoint whose model differs from the one the command line asks for.
"""

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_s2mae import S2MAE_PRESETS, S2MAEConfig
from .image_processing_s2mae import S2MAEImageProcessor, S2MAEImageProcessorKwargs
from .model_card import training_summary, write_model_card
from .safe_io import write_text_safely

logger = logging.getLogger(__name__)

SAMPLE_PRESET: dict[str, int | float] = {
    "hidden_size": 192,
    "num_hidden_layers": 4,
    "num_attention_heads": 3,
    "intermediate_size": 768,
    "decoder_hidden_size": 128,
    "decoder_num_hidden_layers": 2,
    "decoder_num_attention_heads": 4,
    "decoder_intermediate_size": 512,
    "image_size": 64,
    "mask_ratio": 0.75,
}
"""The small model of the sample runs and of the small-data recipe: trains in minutes on a laptop CPU. Its mask ratio
is 0.75, not the paper's 0.9: the setting whose frozen features beat random init on a real scene after about 30
epochs, and clearly better than 0.9 at the same length there (benchmarks/README_probe.md)."""

ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_num_attention_heads",
    "decoder_intermediate_size",
    "image_size",
    "patch_size",
    "spectral_patch_size",
    "band_names",
    "position_embedding_type",
    "wavelength_projection",
    "spectral_padding",
    "qkv_bias",
    "use_final_layernorm",
    "hidden_act",
    # the per-pixel heads (`modeling_s2mae_dense.DENSE_DEFAULTS`), compared when the checkpoint records them
    "out_indices",
    "spectral_merge",
    "add_fpn",
    "decode_channels",
    "pool_scales",
    "change_fusion",
)
"""Config fields that must agree between a checkpoint and the run that resumes it (and the number of labels)."""


def build_config(preset: str = "sample", config_overrides: str | None = None, **fields: Any) -> S2MAEConfig:
    """The config of a new model: a preset, then `fields` (None values ignored), then `"a=1,b=2"` overrides.

    Args:
        preset: "sample" (`SAMPLE_PRESET`) or a key of `S2MAE_PRESETS` ("vit-s", "vit-b", "vit-l", "vit-h").
        config_overrides: Other config fields as `name=value` pairs separated by commas.
        **fields: Config fields (e.g. image_size, band_names, mask_ratio).

    Raises:
        ValueError: an unknown preset, an unknown or badly typed override, or an invalid combination.
    """
    presets = {"sample": SAMPLE_PRESET, **S2MAE_PRESETS}
    if preset not in presets:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(presets)}.")
    values = {**presets[preset], **{key: value for key, value in fields.items() if value is not None}}
    config = S2MAEConfig(**values)
    if config_overrides:
        known = set(config.to_dict())
        for pair in config_overrides.split(","):
            name = pair.split("=", 1)[0].strip()
            if "=" not in pair or name not in known:
                raise ValueError(
                    f"Bad config override {pair!r}: expected name=value with a field of S2MAEConfig, e.g. "
                    "'drop_path_rate=0.1,decoder_num_hidden_layers=2'."
                )
        try:
            config.update_from_string(config_overrides)
        except ValueError as error:
            raise ValueError(f"Bad config override in {config_overrides!r}: {error}") from error
        config = S2MAEConfig(**config.to_dict())  # re-validate the combination
    return config


_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
"""The form of a Hub repo id, "name" or "owner/name" (huggingface_hub also refuses "--" and ".." in it)."""


def check_model_name_or_path(
    model_name_or_path: str | os.PathLike[str] | None, require_config: bool = True
) -> str | None:
    """Check a `--model_name_or_path` before it is loaded: an existing local folder, or a Hub repo id.

    A local path that does not exist would otherwise be taken for a Hub repo id and fail with a Hub or network
    error. A missing path counts as local when it cannot be a repo id (absolute, starting with "." or "~", more than
    one "/", characters a repo id cannot hold) or when its parent folder exists ("runs/vitb" while "runs/" exists).

    Args:
        model_name_or_path: The value given, or None (a new model).
        require_config: A local folder must hold `config.json` (a saved model).

    Returns:
        `model_name_or_path` as a string (None for None).

    Raises:
        ValueError: the local folder does not exist, is a file, or (with `require_config`) holds no config.json.
    """
    if model_name_or_path is None:
        return None
    name = os.fspath(model_name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if require_config and not (path / "config.json").is_file():
            raise ValueError(
                f"{name} holds no config.json: it is not a saved model. Pass a checkpoint folder (with config.json "
                "and model.safetensors): a finished run's --output_dir or one of its checkpoint-N folders."
            )
        return name
    if path.exists():
        raise ValueError(f"{name} is a file: pass the checkpoint folder holding config.json and model.safetensors.")
    local = (
        isinstance(model_name_or_path, os.PathLike)
        or path.is_absolute()
        or name.startswith((".", "~"))
        or not _HUB_REPO_ID.match(name)
        or "--" in name
        or ".." in name
        or (len(path.parts) > 1 and path.parent.is_dir())
    )
    if local:
        existing = next((parent for parent in path.absolute().parents if parent.is_dir()), None)
        raise ValueError(
            f"The folder {path.absolute()} does not exist (model_name_or_path={name!r}; the nearest existing folder "
            f"is {existing}). Pass an existing checkpoint folder, or a Hub repo id of the form 'owner/name'."
        )
    return name


def saved_processor_settings(checkpoint: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The settings of a checkpoint's `preprocessor_config.json` ({} when there is none or no checkpoint)."""
    if checkpoint is None:
        return {}
    check_model_name_or_path(checkpoint, require_config=False)
    try:
        saved = S2MAEImageProcessor.from_pretrained(checkpoint)
    except OSError:
        logger.info("%s has no preprocessor_config.json; using the default processor settings.", checkpoint)
        return {}
    return {key: getattr(saved, key) for key in S2MAEImageProcessorKwargs.__annotations__}


def load_image_processor(
    config: S2MAEConfig, checkpoint: str | os.PathLike[str] | None = None, **overrides: Any
) -> S2MAEImageProcessor:
    """The image processor for a model: the checkpoint's saved settings (the scaling it was trained with) when it has
    a `preprocessor_config.json`, the model's bands and size, then `overrides` (None values ignored).

    Raises:
        ValueError: the saved processor's band order disagrees with the model's config.
    """
    settings = saved_processor_settings(checkpoint)
    if settings and list(settings["band_names"]) != list(config.band_names):
        raise ValueError(
            f"{checkpoint}: the image processor's bands {settings['band_names']} differ from the model's "
            f"{list(config.band_names)}; re-save the processor with the model's band order."
        )
    for key in ("band_names", "size", "input_band_names"):
        settings.pop(key, None)  # from the model; each sample carries its own band names
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return S2MAEImageProcessor.from_model_config(config, **settings)


def optimizer_param_groups(
    model: torch.nn.Module, weight_decay: float, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """Parameter groups of the trainable parameters, one per (depth, with or without weight decay).

    The model says which parameters take no weight decay (`model.no_weight_decay()`) and how deep each one sits
    (`model.layer_id(name)`: 0 for the embeddings, i + 1 for encoder block i, N + 1 above the blocks). Each group
    gets `lr_scale` = layer_decay ** (N + 1 - depth) (1.0 without layer decay).
    """
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}.")
    top = model.num_layers_for_decay
    no_decay = model.no_weight_decay()
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (model.layer_id(name), name not in no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": weight_decay if key[1] else 0.0,
                "lr_scale": 1.0 if layer_decay is None else layer_decay ** (top - key[0]),
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups)]


class S2MAETrainer(Trainer):
    """`Trainer` whose optimizer groups follow the model: no weight decay where `model.no_weight_decay()` says, and
    one group per layer with `layer_decay`. The optimizer class and its settings come from `TrainingArguments`; the
    scheduler multiplies each group's own initial lr, so layer decay holds through warmup, decay and resumption."""

    def __init__(self, *args: Any, layer_decay: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layer_decay = layer_decay

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """A resumed checkpoint that lacks trained tensors is an error, not a silent random init of them."""
        ignored = set(self.model._keys_to_ignore_on_save or [])
        missing = [key for key in load_result.missing_keys if key not in ignored]
        if missing:
            raise ValueError(
                f"The checkpoint being resumed lacks {len(missing)} trained tensor(s) (e.g. {missing[:5]}): it is "
                "incomplete or holds another model. Move it aside and start again, or use another --output_dir."
            )
        super()._issue_warnings_after_load(load_result)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.train`, refusing a run that trained nothing: Trainer stops at step 0 without an error when the
        training data yields no batch (a stream whose every sample was rejected as nodata, an empty filter), and the
        script would then save the untrained model as its result.

        Raises:
            RuntimeError: no optimisation step ran although steps were asked for.
        """
        output = super().train(*args, **kwargs)
        done, planned = self.state.global_step, self.state.max_steps
        if planned > 0 and done == 0:
            raise RuntimeError(
                "No training step ran: the training data yielded no batch (every sample rejected, e.g. all nodata "
                "or fewer valid pixels than --min_valid_fraction, or an empty split / filter). Check the data, the "
                "nodata value and --min_valid_fraction; nothing was saved."
            )
        if 0 < done < planned:
            logger.warning(
                "Training ended at step %d of %d (the training data ran out, or a callback stopped it).", done, planned
            )
        return output

    def evaluation_loop(self, dataloader: Any, description: str, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.evaluation_loop`, refusing an evaluation over no sample: Trainer would report metrics without
        `eval_loss` or scores (an evaluation set whose every sample was rejected, or an empty split), which read as
        a finished evaluation.

        Raises:
            ValueError: the evaluation data yielded no sample.
        """
        output = super().evaluation_loop(dataloader, description, *args, **kwargs)
        if output.num_samples == 0:
            raise ValueError(
                f"{description}: the evaluation data yielded no sample (every sample rejected, e.g. all nodata or "
                "fewer valid pixels than --min_valid_fraction, or an empty split). Check the evaluation data, or run "
                "without it (--eval_strategy no and no --dataset_eval_split / --validation_fraction 0)."
            )
        return output

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        groups = optimizer_param_groups(opt_model, self.args.weight_decay, self.layer_decay)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        for group in groups:
            group["lr"] = optimizer_kwargs.get("lr", self.args.learning_rate) * group.pop("lr_scale")
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


def freeze_encoder(model: torch.nn.Module) -> int:
    """Linear probe: freeze every encoder parameter (embeddings, blocks, final norm); the pooler LayerNorm and the
    task head stay trainable. Returns the number of trainable parameters left."""
    for name, param in model.named_parameters():
        if name.startswith("s2mae.") and not name.startswith("s2mae.pooler."):
            param.requires_grad_(False)
    return sum(param.numel() for param in model.parameters() if param.requires_grad)


_SAFETENSORS_MAX_HEADER = 100_000_000
"""The largest header safetensors reads; a larger header length means the file is not safetensors at all."""


def _safetensors_truncation(path: Path) -> str | None:
    """Why the safetensors file `path` is shorter (or longer) than its own header says, or None.

    A save cut short (killed, disk full) leaves the 8-byte header length and possibly part of the JSON header: the
    file then ends before the header does, or before the last tensor's data. Reads the header only.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"truncated ({size} bytes, shorter than the 8-byte header length)"
        header_size = int.from_bytes(prefix, "little")
        if header_size > _SAFETENSORS_MAX_HEADER:
            return None  # not a safetensors file: the loader names that itself
        if size < 8 + header_size:
            return f"truncated within its header ({size} of at least {8 + header_size} bytes)"
        try:
            header = json.loads(handle.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "damaged (its header does not parse)"
    try:
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return "damaged (its header is not a table of tensors)"
    expected = 8 + header_size + max(ends, default=0)
    if size != expected:
        return f"truncated or damaged ({size} bytes, its header describes {expected})"
    return None


def _checkpoint_complete(folder: Path) -> str | None:
    """None when `folder` is a complete Trainer checkpoint, else why not."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"trainer_state.json does not parse ({error})"
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("pytorch_model*.bin"))
    if not weights or any(path.stat().st_size == 0 for path in weights):
        return "no model weights"
    for path in folder.glob("*.safetensors"):
        if (problem := _safetensors_truncation(path)) is not None:
            return f"{path.name} is {problem}"
    if not (folder / "config.json").is_file():
        return "no config.json"
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"config.json does not parse ({error})"
    return None


def find_resume_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir`, or None; incomplete ones are set aside with a warning.

    An incomplete checkpoint (killed during a save, disk full) is renamed `checkpoint-N.incomplete` (a numbered
    suffix if that exists), so that Trainer and later runs never pick it up and nothing is deleted.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None
    candidates = []
    for path in root.iterdir():
        prefix, _, step = path.name.partition("-")
        if path.is_dir() and prefix == PREFIX_CHECKPOINT_DIR and step.isdigit():
            candidates.append((int(step), path))
    for _, path in sorted(candidates, reverse=True):
        problem = _checkpoint_complete(path)
        if problem is None:
            return str(path)
        target = path.with_name(f"{path.name}.incomplete")
        suffix = 1
        while target.exists():
            target, suffix = path.with_name(f"{path.name}.incomplete{suffix}"), suffix + 1
        path.rename(target)
        logger.warning("Set aside the incomplete checkpoint %s (%s) as %s.", path, problem, target.name)
    return None


def check_resume_compatible(checkpoint: str | os.PathLike[str], config: S2MAEConfig) -> None:
    """Raise when the checkpoint to resume holds another model than `config` describes (bands, sizes, widths).

    Raises:
        ValueError: naming every field that differs and how to start afresh.
    """
    config_path = Path(checkpoint) / "config.json"
    if not config_path.is_file():
        raise ValueError(
            f"Cannot resume from {checkpoint}: {config_path} does not exist. Pass a checkpoint-N folder written by "
            "this script (with config.json, the weights and trainer_state.json), or leave --resume_from_checkpoint "
            "out to resume from the newest complete one in --output_dir."
        )
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Cannot resume from {checkpoint}: its config.json does not parse ({error}); the checkpoint is damaged or "
            "half-written. Move it aside and resume from an earlier one, or start afresh."
        ) from None
    if not isinstance(saved, dict) or saved.get("model_type") != config.model_type:
        found = saved.get("model_type") if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(
            f"Cannot resume from {checkpoint}: its config.json is for model_type {found!r}, not "
            f"{config.model_type!r}. Pass a checkpoint of this run, or use another --output_dir."
        )
    current = config.to_dict()
    differing = [
        f"{name}: checkpoint {saved.get(name)!r}, this run {current.get(name)!r}"
        for name in ARCHITECTURE_FIELDS
        if name in saved and _normalised(saved.get(name)) != _normalised(current.get(name))
    ]
    saved_labels = saved.get("id2label")
    if isinstance(saved_labels, dict) and len(saved_labels) != config.num_labels:
        differing.append(f"num_labels: checkpoint {len(saved_labels)}, this run {config.num_labels}")
    if differing:
        raise ValueError(
            f"{checkpoint} holds a model that differs from this run's ({'; '.join(differing)}). Resuming would train "
            "the old model under the new settings. Use another --output_dir to start afresh, delete the checkpoint "
            "folders, or repeat the original run's arguments."
        )


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_training_arguments(args: Any) -> None:
    """Refuse `TrainingArguments` values that Trainer would silently ignore or reinterpret.

    Raises:
        ValueError: a `max_steps` below -1 (-1 means "use the epochs"), or a non-positive `num_train_epochs` when
            no `max_steps` is given, or a non-positive batch size, learning rate or save / eval / logging interval.
    """
    if args.max_steps < -1:
        raise ValueError(f"--max_steps must be -1 (use --num_train_epochs) or a positive count, got {args.max_steps}.")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ValueError(f"--num_train_epochs must be positive, got {args.num_train_epochs}; or give --max_steps.")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning_rate must be positive, got {args.learning_rate}.")
    for name in ("save_steps", "eval_steps", "logging_steps"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}.")


DATA_SOURCE_FLAGS = ("--train_dir", "--scene_paths", "--dataset_name", "--benv2_lmdb")
"""The flags of `SpectralDataArguments` that name a data source; a script given none of them runs its sample run."""


def gives_flag(argv: Sequence[str], flags: Iterable[str]) -> bool:
    """Whether the command line `argv` sets one of `flags` (each "--name"), as `--name value` or `--name=value`."""
    flags = set(flags)
    return any(arg.split("=")[0] in flags for arg in argv)


def parse_script_arguments(parser: Any, argv: Sequence[str], defaults: Sequence[str] = ()) -> tuple:
    """A script's dataclasses from one JSON file (`script.py args.json`) or from `defaults` then `argv` (the
    user's flags win). Either way the caller runs its own checks and `prepare_training_arguments` afterwards.

    Args:
        parser: An `HfArgumentParser` of the script's dataclasses.
        argv: The command line without the program name.
        defaults: Flags put before `argv` (a sample run's settings, a default `--output_dir`); not used with JSON.
    """
    if len(argv) == 1 and argv[0].endswith(".json"):
        return tuple(parser.parse_json_file(os.path.abspath(argv[0])))
    return tuple(parser.parse_args_into_dataclasses(args=[*defaults, *argv]))


def prepare_training_arguments(training_args: Any) -> None:
    """Check `TrainingArguments` (see `check_training_arguments`), then set what every S2MAE script needs: the
    collators need columns the model's signature does not name (pixel_mask), every parameter takes part in each step
    (no search for unused ones under DDP), and memory is pinned only where there is a GPU to copy to.

    Raises:
        ValueError: as `check_training_arguments`.
    """
    check_training_arguments(training_args)
    if training_args.load_best_model_at_end and training_args.save_total_limit == 1:
        logger.warning(
            "--save_total_limit 1 with --load_best_model_at_end: at the end Trainer deletes the last checkpoint and "
            "keeps the best one, so a later run with this --output_dir resumes from the best step, not the last. "
            "Use --save_total_limit 2 to keep both."
        )
    training_args.remove_unused_columns = False
    training_args.ddp_find_unused_parameters = False
    training_args.dataloader_pin_memory = torch.cuda.is_available()


def check_metric_for_best_model(args: Any, metric_names: Iterable[str]) -> None:
    """Refuse, before training, a `--metric_for_best_model` that the run's evaluation does not report: Trainer finds
    out at the first evaluation (a KeyError), after `eval_steps` of training and before that step's checkpoint is
    saved, so the work is lost.

    Args:
        args: The `TrainingArguments` (after the script set `eval_strategy`).
        metric_names: The metrics the run's evaluation reports, without the "eval_" prefix ("loss" is always one).

    Raises:
        ValueError: naming the metric and the ones the run reports.
    """
    metric = args.metric_for_best_model
    if metric is None or str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "no":
        return
    names = ["loss", *metric_names]
    if metric.removeprefix("eval_") not in names:
        raise ValueError(
            f"--metric_for_best_model {metric} is not a metric this run's evaluation reports; choose one of "
            f"{names} (with or without the eval_ prefix)."
        )


def check_finite_loss(metrics: Mapping[str, Any], key: str = "eval_loss") -> None:
    """Raise when `metrics[key]` is NaN or infinite: the run diverged."""
    value = metrics.get(key)
    if value is not None and not math.isfinite(value):
        raise RuntimeError(f"{key} is {value}: the run diverged; lower --learning_rate or check the input scaling.")


def end_run() -> None:
    """Let every process finish, then close the process group: a gloo group left open at interpreter exit can abort
    a rank ("terminate called without an active exception") after the run itself succeeded."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def train_and_evaluate(trainer: Trainer, resume: str | None) -> dict[str, Any]:
    """Train (resuming from `resume` when given), then evaluate when the trainer has an evaluation set.

    Returns:
        Trainer's training metrics, `train_steps`, and the `eval_*` metrics.

    Raises:
        RuntimeError: the evaluation loss is not finite (the run diverged).
    """
    metrics: dict[str, Any] = dict(trainer.train(resume_from_checkpoint=resume).metrics)
    metrics["train_steps"] = trainer.state.global_step
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
        check_finite_loss(metrics)
    return metrics


def save_fine_tuned(
    trainer: Trainer,
    processor: S2MAEImageProcessor,
    metrics: Mapping[str, Any],
    *,
    task: str,
    card_metrics: Sequence[str],
    data: str,
    script: str,
    details: Sequence[str] = (),
    notes: str | None = None,
    start_from: str | None = None,
    base_model: str | None = None,
    datasets: str | None = None,
) -> Path | None:
    """Save a fine-tuned model (every process), then on the main process `metrics.json` and the model card.

    Args:
        trainer: The trainer that ran; the model goes to `trainer.args.output_dir`.
        processor: The run's image processor, described in the model card.
        metrics: All of the run's metrics (`train_and_evaluate`'s, plus the script's own), written as they are.
        task: The model card's task ("image-classification", "semantic-segmentation", "change-detection").
        card_metrics: Names of the `eval_{name}` metrics the model card reports, when present and not None.
        data, script, details, notes, start_from: The training summary (see `model_card.training_summary`).
        base_model, datasets: Hub ids for the model card's metadata (None: left out).

    Returns:
        The output folder on the main process, None on the others.
    """
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return None
    output_dir = Path(trainer.args.output_dir)
    write_text_safely(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    reported = {name: metrics[f"eval_{name}"] for name in card_metrics if metrics.get(f"eval_{name}") is not None}
    summary = training_summary(
        trainer.args, task=task, data=data, steps=metrics.get("train_steps"), script=script, start_from=start_from,
        details=details, notes=notes,
    )  # fmt: skip
    write_model_card(
        output_dir, trainer.model.config, processor, model_name=output_dir.name, base_model=base_model,
        datasets=datasets, training_summary=summary, task=task, metrics=reported or None,
    )  # fmt: skip
    return output_dir


class SkippedSamplesCallback(TrainerCallback):
    """Adds the counts of samples and crops that nodata-robust sampling skipped to every log line."""

    def __init__(self, *transforms: Any) -> None:
        self.transforms = [transform for transform in transforms if transform is not None]

    def counts(self) -> dict[str, int]:
        total = {"skipped_samples": 0, "redrawn_crops": 0}
        for transform in self.transforms:
            for key, value in transform.skipped.as_dict().items():
                total[key] += value
        return total

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if logs is not None and "loss" in logs:
            logs.update(self.counts())


def label_settings(class_names: list[str], problem_type: str) -> dict[str, Any]:
    """The config fields that describe a dataset's labels (num_labels, id2label, label2id, problem_type)."""
    return {
        "num_labels": len(class_names),
        "id2label": dict(enumerate(class_names)),
        "label2id": {name: index for index, name in enumerate(class_names)},
        "problem_type": problem_type,
    }


def check_checkpoint_labels(config: S2MAEConfig, class_names: list[str], problem_type: str, source: str) -> None:
    """Raise when a classifier checkpoint was trained for other classes than the dataset's.

    Raises:
        ValueError: naming the differing problem type, class count or class names, and the way out.
    """
    theirs = [config.id2label[i] for i in sorted(config.id2label)]
    hint = "Pass --reset_classifier to train a new head for the dataset's classes instead."
    if config.problem_type is not None and config.problem_type != problem_type:
        raise ValueError(f"{source} is a {config.problem_type} model but the dataset is {problem_type}. {hint}")
    if len(theirs) != len(class_names):
        raise ValueError(
            f"{source} classifies {len(theirs)} classes {theirs} but the dataset has {len(class_names)} "
            f"classes {class_names}. {hint}"
        )
    if theirs != list(class_names):
        differing = [(i, a, b) for i, (a, b) in enumerate(zip(theirs, class_names)) if a != b]
        raise ValueError(
            f"The class names of {source} differ from the dataset's (index, checkpoint, dataset): {differing}. "
            f"Label i must mean the same class in both. {hint}"
        )


def record_run_settings(output_dir: str | os.PathLike[str], settings: Mapping[str, Any], resuming: bool) -> None:
    """Refuse to resume a run whose `settings` (e.g. optimizer layout) differ; record this run's for the next one.

    Raises:
        ValueError: naming the settings that differ from the run being resumed.
    """
    path = Path(output_dir) / "run_settings.json"
    if resuming and path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [key for key in settings if previous.get(key) != settings[key]]
        if changed:
            raise ValueError(
                f"{output_dir} holds a checkpoint of a run with "
                + ", ".join(f"--{key} {previous.get(key)}" for key in changed)
                + "; resume with the same settings or choose another --output_dir."
            )
    write_text_safely(path, json.dumps(dict(settings), indent=2))


def new_or_pretrained(
    model_class: type,
    model_name_or_path: str | None,
    *,
    preset: str = "sample",
    config_overrides: str | None = None,
    image_size: int | None = None,
    **settings: Any,
) -> torch.nn.Module:
    """A task model: new from a preset, or carrying the encoder of any S2MAE checkpoint, with task `settings`
    written into its config, at `image_size` (position tables interpolated for a checkpoint of another size)."""
    if model_name_or_path is None:
        config = build_config(preset, config_overrides, image_size=image_size)
        config.update(settings)
        return model_class(config)
    model = model_class.from_pretrained(check_model_name_or_path(model_name_or_path), **settings)
    if image_size is not None and model.config.image_size != image_size:
        model.resize_position_embeddings(image_size=image_size)
    return model


@dataclass
class DenseModelArguments:
    """The model arguments the per-pixel scripts share (`examples/run_segmentation.py`, `run_change_detection.py`):
    where the encoder comes from and how the UPerNet decoder is built. Read by `load_dense_model`."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "An S2MAE checkpoint (folder or Hub id)."})
    preset: str = field(default="sample", metadata={"help": "Size of a new model: vit-s/b/l/h or sample."})
    config_overrides: str | None = field(default=None, metadata={"help": "Other fields of a new model's config."})
    out_indices: list[int] | None = field(default=None, metadata={"help": "Encoder stages fed to the decoder."})
    decode_channels: int = field(default=256, metadata={"help": "Width of the UPerNet decoder."})
    class_weights: list[float] | None = field(default=None, metadata={"help": "Loss weight of each class."})


def load_dense_model(
    model_class: type, model_args: DenseModelArguments, image_size: int, **settings: Any
) -> torch.nn.Module:
    """A per-pixel model (`S2MAEForSemanticSegmentation`, `S2MAEForChangeDetection`): new, or with the encoder of
    `model_args.model_name_or_path` (see `new_or_pretrained`), its decoder as `model_args` say.

    Args:
        model_class: The per-pixel model class.
        model_args: Checkpoint or preset, decoder width, class weights and (when given) the encoder stages.
        image_size: The input size in pixels.
        **settings: The task's other per-pixel settings (see `modeling_s2mae_dense.DENSE_DEFAULTS`).
    """
    settings.update(decode_channels=model_args.decode_channels, class_weights=model_args.class_weights)
    if model_args.out_indices:
        settings["out_indices"] = model_args.out_indices
    return new_or_pretrained(
        model_class, model_args.model_name_or_path, preset=model_args.preset,
        config_overrides=model_args.config_overrides, image_size=image_size, **settings,
    )  # fmt: skip


def start_run(training_args: Any) -> None:
    """What every training script does first: log to stdout (INFO on the main process), quiet Transformers' own
    warnings-level chatter, and seed every generator from `training_args.seed`."""
    import sys

    import transformers
    from transformers import set_seed

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)


__all__ = [
    "ARCHITECTURE_FIELDS",
    "DATA_SOURCE_FLAGS",
    "SAMPLE_PRESET",
    "DenseModelArguments",
    "S2MAETrainer",
    "SkippedSamplesCallback",
    "build_config",
    "check_checkpoint_labels",
    "check_finite_loss",
    "check_metric_for_best_model",
    "check_model_name_or_path",
    "check_training_arguments",
    "end_run",
    "check_resume_compatible",
    "find_resume_checkpoint",
    "freeze_encoder",
    "gives_flag",
    "parse_script_arguments",
    "load_dense_model",
    "load_image_processor",
    "saved_processor_settings",
    "start_run",
    "train_and_evaluate",
    "write_text_safely",
    "label_settings",
    "new_or_pretrained",
    "optimizer_param_groups",
    "prepare_training_arguments",
    "record_run_settings",
    "save_fine_tuned",
]

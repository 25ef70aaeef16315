"""Export an S2MAE checkpoint to ONNX, with its config and image processor, checked against PyTorch.

Writes to `--output_dir`: `model.onnx` (dynamic batch; weights over 1.8 GB in `model.onnx.data`), `config.json`,
`preprocessor_config.json` (the checkpoint's image processor, or a default `S2MAEImageProcessor` for the config's
bands when it has none) and `export_report.json` (inputs, outputs, largest difference from PyTorch per output,
whether H and W are dynamic and their range, the image sizes checked).
The export fails when ONNX Runtime differs from PyTorch by more than `--atol` (1e-4) on a fresh batch.

With `--dynamic_hw` (tasks encoder and classification) the graph also takes any height and width that are
multiples of the patch size, up to `--max_image_size` (default 8 x the config's image size): it interpolates the
position tables as the PyTorch model does with `interpolate_pos_encoding=True`. The check then runs at the
config's image size and at one two patches larger. The written image processor still resizes to the config's
size: pass another one when calling it (`processor(tile, size=...)`, square) to feed another size.

Run the file with ONNX Runtime (CPU):

    from transformers import AutoImageProcessor
    from modeling_s2mae.export import S2MAEOnnxModel
    model = S2MAEOnnxModel.from_pretrained("exported")
    processor = AutoImageProcessor.from_pretrained("exported")
    features = model(**processor(tile, input_band_names=..., return_tensors="np")).pooler_output

Examples:
    python examples/export_onnx.py --model_name_or_path outputs/s2mae-sample --output_dir exported --task encoder
    python examples/export_onnx.py --model_name_or_path ckpt --task classification --output_dir exported-cls
    python examples/export_onnx.py --model_name_or_path ckpt --task encoder --output_dir exported-any --dynamic_hw
"""

import json
import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import AutoImageProcessor, HfArgumentParser

import modeling_s2mae  # noqa: F401  (registers the S2MAE classes with the Auto classes)
from modeling_s2mae.configuration_s2mae import S2MAEConfig
from modeling_s2mae.export import ONNX_FILE_NAME, OnnxExportReport, export_onnx
from modeling_s2mae.image_processing_s2mae import S2MAEImageProcessor
from modeling_s2mae.modeling_s2mae import S2MAEForImageClassification, S2MAEForPreTraining, S2MAEModel
from modeling_s2mae.training import check_model_name_or_path

logger = logging.getLogger("export_onnx")

TASKS = {"encoder": S2MAEModel, "classification": S2MAEForImageClassification, "pretraining": S2MAEForPreTraining}


@dataclass
class ExportArguments:
    model_name_or_path: str = field(metadata={"help": "Checkpoint folder (or Hub id) of any S2MAE model class."})
    output_dir: str = field(metadata={"help": "Folder for model.onnx, config.json and preprocessor_config.json."})
    task: str = field(
        default="encoder",
        metadata={"help": "encoder (features), classification (logits) or pretraining (loss and reconstruction)."},
    )
    pixel_mask: bool = field(default=True, metadata={"help": "Give the graph a pixel_mask input (nodata pixels)."})
    opset_version: int | None = field(default=None, metadata={"help": "ONNX opset (default: the exporter's)."})
    atol: float = field(default=1e-4, metadata={"help": "Largest difference from PyTorch allowed in any output."})
    dynamic_hw: bool = field(
        default=False,
        metadata={
            "help": "Make height and width dynamic (multiples of the patch size; encoder and classification only). "
            "Recorded in export_report.json and in the ONNX file's metadata."
        },
    )
    max_image_size: int | None = field(
        default=None,
        metadata={"help": "Largest height or width in pixels with --dynamic_hw (default 8 x the config's size)."},
    )


def check_arguments(args: ExportArguments) -> None:
    """Refuse contradictory flags and unusable paths before the (slow) load and export.

    Raises:
        ValueError: an unknown task, `--dynamic_hw` with pretraining, `--max_image_size` without `--dynamic_hw`, an
            `--atol` that is not a positive number (a NaN would let every difference pass), a checkpoint folder that
            does not exist, an `--output_dir` that is a file or the checkpoint folder itself.
    """
    if args.task not in TASKS:
        raise ValueError(f"--task must be one of {sorted(TASKS)}, got {args.task!r}.")
    if args.dynamic_hw and args.task == "pretraining":
        raise ValueError(
            "--dynamic_hw applies to --task encoder and classification: the pretraining graph's masking noise fixes "
            "its grid. Leave --dynamic_hw out, or export another task."
        )
    if args.max_image_size is not None and not args.dynamic_hw:
        raise ValueError("--max_image_size sets the range of --dynamic_hw: pass --dynamic_hw too, or leave it out.")
    if not (math.isfinite(args.atol) and args.atol > 0):
        raise ValueError(f"--atol must be a positive number, got {args.atol}.")
    check_model_name_or_path(args.model_name_or_path)
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {args.output_dir} is a file: give a folder to write model.onnx into.")
    source = Path(args.model_name_or_path)
    if source.is_dir() and output_dir.is_dir() and source.resolve() == output_dir.resolve():
        raise ValueError(
            f"--output_dir is the checkpoint folder {args.model_name_or_path}: the export would replace its "
            "config.json and preprocessor_config.json. Write the export to another folder."
        )


def export_checkpoint(args: ExportArguments) -> OnnxExportReport:
    """Load the checkpoint as the model class of `args.task`, export it and write the processor and config."""
    check_arguments(args)
    model_class = TASKS[args.task]
    kwargs = {"add_pooling_layer": True} if model_class is S2MAEModel else {}
    model = model_class.from_pretrained(args.model_name_or_path, attn_implementation="sdpa", **kwargs).float()
    output_dir = Path(args.output_dir)
    report = export_onnx(
        model,
        output_dir / ONNX_FILE_NAME,
        pixel_mask=args.pixel_mask,
        opset_version=args.opset_version,
        atol=args.atol,
        dynamic_hw=args.dynamic_hw,
        max_image_size=args.max_image_size,
    )
    model.config.save_pretrained(output_dir)
    try:
        processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)
    except OSError:  # a checkpoint saved without its processor: the defaults for the model's bands and size
        config: S2MAEConfig = model.config
        logger.warning("No image processor in %s: writing a default one.", args.model_name_or_path)
        processor = S2MAEImageProcessor(band_names=list(config.band_names), size=config.image_size)
    processor.save_pretrained(output_dir)
    (output_dir / "export_report.json").write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    logger.info(
        "Wrote %s (inputs %s, outputs %s, H and W %s); largest difference from PyTorch %s at sizes %s",
        report.path,
        report.input_names,
        report.output_names,
        f"dynamic in {report.image_size_range}" if report.dynamic_hw else "fixed",
        report.max_abs_diff,
        report.check_image_sizes,
    )
    return report


def main(argv: list[str] | None = None) -> OnnxExportReport:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = HfArgumentParser(ExportArguments)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return export_checkpoint(args)


if __name__ == "__main__":
    main(sys.argv[1:])

"""examples/run_classification.py and the library pieces it wires: single- and multi-label runs, mAP, linear probe,
layer decay, bad input.

The script runs in-process through its `main(argv)` with a tiny model (width 32, 2 layers, 32 px) for 1-2 steps.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import rasterio
import torch
from safetensors.torch import load_file

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification, S2MAEImageProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from model_tester import TINY_ENCODER, save_tiny_pretraining_checkpoint  # noqa: E402
from run_classification import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


TINY_MODEL = TINY_ENCODER
TINY_RUN = [
    "--image_size", "32",
    "--config_overrides", ",".join(f"{key}={value}" for key, value in TINY_MODEL.items()),
    "--max_steps", "2",
    "--per_device_train_batch_size", "2",
    "--per_device_eval_batch_size", "4",
    "--learning_rate", "1e-3",
    "--save_strategy", "no",
    "--logging_steps", "1",
    "--report_to", "none",
    "--dataloader_num_workers", "0",
    "--disable_tqdm", "true",
    "--dataloader_pin_memory", "false",
]  # fmt: skip


def run(*args: str | Path) -> dict:
    return main([str(arg) for arg in (*TINY_RUN, *args)])


@pytest.fixture
def eurosat_copy(sample_data: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample EuroSAT-MS folder (2 classes x 3 tiles)."""
    return Path(shutil.copytree(sample_data / "eurosat_ms", tmp_path / "eurosat"))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pretraining checkpoint (encoder + decoder) with its processor, as run_pretrain.py saves one."""
    return save_tiny_pretraining_checkpoint(tmp_path_factory.mktemp("pretrained"))


def classifier_checkpoint(path: Path, class_names: list[str]) -> Path:
    config = S2MAEConfig(
        **TINY_MODEL, image_size=32, id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)}, problem_type="single_label_classification",
    )  # fmt: skip
    S2MAEForImageClassification(config).save_pretrained(path)
    return path


def test_layer_decay_run_resumes_with_the_same_group_learning_rates(tmp_path: Path, sample_data: Path) -> None:
    common = [
        "--train_dir", sample_data / "eurosat_ms", "--output_dir", tmp_path,
        "--lr_scheduler_type", "constant", "--save_strategy", "steps", "--save_steps", "2",
    ]  # fmt: skip
    args = [*common, "--layer_decay", "0.5"]
    run(*args)
    metrics = run(*args, "--max_steps", "3")  # resumes from checkpoint-2
    assert metrics["train_steps"] == 3
    groups = torch.load(tmp_path / "checkpoint-3" / "optimizer.pt", weights_only=True)["param_groups"]
    lrs = sorted({round(group["lr"] / 1e-3, 6) for group in groups})
    assert lrs == pytest.approx([0.5**3, 0.5**2, 0.5, 1.0])  # embeddings, block 0, block 1, head
    assert all(group["lr"] == pytest.approx(group["initial_lr"]) for group in groups)
    with pytest.raises(ValueError, match="--layer_decay 0.5"):
        run(*common, "--max_steps", "4")  # the same folder without --layer_decay: refused


# --- runs --------------------------------------------------------------------------------------------------------------


def test_single_label_run_writes_metrics_and_card(tmp_path: Path, sample_data: Path) -> None:
    metrics = run("--train_dir", sample_data / "eurosat_ms", "--output_dir", tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= saved["eval_accuracy"] <= 1.0 and saved == pytest.approx(metrics)
    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "| accuracy |" in card
    assert "2 classes" in card and "4 training / 2 evaluation samples" in card
    model = S2MAEForImageClassification.from_pretrained(tmp_path)
    assert model.config.id2label == {0: "AnnualCrop", 1: "Forest"}
    assert model.config.problem_type == "single_label_classification"
    assert S2MAEImageProcessor.from_pretrained(tmp_path).size == 32


def test_multi_label_run_writes_micro_and_macro_map(tmp_path: Path, sample_data: Path) -> None:
    run("--train_dir", sample_data / "bigearthnet", "--output_dir", tmp_path, "--max_steps", "1")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= saved["eval_micro_map"] <= 1.0 and 0.0 <= saved["eval_macro_map"] <= 1.0
    assert len(saved["eval_per_class_ap"]) == 19
    # one evaluation patch holds 4 or 5 of the 19 classes: the others are left out of the macro mean and named
    assert saved["eval_macro_map_num_classes"] + len(saved["eval_classes_without_positives"]) == 19
    card = (tmp_path / "README.md").read_text()
    assert "| micro_map |" in card and "| macro_map |" in card and "leaves out" in card
    assert S2MAEConfig.from_pretrained(tmp_path).problem_type == "multi_label_classification"


def test_linear_probe_leaves_the_encoder_unchanged(tmp_path: Path, sample_data: Path, pretrained: Path) -> None:
    run(
        "--train_dir", sample_data / "eurosat_ms", "--output_dir", tmp_path, "--model_name_or_path", pretrained,
        "--linear_probe", "--learning_rate", "0.1",
    )  # fmt: skip
    before, after = load_file(pretrained / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    encoder = [name for name in after if name.startswith("s2mae.") and not name.startswith("s2mae.pooler.")]
    assert encoder and all(torch.equal(after[name], before[name]) for name in encoder)
    assert not torch.equal(after["s2mae.pooler.layernorm.weight"], torch.ones(32))  # the head trained
    assert after["classifier.weight"].shape == (2, 32)


def test_checkpoint_at_another_image_size_is_resized(tmp_path: Path, sample_data: Path, pretrained: Path) -> None:
    run(
        "--train_dir", sample_data / "eurosat_ms", "--output_dir", tmp_path, "--model_name_or_path", pretrained,
        "--image_size", "48", "--max_steps", "1",
    )  # fmt: skip
    assert S2MAEConfig.from_pretrained(tmp_path).image_size == 48
    assert S2MAEImageProcessor.from_pretrained(tmp_path).size == 48


def test_hub_format_dataset(tmp_path: Path, sample_data: Path) -> None:
    from modeling_s2mae.data import eurosat_folder, hub_format

    found = eurosat_folder(sample_data / "eurosat_ms")
    splits = {"train": [found[i] for i in (0, 1, 3, 4)], "validation": [found[i] for i in (2, 5)]}
    hub_format.write_hub_dataset(splits, tmp_path / "hub", label_names=found.classes)
    run("--dataset_name", tmp_path / "hub", "--output_dir", tmp_path / "out", "--max_steps", "1")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0.0 <= saved["eval_accuracy"] <= 1.0


# --- bad input ---------------------------------------------------------------------------------------------------------


def fails(match: str, *args: str | Path) -> None:
    with pytest.raises(ValueError, match=match):
        run(*args)


def test_empty_folder(tmp_path: Path) -> None:
    fails("holds no raster file", "--train_dir", tmp_path, "--output_dir", tmp_path / "out")
    (tmp_path / "Forest").mkdir()
    fails("holds no raster file", "--train_dir", tmp_path, "--output_dir", tmp_path / "out")
    fails("no such folder", "--train_dir", tmp_path / "missing", "--output_dir", tmp_path / "out")


def test_file_that_is_not_a_raster(eurosat_copy: Path) -> None:
    (eurosat_copy / "Forest" / "Forest_9.tif").write_text("not a GeoTIFF")
    fails(
        "Forest_9.tif could not be opened as a raster", "--train_dir", eurosat_copy, "--output_dir", eurosat_copy / "o"
    )


def test_truncated_geotiff(eurosat_copy: Path) -> None:
    path = eurosat_copy / "AnnualCrop" / "AnnualCrop_2.tif"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    fails("AnnualCrop_2.tif.*truncated or corrupt", "--train_dir", eurosat_copy, "--output_dir", eurosat_copy / "o")


def test_tile_with_fewer_bands(eurosat_copy: Path) -> None:
    source = eurosat_copy / "Forest" / "Forest_1.tif"
    with rasterio.open(source) as dataset:
        profile, data = dataset.profile, dataset.read([2, 3, 4])
    with rasterio.open(eurosat_copy / "Forest" / "rgb.tif", "w", **{**profile, "count": 3}) as dataset:
        dataset.write(data)
    fails(
        r"rgb.tif has 3 bands but .* gives 13 names",
        "--train_dir",
        eurosat_copy,
        "--output_dir",
        eurosat_copy / "o",
    )
    # 13 names given, but not the model's B12: named in the error before any training
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "X12", "B8A"]
    (eurosat_copy / "Forest" / "rgb.tif").unlink()
    fails(
        r"lack \['B12'\]",
        "--train_dir",
        eurosat_copy,
        "--output_dir",
        eurosat_copy / "o",
        "--input_band_names",
        *names,
    )


def test_bad_bigearthnet_patch(sample_data: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(sample_data / "bigearthnet", tmp_path / "ben"))
    patch = next(path for path in sorted(root.iterdir()) if path.is_dir())
    next(patch.glob("*_B11.tif")).unlink()
    fails(r"no GeoTIFF for band\(s\) \['B11'\]", "--train_dir", root, "--output_dir", tmp_path / "o")


def test_checkpoint_classes_must_match_the_dataset(tmp_path: Path, sample_data: Path) -> None:
    eurosat10 = [
        "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
        "Residential", "River", "SeaLake",
    ]  # fmt: skip
    data = ["--train_dir", sample_data / "eurosat_ms", "--output_dir", tmp_path / "o"]
    ten = classifier_checkpoint(tmp_path / "ten", eurosat10)
    fails("classifies 10 classes .* but the dataset has 2 classes", "--model_name_or_path", ten, *data)
    renamed = classifier_checkpoint(tmp_path / "renamed", ["AnnualCrop", "SeaLake"])
    fails(r"class names .* differ .*\(1, 'SeaLake', 'Forest'\)", "--model_name_or_path", renamed, *data)
    fails("is a single_label_classification model but the dataset is multi_label", "--model_name_or_path", renamed,
          "--train_dir", sample_data / "bigearthnet", "--output_dir", tmp_path / "o")  # fmt: skip


def test_validation_folder_with_other_classes(eurosat_copy: Path, sample_data: Path) -> None:
    shutil.move(eurosat_copy / "Forest", eurosat_copy / "Forests")
    fails("classes of --validation_dir", "--train_dir", sample_data / "eurosat_ms", "--validation_dir", eurosat_copy,
          "--output_dir", eurosat_copy / "o")  # fmt: skip


def test_skip_bad_files_prints_the_count(eurosat_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (eurosat_copy / "Forest" / "Forest_9.tif").write_bytes(b"\x00" * 100)
    path = eurosat_copy / "AnnualCrop" / "AnnualCrop_1.tif"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)
    run("--train_dir", eurosat_copy, "--output_dir", eurosat_copy / "o", "--skip_bad_files", "--max_steps", "1")
    assert "Skipped 2 bad file(s) (--skip_bad_files)" in capsys.readouterr().out
    assert json.loads((eurosat_copy / "o" / "metrics.json").read_text())["train_steps"] == 1


def test_command_line_errors_name_the_conflict(sample_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        main(["--train_dir", str(sample_data / "eurosat_ms"), "--dataset_name", str(tmp_path)])
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        main(["--train_dir", str(sample_data / "eurosat_ms"), "--validation_fraction", "1.5"])
    with pytest.raises(ValueError, match="layer_decay must be in"):
        main(["--train_dir", str(sample_data / "eurosat_ms"), "--layer_decay", "0"])

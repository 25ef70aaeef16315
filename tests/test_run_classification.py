"""examples/run_classification.py: single- and multi-label runs, mAP, linear probe, layer decay, bad input.

The script runs in-process through its `main(argv)` with a tiny model (width 32, 2 layers, 32 px) for 1-2 steps.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safetensors.torch import load_file
from transformers import EvalPrediction

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification, S2MAEForPreTraining, S2MAEImageProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import run_classification  # noqa: E402
from run_classification import (  # noqa: E402
    DataError,
    MultiLabelMetrics,
    average_precision,
    main,
    multilabel_average_precision,
    optimizer_param_groups,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny models run faster on one thread, and much faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_MODEL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
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
    path = tmp_path_factory.mktemp("pretrained")
    config = S2MAEConfig(
        **TINY_MODEL, image_size=32, decoder_hidden_size=32, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=64,
    )  # fmt: skip
    torch.manual_seed(0)
    S2MAEForPreTraining(config).save_pretrained(path)
    S2MAEImageProcessor.from_model_config(config).save_pretrained(path)
    return path


def classifier_checkpoint(path: Path, class_names: list[str]) -> Path:
    config = S2MAEConfig(
        **TINY_MODEL, image_size=32, id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)}, problem_type="single_label_classification",
    )  # fmt: skip
    S2MAEForImageClassification(config).save_pretrained(path)
    return path


# --- metrics -----------------------------------------------------------------------------------------------------------


def test_average_precision_hand_computed() -> None:
    # ranked: +, -, +, -  -> precision at the positives 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    # a positive tied with a negative: its precision is taken over both (1/2), whatever their order
    for scores in ([0.5, 0.5, 0.1], [0.5, 0.5, 0.1][::-1]):
        targets = [1, 0, 1] if scores[0] == 0.5 else [1, 0, 1][::-1]
        assert average_precision(np.array(scores), np.array(targets)) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert np.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_multilabel_map_hand_computed_and_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.2, 0.5], [0.8, 0.7, 0.1], [0.3, 0.6, 0.4], [0.1, 0.4, 0.3]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    micro, macro, per_class = multilabel_average_precision(scores, targets)
    # class 0 ranks 0.9(+) 0.8(-) 0.3(+) 0.1(-): (1 + 2/3) / 2; class 1 ranks 0.7(+) 0.6(-) 0.4(+) 0.2(-): same
    assert per_class[:2] == pytest.approx([5 / 6, 5 / 6])
    assert np.isnan(per_class[2])  # no positive: left out of the macro mean
    assert macro == pytest.approx(5 / 6)
    # micro: the 12 scores ranked together; positives at 0.9 (rank 1), 0.7 (rank 3), 0.4 (ranks 6-7, tied with a
    # negative 0.4), 0.3 (ranks 8-9, tied with a negative 0.3)
    assert micro == pytest.approx((1 / 1 + 2 / 3 + 3 / 7 + 4 / 9) / 4)

    metrics = MultiLabelMetrics(["a", "b", "c"])
    values = metrics(EvalPrediction(predictions=scores, label_ids=targets))
    assert values == pytest.approx({"micro_map": micro, "macro_map": macro, "macro_map_num_classes": 2})
    assert metrics.classes_without_positives == ["c"]


def test_map_over_the_whole_set_differs_from_the_mean_over_batches() -> None:
    scores, targets = np.array([[0.9], [0.1], [0.8], [0.2]]), np.array([[1], [0], [0], [1]])
    per_batch = [multilabel_average_precision(scores[i : i + 2], targets[i : i + 2])[1] for i in (0, 2)]
    assert per_batch == pytest.approx([1.0, 0.5])  # mean 0.75
    whole = multilabel_average_precision(scores, targets)[1]
    assert whole == pytest.approx((1 + 2 / 3) / 2)  # 0.8333: ranked 0.9(+) 0.8(-) 0.2(+) 0.1(-)
    metrics = MultiLabelMetrics(["a"])
    assert metrics(EvalPrediction(predictions=scores, label_ids=targets))["macro_map"] == pytest.approx(whole)


# --- optimizer ---------------------------------------------------------------------------------------------------------


def test_layer_decay_param_groups() -> None:
    model = S2MAEForImageClassification(S2MAEConfig(**TINY_MODEL, image_size=32))
    groups = optimizer_param_groups(model, weight_decay=0.05, layer_decay=0.75)
    scale, decay = {}, {}
    for group in groups:
        for name in group["param_names"]:
            scale[name], decay[name] = group["lr_scale"], group["weight_decay"]
    assert set(scale) == {name for name, _ in model.named_parameters()}
    assert scale["s2mae.embeddings.cube_embeddings.projection.weight"] == pytest.approx(0.75**3)
    assert scale["s2mae.embeddings.position_embeddings.spatial"] == pytest.approx(0.75**3)
    assert scale["s2mae.encoder.layers.0.mlp.fc1.weight"] == pytest.approx(0.75**2)
    assert scale["s2mae.encoder.layers.1.attention.q_proj.bias"] == pytest.approx(0.75)
    for name in ("s2mae.layernorm.weight", "s2mae.pooler.layernorm.bias", "classifier.weight"):
        assert scale[name] == 1.0
    assert decay["s2mae.encoder.layers.0.mlp.fc1.weight"] == decay["classifier.weight"] == 0.05
    assert decay["s2mae.embeddings.position_embeddings.spatial"] == 0.0
    assert decay["s2mae.encoder.layers.0.mlp.fc1.bias"] == decay["s2mae.layernorm.weight"] == 0.0
    assert all(group["lr_scale"] == 1.0 for group in optimizer_param_groups(model, 0.05, None))


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
    with pytest.raises(DataError, match="--layer_decay 0.5"):
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
    run("--bigearthnet_dir", sample_data / "bigearthnet", "--output_dir", tmp_path, "--max_steps", "1")
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
    hub_format = pytest.importorskip("modeling_s2mae.data.hub_format")
    from modeling_s2mae.data import eurosat_folder

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
    fails("no tile found", "--train_dir", tmp_path, "--output_dir", tmp_path / "out")
    (tmp_path / "Forest").mkdir()
    fails("no tile found", "--train_dir", tmp_path, "--output_dir", tmp_path / "out")
    fails("not a folder", "--train_dir", tmp_path / "missing", "--output_dir", tmp_path / "out")


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
        r"band_names has 13 names but the source holds 3 bands \(rgb.tif",
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
    fails(r"no GeoTIFF for band\(s\) \['B11'\]", "--bigearthnet_dir", root, "--output_dir", tmp_path / "o")


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
          "--bigearthnet_dir", sample_data / "bigearthnet", "--output_dir", tmp_path / "o")  # fmt: skip


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


def test_command_line_errors_are_one_line(sample_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="exactly one of"):
        main(["--train_dir", str(sample_data / "eurosat_ms"), "--bigearthnet_dir", str(tmp_path)])
    assert issubclass(run_classification.DataError, ValueError)

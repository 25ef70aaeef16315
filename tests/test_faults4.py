"""Faults after the pixels are read: model inputs, labels, checkpoints, ONNX inputs, resumption and script arguments.

Each test reproduces a problem that was a crash with an unhelpful message, a silent wrong answer or a late failure,
and checks the clear error (or the correct behaviour) that replaced it.
"""

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_tester import tiny_config
from safetensors.torch import load_file, save_file

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification, S2MAEForPreTraining, S2MAEModel
from modeling_s2mae.training import check_resume_compatible, find_resume_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "examples"))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder() -> S2MAEModel:
    torch.manual_seed(0)
    return S2MAEModel(tiny_config()).eval()


@pytest.fixture(scope="module")
def pretraining_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints") / "pretraining"
    torch.manual_seed(0)
    S2MAEForPreTraining(tiny_config()).save_pretrained(folder)
    return folder


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# --- pixel values and masks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 6, 0, 0), (2, 0, 16, 16)])
def test_inputs_without_pixels_are_refused_by_name(encoder: S2MAEModel, shape: tuple[int, ...]) -> None:
    # was: RuntimeError "aminmax(): cannot compute aminmax over an empty dimension"
    with pytest.raises(ValueError, match="holds no pixel"):
        encoder(torch.rand(shape), interpolate_pos_encoding=True)


def test_values_that_overflow_the_models_dtype_are_refused(encoder: S2MAEModel) -> None:
    # was: "pixel_values holds 0 non-finite values (NaN or inf) in images []" (finite in float64, inf in float32)
    with pytest.raises(ValueError, match=r"beyond the largest torch.float32 number"):
        encoder(torch.rand(1, 6, 16, 16, dtype=torch.float64) * 1e39)
    half = S2MAEModel(tiny_config()).eval().half()
    with pytest.raises(ValueError, match=r"beyond the largest torch.float16 number"):  # was: NaN features
        half(torch.rand(1, 6, 16, 16) * 1e5)
    assert torch.isfinite(half(torch.rand(1, 6, 16, 16)).pooler_output).all()


@pytest.mark.parametrize("value", [-1.0, 2.0, float("nan")])
@pytest.mark.parametrize("model_class", [S2MAEModel, S2MAEForPreTraining])
def test_pixel_mask_values_outside_0_1_are_refused(model_class: type, value: float) -> None:
    # was: a NaN mask gave NaN features; -1 everywhere pooled like a mask of ones; the pretraining loss said
    # "No hidden cube has a valid pixel" for -1 and NaN
    model = model_class(tiny_config()).eval()
    pixel_mask = torch.ones(2, 16, 16)
    pixel_mask[1, :4] = value
    with pytest.raises(ValueError, match=r"pixel_mask must hold 1 for valid pixels and 0 for invalid ones"):
        model(torch.rand(2, 6, 16, 16), pixel_mask=pixel_mask)


def test_boolean_and_fractional_masks_still_work(encoder: S2MAEModel) -> None:
    pixels = torch.rand(2, 6, 16, 16)
    reference = encoder(pixels).pooler_output
    assert torch.allclose(encoder(pixels, pixel_mask=torch.ones(2, 16, 16, dtype=torch.bool)).pooler_output, reference)
    assert torch.allclose(encoder(pixels, pixel_mask=torch.full((2, 16, 16), 0.5)).pooler_output, reference, atol=1e-6)


def test_non_finite_masking_noise_is_refused(encoder: S2MAEModel) -> None:
    # was: accepted; the hidden tokens were whatever argsort makes of NaN
    with pytest.raises(ValueError, match="noise holds NaN or inf"):
        encoder(torch.rand(2, 6, 16, 16), noise=torch.full((2, 32), float("nan")))


def test_patchify_names_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"patchify takes \(B, C, H, W\)"):  # was: "not enough values to unpack"
        S2MAEForPreTraining(tiny_config()).patchify(torch.rand(6, 16, 16))


# --- output_hidden_states ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("selection", [3, -4, [0, 99]])
def test_hidden_state_indices_out_of_range_are_refused(encoder: S2MAEModel, selection) -> None:
    # was: a tuple of None (nothing selected), silently
    with pytest.raises(ValueError, match=r"out of range: there are 3 hidden states .* indices -3..2"):
        encoder(torch.rand(1, 6, 16, 16), output_hidden_states=selection)


@pytest.mark.parametrize("selection", ["last", 1.5, [True]])
def test_hidden_state_selections_of_the_wrong_type_are_refused(encoder: S2MAEModel, selection) -> None:
    with pytest.raises(ValueError, match="output_hidden_states must be a bool, or an index"):  # was: TypeError
        encoder(torch.rand(1, 6, 16, 16), output_hidden_states=selection)


def test_hidden_state_index_zero_selects_the_embeddings(encoder: S2MAEModel) -> None:
    # was: None (Transformers' output capture read the index 0 as False)
    pixels = torch.rand(1, 6, 16, 16)
    everything = encoder(pixels, output_hidden_states=True).hidden_states
    selected = encoder(pixels, output_hidden_states=0).hidden_states
    assert selected is not None and torch.equal(selected[0], everything[0])
    assert selected[1] is None and selected[2] is None
    head = S2MAEForImageClassification(tiny_config(num_labels=2)).eval()
    assert head(pixels, output_hidden_states=0).hidden_states[0] is not None


# --- labels -------------------------------------------------------------------------------------------------------------


def classifier(num_labels: int, problem_type: str | None) -> S2MAEForImageClassification:
    torch.manual_seed(0)
    return S2MAEForImageClassification(tiny_config(num_labels=num_labels, problem_type=problem_type)).eval()


@pytest.mark.parametrize(
    ("num_labels", "labels", "message"),
    [
        (3, torch.rand(2, 1), r"needs targets of shape \(2, 3\), got \(2, 1\)"),  # was: broadcast to (2, 3)
        (3, torch.rand(2), r"needs targets of shape \(2, 3\), got \(2,\)"),
        (1, torch.rand(1), r"labels of shape \(1,\) do not match the batch of 2"),  # was: broadcast over the batch
        (1, torch.tensor([0.5, float("nan")]), "regression targets hold NaN or inf"),  # was: a NaN loss
    ],
)
def test_regression_targets_of_the_wrong_shape_or_value_are_refused(num_labels: int, labels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classifier(num_labels, "regression")(torch.rand(2, 6, 16, 16), labels=labels)


def test_regression_with_one_output_takes_b_or_b_by_1_targets() -> None:
    model, pixels, targets = classifier(1, "regression"), torch.rand(2, 6, 16, 16), torch.tensor([0.5, 0.2])
    loss = model(pixels, labels=targets).loss
    assert torch.allclose(model(pixels, labels=targets[:, None]).loss, loss)
    assert torch.allclose(loss, ((model(pixels).logits[:, 0] - targets) ** 2).mean())


@pytest.mark.parametrize("bad", [2.0, -1.0, float("nan")])
def test_multi_hot_labels_outside_0_1_are_refused(bad: float) -> None:
    # was: a loss computed against the impossible targets (or NaN)
    labels = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, bad]])
    with pytest.raises(ValueError, match=r"multi-hot labels with values in \[0, 1\]"):
        classifier(3, "multi_label_classification")(torch.rand(2, 6, 16, 16), labels=labels)


@pytest.mark.parametrize(
    ("num_labels", "labels", "message"),
    [
        (3, torch.tensor([0, 1, 2]), r"labels of shape \(3,\) do not match the batch of 2 images"),
        (3, [0, 1], "labels must be a torch.Tensor, got list"),  # was: AttributeError 'list' object has no 'to'
        (0, torch.tensor([0, 1]), r"no classification head \(num_labels=0\)"),  # was: a 'multi-label' shape error
    ],
)
def test_labels_that_cannot_fit_the_head_are_refused(num_labels: int, labels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classifier(num_labels, None)(torch.rand(2, 6, 16, 16), labels=labels)


def test_an_unknown_problem_type_is_refused() -> None:
    # was: accepted, and the model was trained as regression
    with pytest.raises(ValueError, match="problem_type must be one of"):
        tiny_config(num_labels=3, problem_type="multiclass")


# --- checkpoints --------------------------------------------------------------------------------------------------------


def test_a_truncated_safetensors_file_is_named(pretraining_checkpoint: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(pretraining_checkpoint, tmp_path / "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    # was: safetensors' "Error while deserializing header: incomplete metadata, file not fully covered"
    with pytest.raises(ValueError, match=r"truncated or damaged .* Save or download the checkpoint again"):
        S2MAEModel.from_pretrained(folder)


def test_weights_holding_nan_are_refused(pretraining_checkpoint: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(pretraining_checkpoint, tmp_path / "diverged")
    weights = load_file(folder / "model.safetensors")
    weights["s2mae.encoder.layers.1.mlp.fc2.weight"][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    # was: loaded, and every output was NaN
    with pytest.raises(ValueError, match=r"1 tensor\(s\) of the checkpoint hold NaN or inf.*layers.1.mlp.fc2"):
        S2MAEModel.from_pretrained(folder)


def test_a_config_of_another_model_type_is_refused(pretraining_checkpoint: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(pretraining_checkpoint, tmp_path / "other")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "vit_mae"}))
    # was: a warning, then an S2MAE built from the other model's fields
    with pytest.raises(ValueError, match="model_type 'vit_mae', not 's2mae'"):
        S2MAEModel.from_pretrained(folder)
    assert S2MAEConfig.from_dict({k: v for k, v in config.items() if k != "model_type"}).num_channels == 6


def test_a_config_without_band_names_or_with_a_misspelt_field_is_named() -> None:
    from transformers.testing_utils import CaptureLogger

    import modeling_s2mae.configuration_s2mae as configuration

    saved = tiny_config().to_dict()
    with CaptureLogger(configuration.logger) as captured:
        S2MAEConfig.from_dict(saved)
    assert captured.out == ""
    # was: silently band_00..band_05, and a typo silently ignored (mask_ratio stayed 0.75)
    with CaptureLogger(configuration.logger) as captured:
        config = S2MAEConfig.from_dict({**saved, "band_names": None, "mask_ration": 0.5})
    assert config.band_names[0] == "band_00" and config.mask_ratio == 0.75
    assert "names no band_names" in captured.out and "did you mean 'mask_ratio'?" in captured.out


# --- ONNX inputs ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_encoder(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("onnxruntime")
    from modeling_s2mae.export import S2MAEOnnxModel, export_onnx

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.manual_seed(0)
    export_onnx(S2MAEModel(tiny_config()).eval(), path, check=False)
    return S2MAEOnnxModel(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixel_values": (np.random.rand(2, 6, 16, 16) * 1e4).astype(np.uint16)}, "must be floating point"),
        ({"pixel_values": np.full((2, 6, 16, 16), np.nan, np.float32)}, r"NaN or inf in images \[0, 1\]"),
        ({"pixel_mask": np.ones((1, 16, 16))}, r"pixel_mask must have shape \(B, H, W\) = \(2, 16, 16\)"),
        ({"pixel_mask": np.full((2, 16, 16), 0.5)}, "pixel_mask must hold 1 for valid pixels"),
        ({"pixel_mask": np.zeros((2, 16, 16))}, r"Images \[0, 1\] have no valid pixel"),
        ({"band_wavelengths": [490.0, 560.0]}, r"band_wavelengths must have shape \(6,\)"),
    ],
)
def test_the_onnx_runner_refuses_what_the_pytorch_model_refuses(onnx_encoder, kwargs: dict, message: str) -> None:
    # was: uint16 cast silently to float (raw digital numbers), NaN features, an ONNX Runtime shape error, a 0.5
    # mask truncated to 0 (NaN features), NaN features for an all-invalid image, a numpy reshape error
    inputs = {"pixel_values": np.random.rand(2, 6, 16, 16).astype(np.float32), **kwargs}
    with pytest.raises(ValueError, match=message):
        onnx_encoder(**inputs)
    assert onnx_encoder(np.random.rand(2, 6, 16, 16)).pooler_output.shape == (2, 32)


# --- resumption ------------------------------------------------------------------------------------------------------


def trainer_checkpoint(source: Path, root: Path, step: int) -> Path:
    folder = copy_checkpoint(source, root / f"checkpoint-{step}")
    (folder / "trainer_state.json").write_text("{}")
    return folder


def test_a_checkpoint_with_truncated_weights_is_not_resumed(pretraining_checkpoint: Path, tmp_path: Path) -> None:
    trainer_checkpoint(pretraining_checkpoint, tmp_path, 1)
    newest = trainer_checkpoint(pretraining_checkpoint, tmp_path, 2)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a disk that filled up during the save
    # was: checkpoint-2, and Trainer failed in safetensors
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    assert (tmp_path / "checkpoint-2.incomplete").is_dir()


def test_a_checkpoint_with_a_half_written_config_is_not_resumed(pretraining_checkpoint: Path, tmp_path: Path) -> None:
    folder = trainer_checkpoint(pretraining_checkpoint, tmp_path, 3)
    (folder / "config.json").write_text('{"model_type": "s2m')
    assert find_resume_checkpoint(tmp_path) is None  # was: returned, then a JSONDecodeError
    with pytest.raises(ValueError, match="config.json does not parse"):
        check_resume_compatible(tmp_path / "checkpoint-3.incomplete", tiny_config())


def test_resuming_a_missing_or_foreign_checkpoint_is_refused(pretraining_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config.json does not exist"):  # was: FileNotFoundError
        check_resume_compatible(tmp_path / "checkpoint-9", tiny_config())
    folder = copy_checkpoint(pretraining_checkpoint, tmp_path / "checkpoint-1")
    with pytest.raises(ValueError, match=r"qkv_bias: checkpoint True, this run False"):  # was: resumed silently
        check_resume_compatible(folder, tiny_config(qkv_bias=False))
    (folder / "config.json").write_text(json.dumps({"model_type": "vit_mae", "hidden_size": 32}))
    with pytest.raises(ValueError, match="model_type 'vit_mae'"):
        check_resume_compatible(folder, tiny_config())


# --- script arguments ------------------------------------------------------------------------------------------------


def export_arguments(tmp_path: Path, checkpoint: Path, **overrides):
    from export_onnx import ExportArguments

    return ExportArguments(**{"model_name_or_path": str(checkpoint), "output_dir": str(tmp_path / "out"), **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "pretraining", "dynamic_hw": True}, "--dynamic_hw applies to --task encoder and classification"),
        ({"max_image_size": 64}, "--max_image_size sets the range of --dynamic_hw"),  # was: ignored
        ({"atol": math.nan}, "--atol must be a positive number"),  # was: every difference passed the check
        ({"model_name_or_path": "/nonexistent/ckpt"}, "does not exist"),
    ],
)
def test_export_onnx_refuses_contradictory_flags(
    tmp_path: Path, pretraining_checkpoint: Path, overrides: dict, message: str
) -> None:
    from export_onnx import check_arguments

    with pytest.raises(ValueError, match=message):
        check_arguments(export_arguments(tmp_path, pretraining_checkpoint, **overrides))


def test_export_onnx_never_writes_into_the_checkpoint_or_onto_a_file(
    tmp_path: Path, pretraining_checkpoint: Path
) -> None:
    from export_onnx import check_arguments

    with pytest.raises(ValueError, match="replace its config.json"):  # was: the checkpoint's config overwritten
        check_arguments(export_arguments(tmp_path, pretraining_checkpoint, output_dir=str(pretraining_checkpoint)))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        check_arguments(export_arguments(tmp_path, pretraining_checkpoint, output_dir=str(tmp_path / "file")))
    check_arguments(export_arguments(tmp_path, pretraining_checkpoint))


def test_predict_scene_refuses_an_output_over_its_input_and_ignored_flags(
    tmp_path: Path, pretraining_checkpoint: Path, sample_data: Path
) -> None:
    from predict_scene import main

    scene = next((sample_data / "sentinel2_tile").glob("*.tif"))
    copied = tmp_path / scene.name
    shutil.copyfile(scene, copied)
    with pytest.raises(ValueError, match="is one of the input scenes"):  # was: the input overwritten at the end
        main(["--model", str(pretraining_checkpoint), "--scene", str(copied), "--output", str(copied)])
    with pytest.raises(ValueError, match="is a folder"):
        main(["--model", str(pretraining_checkpoint), "--scene", str(copied), "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="does not exist"):  # was: a Hub error for a local path
        main(["--model", str(tmp_path / "missing"), "--scene", str(copied), "--output", str(tmp_path / "o.tif")])
    with pytest.raises(ValueError, match="--probabilities applies to segmentation"):  # was: ignored
        main(["--model", str(pretraining_checkpoint), "--scene", str(copied), "--output", str(tmp_path / "o.tif"),
              "--probabilities"])  # fmt: skip


def test_visualize_reconstructions_refuses_a_checkpoint_without_a_decoder(tmp_path: Path, sample_data: Path) -> None:
    from visualize_reconstructions import main

    folder = tmp_path / "classifier"
    S2MAEForImageClassification(tiny_config(num_labels=2)).save_pretrained(folder)
    image = next((sample_data / "eurosat_ms").rglob("*.tif"))
    # was: plots from a randomly initialised decoder
    with pytest.raises(ValueError, match="not an S2MAEForPreTraining checkpoint: it has no trained decoder"):
        main(["--model", str(folder), "--image", str(image), "--output", str(tmp_path / "r.png")])
    with pytest.raises(ValueError, match="is a folder"):
        main(["--model", str(folder), "--image", str(image), "--output", str(tmp_path)])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--train_dir", "x", "--label_raster", "y.tif"], "--label_raster apply to another data source"),
        (["--dataset_name", "x", "--band_names", "B02"], "--band_names apply to another data source"),
        (["--scene_paths", "x"], "--scene_paths needs --label_raster"),
        (["--train_dir", "x", "--k", "0"], "--k must be >= 1"),
        (["--train_dir", "x", "--test_fraction", "1.5"], r"--test_fraction must be in \(0, 1\)"),
    ],
)
def test_run_probe_refuses_contradictory_flags(arguments: list[str], message: str, tmp_path: Path) -> None:
    from run_probe import main

    with pytest.raises(ValueError, match=message):  # was: ignored, or a failure after the features were computed
        main(["--model_name_or_path", str(tmp_path), *arguments])


def test_run_probe_refuses_an_output_json_that_is_a_folder(tmp_path: Path, pretraining_checkpoint: Path) -> None:
    from run_probe import main

    with pytest.raises(ValueError, match="--output_json .* is a folder"):  # was: IsADirectoryError after the probes
        main(["--model_name_or_path", str(pretraining_checkpoint), "--train_dir", "x", "--output_json", str(tmp_path)])


@pytest.mark.parametrize("output", ["inside", "same", "parent"])
def test_prepare_dataset_refuses_an_output_overlapping_the_input(tmp_path: Path, output: str) -> None:
    from prepare_dataset import PrepareDatasetArguments

    source = tmp_path / "raw" / "tiles"
    source.mkdir(parents=True)
    target = {"inside": source / "hub", "same": source, "parent": tmp_path / "raw"}[output]
    # was: written among the input files; with --overwrite an output above the input replaced it
    with pytest.raises(ValueError, match="overlap"):
        PrepareDatasetArguments(input_dir=str(source), output_dir=str(target), overwrite=True)
    PrepareDatasetArguments(input_dir=str(source), output_dir=str(tmp_path / "hub"))

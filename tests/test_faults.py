"""Faults and abuse: hostile raster bytes, planted links, interrupted writes and kills inside checkpoint saves.

Every case uses real files and, for resumption, the real pretraining script in a subprocess.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from modeling_s2mae.data import RasterReadError, decode_row, eurosat_folder, read_raster, write_hub_dataset
from modeling_s2mae.data.hub_format import MAX_DECODED_BYTES

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "examples" / "run_pretrain.py"
TINY = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
    "decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64"
)


def vrt_pointing_at(target: Path) -> str:
    """A GDAL VRT whose pixels are another local file's: what an attacker would plant in a '.tif'."""
    return (
        '<VRTDataset rasterXSize="8" rasterYSize="8"><VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
        f"<SourceFilename>{target}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        "</VRTDataset>"
    )


# --- untrusted raster bytes -----------------------------------------------------------------------------------------


def test_a_vrt_disguised_as_a_geotiff_is_not_followed(tmp_path: Path, sample_data: Path) -> None:
    secret = sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif"
    planted = tmp_path / "tile_B04.tif"
    planted.write_text(vrt_pointing_at(secret))
    with pytest.raises(RasterReadError, match="allowed drivers") as info:
        read_raster(planted)
    assert "VRT" in str(info.value)


@pytest.mark.parametrize("source", ["/vsicurl/http://127.0.0.1:9/x.tif", "/vsizip//tmp/a.zip/x.tif", "http://x/y.tif"])
def test_virtual_file_systems_and_urls_are_refused(source: str) -> None:
    with pytest.raises(RasterReadError, match="virtual file systems and URLs are not read"):
        read_raster([source])


def test_a_hub_row_holding_a_vrt_is_refused_naming_the_row(tmp_path: Path, sample_data: Path) -> None:
    secret = sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif"
    row = {"id": "hostile-0", "image": vrt_pointing_at(secret).encode(), "band_names": ["B01"]}
    with pytest.raises(RasterReadError, match="hostile-0"):
        decode_row(row)


def test_a_small_row_that_decodes_to_gigabytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tif"
    side = 20_000  # 2 bands x 20000 x 20000 uint8 = 800 MB decoded, a few KB compressed
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 2, "dtype": "uint8",
               "tiled": True, "compress": "deflate", "sparse_ok": True}  # fmt: skip
    with rasterio.open(path, "w", **profile):
        pass
    data = path.read_bytes()
    assert len(data) < 2**20 and 2 * side * side > MAX_DECODED_BYTES
    with pytest.raises(RasterReadError, match="would decode to 763 MiB"):
        decode_row({"id": "bomb", "image": data, "band_names": ["B01", "B02"]})


# --- writes that must not lose or leak data --------------------------------------------------------------------------


def test_overwrite_keeps_the_old_dataset_when_writing_fails(tmp_path: Path, sample_data: Path) -> None:
    records = eurosat_folder(sample_data / "eurosat_ms")
    output = tmp_path / "hub"
    write_hub_dataset(records, output)
    before = sorted(path.name for path in (output / "data").iterdir())
    broken = [*records.records[:2], {"id": "missing", "paths": [str(tmp_path / "gone.tif")], "label": 0}]
    with pytest.raises(RasterReadError, match="missing"):
        write_hub_dataset(broken, output, overwrite=True, label_names=records.classes)
    assert sorted(path.name for path in (output / "data").iterdir()) == before
    assert (output / "README.md").is_file()
    assert not list(tmp_path.glob(".hub.writing-*")), "the staging folder is cleaned up"


def test_planted_links_in_the_output_are_replaced_not_followed(tmp_path: Path, sample_data: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    output = tmp_path / "hub"
    output.mkdir()
    (output / "data").symlink_to(outside, target_is_directory=True)
    (output / "README.md").symlink_to(outside / "precious.txt")
    write_hub_dataset(eurosat_folder(sample_data / "eurosat_ms"), output, overwrite=True)
    assert not (output / "data").is_symlink() and not (output / "README.md").is_symlink()
    assert sorted(path.name for path in outside.iterdir()) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "keep me"


# --- kills inside a checkpoint save ---------------------------------------------------------------------------------


def run_pretrain(output: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        "--train_dir", str(REPO_ROOT / "sample_data" / "eurosat_ms"), "--config_overrides", TINY, "--image_size", "32",
        "--max_steps", "6", "--save_steps", "2", "--per_device_train_batch_size", "2", "--eval_strategy", "no",
        "--logging_steps", "1", "--output_dir", str(output), "--dataloader_num_workers", "0", "--report_to", "none",
        "--disable_tqdm", "true", *extra,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def logged_steps(checkpoint: Path) -> list[int]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [entry["step"] for entry in history if "loss" in entry]


def test_resume_after_kills_at_every_point_of_a_save(tmp_path: Path) -> None:
    """What a kill leaves at each point of a save: the model written but nothing else; the optimizer half written;
    the trainer state half written. The same command then resumes from the newest complete checkpoint, sets the
    broken ones aside, and logs every step exactly once."""
    output = tmp_path / "run"
    first = run_pretrain(output)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert logged_steps(output / "checkpoint-6") == [1, 2, 3, 4, 5, 6]
    shutil.rmtree(output / "checkpoint-6")
    checkpoint_2, checkpoint_4 = output / "checkpoint-2", output / "checkpoint-4"
    killed_after_model = output / "checkpoint-8"  # only the weights and config were written
    killed_after_model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint_4 / name, killed_after_model / name)
    optimizer = checkpoint_4 / "optimizer.pt"  # killed while writing the optimizer: no state yet
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    (checkpoint_4 / "trainer_state.json").unlink()
    assert checkpoint_2.is_dir()

    resumed = run_pretrain(output, "--max_steps", "8")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-4000:]
    assert f"Resuming from {checkpoint_2}" in log
    assert (output / "checkpoint-8.incomplete").is_dir() and (output / "checkpoint-4.incomplete").is_dir()
    assert logged_steps(output / "checkpoint-8") == [1, 2, 3, 4, 5, 6, 7, 8]

    state = output / "checkpoint-8" / "trainer_state.json"  # killed while writing the trainer state
    state.write_text(state.read_text()[:40])
    again = run_pretrain(output, "--max_steps", "8")
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert (output / "checkpoint-8.incomplete1").is_dir()
    assert logged_steps(output / "checkpoint-8") == [1, 2, 3, 4, 5, 6, 7, 8]

    other_bands = run_pretrain(output, "--max_steps", "10", "--band_names", *reversed(
        ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    ))  # fmt: skip
    assert other_bands.returncode != 0
    assert "band_names: checkpoint" in other_bands.stderr and "another --output_dir" in other_bands.stderr


def test_tiles_with_no_valid_pixel_are_skipped_and_counted(tmp_path: Path, sample_data: Path) -> None:
    """A scene with wide nodata edges trains through the local route and reports what it skipped."""
    with rasterio.open(sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif") as source:
        profile, data = source.profile, source.read()
    data[:, :, :80] = 0  # nodata = 0: the left 80 of 128 columns are empty, as at a swath edge
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    with rasterio.open(scenes / "edge.tif", "w", **profile) as target:
        target.write(data)
        target.descriptions = source_descriptions(sample_data)
    output = tmp_path / "run"
    args = [
        "--train_dir", str(scenes), "--tile_size", "32", "--config_overrides", TINY, "--image_size", "32",
        "--max_steps", "3", "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--save_strategy", "no",
        "--output_dir", str(output), "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["skipped_samples"] > 0
    assert f"Skipped {metrics['skipped_samples']} sample(s)" in result.stdout


def source_descriptions(sample_data: Path) -> tuple[str, ...]:
    with rasterio.open(sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif") as source:
        return source.descriptions


def test_all_nodata_samples_are_an_error_that_says_what_to_do(sample_data: Path) -> None:
    from modeling_s2mae import S2MAEImageProcessor
    from modeling_s2mae.data import RasterSample, Sample, SampleDataset, SampleTransform

    raster = read_raster(sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif")
    empty = Sample(id="empty", raster=RasterSample(np.zeros_like(raster.array), raster.band_names, 0, raster.transform,
                                                   raster.crs, raster.source))  # fmt: skip
    dataset = SampleDataset([empty] * 3, SampleTransform(S2MAEImageProcessor(size=32)))
    with pytest.raises(ValueError, match="almost all nodata"):
        dataset[0]


def test_outputs_replace_planted_links_instead_of_writing_through_them(tmp_path: Path) -> None:
    from modeling_s2mae.safe_io import write_text_safely

    outside = tmp_path / "elsewhere.txt"
    outside.write_text("keep me")
    planted = tmp_path / "run" / "metrics.json"
    planted.parent.mkdir()
    planted.symlink_to(outside)
    write_text_safely(planted, "{}")
    assert not planted.is_symlink() and planted.read_text() == "{}"
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max_steps", "-5"], "max_steps must be -1"),
        (["--num_train_epochs", "0"], "num_train_epochs must be positive"),
        (["--max_steps", "3", "--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1"),
        (["--max_steps", "3", "--learning_rate", "-1"], "learning_rate must be positive"),
    ],
)
def test_training_values_trainer_would_ignore_are_refused(arguments: list[str], message: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    import run_pretrain

    with pytest.raises(ValueError, match=message):
        run_pretrain.main(["--train_dir", str(REPO_ROOT / "sample_data" / "eurosat_ms"), "--output_dir",
                           str(tmp_path / "out"), *arguments])  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"), [("num_hidden_layers", -2), ("layer_norm_eps", -1e-6), ("intermediate_size", 0)]
)
def test_configs_that_would_drop_weights_are_refused(field: str, value: float) -> None:
    from modeling_s2mae import S2MAEConfig

    with pytest.raises(ValueError, match=field):
        S2MAEConfig(**{field: value})


# --- values and masks the models would turn into silently wrong results ---------------------------------------------


def standardizing_processor():
    from model_tester import tiny_config

    from modeling_s2mae import S2MAEImageProcessor

    config = tiny_config()
    names = list(config.band_names)
    return S2MAEImageProcessor.from_model_config(
        config, scaling="standardize", band_mean=dict.fromkeys(names, 1000.0), band_std=dict.fromkeys(names, 500.0)
    )


@pytest.mark.parametrize(
    ("scaling", "extremes"),
    [("standardize", [1e300]), ("minmax", [np.finfo(np.float64).max, -np.finfo(np.float64).max]),
     ("standardize", [np.finfo(np.float64).max])],
)  # fmt: skip
def test_the_processor_never_outputs_non_finite_values_at_valid_pixels(scaling: str, extremes: list[float]) -> None:
    processor = standardizing_processor()
    images = np.full((3, 6, 16, 16), 1000.0)  # (B, C, H, W) float64
    for index, value in enumerate(extremes):
        images[1, 0, index, index] = value
    with pytest.raises(ValueError, match=r"Images \[1\] of the batch .* not finite in float32"):
        processor(images, scaling=scaling, return_tensors="pt")

    images[1, 0, :2, :2] = np.nan  # non-finite input is nodata: masked, and the output stays finite
    inputs = processor(images, scaling=scaling, return_tensors="pt")
    assert torch.isfinite(inputs["pixel_values"]).all()
    assert inputs["pixel_mask"][1].sum() == 16 * 16 - 4


@pytest.mark.parametrize("model_class", ["S2MAEModel", "S2MAEForPreTraining", "S2MAEForImageClassification"])
def test_models_refuse_nan_and_inf_pixel_values(model_class: str) -> None:
    from model_tester import tiny_config

    import modeling_s2mae

    model = getattr(modeling_s2mae, model_class)(tiny_config()).eval()
    pixel_values = torch.rand(2, 6, 16, 16)
    pixel_mask = torch.ones(2, 16, 16, dtype=torch.long)
    pixel_values[1, 2, 5, 5] = float("inf")
    with pytest.raises(ValueError, match=r"1 non-finite values \(NaN or inf\) in images \[1\].* 1 of them at pixels"):
        model(pixel_values, pixel_mask=pixel_mask)
    pixel_values[1, 2, 5, 5], pixel_values[0, 0, 0, 0] = 0.5, float("nan")
    pixel_mask[0, 0, 0] = 0  # NaN at an invalid pixel still spreads through attention: refused too
    with pytest.raises(ValueError, match=r"images \[0\].* 0 of them at pixels that pixel_mask marks valid"):
        model(pixel_values, pixel_mask=pixel_mask)
    with pytest.raises(ValueError, match="non-finite"):
        model(pixel_values)


def test_raw_digital_numbers_are_warned_about_once_per_model() -> None:
    from model_tester import tiny_config
    from transformers.testing_utils import CaptureLogger

    import modeling_s2mae.modeling_s2mae as modeling

    config = tiny_config()
    raw = torch.randint(0, 10_000, (2, 6, 16, 16)).float()  # Sentinel-2 digital numbers fed without the processor
    model = modeling.S2MAEModel(config).eval()
    with CaptureLogger(modeling.logger) as captured:
        model(torch.rand(2, 6, 16, 16))
    assert captured.out == ""
    with CaptureLogger(modeling.logger) as captured:
        model(raw)
        model(raw)
    assert captured.out.count("look like raw digital numbers") == 1 and "S2MAEImageProcessor" in captured.out
    with CaptureLogger(modeling.logger) as captured:
        modeling.S2MAEModel(config).eval()(raw)
    assert captured.out.count("look like raw digital numbers") == 1, "a new model warns again"


@pytest.mark.parametrize(
    ("mask_shape", "message"),
    [
        ((1, 16, 16), r"not broadcast over the batch: give one mask per image \(pixel_mask.expand\(2, -1, -1\)"),
        ((2, 32, 32), r"another resolution than the images \(16x16\)"),
        ((2, 1, 16, 16), r"Drop the channel axis"),
        ((16, 16), r"\(B, H, W\) = \(2, 16, 16\)"),
    ],
)
@pytest.mark.parametrize("model_class", ["S2MAEModel", "S2MAEForPreTraining"])
def test_pixel_masks_of_the_wrong_shape_are_refused(model_class: str, mask_shape: tuple, message: str) -> None:
    from model_tester import tiny_config

    import modeling_s2mae

    model = getattr(modeling_s2mae, model_class)(tiny_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.rand(2, 6, 16, 16), pixel_mask=torch.ones(mask_shape, dtype=torch.long))


def test_an_empty_batch_is_refused() -> None:
    from model_tester import tiny_config

    from modeling_s2mae import S2MAEForPreTraining

    with pytest.raises(ValueError, match=r"empty batch of shape \(0, 6, 16, 16\).* B >= 1"):
        S2MAEForPreTraining(tiny_config())(torch.rand(0, 6, 16, 16))


# --- checkpoints, paths and shards that are not what they claim ------------------------------------------------------


def drop_tensor(checkpoint: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(checkpoint / "model.safetensors")
    del weights[name]
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})


def test_a_checkpoint_missing_a_tensor_is_an_error_not_random_init(tmp_path: Path) -> None:
    from model_tester import tiny_config

    from modeling_s2mae import S2MAEForImageClassification, S2MAEForPreTraining, S2MAEModel

    S2MAEForPreTraining(tiny_config()).save_pretrained(tmp_path / "decoder_gone")
    drop_tensor(tmp_path / "decoder_gone", "decoder.decoder_pred.weight")
    with pytest.raises(ValueError, match=r"lack 1 tensor\(s\) that a S2MAEForPreTraining checkpoint holds.*decoder"):
        S2MAEForPreTraining.from_pretrained(tmp_path / "decoder_gone")
    encoder, info = S2MAEModel.from_pretrained(tmp_path / "decoder_gone", output_loading_info=True)  # not needed
    assert not info["missing_keys"]

    shutil.copytree(tmp_path / "decoder_gone", tmp_path / "encoder_gone")
    name = "s2mae.encoder.layers.1.mlp.fc2.weight"
    assert name.removeprefix("s2mae.") in encoder.state_dict()
    drop_tensor(tmp_path / "encoder_gone", name)
    for model_class in (S2MAEModel, S2MAEForImageClassification):
        with pytest.raises(ValueError, match=r"encoder_gone: the weights lack 1 tensor.*layers\.1\.mlp\.fc2\.weight"):
            model_class.from_pretrained(tmp_path / "encoder_gone")
    classifier = S2MAEForImageClassification.from_pretrained(tmp_path / "decoder_gone", num_labels=3)
    assert classifier.config.num_labels == 3, "a new head on a pretraining checkpoint still loads"


@pytest.mark.parametrize("given", ["runs/typo", "./typo", "{tmp}/runs/typo", "{tmp}/file.txt", "{tmp}"])
def test_a_local_path_that_does_not_exist_is_not_taken_for_a_repo_id(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modeling_s2mae import S2MAEForImageClassification
    from modeling_s2mae.training import check_model_name_or_path, new_or_pretrained

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "file.txt").write_text("not a model")
    message = {"{tmp}/file.txt": "is a file", "{tmp}": "holds no config.json"}.get(given, "does not exist")
    given = given.format(tmp=tmp_path)
    with pytest.raises(ValueError, match=message):
        new_or_pretrained(S2MAEForImageClassification, given, num_labels=3)
    assert check_model_name_or_path("owner/model-name") == "owner/model-name", "a Hub id is left to the Hub"


@pytest.mark.parametrize("damage", ["empty", "truncated"])
@pytest.mark.parametrize("streaming", [True, False])
def test_empty_or_truncated_parquet_shards_are_named(
    damage: str, streaming: bool, tmp_path: Path, sample_data: Path
) -> None:
    from modeling_s2mae.data import load_spectral_dataset

    written = write_hub_dataset(eurosat_folder(sample_data / "eurosat_ms"), tmp_path / "hub", rows_per_shard=4)
    shard = tmp_path / "hub" / "data" / "train-00001-of-00002.parquet"
    assert shard.is_file(), written
    data = shard.read_bytes()
    shard.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    expected = "is empty \\(0 bytes\\)" if damage == "empty" else "is truncated or damaged"
    with pytest.raises(ValueError, match=f"Parquet shard {shard} {expected}"):
        load_spectral_dataset(tmp_path / "hub", split="train", streaming=streaming)


def test_check_raster_finds_a_corrupt_first_block(tmp_path: Path, sample_data: Path) -> None:
    from modeling_s2mae.data.raster import check_raster

    with rasterio.open(sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif") as source:
        profile, data, descriptions = source.profile, source.read(), source.descriptions
    profile.update(tiled=True, blockxsize=64, blockysize=64, compress="deflate", interleave="band")
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", **profile) as target:
        target.write(data)
        target.descriptions = descriptions
    check_raster(path)
    with rasterio.open(path) as dataset:  # where the first block of band 1 lies: the end of the file stays intact
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(dataset.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    content = bytearray(path.read_bytes())
    content[offset : offset + size] = bytes(size)
    path.write_bytes(bytes(content))
    with pytest.raises(RasterReadError, match=r"scene.tif: failed to decode pixels .*X offset 0, Y offset 0"):
        check_raster(path)

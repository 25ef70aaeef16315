"""The scripts' data path, end to end on real files: dataset statistics, other sensors, Major-TOM and BigEarthNet v2
through the one transform, and the command-line checks."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as save_safetensors

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data import bigearthnet_folder, compute_band_statistics, record_to_sample
from modeling_s2mae.data.pipeline import (
    SpectralDataArguments,
    build_processor,
    local_training_records,
    statistics_samples,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "examples"))
import run_classification  # noqa: E402
import run_pretrain  # noqa: E402
from model_tester import tiny_overrides  # noqa: E402

TINY = tiny_overrides()
RUN = ["--config_overrides", TINY, "--image_size", "32", "--max_steps", "2", "--per_device_train_batch_size", "2",
       "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
       "--dataloader_num_workers", "0"]  # fmt: skip
LANDSAT = ["B1", "B2", "B3", "B4", "B5", "B7"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_statistics_of_the_processor_equal_a_direct_computation(sample_data: Path) -> None:
    args = SpectralDataArguments(
        train_dir=[str(sample_data / "sentinel2_scene")], tile_size=64, validation_fraction=0.2
    )
    config = S2MAEConfig(image_size=32)
    records = local_training_records(args, seed=0, model_bands=config.band_names)
    processor = build_processor(
        config, args, default_scaling="dataset_range", statistics_samples=statistics_samples(args, records)
    )
    direct = compute_band_statistics(
        (record_to_sample(record) for record in records[1][: args.statistics_max_samples]),
        band_names=config.band_names,
    )
    assert processor.scaling == "dataset_range"
    for name in config.band_names:
        assert processor.band_low[name] == pytest.approx(direct.percentile(1.0)[name])
        assert processor.band_high[name] == pytest.approx(direct.percentile(99.0)[name])
    other = SpectralDataArguments(train_dir=args.train_dir, scaling="minmax")
    assert build_processor(config, other, default_scaling="dataset_range").scaling == "minmax"


def test_another_sensors_bands_pass_through_the_pretraining_script(sample_data: Path, tmp_path: Path) -> None:
    """A Landsat-7 crop (bands named B1..B7 in the file) pretrains a model whose bands are the Landsat names."""
    output = tmp_path / "landsat"
    metrics = run_pretrain.main([
        *RUN, "--train_dir", str(sample_data / "landsat"), "--tile_size", "32", "--band_names", *LANDSAT,
        "--output_dir", str(output),
    ])  # fmt: skip
    assert metrics["train_steps"] == 2
    assert S2MAEForPreTraining.from_pretrained(output).config.band_names == LANDSAT
    processor = S2MAEImageProcessor.from_pretrained(output)
    assert processor.band_names == LANDSAT and sorted(processor.band_low) == sorted(LANDSAT)
    assert processor.scaling == "dataset_range" and processor.band_statistics["num_samples"] > 0


def test_major_tom_rows_pretrain_through_the_same_transform(sample_data: Path, tmp_path: Path) -> None:
    from majortom_rows import write_sample_majortom_repo

    repo = write_sample_majortom_repo(tmp_path / "majortom", sample_data / "sentinel2_scene")
    output = tmp_path / "run"
    metrics = run_pretrain.main([
        *RUN, "--dataset_name", str(repo), "--dataset_format", "majortom", "--tile_size", "64",
        "--output_dir", str(output), "--statistics_max_samples", "32",
    ])  # fmt: skip
    assert metrics["train_steps"] == 2
    assert S2MAEImageProcessor.from_pretrained(output).scaling == "dataset_range"


def test_bigearthnet_v2_fine_tunes_multi_label(sample_data: Path, tmp_path: Path) -> None:
    import lmdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    import rasterio

    records = list(bigearthnet_folder(sample_data / "bigearthnet"))
    environment = lmdb.open(str(tmp_path / "lmdb"), map_size=64 * 2**20)
    with environment.begin(write=True) as transaction:
        for record in records:
            bands = {}
            for path in record["paths"]:
                with rasterio.open(path) as dataset:
                    bands[Path(path).stem.rsplit("_", 1)[1]] = dataset.read(1)
            transaction.put(record["id"].encode(), save_safetensors(bands))
    environment.close()
    rows = [{"patch_id": r["id"], "labels": r["label_names"], "split": split, "country": "", "s1_name": "",
             "s2v1_name": r["id"], "contains_seasonal_snow": False, "contains_cloud_or_shadow": False}
            for r, split in zip(records, ("train", "validation"))]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "metadata.parquet")
    output = tmp_path / "run"
    metrics = run_classification.main([
        "--config_overrides", tiny_overrides(decoder=False),
        "--image_size", "32", "--max_steps", "1", "--per_device_train_batch_size", "1", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true", "--benv2_lmdb", str(tmp_path / "lmdb"),
        "--benv2_metadata", str(tmp_path / "metadata.parquet"), "--output_dir", str(output),
    ])  # fmt: skip
    assert 0.0 <= metrics["eval_micro_map"] <= 1.0
    assert S2MAEConfig.from_pretrained(output).problem_type == "multi_label_classification"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--train_dir", "x", "--dataset_name", "y"], "not both"),
        (["--train_dir", "x", "--validation_fraction", "1"], "validation_fraction must be in"),
        (["--train_dir", "x", "--min_valid_fraction", "2"], "min_valid_fraction must be in"),
        (["--train_dir", "x", "--tile_size", "0"], "tile_size must be a positive integer"),
        (["--train_dir", "x", "--range_percentiles", "99", "1"], "range_percentiles"),
        (["--dataset_name", "y", "--dataset_format", "majortom"], "needs --tile_size"),
        (["--benv2_lmdb", "x"], "go together"),
        (["--train_dir", "x", "--config_overrides", "hidden_sise=3"], "Bad config override"),
        (["--train_dir", "x", "--preset", "vit-x"], "Unknown preset"),
    ],
)
def test_command_line_mistakes_are_clear_errors(arguments: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        run_pretrain.main([*arguments, "--output_dir", str(tmp_path / "out"), "--max_steps", "1"])


def test_statistics_file_from_the_command_line(sample_data: Path, tmp_path: Path) -> None:
    records = list(bigearthnet_folder(sample_data / "bigearthnet"))
    statistics = compute_band_statistics(record_to_sample(record) for record in records)
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(statistics.to_dict()))
    args = SpectralDataArguments(train_dir=[str(sample_data / "bigearthnet")], band_statistics=str(path))
    processor = build_processor(S2MAEConfig(image_size=32), args, default_scaling="dataset_range")
    assert processor.band_high["B04"] == pytest.approx(statistics.percentile(99.0)["B04"])
    assert np.isfinite(list(processor.band_low.values())).all()


def test_pretraining_logs_a_knn_probe_when_a_labelled_set_is_given(sample_data: Path, tmp_path: Path) -> None:
    output = tmp_path / "probed"
    run_pretrain.main([
        *RUN, "--train_dir", str(sample_data / "sentinel2_scene"), "--tile_size", "32", "--output_dir", str(output),
        "--probe_scene_paths", str(sample_data / "sentinel2_scene"), "--probe_label_raster",
        str(sample_data / "sentinel2_scene_labels" / "T33UUU_osm_landuse_10m.tif"), "--probe_every_n_steps", "1",
        "--probe_k", "3", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "2",
    ])  # fmt: skip
    history = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    probes = [entry for entry in history if "probe_knn_accuracy" in entry]
    assert [entry["step"] for entry in probes] == [0, 1, 2]
    assert all(0.0 <= entry["probe_knn_accuracy"] <= 1.0 for entry in probes)

"""Frozen-encoder probes: features, baselines, k-NN / linear probes, labelled scene tiles, spatial split, the probe
script and the Trainer callback."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from model_tester import save_tiny_pretraining_checkpoint, tiny_config
from transformers import Trainer, TrainerCallback, TrainingArguments

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEModel
from modeling_s2mae.data.labelled_rasters import labelled_raster_tiles, load_class_names, spatial_split
from modeling_s2mae.data.training import collate_pixels
from modeling_s2mae.probing import (
    ProbeCallback,
    classification_metrics,
    compare_representations,
    extract_features,
    iter_batches,
    knn_probe,
    linear_probe,
    random_init_encoder,
    raw_band_statistics,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import run_probe  # noqa: E402

LABELS = "sentinel2_scene_labels/T33UUU_osm_landuse_10m.tif"
CLASSES = "sentinel2_scene_labels/T33UUU_osm_landuse_classes.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def pixel_inputs(config: S2MAEConfig, count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs in [0, 1] with a partly invalid pixel_mask, and alternating labels."""
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    pixel_mask = torch.ones(count, size, size, dtype=torch.long)
    pixel_mask[0, : size // 2] = 0
    pixel_mask[1, :, :3] = 0
    return {
        "pixel_values": torch.rand(count, config.num_channels, size, size, generator=generator),
        "pixel_mask": pixel_mask,
        "labels": torch.arange(count) % 2,
    }


# ---- features ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1, -2, -1])
@pytest.mark.parametrize("pooling", ["mean", "mean_spectral"])
def test_feature_shapes(layer: int, pooling: str):
    config = tiny_config()  # D = 32, G = 2
    inputs = pixel_inputs(config, 5)
    features = extract_features(S2MAEForPreTraining(config), inputs, layer=layer, pooling=pooling, batch_size=2)
    assert features.shape == (5, 32 if pooling == "mean" else 64)
    assert features.dtype == torch.float32 and bool(torch.isfinite(features).all())


def test_mean_pooling_weights_tokens_by_valid_pixels_and_layers_index_hidden_states():
    config = tiny_config()
    model = S2MAEModel(config).eval()
    inputs = pixel_inputs(config, 3)
    with torch.no_grad():
        outputs = model(inputs["pixel_values"], output_hidden_states=True)
    valid = torch.nn.functional.avg_pool2d(inputs["pixel_mask"][:, None].float(), config.patch_size).flatten(1)
    weights = valid.repeat(1, config.num_spectral_groups)  # (B, L), token order spectral-group major

    def weighted_mean(tokens: torch.Tensor) -> torch.Tensor:
        return (tokens * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)

    last = extract_features(model, inputs, layer=-1)
    torch.testing.assert_close(last, weighted_mean(outputs.last_hidden_state))
    torch.testing.assert_close(extract_features(model, inputs, layer=config.num_hidden_layers), last)
    torch.testing.assert_close(extract_features(model, inputs, layer=0), weighted_mean(outputs.hidden_states[0]))
    torch.testing.assert_close(extract_features(model, inputs, layer=-2), weighted_mean(outputs.hidden_states[1]))
    # the invalid half of sample 0 does not count
    assert not torch.allclose(last[0], outputs.last_hidden_state[0].mean(0))
    spectral = extract_features(model, inputs, pooling="mean_spectral").view(3, config.num_spectral_groups, -1)
    torch.testing.assert_close(spectral.mean(1), last)  # every group has the same spatial weights
    with torch.no_grad():
        pooled = model(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"]).pooler_output
    torch.testing.assert_close(extract_features(model, inputs, pooling="pooler"), pooled)


def test_feature_errors_and_train_mode_restored():
    config = tiny_config()
    model = S2MAEForPreTraining(config).train()
    model.decoder.eval()  # a submodule's own flag must survive too
    inputs = pixel_inputs(config, 2)
    with pytest.raises(ValueError, match="no pooler|pooling layer"):
        extract_features(model, inputs, pooling="pooler")
    with pytest.raises(ValueError, match="layer must be an int in \\[-3, 2\\]"):
        extract_features(model, inputs, layer=3)
    with pytest.raises(ValueError, match="pooling must be one of"):
        extract_features(model, inputs, pooling="max")
    with pytest.raises(ValueError, match="Expected an S2MAEModel"):
        extract_features(torch.nn.Linear(2, 2), inputs)
    extract_features(model, inputs)
    assert model.training and model.s2mae.training and model.s2mae.encoder.layers[0].training
    assert not model.decoder.training
    inputs["pixel_mask"][1] = 0
    with pytest.raises(ValueError, match="no valid pixel"):
        extract_features(model, inputs)


def test_raw_band_statistics_match_numpy():
    config = tiny_config()
    inputs = pixel_inputs(config, 4)
    stats = raw_band_statistics(inputs["pixel_values"], inputs["pixel_mask"])
    assert stats.shape == (4, 2 * config.num_channels)
    values, mask = inputs["pixel_values"].numpy().astype(np.float64), inputs["pixel_mask"].numpy().astype(bool)
    for index in range(4):
        valid = values[index][:, mask[index]]  # (C, valid pixels)
        expected = np.concatenate([valid.mean(axis=1), valid.std(axis=1)])
        np.testing.assert_allclose(stats[index].numpy(), expected, rtol=1e-6)
    unmasked = raw_band_statistics(inputs["pixel_values"])
    np.testing.assert_allclose(unmasked[2, :6].numpy(), values[2].mean(axis=(1, 2)), rtol=1e-6)


def test_random_init_encoder_is_seeded_and_leaves_the_global_rng_alone():
    encoder = S2MAEModel(tiny_config())
    state = torch.random.get_rng_state()
    first, again, other = (random_init_encoder(encoder, seed) for seed in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    weight = "encoder.layers.0.attention.q_proj.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], encoder.state_dict()[weight])


# ---- probes ------------------------------------------------------------------------------------------------------


def blobs(count: int, dim: int, classes: int, seed: int, spread: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.randint(0, classes, (count,), generator=generator)
    return centres[labels] + spread * torch.randn(count, dim, generator=generator), labels * 10 + 3  # sparse ids


def test_probes_separate_separable_features():
    train_x, train_y = blobs(120, 16, 4, seed=0)
    test_x, test_y = blobs(80, 16, 4, seed=1)
    for weighting in ("dino", "majority"):
        result = knn_probe(train_x, train_y, test_x, test_y, k=10, weighting=weighting)
        assert result.accuracy == 1.0 and result.balanced_accuracy == 1.0 and result.macro_f1 == 1.0
    result = linear_probe(train_x, train_y, test_x, test_y)
    assert result.accuracy == 1.0 and result.num_classes == 4 and result.details["l2_selection"].startswith("3-fold")
    assert set(result.details["cv_accuracy"]) == {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0}


def test_probes_are_at_chance_on_shuffled_labels():
    train_x, train_y = blobs(200, 16, 4, seed=0)
    test_x, test_y = blobs(400, 16, 4, seed=1)
    generator = torch.Generator().manual_seed(0)  # shuffled labels say nothing about the features
    train_y, test_y = (
        train_y[torch.randperm(200, generator=generator)],
        test_y[torch.randperm(400, generator=generator)],
    )
    knn = knn_probe(train_x, train_y, test_x, test_y, k=20)
    linear = linear_probe(train_x, train_y, test_x, test_y, l2=1e-2)
    for result in (knn, linear):
        assert 0.1 < result.accuracy < 0.4, result  # chance: 0.25
        assert 0.1 < result.balanced_accuracy < 0.4


def test_probe_input_errors_and_k_clipping():
    x, y = blobs(10, 4, 2, seed=0)
    with pytest.raises(ValueError, match="integer class ids"):
        knn_probe(x, y.float(), x, y)
    with pytest.raises(ValueError, match="multi-label|integer class ids"):
        linear_probe(x, torch.zeros(10, 3, dtype=torch.long), x, y)
    with pytest.raises(ValueError, match="features per sample"):
        knn_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="NaN"):
        knn_probe(x.masked_fill(torch.eye(10, 4, dtype=torch.bool), float("nan")), y, x, y)
    assert knn_probe(x, y, x, y, k=50).details["k"] == 10


def test_classification_metrics_by_hand():
    true = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 0, 0])
    metrics = classification_metrics(true, predicted)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    f1 = [2 * 2 / (3 + 4), 2 * 1 / (2 + 2), 0.0]  # 2 * hits / (true count + predicted count)
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)


# ---- labelled scene tiles and the spatial split ------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_tiles(sample_data: Path):
    names = load_class_names(sample_data / CLASSES)
    return labelled_raster_tiles(sample_data / "sentinel2_scene", sample_data / LABELS, 32, class_names=names)


def test_labelled_tiles_carry_the_majority_class(labelled_tiles, sample_data: Path):
    with rasterio.open(sample_data / LABELS) as dataset:
        labels = dataset.read(1)
    kept = {record["id"]: record for record in labelled_tiles}
    names = load_class_names(sample_data / CLASSES)
    checked = 0
    for row in range(0, 384, 32):
        for col in range(0, 384, 32):
            tile = labels[row : row + 32, col : col + 32]
            counts = np.bincount(tile.ravel(), minlength=9)
            record = kept.get(f"sentinel2_scene/r{row}_c{col}")
            if counts[1:].sum() < 0.5 * tile.size:
                assert record is None
                continue
            assert record is not None
            assert record["label"] == 1 + int(np.argmax(counts[1:]))
            assert record["class_name"] == names[record["label"]]
            assert record["scene"] == "sentinel2_scene" and record["window"]["height"] == 32
            checked += 1
    assert checked == len(labelled_tiles) == 66
    assert labelled_tiles.classes[:4] == ["unlabelled", "forest", "residential", "farm"]


def test_labelled_tiles_refuse_a_label_raster_on_another_grid(sample_data: Path, tmp_path: Path):
    with rasterio.open(sample_data / LABELS) as source:
        profile, data = source.profile, source.read()
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(
        shifted, "w", **{**profile, "transform": profile["transform"] @ rasterio.Affine.translation(1, 0)}
    ) as out:
        out.write(data)
    with pytest.raises(ValueError, match="not on the grid of the scene.*transform"):
        labelled_raster_tiles(sample_data / "sentinel2_scene", shifted, 32)
    cropped = tmp_path / "cropped.tif"
    with rasterio.open(cropped, "w", **{**profile, "width": 200}) as out:
        out.write(data[:, :, :200])
    with pytest.raises(ValueError, match="size 384 x 200"):
        labelled_raster_tiles(sample_data / "sentinel2_scene", cropped, 32)
    floats = tmp_path / "floats.tif"
    with rasterio.open(floats, "w", **{**profile, "dtype": "float32"}) as out:
        out.write(data.astype(np.float32))
    with pytest.raises(ValueError, match="class ids must be integers"):
        labelled_raster_tiles(sample_data / "sentinel2_scene", floats, 32)


def test_spatial_split_keeps_train_and_test_apart(labelled_tiles):
    records = labelled_tiles.records
    train, test = spatial_split(records, 0.3, seed=0, block_size=64)
    assert train and test and len(train) + len(test) <= len(records)
    assert 0.15 < len(test) / len(records) < 0.45
    assert not {r["id"] for r in train} & {r["id"] for r in test}

    def bounds(record):
        w = record["window"]
        return w["row_off"], w["col_off"], w["row_off"] + w["height"], w["col_off"] + w["width"]

    for a in map(bounds, train):
        for b in map(bounds, test):
            gap = max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])
            assert gap > 0, (a, b)  # not overlapping, no shared edge or corner
    assert spatial_split(records, 0.3, seed=0, block_size=64) == (train, test)
    assert spatial_split(records, 0.3, seed=1, block_size=64) != (train, test)
    with pytest.raises(ValueError, match="no 'window'"):
        spatial_split([{"id": "a", "label": 0}, {"id": "b", "label": 1}], 0.5, 0)


# ---- comparison, script and callback -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pretraining checkpoint (12 bands, 32 px) with its processor."""
    return save_tiny_pretraining_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def test_compare_representations_reports_every_baseline(tmp_path: Path):
    config = tiny_config()
    model = S2MAEForPreTraining(config)
    train, test = pixel_inputs(config, 12, seed=0), pixel_inputs(config, 8, seed=1)
    samples = [{key: value[i] for key, value in test.items()} for i in range(8)]  # also per-sample dicts
    report = compare_representations(model, train, samples, random_init_seeds=(3, 4), k=3, l2=1e-2, batch_size=5)
    rows = {(s.representation, s.probe): s for s in report.scores}
    assert set(rows) == {
        (representation, probe)
        for representation in ("pretrained", "random_init", "raw_band_statistics")
        for probe in ("knn", "linear")
    } | {("majority_class", "none")}
    assert rows["random_init", "knn"].seeds == [3, 4] and len(rows["random_init", "knn"].runs) == 2
    assert rows["raw_band_statistics", "knn"].feature_dim == 12 and rows["pretrained", "linear"].feature_dim == 32
    summary = rows["random_init", "linear"].summary("accuracy")
    values = [run.accuracy for run in rows["random_init", "linear"].runs]
    assert summary["mean"] == pytest.approx(np.mean(values)) and summary["min"] == min(values)
    table = str(report)
    assert "random init (seeds 3, 4)" in table and "raw band statistics" in table and "majority class" in table
    report.write_json(tmp_path / "report.json")
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["settings"]["num_train"] == 12 and written["settings"]["num_test"] == 8
    assert (
        set(written["margins"]["accuracy"]) == set(written["pretrained_accuracy_standard_error"]) == {"knn", "linear"}
    )
    accuracy = rows["pretrained", "knn"].runs[0].accuracy
    assert report.standard_errors()["knn"] == pytest.approx((accuracy * (1 - accuracy) / 8) ** 0.5)


def test_probe_script_on_labelled_scene_tiles(checkpoint: Path, sample_data: Path, tmp_path: Path, capsys):
    output = tmp_path / "probe.json"
    result = run_probe.main(
        [
            "--model_name_or_path", str(checkpoint),
            "--scene_paths", str(sample_data / "sentinel2_scene"),
            "--label_raster", str(sample_data / LABELS),
            "--class_names_json", str(sample_data / CLASSES),
            "--tile_size", "64", "--min_labelled_fraction", "0.4", "--block_size", "128", "--test_fraction", "0.3",
            "--k", "3", "--random_init_seeds", "0", "1", "--l2", "0.01", "--output_json", str(output),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    for row in ("pretrained", "random init (seeds 0, 1)", "raw band statistics", "majority class"):
        assert row in printed
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(result))
    assert {r["representation"] for r in written["results"]} >= {"pretrained", "random_init", "raw_band_statistics"}
    assert written["settings"]["model"] == str(checkpoint)
    assert written["settings"]["num_train"] > 0 and written["settings"]["num_test"] > 0


def test_probe_script_needs_one_data_source(checkpoint: Path):
    with pytest.raises(ValueError, match="exactly one of"):
        run_probe.main(["--model_name_or_path", str(checkpoint)])


class TrainModeSpy(TrainerCallback):
    """Records whether the model is in train mode at every step end (after the probe callback ran)."""

    def __init__(self):
        self.modes = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.modes.append(model.training and model.s2mae.training)


def test_probe_callback_logs_the_knn_accuracy(tmp_path: Path):
    config = tiny_config()
    inputs = pixel_inputs(config, 8)
    dataset = [{"pixel_values": inputs["pixel_values"][i], "pixel_mask": inputs["pixel_mask"][i]} for i in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True, dataloader_pin_memory=False, remove_unused_columns=False,
    )  # fmt: skip
    spy = TrainModeSpy()
    trainer = Trainer(
        model=S2MAEForPreTraining(config), args=args, train_dataset=dataset, data_collator=collate_pixels
    )
    probe = ProbeCallback(
        {k: v[:6] for k, v in inputs.items()}, {k: v[6:] for k, v in inputs.items()}, every_n_steps=2, k=3
    ).attach(trainer)
    trainer.add_callback(spy)  # runs after the probe
    assert trainer.callback_handler.callbacks.count(probe) == 1
    trainer.train()
    history = trainer.state.log_history
    probed = [entry for entry in history if "probe_knn_accuracy" in entry]
    assert [entry["step"] for entry in probed] == [0, 2]
    assert all(0.0 <= entry["probe_knn_accuracy"] <= 1.0 for entry in probed)
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3]  # the loss log of step 2 survived
    assert spy.modes == [True, True, True]


def test_probe_callback_needs_the_trainer():
    config = tiny_config()
    inputs = pixel_inputs(config, 4)
    probe = ProbeCallback(inputs, inputs, every_n_steps=1)
    with pytest.raises(ValueError, match="attach"):
        probe.on_train_begin(None, None, None, model=S2MAEForPreTraining(config))
    with pytest.raises(ValueError, match="labels"):
        ProbeCallback({"pixel_values": inputs["pixel_values"]}, inputs)


def test_probe_script_on_class_folders(checkpoint: Path, sample_data: Path, capsys):
    result = run_probe.main(
        [
            "--model_name_or_path", str(checkpoint), "--train_dir", str(sample_data / "eurosat_ms"),
            "--test_fraction", "0.34", "--k", "2", "--random_init_seeds", "5", "--linear", "false",
        ]
    )  # fmt: skip
    assert result["settings"]["num_train"] == 4 and result["settings"]["num_test"] == 2
    assert {(r["representation"], r["probe"]) for r in result["results"]} == {
        ("pretrained", "knn"), ("random_init", "knn"), ("raw_band_statistics", "knn"), ("majority_class", "none"),
    }  # fmt: skip
    assert "random init (seeds 5)" in capsys.readouterr().out


def test_probe_script_on_a_hub_format_dataset(checkpoint: Path, sample_data: Path, tmp_path: Path):
    from modeling_s2mae.data import eurosat_folder, write_hub_dataset

    write_hub_dataset(eurosat_folder(sample_data / "eurosat_ms"), tmp_path / "dataset", rows_per_shard=3)
    result = run_probe.main(
        [
            "--model_name_or_path", str(checkpoint), "--dataset_name", str(tmp_path / "dataset"),
            "--dataset_test_split", "", "--test_fraction", "0.3", "--k", "2", "--random_init_seeds", "0",
            "--l2", "0.1",
        ]
    )  # fmt: skip
    assert result["settings"]["num_train"] == 4 and result["settings"]["num_test"] == 2
    assert result["settings"]["test_class_counts"] == {"0": 1, "1": 1}


# ---- band wavelengths --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Bands at")  # shifted wavelengths partly beyond the model's range
def test_probe_features_place_bands_by_wavelength():
    """Probes pass the inputs' band wavelengths to a wavelength model: the right wavelengths give the features of
    the model's own bands, shifted wavelengths other features, and a stacked (C,) set equals per-sample (N, C)."""
    torch.manual_seed(0)
    config = tiny_config(position_embedding_type="wavelength")
    model = S2MAEModel(config)
    inputs = pixel_inputs(config, 4)
    native = extract_features(model, inputs)
    wavelengths = torch.tensor(config.band_wavelengths, dtype=torch.float32)
    bandwidths = torch.tensor(config.band_bandwidths, dtype=torch.float32)
    right = extract_features(model, {**inputs, "band_wavelengths": wavelengths, "band_bandwidths": bandwidths})
    torch.testing.assert_close(right, native, atol=1e-4, rtol=1e-3)  # float32 vs float64 wavelength encodings
    shifted = extract_features(
        model, {**inputs, "band_wavelengths": wavelengths[None].expand(4, -1) + 300.0, "band_bandwidths": bandwidths}
    )
    assert (shifted - native).abs().max() > 1e-3
    per_sample = [
        {key: value[i] for key, value in inputs.items()}
        | {"band_wavelengths": wavelengths + 300.0, "band_bandwidths": bandwidths}
        for i in range(4)
    ]
    torch.testing.assert_close(extract_features(model, iter_batches(per_sample, batch_size=3)), shifted)
    # the same wavelengths reach compare_representations (the pretrained row) and its random-init encoders
    report = compare_representations(
        model,
        {**inputs, "band_wavelengths": wavelengths + 300.0},
        {**inputs, "band_wavelengths": wavelengths + 300.0},
        random_init_seeds=(0,),
        k=1,
        linear=False,
    )
    assert report.score("pretrained", "knn").runs[0].accuracy == 1.0


def test_probe_features_of_fewer_bands_by_wavelength():
    """A 6-band wavelength model probed on 3 bands given by wavelength (with spectral padding), e.g. Landsat."""
    config = tiny_config(position_embedding_type="wavelength", spectral_padding="repeat")
    model = S2MAEModel(config)
    inputs = pixel_inputs(config, 3)
    three = {**inputs, "pixel_values": inputs["pixel_values"][:, [2, 3, 4]]}
    with pytest.raises(ValueError, match="band_wavelengths"):
        extract_features(model, three)
    features = extract_features(model, {**three, "band_wavelengths": torch.tensor([660.0, 840.0, 1650.0])})
    assert features.shape == (3, config.hidden_size) and torch.isfinite(features).all()
    spectral = extract_features(
        model, {**three, "band_wavelengths": torch.tensor([660.0, 840.0, 1650.0])}, pooling="mean_spectral"
    )
    assert spectral.shape == (3, 1 * config.hidden_size)

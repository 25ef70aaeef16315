"""Per-pixel S2MAE: backbone, segmentation, change detection, metrics, readers and scene prediction.

Tiny models (width 32, 4 blocks, 32 px); real imagery from sample_data only. The OSCD test lays two real eo-learn
acquisitions (sample_data/eolearn_change) out exactly like an OSCD city, one per-band GeoTIFF per band, with a change
map written by the test: no real OSCD files are available here.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.windows import Window
from transformers import AutoBackbone, EvalPrediction, UperNetConfig, UperNetForSemanticSegmentation

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data.change_detection import ChangeDetectionTransform, change_triples, oscd_records
from modeling_s2mae.data.raster import read_window
from modeling_s2mae.data.segmentation import DenseTransform, collate_dense, map_labels, segmentation_tiles
from modeling_s2mae.metrics import SegmentationMetrics, change_scores, confusion_matrix, segmentation_scores
from modeling_s2mae.modeling_s2mae_dense import (
    S2MAEBackbone,
    S2MAEForChangeDetection,
    S2MAEForSemanticSegmentation,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import run_change_detection  # noqa: E402
import run_segmentation  # noqa: E402
from predict_scene import ScenePredictor, predict_scene  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
SCENE = SAMPLE / "sentinel2_scene"
LABELS = SAMPLE / "sentinel2_scene_labels" / "T33UUU_osm_landuse_10m.tif"
CHANGE = SAMPLE / "eolearn_change"
TINY = {
    "image_size": 32, "patch_size": 8, "num_hidden_layers": 4, "hidden_size": 32, "num_attention_heads": 2,
    "intermediate_size": 64, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64, "decode_channels": 16,
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    S2MAEForPreTraining(S2MAEConfig(**TINY)).save_pretrained(path)
    return path


@pytest.mark.parametrize("out_indices", [[4], [1, 3], [0, 2, 3, 4]])
def test_backbone_shapes(checkpoint, out_indices):
    backbone = S2MAEBackbone.from_pretrained(checkpoint, out_indices=out_indices).eval()
    assert backbone.out_indices == out_indices
    assert backbone.out_features == [backbone.stage_names[i] for i in out_indices]
    assert backbone.channels == [32] * len(out_indices)
    maps = backbone(torch.rand(2, 12, 32, 32)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(2, 32, 4, 4)] * len(out_indices)
    other = backbone(torch.rand(1, 6, 48, 64), interpolate_pos_encoding=True).feature_maps  # other size and bands
    assert [tuple(m.shape) for m in other] == [(1, 32, 6, 8)] * len(out_indices)


def test_backbone_maps_are_merged_tokens(checkpoint):
    """The mean map equals the mean over spectral groups of the normalised tokens of that layer."""
    backbone = S2MAEBackbone.from_pretrained(checkpoint, out_indices=[2]).eval()
    pixels = torch.rand(1, 12, 32, 32)
    with torch.no_grad():
        hidden = backbone.s2mae(pixels, output_hidden_states=True).hidden_states[2]
        expected = backbone.s2mae.layernorm(hidden).reshape(1, 4, 16, 32).mean(1).transpose(1, 2).reshape(1, 32, 4, 4)
        torch.testing.assert_close(backbone(pixels).feature_maps[0], expected)


def test_backbone_concat_fpn_and_errors(checkpoint):
    backbone = S2MAEBackbone.from_pretrained(checkpoint, out_features=["stage1", "stage2", "stage3", "stage4"],
                                             spectral_merge="concat", add_fpn=True)  # fmt: skip
    sizes = [tuple(m.shape[-2:]) for m in backbone(torch.rand(1, 12, 32, 32)).feature_maps]
    assert sizes == [(16, 16), (8, 8), (4, 4), (2, 2)]
    with pytest.raises(ValueError, match="spectral groups"):
        backbone(torch.rand(1, 6, 32, 32), interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match="out_indices"):
        S2MAEBackbone(S2MAEConfig(**TINY), out_indices=[9])
    with pytest.raises(ValueError, match="spectral_merge"):
        S2MAEBackbone(S2MAEConfig(**TINY), spectral_merge="max")


def test_auto_backbone_and_upernet_round_trip(checkpoint, tmp_path):
    config = S2MAEConfig.from_pretrained(checkpoint, out_indices=[1, 2, 3, 4])
    assert type(AutoBackbone.from_config(config)).__name__ == "S2MAEBackbone"
    model = UperNetForSemanticSegmentation(UperNetConfig(backbone_config=config, num_labels=3, hidden_size=16)).eval()
    pixels = torch.rand(2, 12, 32, 32)
    assert model(pixels).logits.shape == (2, 3, 32, 32)
    model.save_pretrained(tmp_path)
    reloaded = UperNetForSemanticSegmentation.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(model(pixels).logits, reloaded(pixels).logits)


def test_segmentation_loads_encoder_and_ignores_pixels(checkpoint):
    torch.manual_seed(0)
    model = S2MAEForSemanticSegmentation.from_pretrained(checkpoint, num_labels=3)
    encoder = S2MAEForPreTraining.from_pretrained(checkpoint).s2mae
    assert torch.equal(model.s2mae.encoder.layers[0].mlp.fc1.weight, encoder.encoder.layers[0].mlp.fc1.weight)
    pixels = torch.rand(2, 12, 32, 32)
    labels = torch.randint(0, 3, (2, 32, 32))
    output = model(pixels, labels=labels)
    assert output.logits.shape == (2, 3, 32, 32)
    output.loss.backward()
    assert model.s2mae.embeddings.cube_embeddings.projection.weight.grad.abs().sum() > 0
    # changing the labels of ignored or masked pixels does not change the loss
    model.eval()
    mask = torch.ones(2, 32, 32, dtype=torch.long)
    mask[:, :10] = 0
    ignored = labels.clone()
    ignored[:, 20:] = 255
    base = model(pixels, labels=ignored, pixel_mask=mask).loss
    other = ignored.clone()
    other[:, :10] = (other[:, :10] + 1) % 3
    torch.testing.assert_close(model(pixels, labels=other, pixel_mask=mask).loss, base)
    with pytest.raises(ValueError, match="outside"):
        model(pixels, labels=torch.full((2, 32, 32), 3))


def test_segmentation_with_labels_compiles_without_graph_breaks(checkpoint):
    model = S2MAEForSemanticSegmentation.from_pretrained(checkpoint, num_labels=3, class_weights=[1.0, 2.0, 0.5])
    model.eval()
    pixels, labels = torch.rand(2, 12, 32, 32), torch.randint(0, 3, (2, 32, 32))
    labels[:, :4] = 255
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fails on any graph break
    with torch.no_grad():
        output = model(pixels, labels=labels)
        torch.testing.assert_close(compiled(pixels, labels=labels).loss, output.loss)
        weight = torch.tensor([1.0, 2.0, 0.5])
        expected = torch.nn.functional.cross_entropy(output.logits, labels, weight=weight, ignore_index=255)
        torch.testing.assert_close(output.loss, expected)
        no_label = model(pixels, labels=torch.full_like(labels, 255)).loss
    assert no_label.item() == 0.0


def test_class_weights_change_the_loss(checkpoint):
    model = S2MAEForSemanticSegmentation.from_pretrained(checkpoint, num_labels=2).eval()
    pixels, labels = torch.rand(1, 12, 32, 32), torch.randint(0, 2, (1, 32, 32))
    plain = model(pixels, labels=labels).loss
    model.config.class_weights = [1.0, 10.0]
    logits = model(pixels).logits
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, 10.0]))
    torch.testing.assert_close(model(pixels, labels=labels).loss, expected)
    assert not torch.isclose(plain, expected)


def test_change_detection_siamese(checkpoint, tmp_path):
    model = S2MAEForChangeDetection.from_pretrained(checkpoint, change_fusion="both", class_weights=[1.0, 5.0])
    assert model.config.id2label == {0: "no change", 1: "change"}
    before, after = torch.rand(2, 12, 32, 32), torch.rand(2, 12, 32, 32)
    labels = torch.randint(0, 2, (2, 32, 32))
    output = model(pixel_values=before, pixel_values_2=after, labels=labels)
    assert output.logits.shape == (2, 2, 32, 32)
    output.loss.backward()
    # one encoder for both dates: its weights exist once and get gradient from both
    assert sum(1 for name, _ in model.named_parameters() if "cube_embeddings" in name) == 2  # weight + bias
    difference = S2MAEForChangeDetection.from_pretrained(checkpoint).eval()
    torch.testing.assert_close(difference(before, after).logits, difference(after, before).logits)  # symmetric
    difference.save_pretrained(tmp_path)
    torch.testing.assert_close(
        S2MAEForChangeDetection.from_pretrained(tmp_path).eval()(before, after).logits,
        difference(before, after).logits,
    )
    with pytest.raises(ValueError, match="same shape"):
        difference(before, after[:, :6])
    # band wavelengths as the image processor returns them, (B, C), serve both dates: equal to one (C,) row
    wavelengths = torch.tensor([443.0, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1610, 2190])
    per_sample = difference(before, after, band_wavelengths=wavelengths.expand(2, -1)).logits
    torch.testing.assert_close(per_sample, difference(before, after, band_wavelengths=wavelengths).logits)


def test_metrics_equal_direct_confusion_matrix():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(6, 16, 16))
    labels[rng.random(labels.shape) < 0.2] = 255
    predictions = rng.integers(0, 4, size=(6, 16, 16))
    keep = labels != 255
    direct = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(labels[keep], predictions[keep]):
        direct[t, p] += 1
    assert np.array_equal(confusion_matrix(predictions, labels, 4), direct)
    iou = [direct[k, k] / (direct[k].sum() + direct[:, k].sum() - direct[k, k]) for k in range(4)]
    scores = segmentation_scores(direct)
    np.testing.assert_allclose(scores["per_class_iou"], iou)
    assert scores["overall_accuracy"] == pytest.approx(np.trace(direct) / direct.sum())
    # whole set at once == batch by batch (Trainer's batch_eval_metrics)
    metrics = SegmentationMetrics(["a", "b", "c", "d"], change_class=1)
    whole = metrics(EvalPrediction(predictions=predictions, label_ids=labels))
    for start in range(0, 6, 2):
        last = start == 4
        batch = metrics(EvalPrediction(predictions=predictions[start : start + 2], label_ids=labels[start : start + 2]),
                        compute_result=last)  # fmt: skip
    assert batch == whole and whole["mean_iou"] == pytest.approx(np.mean(iou))
    tp, fp, fn = direct[1, 1], direct[:, 1].sum() - direct[1, 1], direct[1].sum() - direct[1, 1]
    change = change_scores(direct)
    assert change["precision"] == pytest.approx(tp / (tp + fp)) and change["recall"] == pytest.approx(tp / (tp + fn))
    assert change["iou"] == pytest.approx(tp / (tp + fp + fn))
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(predictions, np.full_like(labels, 7), 4)


def test_segmentation_tiles_and_transform():
    records = segmentation_tiles([(SCENE, LABELS)], 64)
    assert records and all(r["label_path"] == str(LABELS) for r in records)
    processor = S2MAEImageProcessor(size=64)
    item = DenseTransform(processor, list(range(1, 9)))(records[0])
    window = records[0]["window"]
    with rasterio.open(LABELS) as src:
        raw = src.read(1, window=Window(window["col_off"], window["row_off"], 64, 64)).astype(np.int64)
    expected = np.where(raw == 0, 255, raw - 1)
    assert item["pixel_values"].shape == (12, 64, 64) and np.array_equal(item["labels"].numpy(), expected)
    with pytest.raises(ValueError, match="neither classes"):
        map_labels(raw, [1, 2])


def test_grids_that_disagree(tmp_path):
    with rasterio.open(LABELS) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = profile["transform"] @ Affine.translation(3, 0)
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(ValueError, match="not on the grid"):
        segmentation_tiles([(SCENE, tmp_path / "shifted.tif")], 64)


def _write_bands(folder: Path, source: Path, prefix: str) -> None:
    folder.mkdir(parents=True)
    with rasterio.open(source) as src:
        profile = {**src.profile, "count": 1}
        for index, name in enumerate(src.descriptions, start=1):
            with rasterio.open(folder / f"{prefix}_{name}.tif", "w", **profile) as dst:
                dst.write(src.read(index), 1)


def test_oscd_reader_on_laid_out_folder(tmp_path):
    images = tmp_path / "Onera Satellite Change Detection dataset - Images"
    labels = tmp_path / "Onera Satellite Change Detection dataset - Train Labels"
    _write_bands(images / "ljubljana" / "imgs_1", CHANGE / "scene_4.tif", "S2A_20150711")
    _write_bands(images / "ljubljana" / "imgs_2", CHANGE / "scene_3.tif", "S2A_20150830")
    (images / "ljubljana" / "dates.txt").write_text("date_1: 20150711\ndate_2: 20150830\n")
    (images / "train.txt").write_text("ljubljana")
    (images / "test.txt").write_text("")
    change = np.zeros((101, 100), dtype=np.uint8)
    change[40:60, 30:70] = 255
    (labels / "ljubljana" / "cm").mkdir(parents=True)
    Image.fromarray(change).save(labels / "ljubljana" / "cm" / "cm.png")
    records = oscd_records(tmp_path, "train", tile_size=32)
    assert len(records) == 9 and records[0]["dates"] == ["20150711", "20150830"]
    item = ChangeDetectionTransform(S2MAEImageProcessor(size=32))(records[4])  # window rows 32..64, cols 32..64
    assert item["pixel_values"].shape == item["pixel_values_2"].shape == (12, 32, 32)
    assert np.array_equal(item["labels"].numpy(), (change[32:64, 32:64] > 0).astype(np.int64))
    assert not torch.equal(item["pixel_values"], item["pixel_values_2"])


def test_change_triples_reject_other_bands(tmp_path):
    with rasterio.open(CHANGE / "scene_3.tif") as src:
        profile, data = {**src.profile, "count": 12}, src.read()[:12]
        names = src.descriptions[:12]
    with rasterio.open(tmp_path / "fewer.tif", "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(names, start=1):
            dst.set_band_description(index, name)
    with rasterio.open(tmp_path / "change.tif", "w", **{**profile, "count": 1, "dtype": "uint8"}) as dst:
        dst.write(np.zeros((1, 101, 100), dtype=np.uint8))
    with pytest.raises(ValueError, match="different bands"):
        change_triples([(CHANGE / "scene_4.tif", tmp_path / "fewer.tif", tmp_path / "change.tif")])
    assert len(change_triples([(CHANGE / "scene_4.tif", CHANGE / "scene_3.tif", tmp_path / "change.tif")], 32)) == 9


def test_predict_scene_georeference_and_blending(checkpoint, tmp_path):
    config = S2MAEConfig.from_pretrained(checkpoint)
    config.update({"num_labels": 3, "image_size": 32})
    torch.manual_seed(0)
    model = S2MAEForSemanticSegmentation(config).eval()
    processor = S2MAEImageProcessor(size=32, scaling="reflectance")
    crop = tmp_path / "crop.tif"
    raster = read_window(SCENE, Window(0, 0, 80, 72))  # all 13 bands on the 10 m grid
    stack = raster.array.copy()
    stack[:, 60:, 70:] = 0  # a nodata corner
    transform, crs = raster.transform, raster.crs
    profile = {"driver": "GTiff", "height": 72, "width": 80, "count": 13, "dtype": str(stack.dtype), "crs": crs}
    profile["transform"] = transform
    with rasterio.open(crop, "w", nodata=0, **profile) as dst:
        dst.write(stack)
        for index, name in enumerate(raster.band_names, start=1):
            dst.set_band_description(index, name)
    predictor = ScenePredictor(model, processor, [crop])
    output = predict_scene(predictor, tmp_path / "pred.tif", overlap=16, probabilities=True)
    with rasterio.open(output) as out:
        assert (out.crs, out.transform, out.shape, out.count) == (crs, transform, (72, 80), 3)
        probabilities = out.read()
    assert np.isnan(probabilities[:, 60:, 70:]).all() and not np.isnan(probabilities[:, :60]).any()
    # the first window's interior seen by it alone (rows, cols < 16) equals a direct model call on that window
    direct, _ = predictor(Window(0, 0, 32, 32))
    np.testing.assert_allclose(probabilities[:, :16, :16], direct.numpy()[:, :16, :16], rtol=1e-5, atol=1e-6)
    # overlaps are convex blends of the windows: no seam (every value a probability, rows sum to 1)
    np.testing.assert_allclose(np.nansum(probabilities, 0)[:60], 1.0, rtol=1e-5)
    ids = predict_scene(predictor, tmp_path / "ids.tif", overlap=16)
    with rasterio.open(ids) as out:
        classes = out.read(1)
    assert out.nodata == 255 and (classes[60:, 70:] == 255).all()
    assert np.array_equal(classes[:60], probabilities[:, :60].argmax(0))


# --- the training scripts, in-process with a tiny model ---------------------------------------------------------------

SCRIPT_RUN = [
    "--config_overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64",
    "--decode_channels", "16", "--max_steps", "2", "--per_device_train_batch_size", "2",
    "--per_device_eval_batch_size", "64", "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none",
    "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
]  # fmt: skip
SEGMENTATION_DATA = [
    "--scene_paths", str(SCENE), "--label_paths", str(LABELS), "--tile_size", "32", "--image_size", "32",
    "--class_names_file", str(LABELS.parent / "T33UUU_osm_landuse_classes.json"),
]  # fmt: skip


def _direct_confusion(folder: Path, records: list, transform_class, num_labels: int, **transform_args) -> np.ndarray:
    """Confusion matrix of the saved model of `folder` on `records`, computed here without Trainer."""
    processor = S2MAEImageProcessor.from_pretrained(folder)
    model_class = (
        S2MAEForChangeDetection if transform_class is ChangeDetectionTransform else (S2MAEForSemanticSegmentation)
    )
    model = model_class.from_pretrained(folder).eval()
    batch = collate_dense([transform_class(processor, **transform_args)(record) for record in records])
    labels = batch.pop("labels")
    with torch.no_grad():
        predictions = model(**batch).logits.argmax(1)
    return confusion_matrix(predictions.numpy(), labels.numpy(), num_labels)


def test_segmentation_script_metrics_card_and_resume(tmp_path):
    args = [*SCRIPT_RUN, *SEGMENTATION_DATA, "--output_dir", str(tmp_path), "--save_strategy", "steps",
            "--save_steps", "2"]  # fmt: skip
    metrics = run_segmentation.main(args)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    names = ["forest", "residential", "farm", "meadow", "scrub", "grass", "water", "wetland"]
    assert list(saved["eval_per_class_iou"]) == names and saved["train_steps"] == 2
    assert saved["eval_mean_iou"] == pytest.approx(np.nanmean(list(saved["eval_per_class_iou"].values())))
    # the whole evaluation set's scores, recomputed here from the saved model on the same spatial split
    _, data_args, training_args = run_segmentation.parse_arguments(args)
    _, evaluation, values, _ = run_segmentation.build_data(data_args, training_args.seed)
    assert len(evaluation) == saved["num_eval_tiles"] > 0
    direct = segmentation_scores(_direct_confusion(tmp_path, evaluation, DenseTransform, 8, class_values=values))
    assert saved["eval_overall_accuracy"] == pytest.approx(direct["overall_accuracy"], abs=1e-3)
    np.testing.assert_allclose(list(saved["eval_per_class_iou"].values()), direct["per_class_iou"], atol=1e-3)
    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag: image-segmentation" in card and "| mean_iou |" in card and "| overall_accuracy |" in card
    assert S2MAEForSemanticSegmentation.from_pretrained(tmp_path).config.id2label == dict(enumerate(names))
    assert saved == json.loads(json.dumps(metrics))
    # run again with more steps: resumes from checkpoint-2 and trains one more
    resumed = run_segmentation.main([*args, "--max_steps", "3"])
    assert resumed["train_steps"] == 3 and json.loads((tmp_path / "metrics.json").read_text())["train_steps"] == 3
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # resuming the same folder with another head is refused before training, naming the difference
    with pytest.raises(ValueError, match="decode_channels: checkpoint 16, this run 8"):
        run_segmentation.main([*args, "--max_steps", "4", "--decode_channels", "8"])


def test_segmentation_script_bad_inputs(tmp_path, checkpoint):
    with rasterio.open(LABELS) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = profile["transform"] @ Affine.translation(1, 0)
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as dst:
        dst.write(data)
    common = [*SCRIPT_RUN, "--output_dir", str(tmp_path / "out"), "--save_strategy", "no"]
    shifted = [arg if arg != str(LABELS) else str(tmp_path / "shifted.tif") for arg in SEGMENTATION_DATA]
    with pytest.raises(ValueError, match="not on the grid"):
        run_segmentation.main([*common, *shifted])
    with pytest.raises(ValueError, match=r"values \[4, 5, 6, 7, 8\] that are neither in --class_values \[1, 2, 3\]"):
        run_segmentation.main([*common, *SEGMENTATION_DATA, "--class_values", "1", "2", "3"])
    three = S2MAEConfig.from_pretrained(checkpoint, num_labels=3)
    S2MAEForSemanticSegmentation(three).save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="segments 3 classes .* but the data has 8 classes"):
        run_segmentation.main([*common, *SEGMENTATION_DATA, "--model_name_or_path", str(tmp_path / "three")])
    assert not (tmp_path / "out").exists()  # every error came before training


@pytest.fixture
def change_csv(tmp_path) -> Path:
    """A before,after,change CSV: two real eo-learn dates (2015-07-11, 2015-08-30) and a change raster written here."""
    with rasterio.open(CHANGE / "scene_3.tif") as src:
        profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": None}
    change = np.zeros((101, 100), dtype=np.uint8)
    change[40:70, 20:60] = 1
    change[:4] = 9  # neither 0 nor a change value: unlabelled
    with rasterio.open(tmp_path / "change.tif", "w", **profile) as dst:
        dst.write(change, 1)
    csv = tmp_path / "triples.csv"
    csv.write_text(f"before,after,change\n{CHANGE / 'scene_4.tif'},{CHANGE / 'scene_3.tif'},change.tif\n")
    return csv


def test_change_detection_script_writes_change_scores(tmp_path, change_csv):
    args = [
        *SCRIPT_RUN, "--triples_csv", str(change_csv), "--tile_size", "16", "--validation_fraction", "0.3",
        "--config_overrides", "image_size=16,patch_size=4,hidden_size=32,num_hidden_layers=2,num_attention_heads=2,"
        "intermediate_size=64", "--class_weights", "1", "5", "--learning_rate", "3e-3", "--max_steps", "3",
        "--output_dir", str(tmp_path / "out"), "--save_strategy", "no",
    ]  # fmt: skip
    run_change_detection.main(args)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["train_steps"] == 3 and saved["num_eval_tiles"] > 0
    _, data_args, training_args = run_change_detection.parse_arguments(args)
    _, evaluation = run_change_detection.build_records(data_args, training_args.seed)
    direct = _direct_confusion(tmp_path / "out", evaluation, ChangeDetectionTransform, 2)
    assert direct.sum() == sum(16 * 16 for _ in evaluation) - 16 * 4 * sum(
        1 for record in evaluation if record["window"]["row_off"] == 0
    )  # the unlabelled rows are left out
    expected = change_scores(direct)
    for name in ("precision", "recall", "f1", "iou", "overall_accuracy"):
        key = f"eval_change_{name}" if name != "overall_accuracy" else "eval_overall_accuracy"
        assert saved[key] == pytest.approx(expected[name], abs=1e-3), name
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| change_f1 |" in card and "| change_iou |" in card and "| change_precision |" in card
    config = S2MAEConfig.from_pretrained(tmp_path / "out")
    assert config.class_weights == [1.0, 5.0] and config.change_fusion == "difference"


def test_change_detection_script_bad_inputs(tmp_path, change_csv):
    with rasterio.open(CHANGE / "scene_3.tif") as src:
        profile, data, names = {**src.profile, "count": 12}, src.read()[:12], src.descriptions[:12]
    with rasterio.open(tmp_path / "fewer.tif", "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(names, start=1):
            dst.set_band_description(index, name)
    with rasterio.open(tmp_path / "change.tif") as src:
        profile, change = src.profile, src.read()
    profile["transform"] = profile["transform"] @ Affine.translation(0, 2)
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as dst:
        dst.write(change)
    common = [*SCRIPT_RUN, "--tile_size", "16", "--output_dir", str(tmp_path / "out"), "--save_strategy", "no"]
    rows = {
        "different bands": f"{CHANGE / 'scene_4.tif'},fewer.tif,change.tif",
        "not on the grid": f"{CHANGE / 'scene_4.tif'},{CHANGE / 'scene_3.tif'},shifted.tif",
    }
    for message, row in rows.items():
        change_csv.write_text(f"before,after,change\n{row}\n")
        with pytest.raises(ValueError, match=message):
            run_change_detection.main([*common, "--triples_csv", str(change_csv)])
    (tmp_path / "bad.csv").write_text("date1,date2,change\na,b,c\n")
    with pytest.raises(ValueError, match=r"missing \['before', 'after'\]"):
        run_change_detection.main([*common, "--triples_csv", str(tmp_path / "bad.csv")])
    assert not (tmp_path / "out").exists()


def test_a_json_arguments_file_gets_the_same_checks_and_settings_as_flags(tmp_path):
    # a JSON file used to bypass the scripts' checks and `prepare_training_arguments`
    config = tmp_path / "args.json"
    config.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "tile_size": 16}))
    with pytest.raises(ValueError, match="Give either --oscd_root or --triples_csv"):
        run_change_detection.parse_arguments([str(config)])
    with pytest.raises(ValueError, match="Give either --scene_paths with --label_paths, or --pairs_csv"):
        run_segmentation.parse_arguments([str(config)])
    config.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "triples_csv": "pairs.csv"}))
    with pytest.raises(ValueError, match="Give --tile_size"):
        run_change_detection.parse_arguments([str(config)])
    config.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "triples_csv": "pairs.csv", "tile_size": 16}))
    _, data_args, training_args = run_change_detection.parse_arguments([str(config)])
    assert data_args.tile_size == 16 and training_args.remove_unused_columns is False

"""Model cards: Hub metadata that parses back, a body that states bands and scaling exactly, a quick start that runs."""

import ast
import re

import pytest
from hub_cache import fill_hub_cache, run_python
from huggingface_hub import EvalResult, ModelCard
from model_tester import tiny_config

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.hub import save_with_remote_code
from modeling_s2mae.image_processing_s2mae import EUROSAT_BAND_MEAN, EUROSAT_BAND_STD, EUROSAT_MS_BANDS
from modeling_s2mae.model_card import CITATION, write_model_card

LABELS = {0: "AnnualCrop", 1: "Forest", 2: "SeaLake"}


def _python_block(card: ModelCard) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one python block, found {len(blocks)}"
    return blocks[0]


def test_pretraining_card_metadata_parses_back(tmp_path):
    config = tiny_config()
    processor = S2MAEImageProcessor.from_model_config(config)
    write_model_card(
        tmp_path,
        config,
        processor,
        model_name="S2MAE tiny",
        datasets=["org/fmow-sentinel"],
        metrics={"mse": 0.0123},
        training_summary="Pretrained for 2 steps on random data.",
        repo_id="org/s2mae-tiny",
    )
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-feature-extraction"
    assert data.license == "apache-2.0"
    assert data.datasets == ["org/fmow-sentinel"]
    assert data.metrics == ["mse"]
    assert data.tags == [
        "remote-sensing",
        "earth-observation",
        "multispectral",
        "sentinel-2",
        "masked-autoencoder",
        "s2mae",
    ]
    assert data.model_name == "S2MAE tiny"
    assert data.eval_results == [
        EvalResult(
            task_type="image-feature-extraction",
            dataset_type="org/fmow-sentinel",
            dataset_name="org/fmow-sentinel",
            metric_type="mse",
            metric_value=0.0123,
        )
    ]
    assert data.base_model is None
    assert "Pretrained for 2 steps on random data." in card.text
    assert CITATION in card.text
    assert 'repo_id = "org/s2mae-tiny"' in card.text


def test_classification_card_metadata_bands_and_labels(tmp_path):
    config = S2MAEConfig(id2label={index: f"class_{index}" for index in range(10)})
    processor = S2MAEImageProcessor.from_model_config(
        config,
        scaling="standardize",
        band_mean=EUROSAT_BAND_MEAN,
        band_std=EUROSAT_BAND_STD,
        input_band_names=EUROSAT_MS_BANDS,
        nodata=0,
    )
    results = [
        EvalResult(
            task_type="image-classification",
            dataset_type="blanchon/EuroSAT_MSI",
            dataset_name="EuroSAT-MS",
            dataset_split="test",
            metric_type="accuracy",
            metric_value=0.98,
        )
    ]
    card = write_model_card(
        tmp_path,
        config,
        processor,
        model_name="S2MAE ViT-B EuroSAT",
        task="image-classification",
        base_model="org/s2mae-vit-b",
        datasets="blanchon/EuroSAT_MSI",
        eval_results=results,
        license="cc-by-4.0",
    )
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.pipeline_tag == "image-classification"
    assert loaded.data.base_model == "org/s2mae-vit-b"
    assert loaded.data.license == "cc-by-4.0"
    assert loaded.data.eval_results == results
    text = card.text
    assert "Fine-tuned from [org/s2mae-vit-b](https://huggingface.co/org/s2mae-vit-b)" in text
    assert "0: class_0, 1: class_1" in text and "9: class_9" in text
    # the band table lists every band in the model's order, with wavelength, resolution and statistics
    rows = re.findall(r"^\| (\d+) \| (\w+) \| ([\d.]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", text, flags=re.MULTILINE)
    assert [row[1] for row in rows] == list(config.band_names)
    assert [float(row[2]) for row in rows] == config.band_wavelengths
    assert [float(row[4]) for row in rows] == [EUROSAT_BAND_MEAN[name] for name in config.band_names]
    assert [float(row[5]) for row in rows] == [EUROSAT_BAND_STD[name] for name in config.band_names]
    assert rows[0][3] == "60" and rows[1][3] == "10" and rows[8][3] == "20"  # B01, B02, B8A
    assert "`x' = (x - mean_b) / std_b`" in text and "**Not** clipped" in text
    assert "equal to `0` (`nodata`)" in text
    assert str(list(EUROSAT_MS_BANDS)) in text  # the processor's default input order is stated
    assert "logits.softmax(-1)" in text


@pytest.mark.parametrize(
    ("options", "formula"),
    [
        ({}, "`x' = (x - min_b) / (max_b - min_b + 1e-06)`"),
        ({"minmax_eps": 0.001}, "`x' = (x - min_b) / (max_b - min_b + 0.001)`"),
        ({"scaling": "reflectance"}, "`x' = clip(x / 10000.0, 0, 1)`"),
        ({"scaling": "reflectance", "reflectance_offset": -1000}, "`x' = clip((x - 1000.0) / 10000.0, 0, 1)`"),
        (
            {"scaling": "sigma", "band_mean": EUROSAT_BAND_MEAN, "band_std": EUROSAT_BAND_STD},
            "`x' = clip((x - (mean_b - 2.0 * std_b)) / (4.0 * std_b), 0, 1)`",
        ),
    ],
)
def test_card_states_the_processors_scaling_exactly(tmp_path, options, formula):
    config = tiny_config()
    processor = S2MAEImageProcessor.from_model_config(config, resample="bicubic", **options)
    text = write_model_card(tmp_path, config, processor, model_name="tiny").text
    assert formula in text
    assert f'`scaling="{processor.scaling}"`' in text
    assert f"Resize to {config.image_size} x {config.image_size} px (`bicubic`" in text
    assert "Values are clamped to [0, 1] after resizing." in text


def test_card_for_other_bands_has_no_sentinel2_claims(tmp_path):
    config = tiny_config(band_names=["red", "green", "blue", "nir", "swir1", "swir2"])
    text = write_model_card(tmp_path, config, model_name="six bands").text
    card = ModelCard.load(tmp_path / "README.md")
    assert "sentinel-2" not in card.data.tags
    assert "| 0 | red | unknown |" in text
    assert "native resolution" not in text and "L1C vs L2A" not in text
    assert 'input_band_names = ["red", "green", "blue", "nir", "swir1", "swir2"]' in text
    assert "No image processor was saved with this checkpoint" in text
    with_wavelengths = tiny_config(band_names=["a", "b", "c", "d", "e", "f"], band_wavelengths=[1, 2, 3, 4, 5, 6.5])
    assert "| 5 | f | 6.5 |" in write_model_card(tmp_path, with_wavelengths, model_name="x").text


def test_metrics_of_several_datasets_stay_out_of_the_model_index(tmp_path):
    card = write_model_card(
        tmp_path, tiny_config(), model_name="tiny", datasets=["a/one", "b/two"], metrics={"mse": 0.5}
    )
    assert card.data.eval_results is None
    assert "| mse | 0.5 |" in card.text


def test_card_refuses_inconsistent_input(tmp_path):
    config = tiny_config()
    with pytest.raises(ValueError, match="task must be one of"):
        write_model_card(tmp_path, config, model_name="x", task="segmentation")
    with pytest.raises(ValueError, match="band_names"):
        write_model_card(tmp_path, config, S2MAEImageProcessor(size=config.image_size), model_name="x")
    with pytest.raises(ValueError, match="resizes to 32 px"):
        write_model_card(tmp_path, config, S2MAEImageProcessor(band_names=config.band_names, size=32), model_name="x")
    with pytest.raises(ValueError, match="EvalResult"):
        write_model_card(tmp_path, config, model_name="x", eval_results=[{"accuracy": 1.0}])


def test_remote_code_note_follows_the_folder(tmp_path):
    config = tiny_config()
    processor = S2MAEImageProcessor.from_model_config(config)
    plain = write_model_card(tmp_path / "plain", config, processor, model_name="x")
    assert "trust_remote_code=True" not in plain.text
    save_with_remote_code(S2MAEForPreTraining(config), processor, tmp_path / "remote")
    remote = write_model_card(tmp_path / "remote", config, processor, model_name="x")
    assert "pass `trust_remote_code=True` to `from_pretrained`" in remote.text


def test_quick_start_snippets_run_as_written(tmp_path):
    """Pretraining card: its snippet unchanged, the repo id served from a filled offline cache. Classification
    cards (single- and multi-label): the repo id replaced by the local folder. One fresh interpreter runs all."""
    config = tiny_config()
    processor = S2MAEImageProcessor.from_model_config(config)
    snippets = []

    save_with_remote_code(S2MAEForPreTraining(config), processor, tmp_path / "pretrained")
    card = write_model_card(tmp_path / "pretrained", config, processor, model_name="tiny", repo_id="org/tiny")
    fill_hub_cache(tmp_path / "pretrained", tmp_path / "cache", "org/tiny")
    snippets.append(_python_block(card))

    for problem_type in ("single_label_classification", "multi_label_classification"):
        folder = tmp_path / problem_type
        classifier_config = tiny_config(id2label=LABELS, problem_type=problem_type)
        save_with_remote_code(S2MAEForImageClassification(classifier_config), processor, folder)
        card = write_model_card(
            folder, classifier_config, processor, model_name="tiny", task="image-classification", repo_id="org/cls"
        )
        code = _python_block(card)
        assert code.count('"org/cls"') == 1
        snippets.append(code.replace('"org/cls"', repr(str(folder))))

    for index, code in enumerate(snippets):
        (tmp_path / f"snippet_{index}.py").write_text(code)
    runner = "import sys\nfor path in sys.argv[1:]:\n    exec(compile(open(path).read(), path, 'exec'), {})\n"
    paths = [str(tmp_path / f"snippet_{index}.py") for index in range(len(snippets))]
    result = run_python(runner, *paths, cache_dir=tmp_path / "cache", cwd=tmp_path, with_package=True)
    lines = result.stdout.splitlines()
    assert f"torch.Size([1, {config.hidden_size}]) torch.Size([1, {config.num_tokens}, {config.hidden_size}])" in lines
    assert any(line.startswith("MSE on the hidden cubes: ") for line in lines)
    assert lines[-2].split()[0] in LABELS.values()  # single-label: best label and its probability
    assert set(ast.literal_eval(lines[-1])) <= set(LABELS.values())  # multi-label: the list of labels

"""Model cards: Hub metadata that parses back, a body that states bands and scaling exactly, a quick start that runs."""

import ast
import fnmatch
import re
from pathlib import Path
from types import SimpleNamespace

import jinja2
import jinja2.meta
import pytest
from hub_cache import fill_hub_cache, run_python
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from model_tester import tiny_config

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.hub import save_with_remote_code
from modeling_s2mae.image_processing_s2mae import EUROSAT_BAND_MEAN, EUROSAT_BAND_STD, EUROSAT_MS_BANDS
from modeling_s2mae.model_card import (
    CITATION,
    TEMPLATE_PATH,
    _card_context,
    hub_id,
    training_summary,
    write_model_card,
)

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
    assert "set `band_wavelengths`" in text
    assert "native resolution" not in text and "L1C vs L2A" not in text
    assert 'input_band_names = ["red", "green", "blue", "nir", "swir1", "swir2"]' in text
    assert "No image processor was saved with this checkpoint" in text
    for sentinel2_only in ("Sentinel-2", "EuroSAT", "B8A", "B10", "Landsat"):
        assert sentinel2_only not in text


def test_card_for_another_sensor_shows_its_wavelengths_and_scaling(tmp_path):
    """Landsat-like band names: the wavelengths come from the config, the processor's scaling is stated."""
    names = ["coastal", "blue", "green", "red", "nir08", "swir16"]
    wavelengths = [443, 482, 561.5, 654.5, 865, 1608.5]
    config = tiny_config(band_names=names, band_wavelengths=wavelengths)
    processor = S2MAEImageProcessor.from_model_config(
        config, scaling="reflectance", reflectance_scale=65535.0, nodata=-9999
    )
    card = write_model_card(tmp_path, config, processor, model_name="landsat-like")
    rows = re.findall(r"^\| (\d+) \| (\w+) \| ([\d.]+) \|$", card.text, flags=re.MULTILINE)
    assert [(name, float(value)) for _, name, value in rows] == list(zip(names, map(float, wavelengths)))
    assert "`x' = clip(x / 65535.0, 0, 1)`" in card.text and "equal to `-9999` (`nodata`)" in card.text
    assert "set `band_wavelengths`" not in card.text and "Sentinel-2" not in card.text
    assert "for 6-band multispectral imagery (coastal, blue, green, red, nir08, swir16)" in card.text


def test_template_reads_only_values_the_code_provides(tmp_path):
    """A misspelt variable in the template would render as an empty string: every name it reads must be computed."""
    config = tiny_config(id2label=LABELS)
    processor = S2MAEImageProcessor.from_model_config(config, nodata=0)
    needed = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(TEMPLATE_PATH.read_text()))
    context = _card_context(
        config,
        processor,
        model_name="x",
        task="image-classification",
        model_id="org/x",
        remote_code=False,
        training_summary=None,
        metrics=None,
        eval_results=None,
    )
    metadata = {"card_data", *ModelCardData(base_model="org/b", datasets=["org/d"]).to_dict()}
    assert needed - set(context) - metadata == set()
    assert {"base_model", "datasets"} <= needed  # the metadata the body links to


@pytest.mark.parametrize("task", ["pretraining", "feature-extraction", "image-classification"])
@pytest.mark.parametrize("with_processor", [True, False])
def test_rendered_card_is_tidy_markdown(tmp_path, task, with_processor):
    config = tiny_config(id2label=LABELS)
    processor = S2MAEImageProcessor.from_model_config(config) if with_processor else None
    write_model_card(tmp_path, config, processor, model_name="tidy", task=task, metrics={"mse": 0.5})
    raw = (tmp_path / "README.md").read_text()
    assert raw.startswith("---\n") and raw.endswith("```\n") and not raw.endswith("\n\n")
    assert "\n\n\n" not in raw and "{{" not in raw and "{%" not in raw
    headings = re.findall(r"^## (.+)$", raw, flags=re.MULTILINE)
    assert headings[:2] == ["Model", "Bands"] and headings[-3:] == ["Intended uses", "Limitations", "Citation"]
    for table in re.findall(r"(?:^\|.*\|\n)+", raw, flags=re.MULTILINE):
        widths = {line.count(" | ") for line in table.splitlines()}
        assert len(widths) == 1, table


def test_template_ships_with_the_package():
    assert TEMPLATE_PATH.is_file() and TEMPLATE_PATH.parent.parent.name == "modeling_s2mae"
    setup_py = Path(__file__).resolve().parents[1] / "setup.py"
    keywords = [node for node in ast.walk(ast.parse(setup_py.read_text())) if isinstance(node, ast.keyword)]
    package_data = next(node.value for node in keywords if node.arg == "package_data")
    patterns = ast.literal_eval(package_data)["modeling_s2mae"]
    relative = TEMPLATE_PATH.relative_to(TEMPLATE_PATH.parent.parent).as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), patterns


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


def _training_args(**overrides) -> SimpleNamespace:
    values = {"per_device_train_batch_size": 8, "world_size": 2, "gradient_accumulation_steps": 1}
    return SimpleNamespace(**{**values, "learning_rate": 1.5e-4, **overrides})


def test_training_summary_states_the_recipe():
    pretrain = training_summary(
        _training_args(gradient_accumulation_steps=4),
        task="pretraining",
        data="the sample imagery",
        steps=40,
        script="examples/run_pretrain.py",
        start_from="org/s2mae-64px",
        details=["mask ratio 0.9 (random masking)"],
        notes="Final eval loss: 0.25. ",
    )
    assert pretrain == (
        "Pretrained starting from `org/s2mae-64px` with `examples/run_pretrain.py` on the sample imagery: mask ratio "
        "0.9 (random masking), 40 steps, batch 8 x 2 process(es) x 4 accumulation steps, learning rate 0.00015. "
        "Final eval loss: 0.25."
    )
    scratch = training_summary(_training_args(), task="image-classification", data="EuroSAT-MS")
    assert scratch == "Trained from scratch on EuroSAT-MS: batch 8 x 2 process(es), learning rate 0.00015."
    tuned = training_summary(_training_args(), task="image-classification", data="d", start_from="org/b", steps=3)
    assert tuned.startswith("Fine-tuned from the encoder of `org/b` on d: 3 steps, batch")
    with pytest.raises(ValueError, match="task must be one of"):
        training_summary(_training_args(), task="segmentation", data="d")


def test_hub_id_tells_repo_ids_from_local_folders(tmp_path):
    assert hub_id("org/s2mae-vit-b") == "org/s2mae-vit-b"
    assert hub_id(tmp_path) is None and hub_id(str(tmp_path)) is None and hub_id(None) is None and hub_id("") is None

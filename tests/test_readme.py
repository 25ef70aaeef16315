"""The README's snippets, names, flags and links against the code: what a new user copies must run.

The Python snippets are extracted from README.md / sample_data/README.md and executed (the quick start with a narrow
model of the same token layout, so that it takes a second); the flags of every command line the README shows are
checked against the `--help` of the script it names.
"""

import contextlib
import importlib.util
import io
import re
import sys
import typing
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import modeling_s2mae
from modeling_s2mae.image_processing_s2mae import SCALING_METHODS

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
SAMPLE_README = REPO_ROOT / "sample_data" / "README.md"
SCRIPTS = {path.stem: path for path in sorted((REPO_ROOT / "examples").glob("*.py"))}
SCRIPTS["convert_original_to_hf"] = REPO_ROOT / "conversion" / "convert_original_to_hf.py"
REPO_FOLDERS = "benchmarks|examples|tests|modeling_s2mae|conversion|sample_data"
OTHER_TOOLS_FLAGS = {"--config_file", "--nproc_per_node", "--check", "--collect-only", "--help"}
"""Flags of accelerate, torchrun, ruff and pytest that the README names."""

SMALL_CONFIG = (
    "modeling_s2mae.S2MAEConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, "
    "decoder_hidden_size=32, decoder_num_attention_heads=2, decoder_intermediate_size=64)"
)
"""The quick start's default config at a narrow width: same bands, size, cubes (1024 tokens of 192 values) and depth
(12 blocks, so that the UPerNet snippet's out_indices exist)."""

pytestmark = pytest.mark.usefixtures("one_thread")


def code_blocks(path: Path, language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def block_with(path: Path, marker: str) -> str:
    """The one Python block of `path` that contains `marker`."""
    found = [block for block in code_blocks(path) if marker in block]
    assert len(found) == 1, f"expected one python block of {path.name} with {marker!r}, found {len(found)}"
    return found[0]


@cache
def script_help(name: str) -> str:
    """`python <script> --help`, run in this process (the scripts' imports are the library's)."""
    path = SCRIPTS[name]
    spec = importlib.util.spec_from_file_location(f"readme_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = io.StringIO()
    argv = sys.argv
    sys.argv = [str(path), "--help"]
    try:
        with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
            module.main()
    finally:
        sys.argv = argv
    assert exit_info.value.code == 0
    return output.getvalue()


def help_flags(name: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", script_help(name)))


def test_links_and_repository_paths_exist():
    documents = [README, SAMPLE_README, *sorted((REPO_ROOT / "benchmarks").glob("README*.md"))]
    missing = []
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for link in re.findall(r"\]\(([^)#\s]+)\)", text):
            if not link.startswith("http") and not (document.parent / link).exists():
                missing.append(f"{document.name}: link {link}")
        for path in re.findall(rf"`((?:{REPO_FOLDERS})/[^`\s:]*)", text):
            if not re.search(r"[<*{]", path) and not (REPO_ROOT / path.rstrip("/")).exists():
                missing.append(f"{document.name}: path {path}")
    assert not missing


def test_every_flag_the_readme_names_exists():
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", README.read_text(encoding="utf-8")))
    known = set().union(*(help_flags(name) for name in SCRIPTS))
    unknown = flags - known - OTHER_TOOLS_FLAGS
    assert not unknown, f"no script takes {sorted(unknown)}"


def test_each_command_line_uses_its_scripts_flags():
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"`([^`]*?(?:examples|conversion)/(\w+)\.py[^`]*)`", text)
    commands += [(line, name) for block in code_blocks(README, "bash") for line in block.splitlines()
                 for name in re.findall(r"(?:examples|conversion)/(\w+)\.py", line)]  # fmt: skip
    checked = set()
    for command, name in commands:
        if name not in SCRIPTS:
            continue
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", command.split(f"{name}.py", 1)[1]))
        unknown = flags - help_flags(name)
        assert not unknown, f"{name}.py has no {sorted(unknown)} (README: {command!r})"
        checked.add(name)
    assert {"run_probe", "prepare_dataset", "export_onnx", "predict_scene", "convert_original_to_hf"} <= checked


def test_model_table_defaults_and_choices_match_the_config():
    text = README.read_text(encoding="utf-8")
    table = text.split("## The model", 1)[1].split("Presets:", 1)[0]
    config = modeling_s2mae.S2MAEConfig()
    quoted = dict(re.findall(r"`(\w+)` \(([\d.]+)", table))
    assert quoted, "no `field` (default) pairs found in the model table"
    for field, value in quoted.items():
        assert float(getattr(config, field)) == float(value), field
    listed = re.search(r"`position_embedding_type`: ([^|]+)\|", table).group(1)
    choices = typing.get_args(modeling_s2mae.S2MAEConfig.__annotations__["position_embedding_type"])
    assert set(re.findall(r"`(\w+)`", listed)) == set(choices)
    scaling = text.split("- **Scaling** (`scaling=`)", 1)[1].split("- **Nodata", 1)[0]
    assert set(SCALING_METHODS) <= set(re.findall(r"`(\w+)`", scaling))


def test_quick_start_and_upernet_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick_start = block_with(README, "AutoModelForPreTraining.from_config")
    assert "modeling_s2mae.S2MAEConfig()" in quick_start
    namespace: dict = {}
    exec(quick_start.replace("modeling_s2mae.S2MAEConfig()", SMALL_CONFIG), namespace)
    assert type(namespace["model"]).__name__ == "S2MAEForPreTraining"
    assert namespace["inputs"]["pixel_values"].shape == (1, 12, 128, 128)
    assert namespace["inputs"]["pixel_mask"].shape == (1, 128, 128)
    assert namespace["out"].logits.shape == (1, 1024, 192)
    assert namespace["recon"].shape == (1, 12, 128, 128)
    assert type(namespace["encoder"]).__name__ == "S2MAEModel"
    assert namespace["classifier"].config.problem_type == "multi_label_classification"
    assert namespace["classifier"].config.num_labels == 19

    upernet_snippet = block_with(README, "UperNetForSemanticSegmentation")
    exec(upernet_snippet, namespace)
    upernet = namespace["upernet"].eval()
    saved = namespace["model"].s2mae.encoder.layers[0].mlp.fc1.weight
    assert torch.equal(upernet.backbone.s2mae.encoder.layers[0].mlp.fc1.weight, saved)  # the pretrained encoder
    assert upernet(torch.rand(1, 12, 128, 128)).logits.shape == (1, 8, 128, 128)


def test_pipeline_snippets_run(tmp_path, sample_data):
    config = modeling_s2mae.S2MAEConfig(
        image_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        decoder_hidden_size=32, decoder_num_attention_heads=2, decoder_intermediate_size=64,
        id2label={0: "AnnualCrop", 1: "Forest"}, label2id={"AnnualCrop": 0, "Forest": 1},
    )  # fmt: skip
    repo_id = str(tmp_path / "classifier")
    modeling_s2mae.S2MAEForImageClassification(config).save_pretrained(repo_id)
    modeling_s2mae.S2MAEImageProcessor(size=32).save_pretrained(repo_id)
    tiles = []
    for name in ("Forest/Forest_1.tif", "AnnualCrop/AnnualCrop_1.tif"):
        with rasterio.open(sample_data / "eurosat_ms" / name) as dataset:
            tiles.append(dataset.read())
    namespace = {
        "repo_id": repo_id,
        "input_band_names": modeling_s2mae.EUROSAT_MS_BANDS,
        "tile_a": tiles[0],
        "tile_b": tiles[1],
        "images": tiles,
    }
    classify_snippet = block_with(README, 'pipeline("image-classification"')
    last_line = classify_snippet.rstrip().splitlines()[-1]
    exec(classify_snippet.replace(last_line, f"result = {last_line}"), namespace)
    result = namespace["result"]
    assert len(result) == 2 and {entry["label"] for entry in result[0]} == {"Forest", "AnnualCrop"}
    exec(block_with(README, ".pooler_output"), namespace)
    assert namespace["features"].shape == (2, 32)


def test_sample_data_snippets_run(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    namespace: dict = {}
    exec(block_with(SAMPLE_README, "S2MAEImageProcessor(input_band_names=names, nodata=nodata)"), namespace)
    assert namespace["inputs"]["pixel_values"].shape == (1, 12, 128, 128)
    assert namespace["names"][8] == "B8A" and namespace["nodata"] == 0
    exec(block_with(SAMPLE_README, "bigearthnet_folder"), namespace)
    assert namespace["scene"].array.shape == (13, 384, 384) and namespace["scene"].array.dtype == np.uint16
    assert len(namespace["found"]) == 2 and len(namespace["found"][0]["labels"]) == 19
    assert namespace["patch"].array.shape == (12, 120, 120)
    assert namespace["patch"].band_names == list(modeling_s2mae.SENTINEL2_BANDS)

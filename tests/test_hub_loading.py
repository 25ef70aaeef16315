"""Loading S2MAE by repo id from a Hugging Face cache, with the package and without it (remote code); pipelines.

The Hub is not reachable in tests: `fill_hub_cache` stores saved folders in a temporary cache under repo ids, and
each loading test runs in a fresh interpreter with `HF_HUB_OFFLINE=1` (Auto registration is process-wide).
"""

import ast
import builtins
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hub_cache import fill_hub_cache, run_python
from huggingface_hub import scan_cache_dir
from model_tester import tiny_config
from PIL import UnidentifiedImageError
from transformers import AutoImageProcessor, AutoModel, pipeline
from transformers.dynamic_module_utils import get_relative_import_files

from modeling_s2mae import S2MAEForImageClassification, S2MAEForPreTraining, S2MAEImageProcessor, S2MAEModel
from modeling_s2mae.hub import (
    CONFIG_AUTO_MAP,
    PROCESSOR_AUTO_MAP,
    _check_flat_imports,
    prepare_for_remote_code,
    remote_code_files,
    save_with_remote_code,
)
from modeling_s2mae.image_processing_s2mae import SENTINEL2_13_BANDS
from modeling_s2mae.modeling_s2mae_dense import S2MAEBackbone, S2MAEForSemanticSegmentation

PRETRAINED_ID = "org/s2mae-vit-b"
CLASSIFIER_ID = "org/s2mae-vit-b-cls"
SEGMENTATION_ID = "org/s2mae-vit-b-seg"
LABELS = {0: "AnnualCrop", 1: "Forest", 2: "SeaLake"}
REMOTE_FILES = {
    "configuration_s2mae.py",
    "image_processing_s2mae.py",
    "masking.py",
    "modeling_s2mae.py",
    "modeling_s2mae_dense.py",
    "position_embeddings.py",
}

# Run in a subprocess: load every Auto class by repo id, apply them to the fixed input, save what came out.
# argv: images.npy, noise.pt, output.pt, trust_remote_code ("none" / "true"); the band names are the 13 L1C bands.
# With "true" it first checks that loading with trust_remote_code=False is refused.
LOAD_BY_REPO_ID = f"""
import builtins, sys
import numpy as np
import torch
from transformers import (
    AutoBackbone, AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
    AutoModelForPreTraining, AutoModelForSemanticSegmentation, pipeline
)

prompts = []
def _no_prompt(*args, **kwargs):
    prompts.append(args)
    raise EOFError("trust_remote_code prompt")
builtins.input = _no_prompt

images = np.load(sys.argv[1])
noise = torch.load(sys.argv[2], weights_only=True)
trust = {{"none": {{}}, "true": {{"trust_remote_code": True}}}}[sys.argv[4]]
bands = {list(SENTINEL2_13_BANDS)!r}
result = {{}}
modules = {{}}
if trust:  # without the package, remote code runs only when trusted
    try:
        AutoModel.from_pretrained("{PRETRAINED_ID}", trust_remote_code=False)
    except ValueError as error:
        assert "trust_remote_code=True" in str(error), error
    else:
        raise SystemExit("loaded remote code without trust_remote_code=True")

config = AutoConfig.from_pretrained("{PRETRAINED_ID}", **trust)
processor = AutoImageProcessor.from_pretrained("{PRETRAINED_ID}", **trust)
inputs = processor(images, input_band_names=bands, return_tensors="pt")
result["pixel_values"] = inputs["pixel_values"]
with torch.no_grad():
    model = AutoModel.from_pretrained("{PRETRAINED_ID}", **trust).eval()
    outputs = model(**inputs)
    result["model.last_hidden_state"] = outputs.last_hidden_state
    result["model.pooler_output"] = outputs.pooler_output
    result.update({{"state." + key: value for key, value in model.state_dict().items()}})
    pretraining = AutoModelForPreTraining.from_pretrained("{PRETRAINED_ID}", **trust).eval()
    outputs = pretraining(**inputs, noise=noise)
    result["pretraining.logits"] = outputs.logits
    result["pretraining.loss"] = outputs.loss
    classifier = AutoModelForImageClassification.from_pretrained("{CLASSIFIER_ID}", **trust).eval()
    result["classifier.logits"] = classifier(**inputs).logits
    segmentation = AutoModelForSemanticSegmentation.from_pretrained("{SEGMENTATION_ID}", **trust).eval()
    result["segmentation.logits"] = segmentation(**inputs).logits
    # AutoBackbone.from_pretrained asks the Hub whether the repo exists (Transformers 5.24), even offline: take the
    # class from AutoBackbone.from_config (registration or auto_map) and load the cached weights with it
    segmentation_config = AutoConfig.from_pretrained("{SEGMENTATION_ID}", **trust)
    backbone = type(AutoBackbone.from_config(segmentation_config, **trust)).from_pretrained("{SEGMENTATION_ID}")
    for index, feature_map in enumerate(backbone.eval()(inputs["pixel_values"]).feature_maps):
        result[f"backbone.feature_map.{{index}}"] = feature_map
for name, obj in [("config", config), ("processor", processor), ("model", model), ("pretraining", pretraining),
                  ("classifier", classifier), ("segmentation", segmentation), ("backbone", backbone)]:
    modules[name] = type(obj).__module__ + "." + type(obj).__name__

classify = pipeline(
    "image-classification",
    model="{CLASSIFIER_ID}",
    image_processor=AutoImageProcessor.from_pretrained("{CLASSIFIER_ID}", input_band_names=bands, **trust),
    trust_remote_code=bool(trust),
)
scores = classify(list(images), top_k=None)
result["pipeline.scores"] = torch.tensor([[{{d["label"]: d["score"] for d in s}}[label] for label in
                                          {list(LABELS.values())!r}] for s in scores])
torch.save(result, sys.argv[3])
print(repr(modules))
print("prompts", len(prompts))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> SimpleNamespace:
    """Three tiny checkpoints saved with remote code and cached as PRETRAINED_ID, CLASSIFIER_ID and SEGMENTATION_ID
    (an `S2MAEForSemanticSegmentation`), a fixed 13-band uint16 input, and the outputs the installed package gives on
    it."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    config = tiny_config()
    pretraining = S2MAEForPreTraining(config).eval()
    classifier = S2MAEForImageClassification(tiny_config(id2label=LABELS)).eval()
    processor = S2MAEImageProcessor.from_model_config(config)
    save_with_remote_code(pretraining, processor, root / "pretrained")
    save_with_remote_code(classifier, processor, root / "classifier")
    segmentation_config = tiny_config(num_labels=3, id2label=LABELS, decode_channels=16, out_indices=[1, 2])
    segmentation = S2MAEForSemanticSegmentation(segmentation_config).eval()
    save_with_remote_code(segmentation, processor, root / "segmentation")
    cache = root / "cache"
    fill_hub_cache(root / "pretrained", cache, PRETRAINED_ID)
    fill_hub_cache(root / "classifier", cache, CLASSIFIER_ID)
    fill_hub_cache(root / "segmentation", cache, SEGMENTATION_ID)

    rng = np.random.default_rng(0)
    images = rng.integers(1, 10000, size=(2, len(SENTINEL2_13_BANDS), 20, 20), dtype=np.uint16)
    noise = torch.rand(2, config.num_tokens, generator=torch.Generator().manual_seed(1))
    np.save(root / "images.npy", images)
    torch.save(noise, root / "noise.pt")

    inputs = processor(images, input_band_names=SENTINEL2_13_BANDS, return_tensors="pt")
    encoder = S2MAEModel.from_pretrained(root / "pretrained").eval()
    with torch.no_grad():
        encoded = encoder(**inputs)
        reconstructed = pretraining(**inputs, noise=noise)
        expected = {
            "pixel_values": inputs["pixel_values"],
            "model.last_hidden_state": encoded.last_hidden_state,
            "model.pooler_output": encoded.pooler_output,
            "pretraining.logits": reconstructed.logits,
            "pretraining.loss": reconstructed.loss,
            "classifier.logits": classifier(**inputs).logits,
            "segmentation.logits": segmentation(**inputs).logits,
        }
        backbone = S2MAEBackbone.from_pretrained(root / "segmentation").eval()
        for index, feature_map in enumerate(backbone(inputs["pixel_values"]).feature_maps):
            expected[f"backbone.feature_map.{index}"] = feature_map
    assert expected["segmentation.logits"].shape == (2, 3, 16, 16) and index == 1
    expected["pipeline.scores"] = expected["classifier.logits"].softmax(-1)
    weights = {key.removeprefix("s2mae."): value for key, value in pretraining.state_dict().items()}
    encoder_weights = {key: weights[key] for key in encoder.state_dict() if key in weights}
    return SimpleNamespace(
        root=root,
        cache=cache,
        config=config,
        processor=processor,
        images=images,
        expected=expected,
        encoder_weights=encoder_weights,
        encoder_keys=set(encoder.state_dict()),
    )


def _load_in_subprocess(hub: SimpleNamespace, name: str, with_package: bool, trust: str) -> tuple[dict, str]:
    workdir = hub.root / name
    workdir.mkdir()
    output = workdir / "result.pt"
    args = (str(hub.root / "images.npy"), str(hub.root / "noise.pt"), str(output), trust)
    code = ("import modeling_s2mae\n" if with_package else "") + LOAD_BY_REPO_ID
    completed = run_python(code, *args, cache_dir=hub.cache, cwd=workdir, with_package=with_package)
    return torch.load(output, weights_only=True), completed.stdout


def _assert_same_outputs(result: dict, hub: SimpleNamespace) -> None:
    for key, expected in hub.expected.items():
        torch.testing.assert_close(result[key], expected, msg=lambda message, key=key: f"{key}: {message}")


def test_prepared_folder_carries_flat_code_and_complete_auto_maps(hub):
    folder = hub.root / "pretrained"
    assert REMOTE_FILES <= {path.name for path in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "s2mae"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_s2mae.S2MAEConfig",
        "AutoModel": "modeling_s2mae.S2MAEModel",
        "AutoModelForPreTraining": "modeling_s2mae.S2MAEForPreTraining",
        "AutoModelForImageClassification": "modeling_s2mae.S2MAEForImageClassification",
        "AutoModelForSemanticSegmentation": "modeling_s2mae_dense.S2MAEForSemanticSegmentation",
        "AutoBackbone": "modeling_s2mae_dense.S2MAEBackbone",
    }
    processor_config = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoImageProcessor": "image_processing_s2mae.S2MAEImageProcessor"}
    assert processor_config["image_processor_type"] == "S2MAEImageProcessor"
    # every file Transformers will fetch for each auto_map entry is in the folder, byte for byte the package's
    for reference in [*CONFIG_AUTO_MAP.values(), *PROCESSOR_AUTO_MAP.values()]:
        module_file = folder / f"{reference.split('.')[0]}.py"
        for needed in [module_file, *map(Path, get_relative_import_files(str(module_file)))]:
            assert needed.is_file(), f"{reference} needs {needed.name}"
    for source in remote_code_files():
        assert (folder / source.name).read_bytes() == source.read_bytes()


def test_prepare_for_remote_code_is_idempotent_and_keeps_other_auto_map_entries(tmp_path):
    model = S2MAEModel(tiny_config())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoBackbone": "my_backbone.Backbone"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    prepare_for_remote_code(tmp_path)
    first = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    prepare_for_remote_code(tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == first
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoBackbone": "my_backbone.Backbone", **CONFIG_AUTO_MAP}
    assert not (tmp_path / "preprocessor_config.json").exists()


def test_prepare_for_remote_code_refuses_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        prepare_for_remote_code(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="model_type 'vit'"):
        prepare_for_remote_code(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "s2mae"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "ViTImageProcessor"}))
    with pytest.raises(ValueError, match="ViTImageProcessor"):
        prepare_for_remote_code(tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from . import masking\n", "cannot be resolved"),
        ("from ..masking import x\n", "cannot be resolved"),
        ("from .data.raster import x\n", "cannot be resolved"),
        ("from .missing import x\n", "no missing.py"),
        ("import modeling_s2mae.masking\n", "absolute import"),
        ("from modeling_s2mae import S2MAEConfig\n", "absolute import"),
    ],
)
def test_imports_that_break_remote_code_are_refused(tmp_path, source, message):
    module = tmp_path / "module.py"
    module.write_text(source)
    with pytest.raises(ValueError, match=message):
        _check_flat_imports(module)


def test_filled_cache_has_the_hub_layout(hub):
    repos = {repo.repo_id: repo for repo in scan_cache_dir(hub.cache).repos}
    assert set(repos) == {PRETRAINED_ID, CLASSIFIER_ID, SEGMENTATION_ID}
    revision = next(iter(repos[PRETRAINED_ID].revisions))
    assert revision.refs == frozenset({"main"}) and len(revision.commit_hash) == 40
    assert {file.file_name for file in revision.files} >= {"config.json", "model.safetensors", *REMOTE_FILES}


def test_load_by_repo_id_with_the_package(hub):
    result, stdout = _load_in_subprocess(hub, "with_package", with_package=True, trust="none")
    modules = ast.literal_eval(stdout.splitlines()[-2])
    assert modules == {
        "config": "modeling_s2mae.configuration_s2mae.S2MAEConfig",
        "processor": "modeling_s2mae.image_processing_s2mae.S2MAEImageProcessor",
        "model": "modeling_s2mae.modeling_s2mae.S2MAEModel",
        "pretraining": "modeling_s2mae.modeling_s2mae.S2MAEForPreTraining",
        "classifier": "modeling_s2mae.modeling_s2mae.S2MAEForImageClassification",
        "segmentation": "modeling_s2mae.modeling_s2mae_dense.S2MAEForSemanticSegmentation",
        "backbone": "modeling_s2mae.modeling_s2mae_dense.S2MAEBackbone",
    }
    assert stdout.splitlines()[-1] == "prompts 0"
    state = {key.removeprefix("state."): value for key, value in result.items() if key.startswith("state.")}
    assert set(state) == hub.encoder_keys
    for key, value in hub.encoder_weights.items():
        assert torch.equal(state[key], value), key
    _assert_same_outputs(result, hub)


def test_load_by_repo_id_with_remote_code_and_no_package(hub):
    result, stdout = _load_in_subprocess(hub, "remote_code", with_package=False, trust="true")
    modules = ast.literal_eval(stdout.splitlines()[-2])
    for name, module in modules.items():
        assert module.startswith("transformers_modules.org."), f"{name} came from {module}"
    assert modules["model"].endswith(".modeling_s2mae.S2MAEModel")
    assert modules["processor"].endswith(".image_processing_s2mae.S2MAEImageProcessor")
    assert modules["segmentation"].endswith(".modeling_s2mae_dense.S2MAEForSemanticSegmentation")
    assert modules["backbone"].endswith(".modeling_s2mae_dense.S2MAEBackbone")
    assert stdout.splitlines()[-1] == "prompts 0"
    _assert_same_outputs(result, hub)


def test_image_classification_pipeline_takes_multiband_arrays(hub):
    processor = S2MAEImageProcessor.from_pretrained(hub.root / "classifier", input_band_names=SENTINEL2_13_BANDS)
    classify = pipeline(
        "image-classification", model=str(hub.root / "classifier"), image_processor=processor, trust_remote_code=False
    )
    expected = hub.expected["pipeline.scores"]
    single = classify(hub.images[0], top_k=None)  # one (C, H, W) array
    batch = classify(list(hub.images), top_k=None)  # a list of them
    for index, scores in enumerate([single, *batch]):
        by_label = {entry["label"]: entry["score"] for entry in scores}
        image = 0 if index == 0 else index - 1
        torch.testing.assert_close(torch.tensor([by_label[name] for name in LABELS.values()]), expected[image])
    # A stacked 4-D batch is taken as ONE input: the pipeline scores only its first image (documented pitfall).
    stacked = classify(hub.images, top_k=None)
    assert isinstance(stacked[0], dict) and len(stacked) == len(LABELS)


def test_pipeline_prompts_unless_trust_remote_code_is_given(hub, monkeypatch):
    prompts = []

    def no_prompt(*args, **kwargs):
        prompts.append(args)
        raise EOFError

    monkeypatch.setattr(builtins, "input", no_prompt)
    folder = str(hub.root / "pretrained")
    pipeline("image-feature-extraction", model=folder, trust_remote_code=False)
    assert prompts == []
    # Left unset, the pipeline's optional video-processor lookup finds the image processor's auto_map and asks.
    pipeline("image-feature-extraction", model=folder)
    assert len(prompts) >= 1


def test_image_feature_extraction_pipeline_cannot_take_multiband_input(hub, sample_data):
    extract = pipeline("image-feature-extraction", model=str(hub.root / "pretrained"), trust_remote_code=False)
    for image in (hub.images[0], torch.from_numpy(hub.images[0].astype(np.int32))):
        with pytest.raises(TypeError, match="Incorrect format used for image"):
            extract(image)  # `load_image` accepts only a path, a URL, base64 or a PIL image
    tile = sample_data / "eurosat_ms" / "Forest" / "Forest_1.tif"
    if tile.exists():
        with pytest.raises(UnidentifiedImageError):
            extract(str(tile))  # PIL cannot decode a 13-band GeoTIFF (and would convert it to RGB)


def test_processor_and_model_replace_the_feature_extraction_pipeline(hub):
    repo_id, images, input_band_names = hub.root / "pretrained", list(hub.images), SENTINEL2_13_BANDS
    # the README's alternative, as written there
    processor = AutoImageProcessor.from_pretrained(repo_id)
    model = AutoModel.from_pretrained(repo_id).eval()
    inputs = processor(images, input_band_names=input_band_names, return_tensors="pt")
    with torch.no_grad():
        features = model(**inputs).pooler_output  # (batch, hidden_size)
    assert features.shape == (len(hub.images), hub.config.hidden_size)
    torch.testing.assert_close(features, hub.expected["model.pooler_output"])

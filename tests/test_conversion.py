"""Conversion of original-format checkpoints: the `modeling_s2mae.conversion` API and the command-line script."""

import argparse
import collections
import json
import os
import runpy
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

import modeling_s2mae  # importing registers the Auto classes
from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification
from modeling_s2mae.conversion import ConversionError, convert_checkpoint, original_reference
from modeling_s2mae.conversion.original import (
    build_model,
    compare_with_reference,
    detect_kind,
    infer_config,
    load_original_checkpoint,
    map_key,
)
from modeling_s2mae.hub import remote_code_files

REPO_ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)

TOLERANCE = 1e-4

VIT_B_SHAPED = {
    "hidden": 768, "depth": 2, "decoder_hidden": 512, "decoder_depth": 1, "image_size": 128, "bands": 12, "s": 3, "p": 8,
}  # fmt: skip
"""ViT-B widths (12 heads) at 128 px, 12 bands, cubes 3 x 8 x 8, but shallow to stay fast."""

TINY = {"hidden": 32, "depth": 2, "decoder_hidden": 16, "decoder_depth": 1, "image_size": 32, "bands": 6, "s": 3, "p": 8}  # fmt: skip
"""Tiny: 6 bands, 32 px -> G = 2, 4 x 4 cubes, L = 32 tokens. Convert with num_heads=4, decoder_num_heads=4."""

TINY_HEADS = {"num_heads": 4, "decoder_num_heads": 4}


class TrainingState(collections.OrderedDict):
    """An OrderedDict subclass: not allow-listed, so a .pth holding one must be refused."""


class EarlyStopping:
    """A custom class whose instance a careless training loop might pickle into a checkpoint."""

    def __init__(self):
        self.step = 3


def _block(state_dict, prefix, width, generator):
    def rand(*shape, scale=0.02):
        return scale * torch.randn(*shape, generator=generator)

    for name in ("norm1", "norm2"):
        state_dict[f"{prefix}.{name}.weight"] = 1 + rand(width, scale=0.1)
        state_dict[f"{prefix}.{name}.bias"] = rand(width, scale=0.1)
    for name in ("q", "k", "v", "proj"):
        state_dict[f"{prefix}.attn.{name}.weight"] = rand(width, width)
        state_dict[f"{prefix}.attn.{name}.bias"] = rand(width)
    state_dict[f"{prefix}.mlp.fc1.weight"] = rand(4 * width, width)
    state_dict[f"{prefix}.mlp.fc1.bias"] = rand(4 * width)
    state_dict[f"{prefix}.mlp.fc2.weight"] = rand(width, 4 * width)
    state_dict[f"{prefix}.mlp.fc2.bias"] = rand(width)


def original_state_dict(shape: dict, kind: str = "pretraining", num_labels: int = 5, seed: int = 0) -> dict:
    """A random state_dict in the original layout (docs/s2mae-method.md, "Original checkpoint layout")."""
    generator = torch.Generator().manual_seed(seed)
    width, s, p = shape["hidden"], shape["s"], shape["p"]
    groups, spatial = shape["bands"] // s, (shape["image_size"] // p) ** 2

    def rand(*size, scale=0.02):
        return scale * torch.randn(*size, generator=generator)

    state_dict = {"patch_embed.proj.weight": rand(width, 1, s, p, p), "patch_embed.proj.bias": rand(width)}
    if kind == "pretraining":
        state_dict["pos_embed_spatial"] = rand(1, spatial, width)
        state_dict["pos_embed_temporal"] = rand(1, groups, width)
    else:
        state_dict["pos_embed"] = rand(1, groups * spatial, width)
    for index in range(shape["depth"]):
        _block(state_dict, f"blocks.{index}", width, generator)
    state_dict["norm.weight"] = 1 + rand(width, scale=0.1)
    state_dict["norm.bias"] = rand(width, scale=0.1)
    if kind == "classifier":
        state_dict["head.weight"] = rand(num_labels, width)
        state_dict["head.bias"] = rand(num_labels)
        return state_dict
    decoder = shape["decoder_hidden"]
    state_dict["decoder_embed.weight"] = rand(decoder, width)
    state_dict["decoder_embed.bias"] = rand(decoder)
    state_dict["mask_token"] = rand(1, 1, decoder)
    state_dict["decoder_pos_embed_spatial"] = rand(1, spatial, decoder)
    state_dict["decoder_pos_embed_temporal"] = rand(1, groups, decoder)
    for index in range(shape["decoder_depth"]):
        _block(state_dict, f"decoder_blocks.{index}", decoder, generator)
    state_dict["decoder_norm.weight"] = 1 + rand(decoder, scale=0.1)
    state_dict["decoder_norm.bias"] = rand(decoder, scale=0.1)
    state_dict["decoder_pred.weight"] = rand(s * p * p, decoder)
    state_dict["decoder_pred.bias"] = rand(s * p * p)
    return state_dict


def save_like_training_loop(path, state_dict, module_prefix=False, **extra):
    """torch.save the way the original training loop does: model, optimizer, epoch, scaler and argparse args."""
    if module_prefix:
        state_dict = {f"module.{key}": value for key, value in state_dict.items()}
    checkpoint = {
        "model": state_dict,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "weight_decay": 0.05, "params": [0, 1]}]},
        "epoch": 3,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0},
        "args": argparse.Namespace(model="mae_vit_base_patch8", mask_ratio=0.9, norm_pix_loss=False, input_size=128),
        **extra,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def vit_b_conversion(tmp_path_factory):
    """The ViT-B-shaped pretraining checkpoint, converted once for the module."""
    folder = tmp_path_factory.mktemp("vit_b")
    path = save_like_training_loop(folder / "checkpoint-3.pth", original_state_dict(VIT_B_SHAPED))
    result = convert_checkpoint(path, folder / "converted", preset="vit-b", parity_batch_size=1)
    return result


def assert_nothing_written(folder):
    assert not folder.exists()
    assert not [item for item in folder.parent.iterdir() if item.name.startswith(f".{folder.name}-")]


def test_vit_b_shaped_checkpoint_converts_with_parity(vit_b_conversion):
    result = vit_b_conversion
    assert result.kind == "pretraining"
    assert set(result.max_abs_differences) == {
        "encoder output (no masking)",
        "encoder output (visible tokens)",
        "reconstruction logits",
    }
    assert all(value < TOLERANCE for value in result.max_abs_differences.values()), result.max_abs_differences
    config = result.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 2, 12)
    assert (config.image_size, config.num_channels, config.spectral_patch_size, config.patch_size) == (128, 12, 3, 8)
    decoder = (config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads)
    assert decoder == (512, 1, 16)
    assert config.intermediate_size == 3072 and config.decoder_intermediate_size == 2048
    assert config.num_tokens == 1024 and config.mask_ratio == 0.9
    assert config.band_names == list(modeling_s2mae.SENTINEL2_BANDS)
    files = {item.name for item in result.output_dir.iterdir()}
    modeling_files = {path.name for path in remote_code_files()}
    assert files == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} | modeling_files
    readme = (result.output_dir / "README.md").read_text()
    assert "checkpoint-3.pth" in readme and "reconstruction logits" in readme


def test_converted_folder_reloads_with_auto_classes(vit_b_conversion):
    folder, converted = vit_b_conversion.output_dir, vit_b_conversion.model
    config = vit_b_conversion.config
    generator = torch.Generator().manual_seed(7)
    pixel_values = torch.rand(1, 12, 128, 128, generator=generator)
    noise = torch.rand(1, config.num_tokens, generator=generator)

    pretraining = AutoModelForPreTraining.from_pretrained(folder).eval()
    encoder = AutoModel.from_pretrained(folder).eval()
    assert type(pretraining).__name__ == "S2MAEForPreTraining" and type(encoder).__name__ == "S2MAEModel"
    with torch.no_grad():
        assert torch.equal(pretraining(pixel_values, noise=noise).logits, converted(pixel_values, noise=noise).logits)
        expected = converted.s2mae(pixel_values, noise=noise).last_hidden_state
        assert torch.equal(encoder(pixel_values, noise=noise).last_hidden_state, expected)
    processor = AutoImageProcessor.from_pretrained(folder)
    assert processor.band_names == config.band_names and processor.size == 128
    saved_config = json.loads((folder / "config.json").read_text())
    assert saved_config["architectures"] == ["S2MAEForPreTraining"]
    # ready for trust_remote_code=True (tests/test_hub_loading.py loads such a folder without the package)
    assert set(saved_config["auto_map"]) == {
        "AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForImageClassification",
        "AutoModelForSemanticSegmentation", "AutoBackbone",
    }  # fmt: skip
    assert "AutoImageProcessor" in json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]
    assert (folder / "modeling_s2mae.py").exists() and (folder / "configuration_s2mae.py").exists()


def tiny_classifier(num_labels: int = 5) -> S2MAEForImageClassification:
    """Our classifier shaped like `TINY`, without the per-token final LayerNorm of original classifiers."""
    config = S2MAEConfig(
        image_size=32, patch_size=8, spectral_patch_size=3, num_channels=6, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, position_embedding_type="joint", pooling="mean_skip_first",
        num_labels=num_labels, use_final_layernorm=False,
    )  # fmt: skip
    return S2MAEForImageClassification(config).eval()


def test_key_maps_fill_each_model_exactly_and_one_to_one():
    pretraining = original_state_dict(TINY)
    config = infer_config(pretraining, "pretraining", num_channels=6, **TINY_HEADS)
    models = {"pretraining": (pretraining, modeling_s2mae.S2MAEForPreTraining(config))}
    models["classifier"] = (original_state_dict(TINY, kind="classifier"), tiny_classifier())
    for kind, (state_dict, model) in models.items():
        mapped = [map_key(key, kind) for key in state_dict]
        assert len(set(mapped)) == len(mapped), kind
        assert set(mapped) == set(model.state_dict()), f"{kind}: {set(mapped) ^ set(model.state_dict())}"
    assert map_key("norm.weight", "pretraining") == "s2mae.layernorm.weight"
    assert map_key("norm.weight", "classifier") == "s2mae.pooler.layernorm.weight"
    assert (
        map_key("decoder_blocks.3.attn.proj.bias", "pretraining")
        == "decoder.decoder_layers.layers.3.attention.o_proj.bias"
    )
    assert map_key("blocks.0.attn.relative_position_bias", "pretraining") == "blocks.0.attn.relative_position_bias"


@pytest.mark.parametrize("layout", ["training_loop", "module_prefix", "bare_state_dict", "bare_ordered_dict"])
def test_tiny_checkpoint_layouts_convert(tmp_path, layout):
    state_dict = original_state_dict(TINY)
    path = tmp_path / "tiny.pth"
    if layout == "bare_state_dict":
        torch.save(state_dict, path)
    elif layout == "bare_ordered_dict":
        torch.save(collections.OrderedDict((f"module.{key}", value) for key, value in state_dict.items()), path)
    else:
        save_like_training_loop(path, state_dict, module_prefix=layout == "module_prefix")
    result = convert_checkpoint(
        path, tmp_path / "out", band_names=["B02", "B03", "B04", "B08", "B11", "B12"], **TINY_HEADS
    )
    assert all(value < TOLERANCE for value in result.max_abs_differences.values()), result.max_abs_differences
    assert result.config.band_names == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert (result.config.image_size, result.config.num_tokens) == (32, 32)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path / "out")
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, result.model.state_dict()[name]), name


def test_half_precision_checkpoint_is_saved_in_its_dtype(tmp_path):
    state_dict = {key: value.half() for key, value in original_state_dict(TINY).items()}
    path = save_like_training_loop(tmp_path / "half.pth", state_dict)
    result = convert_checkpoint(path, tmp_path / "out", num_channels=6, **TINY_HEADS)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path / "out")
    assert reloaded.dtype == torch.float16
    weight = reloaded.s2mae.embeddings.cube_embeddings.projection.weight
    assert torch.equal(weight, state_dict["patch_embed.proj.weight"])
    assert all(value < TOLERANCE for value in result.max_abs_differences.values())


def test_classifier_mapping_matches_the_reference_once_the_token_layernorm_is_dropped():
    """The classifier key mapping and reference agree with our model once `s2mae.layernorm` is gone."""
    state_dict = original_state_dict(TINY, kind="classifier", num_labels=5)
    model = build_model(state_dict, tiny_classifier(num_labels=5).config, "classifier")
    differences = compare_with_reference(model, state_dict, "classifier")
    assert differences["classifier logits"] < TOLERANCE, differences


def test_classifier_checkpoint_converts_with_logit_parity(tmp_path):
    path = save_like_training_loop(
        tmp_path / "eurosat.pth", original_state_dict(TINY, kind="classifier", num_labels=5)
    )
    result = convert_checkpoint(path, tmp_path / "out", num_channels=6, num_heads=4)
    assert result.kind == "classifier"
    assert result.max_abs_differences["classifier logits"] < TOLERANCE, result.max_abs_differences
    config = result.config
    assert (config.num_labels, config.position_embedding_type, config.pooling) == (5, "joint", "mean_skip_first")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    pixel_values = torch.rand(2, 6, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values).logits, result.model(pixel_values).logits)


def test_classifier_needs_the_band_count_or_image_size():
    state_dict = original_state_dict(TINY, kind="classifier")
    assert detect_kind(state_dict) == "classifier"
    with pytest.raises(ConversionError, match="--num-channels or --image-size.*6 bands at 32 px"):
        infer_config(state_dict, "classifier", num_heads=4)


@pytest.mark.parametrize(
    "intruder", [TrainingState(step=3), EarlyStopping()], ids=["ordered_dict_subclass", "custom_class"]
)
def test_non_allow_listed_object_is_refused(tmp_path, intruder):
    path = save_like_training_loop(tmp_path / "unsafe.pth", original_state_dict(TINY), trainer_state=intruder)
    with pytest.raises(ConversionError, match=f"{type(intruder).__name__}, which is not allow-listed"):
        convert_checkpoint(path, tmp_path / "out", num_channels=6, **TINY_HEADS)
    assert_nothing_written(tmp_path / "out")


def test_state_dict_of_a_non_allow_listed_class_is_refused(tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"model": TrainingState(original_state_dict(TINY))}, path)
    with pytest.raises(ConversionError, match="TrainingState, which is not allow-listed"):
        load_original_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncated", "text_file", "empty_file", "missing"])
def test_unreadable_files_are_refused(tmp_path, damage):
    path = save_like_training_loop(tmp_path / "model.pth", original_state_dict(TINY))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "text_file":
        path.write_text("epoch,loss\n1,0.5\n")
    elif damage == "empty_file":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(ConversionError, match="not a readable PyTorch checkpoint|does not exist"):
        convert_checkpoint(path, tmp_path / "out", num_channels=6, **TINY_HEADS)
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    "bogus",
    [
        torch.zeros(1).expand(1_000_000, 1_000_000),  # stride 0: 4 TB once materialised
        torch.zeros(1999).as_strided((1000, 1000), (1, 1)),  # overlapping rows: 1e6 elements over 1999 stored
        torch.zeros(1, 1, 32).expand(1, 16, 32),  # small, but still an expanded view
    ],
    ids=["expanded_huge", "overlapping", "expanded_small"],
)
def test_tensor_claiming_more_than_its_storage_is_refused(tmp_path, bogus):
    state_dict = original_state_dict(TINY)
    state_dict["pos_embed_spatial"] = bogus
    path = save_like_training_loop(tmp_path / "expanded.pth", state_dict)
    with pytest.raises(
        ConversionError, match=r"tensor 'pos_embed_spatial' of shape .* claims \d+ bytes but its storage"
    ):
        convert_checkpoint(path, tmp_path / "out", num_channels=6, **TINY_HEADS)
    assert_nothing_written(tmp_path / "out")


def test_shape_larger_than_the_stored_data_is_refused(tmp_path):
    """A .pth whose pickled size (2, 60000) exceeds the 2 x 777 floats stored: torch refuses to grow the storage."""
    path = tmp_path / "lying.pth"
    torch.save({"model": {"patch_embed.proj.weight": torch.ones(2, 777)}}, tmp_path / "honest.pth")
    with zipfile.ZipFile(tmp_path / "honest.pth") as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                claimed = b"K\x02M" + struct.pack("<H", 60000) + b"\x86"  # the size tuple (2, 60000)
                data = data.replace(b"K\x02M" + struct.pack("<H", 777) + b"\x86", claimed, 1)
                assert claimed in data
            target.writestr(info, data)
    with pytest.raises(ConversionError, match="shape claims more data than its storage holds"):
        load_original_checkpoint(path)


@pytest.mark.parametrize(
    "flags",
    [{"band_names": ["B02", "B03", "B04"]}, {"num_channels": 9}, {"band_names": list(modeling_s2mae.SENTINEL2_BANDS)}],
    ids=["three_names", "nine_channels", "sentinel2_names"],
)
def test_band_count_disagreement_is_refused(tmp_path, flags):
    path = save_like_training_loop(tmp_path / "tiny.pth", original_state_dict(TINY))
    with pytest.raises(ConversionError, match="covers 6 bands"):
        convert_checkpoint(path, tmp_path / "out", **TINY_HEADS, **flags)
    assert_nothing_written(tmp_path / "out")


def test_incomplete_state_dict_is_refused_listing_the_key(tmp_path):
    state_dict = original_state_dict(TINY)
    del state_dict["blocks.1.attn.k.bias"]
    state_dict["blocks.0.attn.relative_position_bias"] = torch.zeros(3)
    path = save_like_training_loop(tmp_path / "tiny.pth", state_dict)
    with pytest.raises(ConversionError) as raised:
        convert_checkpoint(path, tmp_path / "out", num_channels=6, **TINY_HEADS)
    message = str(raised.value)
    assert 'Missing key(s) in state_dict: "s2mae.encoder.layers.1.attention.k_proj.bias"' in message
    assert 'Unexpected key(s) in state_dict: "blocks.0.attn.relative_position_bias"' in message
    assert_nothing_written(tmp_path / "out")


def test_shape_mismatch_is_refused(tmp_path):
    state_dict = original_state_dict(TINY)
    state_dict["blocks.1.mlp.fc2.bias"] = torch.zeros(31)
    with pytest.raises(ConversionError, match=r"size mismatch for s2mae.encoder.layers.1.mlp.fc2.bias: .*\[31\]"):
        config = infer_config(state_dict, "pretraining", num_channels=6, **TINY_HEADS)
        build_model(state_dict, config, "pretraining")


def test_parity_failure_writes_nothing(tmp_path, monkeypatch):
    path = save_like_training_loop(tmp_path / "tiny.pth", original_state_dict(TINY))
    decode = original_reference.decode
    monkeypatch.setattr(original_reference, "decode", lambda *args: decode(*args) + 1e-3)
    with pytest.raises(ConversionError, match="Parity check failed.*reconstruction logits"):
        convert_checkpoint(path, tmp_path / "out", num_channels=6, **TINY_HEADS)
    assert_nothing_written(tmp_path / "out")


def test_heads_must_be_given_and_preset_must_match(tmp_path):
    state_dict = original_state_dict(TINY)
    with pytest.raises(ConversionError, match="--preset .* or --num-heads"):
        infer_config(state_dict, "pretraining")
    with pytest.raises(
        ConversionError, match="'vit-b' .width 768, 12 heads.*disagrees with the checkpoint's width 32"
    ):
        infer_config(state_dict, "pretraining", preset="vit-b")


def test_push_to_hub_uploads_the_written_folder(tmp_path, monkeypatch):
    calls = []

    class FakeHfApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(
                (
                    "upload_folder",
                    kwargs["repo_id"],
                    sorted(path.name for path in Path(kwargs["folder_path"]).iterdir()),
                )
            )
            return types.SimpleNamespace(commit_url="https://huggingface.co/org/tiny/commit/1")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    path = save_like_training_loop(tmp_path / "tiny.pth", original_state_dict(TINY))
    with pytest.raises(ConversionError, match="push_to_hub needs an output_dir"):
        convert_checkpoint(path, num_channels=6, push_to_hub="org/tiny", **TINY_HEADS)
    lines = []
    convert_checkpoint(
        path, tmp_path / "out", num_channels=6, push_to_hub="org/tiny", private=True, log=lines.append, **TINY_HEADS
    )
    assert calls[0] == ("create_repo", "org/tiny", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][:2] == ("upload_folder", "org/tiny") and "model.safetensors" in calls[1][2]
    assert lines[-1] == "Uploaded to https://huggingface.co/org/tiny/commit/1"
    assert "org/tiny" in (tmp_path / "out" / "README.md").read_text()  # the card's quick start loads the repo id


def test_conversion_code_is_not_shipped_as_remote_code():
    package = Path(modeling_s2mae.__file__).parent
    assert {path.parent for path in remote_code_files()} == {package}


def test_cli_module_converts_and_refuses_a_non_empty_folder(tmp_path, monkeypatch, capsys):
    """`python -m conversion.convert_original_to_hf`, run in this process."""
    path = save_like_training_loop(tmp_path / "tiny.pth", original_state_dict(TINY))
    out = tmp_path / "out"
    flags = ["--num-heads", "4", "--decoder-num-heads", "4", "--num-channels", "6"]
    for expected_code in (0, 1):
        monkeypatch.setattr(sys, "argv", ["convert_original_to_hf", str(path), str(out), *flags])
        with pytest.raises(SystemExit) as exited:
            runpy.run_module("conversion.convert_original_to_hf", run_name="__main__")
        assert exited.value.code == expected_code
    printed = capsys.readouterr()
    assert "max abs difference, reconstruction logits" in printed.out and (out / "model.safetensors").is_file()
    assert "error: Output folder" in printed.err and "not empty; pass --overwrite" in printed.err


@pytest.mark.slow
def test_cli_script_in_a_fresh_process(tmp_path):
    """`python conversion/convert_original_to_hf.py ...` as a user runs it (about 7 s of CPU, mostly imports)."""
    path = save_like_training_loop(tmp_path / "tiny.pth", original_state_dict(TINY))
    out = tmp_path / "out"
    command = [sys.executable, "conversion/convert_original_to_hf.py", str(path), str(out), "--num-heads", "4"]
    command += ["--decoder-num-heads", "4", "--band-names", "B02", "B03", "B04", "B08", "B11", "B12"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    converted = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert converted.returncode == 0, converted.stderr
    assert "max abs difference, reconstruction logits" in converted.stdout
    assert json.loads((out / "config.json").read_text())["band_names"] == ["B02", "B03", "B04", "B08", "B11", "B12"]


def test_reference_position_table_and_masking_follow_the_documented_order():
    spatial = torch.arange(3.0).reshape(1, 3, 1)
    temporal = 10 * torch.arange(2.0).reshape(1, 2, 1)
    table = original_reference.separable_position_table(
        spatial, temporal
    )  # token g * 3 + i -> spatial[i] + temporal[g]
    assert table.flatten().tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    tokens = torch.arange(5.0).reshape(1, 5, 1)
    kept, mask, ids_restore = original_reference.random_masking(tokens, torch.tensor([[0.5, 0.1, 0.9, 0.3, 0.7]]), 0.6)
    assert kept.flatten().tolist() == [1.0, 3.0]  # int(5 * 0.4) = 2 lowest-noise tokens, in noise order
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0, 1.0]]
    assert ids_restore.shape == (1, 5)

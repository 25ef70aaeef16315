"""Library training helpers: model-driven layer decay, presets, resumption safety, run settings."""

import json
from pathlib import Path

import pytest
import torch
from model_tester import TINY_ENCODER
from transformers import TrainingArguments

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification
from modeling_s2mae.training import (
    DATA_SOURCE_FLAGS,
    build_config,
    check_resume_compatible,
    find_resume_checkpoint,
    gives_flag,
    optimizer_param_groups,
    prepare_training_arguments,
    record_run_settings,
)

TINY_MODEL = TINY_ENCODER


def test_layer_decay_param_groups() -> None:
    model = S2MAEForImageClassification(S2MAEConfig(**TINY_MODEL, image_size=32))
    groups = optimizer_param_groups(model, weight_decay=0.05, layer_decay=0.75)
    names = {id(param): name for name, param in model.named_parameters()}
    scale, decay = {}, {}
    for group in groups:
        for param in group["params"]:
            scale[names[id(param)]], decay[names[id(param)]] = group["lr_scale"], group["weight_decay"]
    assert set(scale) == {name for name, _ in model.named_parameters()}
    assert scale["s2mae.embeddings.cube_embeddings.projection.weight"] == pytest.approx(0.75**3)
    assert scale["s2mae.embeddings.position_embeddings.spatial"] == pytest.approx(0.75**3)
    assert scale["s2mae.encoder.layers.0.mlp.fc1.weight"] == pytest.approx(0.75**2)
    assert scale["s2mae.encoder.layers.1.attention.q_proj.bias"] == pytest.approx(0.75)
    for name in ("s2mae.layernorm.weight", "s2mae.pooler.layernorm.bias", "classifier.weight"):
        assert scale[name] == 1.0
    assert decay["s2mae.encoder.layers.0.mlp.fc1.weight"] == decay["classifier.weight"] == 0.05
    assert decay["s2mae.embeddings.position_embeddings.spatial"] == 0.0
    assert decay["s2mae.encoder.layers.0.mlp.fc1.bias"] == decay["s2mae.layernorm.weight"] == 0.0
    assert all(group["lr_scale"] == 1.0 for group in optimizer_param_groups(model, 0.05, None))
    with pytest.raises(ValueError, match="layer_decay must be in"):
        optimizer_param_groups(model, 0.05, 1.5)


def test_build_config_presets_and_overrides() -> None:
    config = build_config("sample", "drop_path_rate=0.1", image_size=32, mask_ratio=None)
    assert config.hidden_size == 192 and config.image_size == 32 and config.drop_path_rate == 0.1
    assert build_config("vit-s").hidden_size == 384
    # the small-data recipe hides 75 % of the cubes (benchmarks/README_probe.md); the paper's presets keep 90 %
    assert config.mask_ratio == 0.75 and build_config("vit-b").mask_ratio == 0.9
    assert build_config("sample", mask_ratio=0.9).mask_ratio == 0.9
    with pytest.raises(ValueError, match="Unknown preset"):
        build_config("vit-x")
    with pytest.raises(ValueError, match="Bad config override"):
        build_config("sample", "hidden_sise=3")
    with pytest.raises(ValueError, match="Bad config override"):
        build_config("sample", "drop_path_rate")


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"x" * 16)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_picks_the_newest_complete_checkpoint_and_sets_incomplete_ones_aside(tmp_path: Path) -> None:
    assert find_resume_checkpoint(tmp_path / "missing") is None
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, complete=False)  # killed before trainer_state.json was written
    truncated = _checkpoint(tmp_path, 6)
    (truncated / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "checkpoint-4.incomplete").is_dir() and (tmp_path / "checkpoint-6.incomplete").is_dir()
    assert not (tmp_path / "checkpoint-4").exists()
    _checkpoint(tmp_path, 4, complete=False)  # the same step fails again: a second name, nothing overwritten
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "checkpoint-4.incomplete1").is_dir()


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    config = S2MAEConfig(**TINY_MODEL, image_size=32)
    config.save_pretrained(tmp_path)
    check_resume_compatible(tmp_path, S2MAEConfig(**TINY_MODEL, image_size=32))
    reordered = list(config.band_names)
    reordered[1], reordered[2] = reordered[2], reordered[1]
    with pytest.raises(ValueError, match="band_names: checkpoint") as info:
        check_resume_compatible(tmp_path, S2MAEConfig(**TINY_MODEL, image_size=32, band_names=reordered))
    assert "another --output_dir" in str(info.value)
    with pytest.raises(ValueError, match="hidden_size"):
        check_resume_compatible(tmp_path, S2MAEConfig(**{**TINY_MODEL, "hidden_size": 64}, image_size=32))
    S2MAEConfig(**TINY_MODEL, image_size=32, num_labels=5).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels: checkpoint 5, this run 3"):
        check_resume_compatible(tmp_path, S2MAEConfig(**TINY_MODEL, image_size=32, num_labels=3))


def test_run_settings_must_repeat_on_resume(tmp_path: Path) -> None:
    record_run_settings(tmp_path, {"layer_decay": 0.5}, resuming=False)
    record_run_settings(tmp_path, {"layer_decay": 0.5}, resuming=True)
    with pytest.raises(ValueError, match="--layer_decay 0.5"):
        record_run_settings(tmp_path, {"layer_decay": None}, resuming=True)


def test_resuming_a_checkpoint_with_a_missing_tensor_is_an_error(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from modeling_s2mae.training import S2MAETrainer

    model = S2MAEForImageClassification(S2MAEConfig(**TINY_MODEL, image_size=32))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = S2MAETrainer(model=model, args=args)
    trainer._issue_warnings_after_load(SimpleNamespace(missing_keys=[], unexpected_keys=[]))
    with pytest.raises(ValueError, match="lacks 1 trained tensor"):
        trainer._issue_warnings_after_load(SimpleNamespace(missing_keys=["classifier.weight"], unexpected_keys=[]))


def test_gives_flag_reads_both_flag_forms_and_whole_names_only() -> None:
    assert gives_flag(["--max_steps", "2", "--train_dir", "x"], DATA_SOURCE_FLAGS)
    assert gives_flag(["--dataset_name=org/d"], DATA_SOURCE_FLAGS)
    assert not gives_flag(["--max_steps", "2", "--train_dir_extra", "x", "--probe_train_dir", "y"], DATA_SOURCE_FLAGS)
    assert not gives_flag([], ("--scene_paths", "--pairs_csv"))


def test_prepare_training_arguments_checks_then_sets_what_the_scripts_need(tmp_path: Path) -> None:
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.remove_unused_columns
    prepare_training_arguments(args)
    assert not args.remove_unused_columns and args.ddp_find_unused_parameters is False
    assert args.dataloader_pin_memory is torch.cuda.is_available()
    with pytest.raises(ValueError, match="--learning_rate must be positive"):
        prepare_training_arguments(TrainingArguments(output_dir=str(tmp_path), learning_rate=0.0, report_to="none"))

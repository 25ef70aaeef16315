"""Behaviour of the S2MAE models: shapes, masking, saving and loading, attention backends, training."""

import logging

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from model_tester import masking_noise, pixel_batch, tiny_config
from transformers import Trainer, TrainingArguments

from modeling_s2mae.configuration_s2mae import S2MAEConfig
from modeling_s2mae.masking import num_kept_tokens
from modeling_s2mae.modeling_s2mae import (
    S2MAEForImageClassification,
    S2MAEForPreTraining,
    S2MAEModel,
)
from modeling_s2mae.position_embeddings import interpolate_spatial, interpolate_spectral

torch.set_num_threads(2)


def test_encoder_forward_shapes_without_masking():
    config = tiny_config()
    model = S2MAEModel(config).eval()
    out = model(pixel_batch(config))
    assert out.last_hidden_state.shape == (2, config.num_tokens, config.hidden_size)
    assert out.pooler_output.shape == (2, config.hidden_size)
    assert out.mask is None and out.ids_restore is None


def test_pretraining_forward_shapes_and_unpatchify_round_trip():
    config = tiny_config()
    model = S2MAEForPreTraining(config).eval()
    pixels = pixel_batch(config)
    out = model(pixels)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (2, config.num_tokens, config.cube_dim)
    assert out.mask.shape == out.ids_restore.shape == (2, config.num_tokens)
    assert model.unpatchify(out.logits).shape == pixels.shape
    assert torch.equal(model.unpatchify(model.patchify(pixels)), pixels)


def test_patchify_orders_band_within_cube_then_row_then_column():
    config = tiny_config()
    model = S2MAEForPreTraining(config)
    pixels = pixel_batch(config, batch_size=1)
    cubes = model.patchify(pixels)
    # token (g=1, row=2, col=3): bands 3..5, pixels rows 8..11, cols 12..15
    token = 1 * 16 + 2 * 4 + 3
    expected = pixels[0, 3:6, 8:12, 12:16].reshape(-1)
    assert torch.equal(cubes[0, token], expected)


def test_classifier_forward_shapes_and_losses():
    config = tiny_config(num_labels=5)
    model = S2MAEForImageClassification(config).eval()
    pixels = pixel_batch(config)
    out = model(pixels, labels=torch.tensor([0, 4]))
    assert out.logits.shape == (2, 5)
    expected = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 4]))
    assert torch.allclose(out.loss, expected)

    multi = S2MAEForImageClassification(tiny_config(num_labels=5, problem_type="multi_label_classification")).eval()
    targets = torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])
    out = multi(pixels, labels=targets)
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))


def test_classifier_rejects_labels_that_do_not_fit():
    model = S2MAEForImageClassification(tiny_config(num_labels=3, problem_type="single_label_classification"))
    with pytest.raises(ValueError, match=r"Class ids must be in \[0, 3\)"):
        model(pixel_batch(model.config), labels=torch.tensor([0, 7]))
    multi = S2MAEForImageClassification(tiny_config(num_labels=3, problem_type="multi_label_classification"))
    with pytest.raises(ValueError, match="multi-hot labels of shape"):
        multi(pixel_batch(multi.config), labels=torch.ones(2, 4))


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95])
def test_random_masking_hides_the_same_count_in_every_sample(ratio):
    config = tiny_config(mask_ratio=ratio)
    model = S2MAEForPreTraining(config).eval()
    torch.manual_seed(0)
    out = model(pixel_batch(config, batch_size=3))
    num_tokens = config.num_tokens
    expected_hidden = num_tokens - int(num_tokens * (1 - ratio))
    assert out.mask.sum(dim=1).tolist() == [expected_hidden] * 3
    # the visible tokens differ between samples: masking is per sample
    assert not torch.equal(out.mask[0], out.mask[1])


def test_tube_masking_hides_the_same_locations_in_every_spectral_group():
    config = tiny_config(masking_strategy="tube", mask_ratio=0.5)
    model = S2MAEForPreTraining(config).eval()
    out = model(pixel_batch(config))
    per_group = out.mask.reshape(2, config.num_spectral_groups, config.num_spatial_patches)
    assert torch.equal(per_group[:, 0], per_group[:, 1])
    assert per_group[:, 0].sum(dim=1).tolist() == [8, 8]


def test_spectral_masking_hides_whole_groups():
    config = tiny_config(masking_strategy="spectral", mask_ratio=0.5)
    model = S2MAEForPreTraining(config).eval()
    out = model(pixel_batch(config, batch_size=4))
    per_group = out.mask.reshape(4, config.num_spectral_groups, config.num_spatial_patches)
    group_hidden = per_group.mean(dim=2)
    assert set(group_hidden.flatten().tolist()) == {0.0, 1.0}
    assert group_hidden.sum(dim=1).tolist() == [1.0] * 4


def test_masking_noise_of_the_wrong_shape_is_rejected():
    config = tiny_config(masking_strategy="tube")
    model = S2MAEForPreTraining(config)
    with pytest.raises(ValueError, match=r"must have shape \(2, 16\)"):
        model(pixel_batch(config), noise=torch.rand(2, config.num_tokens))


def test_fixed_noise_makes_masking_deterministic_and_mask_ratio_overridable():
    config = tiny_config()
    model = S2MAEForPreTraining(config).eval()
    pixels, noise = pixel_batch(config), masking_noise(config)
    first, second = model(pixels, noise=noise), model(pixels, noise=noise)
    assert torch.equal(first.mask, second.mask) and torch.equal(first.logits, second.logits)
    kept = torch.argsort(noise, dim=1)[:, : int(config.num_tokens * 0.25)]
    assert torch.equal(first.mask.gather(1, kept), torch.zeros_like(kept, dtype=first.mask.dtype))
    half = model(pixels, noise=noise, mask_ratio=0.5)
    assert half.mask.sum(dim=1).tolist() == [16, 16]


def test_save_and_reload_give_identical_outputs(tmp_path):
    config = tiny_config()
    model = S2MAEForPreTraining(config).eval()
    pixels, noise = pixel_batch(config), masking_noise(config)
    expected = model(pixels, noise=noise)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded, info = S2MAEForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    got = reloaded.eval()(pixels, noise=noise)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.loss, expected.loss)


@pytest.mark.parametrize("position_embedding_type", ["separable", "joint", "sincos"])
def test_pretraining_checkpoint_carries_the_encoder_into_model_and_classifier(tmp_path, position_embedding_type):
    config = tiny_config(position_embedding_type=position_embedding_type)
    pretrained = S2MAEForPreTraining(config).eval()
    pretrained.save_pretrained(tmp_path)
    pixels = pixel_batch(config)

    encoder, info = S2MAEModel.from_pretrained(tmp_path, output_loading_info=True)
    encoder_keys = {key for key in encoder.state_dict() if not key.startswith("pooler.")}
    assert not encoder_keys & set(info["missing_keys"]), info
    assert set(info["missing_keys"]) <= {"pooler.layernorm.weight", "pooler.layernorm.bias"}
    expected = pretrained.s2mae(pixels).last_hidden_state
    assert torch.equal(encoder.eval()(pixels).last_hidden_state, expected)

    classifier, info = S2MAEForImageClassification.from_pretrained(
        tmp_path, num_labels=19, problem_type="multi_label_classification", output_loading_info=True
    )
    assert {key.split(".")[0] for key in info["missing_keys"]} <= {"classifier", "s2mae"}
    assert all(key.startswith(("classifier.", "s2mae.pooler.")) for key in info["missing_keys"]), info
    assert torch.equal(classifier.eval().s2mae(pixels).last_hidden_state, expected)
    assert classifier.config.num_labels == 19


@pytest.mark.parametrize("position_embedding_type", ["separable", "joint", "sincos"])
def test_meta_device_init_matches_a_normal_init(position_embedding_type):
    config = tiny_config(position_embedding_type=position_embedding_type)
    torch.manual_seed(0)
    reference = S2MAEForPreTraining(config)
    with torch.device("meta"):
        model = S2MAEForPreTraining(config)
    model.to_empty(device="cpu")
    # simulate from_pretrained: nothing is flagged as loaded, every tensor must be (re)initialised
    for module in model.modules():
        module.__dict__.pop("_is_hf_initialized", None)
    model.init_weights()
    for (name, tensor), (_, ref) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.isfinite(tensor).all(), name
        if position_embedding_type == "sincos" and "position_embeddings" in name:
            assert torch.equal(tensor, ref), name  # fixed tables are recomputed exactly
        elif name.endswith(("layernorm.weight", "norm.weight", "layernorm_before.weight", "layernorm_after.weight")):
            assert torch.equal(tensor, torch.ones_like(tensor)), name
        elif name.endswith(".bias"):
            assert torch.equal(tensor, torch.zeros_like(tensor)), name
        else:
            # random tables: same scale as a normal init, not leftover memory
            assert abs(tensor.float().std() - ref.float().std()) < 0.5 * ref.float().std() + 1e-6, name


def test_eager_and_sdpa_agree():
    config = tiny_config()
    torch.manual_seed(0)
    model = S2MAEForPreTraining(config).eval()
    pixels, noise = pixel_batch(config), masking_noise(config)
    model.set_attn_implementation("sdpa")
    sdpa = model(pixels, noise=noise)
    model.set_attn_implementation("eager")
    eager = model(pixels, noise=noise)
    assert torch.allclose(sdpa.logits, eager.logits, atol=1e-5)
    assert torch.allclose(sdpa.loss, eager.loss, atol=1e-5)


def test_hidden_states_and_attentions_shapes():
    config = tiny_config()
    model = S2MAEModel(config).eval()
    model.set_attn_implementation("eager")
    out = model(pixel_batch(config), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(state.shape == (2, config.num_tokens, config.hidden_size) for state in out.hidden_states)
    assert len(out.attentions) == config.num_hidden_layers
    assert all(
        a.shape == (2, config.num_attention_heads, config.num_tokens, config.num_tokens) for a in out.attentions
    )
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(2, config.num_attention_heads, config.num_tokens))

    masked = model(pixel_batch(config), apply_masking=True, output_hidden_states=True)
    visible = config.num_kept_tokens()
    assert masked.hidden_states[-1].shape == (2, visible, config.hidden_size)


def test_attentions_under_sdpa_fall_back_to_eager_attention_with_a_warning(caplog):
    model = S2MAEModel(tiny_config()).eval()
    model.set_attn_implementation("sdpa")
    pixels = pixel_batch(model.config)
    logging.Logger.warning_once.cache_clear()  # the warning is emitted once per process
    with caplog.at_level("WARNING"):
        out = model(pixels, output_attentions=True)
    assert "computed with eager attention" in caplog.text
    model.set_attn_implementation("eager")
    expected = model(pixels, output_attentions=True)
    assert len(out.attentions) == model.config.num_hidden_layers
    for got, reference in zip(out.attentions, expected.attentions):
        assert torch.allclose(got, reference, atol=1e-6)
    assert torch.allclose(out.last_hidden_state, expected.last_hidden_state, atol=1e-5)


def test_return_dict_false_gives_tuples():
    config = tiny_config(num_labels=3)
    pixels, noise = pixel_batch(config), masking_noise(config)
    pretraining = S2MAEForPreTraining(config).eval()
    loss, logits, mask, ids_restore = pretraining(pixels, noise=noise, return_dict=False)
    expected = pretraining(pixels, noise=noise)
    assert torch.equal(loss, expected.loss) and torch.equal(logits, expected.logits)
    assert torch.equal(mask, expected.mask) and torch.equal(ids_restore, expected.ids_restore)
    sequence, pooled = S2MAEModel(config).eval()(pixels, return_dict=False)
    assert sequence.shape == (2, config.num_tokens, config.hidden_size) and pooled.shape == (2, config.hidden_size)
    (logits,) = S2MAEForImageClassification(config).eval()(pixels, return_dict=False)
    assert logits.shape == (2, 3)


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_config(num_labels=3)
    torch.manual_seed(0)
    model = S2MAEForImageClassification(config)
    pixels, labels = pixel_batch(config), torch.tensor([0, 2])
    model(pixels, labels=labels).loss.backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model.train()
    assert all(layer.gradient_checkpointing for layer in model.s2mae.encoder.layers)
    model(pixels, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, plain[name], atol=1e-6), name


def test_loss_decreases_when_overfitting_one_batch():
    config = tiny_config()
    torch.manual_seed(0)
    model = S2MAEForPreTraining(config)
    pixels, noise = pixel_batch(config, batch_size=4), masking_noise(config, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model(pixels, noise=noise).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_pixel_mask_keeps_invalid_pixels_out_of_the_loss_and_the_pooling():
    config = tiny_config()
    model = S2MAEForPreTraining(config).eval()
    pixels, noise = pixel_batch(config), masking_noise(config)
    pixel_mask = torch.ones(2, 16, 16, dtype=torch.long)
    pixel_mask[:, :4, :] = 0  # the first row of cubes is nodata
    reference = model(pixels, noise=noise, pixel_mask=pixel_mask)
    corrupted = pixels.clone()
    corrupted[:, :, :4, :] = 1000.0  # whatever was filled there must not change the loss on valid cubes
    logits = model(corrupted, noise=noise).logits
    loss = model.forward_loss(pixels, logits, reference.mask, pixel_mask)
    assert torch.isfinite(loss)
    # the invalid pixels' target does not enter the loss
    assert torch.allclose(model.forward_loss(corrupted, logits, reference.mask, pixel_mask), loss)

    encoder = S2MAEModel(config).eval()
    out = encoder(pixels, pixel_mask=pixel_mask)
    tokens = out.last_hidden_state.reshape(2, 2, 4, 4, -1)[:, :, 1:].reshape(2, -1, config.hidden_size)
    expected = encoder.pooler.layernorm(tokens.mean(dim=1))
    assert torch.allclose(out.pooler_output, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no valid pixel"):
        encoder(pixels, pixel_mask=torch.zeros(2, 16, 16))


def test_interpolated_position_tables_match_a_model_built_at_that_size():
    config = tiny_config()
    torch.manual_seed(0)
    model = S2MAEForPreTraining(config).eval()
    # 24 px (grid 6 x 6) and 9 bands (3 groups)
    native_config = tiny_config(image_size=24, band_names=["a", "b", "c", "d", "e", "f", "g", "h", "i"])
    native = S2MAEForPreTraining(native_config).eval()
    state = model.state_dict()
    for prefix in ("s2mae.embeddings.position_embeddings", "decoder.position_embeddings"):
        tables = model.get_submodule(prefix)
        state[f"{prefix}.spatial"] = interpolate_spatial(tables.spatial.detach(), (4, 4), (6, 6))
        state[f"{prefix}.spectral"] = interpolate_spectral(tables.spectral.detach(), 3)
    missing, unexpected = native.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    pixels = pixel_batch(native_config, size=24)
    noise = torch.rand(2, native_config.num_tokens, generator=torch.Generator().manual_seed(3))
    got = model(pixels, noise=noise, interpolate_pos_encoding=True)
    expected = native(pixels, noise=noise)
    assert torch.allclose(got.logits, expected.logits, atol=1e-5)
    assert torch.allclose(got.loss, expected.loss, atol=1e-6)


def test_joint_table_interpolation_matches_separable_values():
    """A joint table holding spatial + spectral sums interpolates like the separable tables it came from."""
    config = tiny_config()
    torch.manual_seed(0)
    separable = S2MAEModel(config).eval()
    joint = S2MAEModel(tiny_config(position_embedding_type="joint")).eval()
    state = separable.state_dict()
    table = separable.embeddings.position_embeddings((2, 4, 4))
    state = {k: v for k, v in state.items() if "position_embeddings" not in k}
    state["embeddings.position_embeddings.joint"] = table.detach()
    joint.load_state_dict(state)
    pixels = pixel_batch(config, size=24, bands=9)
    got = joint(pixels, interpolate_pos_encoding=True).last_hidden_state
    expected = separable(pixels, interpolate_pos_encoding=True).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-4)


def test_wrong_inputs_get_clear_errors():
    config = tiny_config()
    model = S2MAEModel(config)
    with pytest.raises(ValueError, match="expects 6"):
        model(pixel_batch(config, bands=9))
    with pytest.raises(ValueError, match="not divisible by spectral_patch_size"):
        model(pixel_batch(config, bands=7), interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match="does not match the model"):
        model(pixel_batch(config, size=24))
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(pixel_batch(config, size=24))
    with pytest.raises(ValueError, match="floating point"):
        model((pixel_batch(config) * 1000).to(torch.int16))
    with pytest.raises(ValueError, match=r"\(batch, bands, height, width\)"):
        model(pixel_batch(config)[0])
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        model(pixel_batch(config), apply_masking=True, mask_ratio=1.0)


def test_parameter_counts_match_the_method_description():
    """ViT-B at 128 px and 12 bands: full MAE 98.6 M; encoder 86.0 M with a joint (L, D) position table.

    With the default separable tables (256 + 4 rows instead of 1024) the encoder has 85.4 M.
    """
    with torch.device("meta"):
        mae = S2MAEForPreTraining(S2MAEConfig())
        joint_encoder = S2MAEModel(S2MAEConfig(position_embedding_type="joint"), add_pooling_layer=False)
        separable_encoder = S2MAEModel(S2MAEConfig(), add_pooling_layer=False)
        large = S2MAEForPreTraining(S2MAEConfig.from_preset("vit-l"))
        huge = S2MAEForPreTraining(S2MAEConfig.from_preset("vit-h"))
    millions = lambda model: round(sum(p.numel() for p in model.parameters()) / 1e6, 1)  # noqa: E731
    assert millions(mae) == 98.6
    assert millions(joint_encoder) == 86.0
    assert millions(separable_encoder) == 85.4
    assert round(sum(p.numel() for p in large.parameters()) / 1e6) == 316
    assert round(sum(p.numel() for p in huge.parameters()) / 1e6) == 644


def test_classifier_loss_is_right_under_gradient_accumulation(tmp_path):
    """Trainer with 2 accumulation steps of 2 samples takes the same step as one batch of 4."""
    config = tiny_config(num_labels=3, problem_type="multi_label_classification")
    pixels = pixel_batch(config, batch_size=4)
    labels = (torch.rand(4, 3, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    rows = [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(4)]

    def train(batch_size: int, accumulation: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = S2MAEForImageClassification(config)
        args = TrainingArguments(
            output_dir=str(tmp_path / f"run_{batch_size}"),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=0.1,
            optim="sgd",
            lr_scheduler_type="constant",
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            dataloader_drop_last=False,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows)
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)
        trainer.train()
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    assert S2MAEForImageClassification.accepts_loss_kwargs is False
    one_batch, accumulated = train(4, 1), train(2, 2)
    for name, value in one_batch.items():
        assert torch.allclose(value, accumulated[name], atol=1e-6), name


@pytest.mark.parametrize("position_embedding_type", ["separable", "joint", "sincos"])
def test_resize_position_embeddings_in_place_then_save_and_load_natively(tmp_path, position_embedding_type):
    config = tiny_config(position_embedding_type=position_embedding_type)
    model = S2MAEForPreTraining(config).eval()
    pixels = pixel_batch(config, size=24, bands=9)
    noise = torch.rand(2, 3 * 36, generator=torch.Generator().manual_seed(4))
    interpolated = model(pixels, noise=noise, interpolate_pos_encoding=True)
    model.resize_position_embeddings(image_size=24, band_names=list("abcdefghi"))
    assert (model.config.image_size, model.config.num_channels, model.config.num_tokens) == (24, 9, 108)
    resized = model(pixels, noise=noise)
    assert torch.allclose(resized.logits, interpolated.logits, atol=1e-6)
    model.save_pretrained(tmp_path)
    reloaded = S2MAEForPreTraining.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded(pixels, noise=noise).logits, resized.logits)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        model.resize_position_embeddings(image_size=30)
    assert model.config.image_size == 24


def test_cube_embedding_equals_the_conv3d_it_stores():
    """The embedding is computed as cubes x weight; it must equal the stored Conv3d applied with stride = kernel."""
    config = tiny_config()
    embeddings = S2MAEModel(config).embeddings.cube_embeddings
    pixels = pixel_batch(config)
    expected = embeddings.projection(pixels.unsqueeze(1)).flatten(2).transpose(1, 2)  # (B, L, D)
    got = embeddings(pixels)
    assert got.is_contiguous()
    assert torch.allclose(got, expected, atol=1e-6)


def test_classifier_loss_infers_the_problem_type_and_covers_regression():
    """`compute_loss` goes through Transformers' `loss_function`; the values are the plain torch losses."""
    pixels = pixel_batch(tiny_config())
    regression = S2MAEForImageClassification(tiny_config(num_labels=1)).eval()
    targets = torch.tensor([0.5, -1.0])
    out = regression(pixels, labels=targets)
    assert regression.config.problem_type == "regression"
    assert torch.allclose(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), targets))
    single = regression(pixels[:1], labels=targets[:1])  # batch of one: (1, 1) logits against (1,) targets
    assert torch.allclose(single.loss, (single.logits.squeeze() - targets[0]) ** 2)

    two_targets = S2MAEForImageClassification(tiny_config(num_labels=2, problem_type="regression")).eval()
    targets = torch.tensor([[1, 2], [3, 4]])  # integer targets are scored as floats
    out = two_targets(pixels, labels=targets)
    assert torch.allclose(out.loss, torch.nn.functional.mse_loss(out.logits, targets.float()))

    inferred = S2MAEForImageClassification(tiny_config(num_labels=3)).eval()
    out = inferred(pixels, labels=torch.tensor([2, 1], dtype=torch.int32))
    assert inferred.config.problem_type == "single_label_classification"
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([2, 1])))
    multi = S2MAEForImageClassification(tiny_config(num_labels=3)).eval()
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    out = multi(pixels, labels=targets)
    assert multi.config.problem_type == "multi_label_classification"
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))


def test_classifier_loss_is_float32_for_a_bfloat16_model():
    model = S2MAEForImageClassification(tiny_config(num_labels=3)).eval().to(torch.bfloat16)
    out = model(pixel_batch(model.config), labels=torch.tensor([0, 2]))
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    expected = torch.nn.functional.cross_entropy(out.logits.float(), torch.tensor([0, 2]))
    assert torch.equal(out.loss, expected)


def test_pretraining_loss_of_a_bfloat16_model_averages_over_the_exact_hidden_count():
    # 64 px, cubes 3 x 4 x 4: 2 x 16 x 16 = 512 tokens, 461 hidden at ratio 0.9; 461 is not a bfloat16 number
    model = S2MAEForPreTraining(tiny_config(image_size=64, mask_ratio=0.9)).eval().to(torch.bfloat16)
    pixels = pixel_batch(model.config, batch_size=1).to(torch.bfloat16)
    with torch.no_grad():
        out = model(pixels, noise=masking_noise(model.config, batch_size=1))
    hidden = out.mask.float()
    assert out.mask.dtype == torch.bfloat16 and int(hidden.sum()) == 461
    token_error = ((out.logits.float() - model.patchify(pixels).float()) ** 2).mean(dim=-1)
    expected = (token_error * hidden).sum() / 461
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=0)


def test_literal_fields_reject_unknown_choices():
    for field, value in [("masking_strategy", "block"), ("position_embedding_type", "rope"), ("pooling", "cls")]:
        with pytest.raises(StrictDataclassFieldValidationError, match=f"Field '{field}' expected one of"):
            tiny_config(**{field: value})


def test_mask_ratio_is_checked_in_one_place_for_config_and_forward():
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got 1.0"):
        num_kept_tokens("random", 1.0, 2, 16)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got -0.1"):
        tiny_config(mask_ratio=-0.1)
    # two spectral groups: hiding 60 % of them leaves int(2 * 0.4) = 0
    with pytest.raises(ValueError, match="mask_ratio 0.6 with masking_strategy 'spectral' keeps no token"):
        tiny_config(masking_strategy="spectral", mask_ratio=0.6)
    config = tiny_config(masking_strategy="spectral", mask_ratio=0.5)
    model = S2MAEForPreTraining(config)
    with pytest.raises(ValueError, match="mask_ratio 0.6 with masking_strategy 'spectral' keeps no token"):
        model(pixel_batch(config), mask_ratio=0.6)
    # the config's own ratio keeps one of two groups, but none of the single group of a 3-band input
    with pytest.raises(ValueError, match=r"keeps no token \(1 spectral groups, 16 spatial patches\)"):
        model(pixel_batch(config, bands=3), interpolate_pos_encoding=True)
    assert config.num_kept_tokens() == 16 and config.num_kept_tokens(0.0) == 32


ENCODER_BLOCK_NO_DECAY = [
    "layernorm_before.weight",
    "layernorm_before.bias",
    "attention.q_proj.bias",
    "attention.k_proj.bias",
    "attention.v_proj.bias",
    "attention.o_proj.bias",
    "layernorm_after.weight",
    "layernorm_after.bias",
    "mlp.fc1.bias",
    "mlp.fc2.bias",
]


def no_decay_of_blocks(prefix: str, depth: int) -> set[str]:
    return {f"{prefix}{index}.{name}" for index in range(depth) for name in ENCODER_BLOCK_NO_DECAY}


def test_no_weight_decay_lists_vectors_position_tables_and_mask_token():
    config = tiny_config(num_labels=3)
    encoder_names = {
        "embeddings.cube_embeddings.projection.bias",
        "embeddings.position_embeddings.spatial",
        "embeddings.position_embeddings.spectral",
        "layernorm.weight",
        "layernorm.bias",
    } | no_decay_of_blocks("encoder.layers.", 2)
    pooler_names = {"pooler.layernorm.weight", "pooler.layernorm.bias"}
    assert S2MAEModel(config).no_weight_decay() == encoder_names | pooler_names

    in_head_model = {f"s2mae.{name}" for name in encoder_names}
    decoder_names = {
        "decoder.decoder_embed.bias",
        "decoder.mask_token",
        "decoder.position_embeddings.spatial",
        "decoder.position_embeddings.spectral",
        "decoder.decoder_norm.weight",
        "decoder.decoder_norm.bias",
        "decoder.decoder_pred.bias",
    } | no_decay_of_blocks("decoder.decoder_layers.layers.", 2)
    assert S2MAEForPreTraining(config).no_weight_decay() == in_head_model | decoder_names

    classifier = S2MAEForImageClassification(config)
    expected = in_head_model | {f"s2mae.{name}" for name in pooler_names} | {"classifier.bias"}
    assert classifier.no_weight_decay() == expected
    decayed = {name for name, _ in classifier.named_parameters()} - expected
    matrices = {"projection", "q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2", "classifier"}
    assert {name.split(".")[-2] for name in decayed} == matrices
    assert all(name.endswith(".weight") for name in decayed)

    joint = S2MAEModel(tiny_config(position_embedding_type="joint"), add_pooling_layer=False).no_weight_decay()
    assert "embeddings.position_embeddings.joint" in joint and "embeddings.position_embeddings.spatial" not in joint


@pytest.mark.parametrize("model_class", [S2MAEModel, S2MAEForPreTraining, S2MAEForImageClassification])
def test_layer_id_orders_parameters_by_depth(model_class):
    config = tiny_config(num_labels=3, num_hidden_layers=3)
    model = model_class(config)
    top = model.num_layers_for_decay
    assert top == config.num_hidden_layers + 1 == 4
    prefix = "" if model_class is S2MAEModel else "s2mae."
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert set(ids.values()) == set(range(top + 1))
    for name, layer in ids.items():
        local = name.removeprefix(prefix)
        if local.startswith("embeddings."):
            assert layer == 0, name
        elif local.startswith("encoder.layers."):
            assert layer == int(local.split(".")[2]) + 1, name
        else:
            assert layer == top, name
    assert ids[f"{prefix}embeddings.position_embeddings.spatial"] == 0
    assert ids[f"{prefix}encoder.layers.2.mlp.fc2.weight"] == 3
    assert ids[f"{prefix}layernorm.weight"] == top
    head = {S2MAEModel: "pooler.layernorm.weight", S2MAEForPreTraining: "decoder.mask_token"}
    assert ids[head.get(model_class, "classifier.weight")] == top
    with pytest.raises(ValueError, match="is not a parameter of this"):
        model.layer_id("s2mae.encoder.layers.0.mlp.fc1.weight" if not prefix else "encoder.layers.0.mlp.fc1.weight")


def test_layer_decay_parameter_groups_from_the_hooks():
    """The hooks are enough to build the optimizer groups of MAE fine-tuning (lr scale d ** (top - id))."""
    model = S2MAEForImageClassification(tiny_config(num_labels=3))
    decay, top, no_decay = 0.5, model.num_layers_for_decay, model.no_weight_decay()
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        groups.setdefault((model.layer_id(name), name in no_decay), []).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": params, "lr": 1e-3 * decay ** (top - layer), "weight_decay": 0.0 if skip else 0.05}
            for (layer, skip), params in groups.items()
        ]
    )
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
    by_id = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    assert by_id[id(model.classifier.weight)]["lr"] == 1e-3
    assert by_id[id(model.s2mae.embeddings.cube_embeddings.projection.weight)]["lr"] == 1e-3 * 0.5**3
    assert by_id[id(model.classifier.bias)]["weight_decay"] == 0.0
    model(pixel_batch(model.config), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()

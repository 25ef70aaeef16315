"""Transformers conventions: output capture with layer selection, input embeddings, initialisation, attention
backends, and the multispectral feature-extraction pipeline."""

import numpy as np
import pytest
import torch
from model_tester import masking_noise, pixel_batch, tiny_config
from transformers import pipeline

import modeling_s2mae  # noqa: F401  (registers the pipeline task)
from modeling_s2mae.image_processing_s2mae import S2MAEImageProcessor
from modeling_s2mae.modeling_s2mae import (
    S2MAECubeEmbeddings,
    S2MAEForImageClassification,
    S2MAEForPreTraining,
    S2MAEModel,
)
from modeling_s2mae.pipelines import PIPELINE_TASK, MultispectralFeatureExtractionPipeline

torch.set_num_threads(1)


def test_output_hidden_states_selects_layers_by_index():
    model = S2MAEForImageClassification(tiny_config(num_labels=3, num_hidden_layers=3)).eval()
    pixels = pixel_batch(model.config)
    everything = model(pixels, output_hidden_states=True).hidden_states
    assert len(everything) == 4  # embeddings + 3 layers, before the final LayerNorm
    selected = model(pixels, output_hidden_states=[0, -1]).hidden_states
    assert len(selected) == 4 and selected[1] is None and selected[2] is None
    assert torch.equal(selected[0], everything[0]) and torch.equal(selected[3], everything[3])
    only_second = model(pixels, output_hidden_states=2).hidden_states
    assert [state is not None for state in only_second] == [False, False, True, False]
    # the last hidden state is the last layer's output, not the final LayerNorm's (as in ViTMAE)
    encoder_out = model.s2mae(pixels, output_hidden_states=True)
    assert not torch.allclose(encoder_out.hidden_states[-1], encoder_out.last_hidden_state)
    assert torch.allclose(model.s2mae.layernorm(encoder_out.hidden_states[-1]), encoder_out.last_hidden_state)


def test_output_capture_with_masking_and_the_pretraining_model():
    config = tiny_config()
    model = S2MAEForPreTraining(config).eval()
    out = model(pixel_batch(config), noise=masking_noise(config), output_hidden_states=True, output_attentions=True)
    visible = config.num_kept_tokens()
    assert len(out.hidden_states) == config.num_hidden_layers + 1  # the encoder's only, not the decoder's
    assert all(state.shape == (2, visible, config.hidden_size) for state in out.hidden_states)
    assert len(out.attentions) == config.num_hidden_layers
    assert out.attentions[0].shape == (2, config.num_attention_heads, visible, visible)
    # nothing is captured when nothing is asked
    plain = model(pixel_batch(config), noise=masking_noise(config))
    assert plain.hidden_states is None and plain.attentions is None
    assert torch.allclose(plain.logits, out.logits, atol=1e-6)


def test_set_input_embeddings_replaces_the_cube_embedding():
    config = tiny_config(num_labels=3)
    model = S2MAEForImageClassification(config).eval()
    pixels = pixel_batch(config)
    before = model(pixels).logits
    replacement = S2MAECubeEmbeddings(config)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement and model.s2mae.get_input_embeddings() is replacement
    assert not torch.allclose(model(pixels).logits, before)
    with pytest.raises(ValueError, match="must be an nn.Module"):
        model.set_input_embeddings(torch.zeros(3))


def test_initializer_range_sets_the_tables_and_mask_token_and_not_the_xavier_layers():
    def build(initializer_range):
        torch.manual_seed(0)
        return S2MAEForPreTraining(tiny_config(initializer_range=initializer_range, hidden_size=64))

    small, large = build(0.02), build(0.2)
    small_std = float(small.s2mae.embeddings.position_embeddings.spatial.std())
    large_std = float(large.s2mae.embeddings.position_embeddings.spatial.std())
    assert large_std == pytest.approx(10 * small_std, rel=1e-3)  # the same draws, scaled
    assert float(large.decoder.mask_token.std()) > 5 * float(small.decoder.mask_token.std())
    fc1_small = small.s2mae.encoder.layers[0].mlp.fc1.weight
    fc1_large = large.s2mae.encoder.layers[0].mlp.fc1.weight
    assert torch.equal(fc1_small, fc1_large)  # Xavier-uniform, whatever initializer_range says
    bound = (6 / (fc1_small.shape[0] + fc1_small.shape[1])) ** 0.5
    assert float(fc1_small.abs().max()) <= bound


@pytest.mark.slow
def test_flex_attention_matches_sdpa_at_inference():
    """Flex attention compiles its kernel (about 10 s on CPU) and has no CPU backward, so inference only."""
    model = S2MAEModel(tiny_config()).eval()
    pixels = pixel_batch(model.config)
    with torch.no_grad():
        reference = model(pixels).last_hidden_state
        model.set_attn_implementation("flex_attention")
        got = model(pixels).last_hidden_state
    assert torch.allclose(got, reference, atol=1e-5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = tiny_config()
    torch.manual_seed(0)
    model = S2MAEModel(config).eval()
    folder = tmp_path_factory.mktemp("encoder")
    model.save_pretrained(folder)
    S2MAEImageProcessor(band_names=list(config.band_names), size=16, scaling="reflectance").save_pretrained(folder)
    return folder, model


def test_pipeline_returns_pooled_or_per_token_features_of_multiband_arrays(checkpoint):
    folder, model = checkpoint
    extractor = pipeline(PIPELINE_TASK, model=str(folder))
    assert isinstance(extractor, MultispectralFeatureExtractionPipeline)
    rng = np.random.default_rng(0)
    # 7 input bands in another order, one of which the model does not use; nodata in a corner
    input_bands = ["B12", "B11", "B08", "B04", "B03", "B02", "B01"]
    tiles = [rng.integers(1, 10000, size=(7, 24, 24), dtype=np.uint16) for _ in range(3)]
    tiles[1][:, :8, :8] = 0
    pooled = extractor(tiles[0], input_band_names=input_bands)
    assert isinstance(pooled, list) and len(pooled) == model.config.hidden_size

    processor = S2MAEImageProcessor.from_pretrained(folder)
    batch = extractor(tiles, input_band_names=input_bands, nodata=0, return_tensors=True, batch_size=2)
    tokens = extractor(tiles, input_band_names=input_bands, nodata=0, pool=False, return_tensors=True)
    for tile, features, per_token in zip(tiles, batch, tokens):
        inputs = processor(tile, input_band_names=input_bands, nodata=0, return_tensors="pt")
        with torch.no_grad():
            expected = model(**inputs)
        assert torch.allclose(features, expected.pooler_output[0], atol=1e-5)
        assert per_token.shape == (model.config.num_tokens, model.config.hidden_size)
        assert torch.allclose(per_token, expected.last_hidden_state[0], atol=1e-5)


def test_pipeline_rejects_a_batch_array_and_unknown_arguments(checkpoint):
    folder, _ = checkpoint
    extractor = pipeline(PIPELINE_TASK, model=str(folder))
    with pytest.raises(ValueError, match="one image per input"):
        extractor(np.zeros((2, 6, 16, 16), np.float32))
    with pytest.raises(ValueError, match="Unknown arguments"):
        extractor(np.zeros((6, 16, 16), np.float32), pooling="mean")

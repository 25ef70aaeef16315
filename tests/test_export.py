"""Export (torch.export, ONNX + ONNX Runtime), fullgraph compile and bf16 autocast of the three S2MAE models."""

import json

import numpy as np
import pytest
import torch
from model_tester import masking_noise, pixel_batch, tiny_config

from modeling_s2mae.export import (
    ExportWrapper,
    S2MAEOnnxModel,
    example_inputs,
    export_onnx,
    export_program,
    graph_signature,
)
from modeling_s2mae.masking import mask_tokens
from modeling_s2mae.modeling_s2mae import (
    S2MAEForImageClassification,
    S2MAEForPreTraining,
    S2MAEModel,
    is_tracing,
)

torch.set_num_threads(1)

MODEL_CLASSES = [S2MAEModel, S2MAEForImageClassification, S2MAEForPreTraining]


def build(model_class, **overrides):
    """The tiny test model with one encoder and one decoder block (tracing time grows with depth)."""
    torch.manual_seed(0)
    values = {"num_labels": 3, "num_hidden_layers": 1, "decoder_num_hidden_layers": 1, **overrides}
    return model_class(tiny_config(**values)).eval()


def partly_invalid_inputs(model, batch_size: int) -> dict[str, torch.Tensor]:
    inputs = example_inputs(model, batch_size, seed=7)
    inputs["pixel_mask"][0, :4, :] = 0  # the first row of cubes of one sample is nodata
    return inputs


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_torch_export_has_a_dynamic_batch_and_matches_eager(model_class):
    model = build(model_class)
    program = export_program(model)
    wrapper = ExportWrapper(model).eval()
    for batch_size in (1, 3):
        inputs = partly_invalid_inputs(model, batch_size) if batch_size > 1 else example_inputs(model, 1)
        with torch.no_grad():
            expected = wrapper(**inputs)
        got = program.module()(**inputs)
        assert len(got) == len(expected) == len(graph_signature(model)[1])
        for value, reference in zip(got, expected):
            assert value.shape == reference.shape
            assert torch.allclose(value, reference, atol=1e-5), (model_class.__name__, batch_size)


def test_value_checks_still_raise_in_eager_mode_and_are_skipped_while_tracing():
    assert not is_tracing()
    model = build(S2MAEModel)
    with pytest.raises(ValueError, match="no valid pixel"):
        model(pixel_batch(model.config), pixel_mask=torch.zeros(2, 16, 16))
    classifier = build(S2MAEForImageClassification)
    with pytest.raises(ValueError, match=r"Class ids must be in \[0, 3\)"):
        classifier(pixel_batch(classifier.config), labels=torch.tensor([0, 7]))
    # the exported encoder holds no branch on values: an all-invalid sample pools to NaN instead of raising
    program = export_program(model)
    inputs = example_inputs(model, 2)
    inputs["pixel_mask"][1] = 0
    _, pooled = program.module()(**inputs)
    assert torch.isfinite(pooled[0]).all() and torch.isnan(pooled[1]).all()


def test_masking_by_one_sort_matches_the_double_argsort():
    tokens = torch.randn(3, 32, 8)
    for noise in (torch.rand(3, 32), torch.rand(3, 16)[:, None, :].expand(3, 2, 16).reshape(3, 32)):  # with ties
        kept, mask, ids_restore, ids_keep = mask_tokens(tokens, noise, 8)
        ids_shuffle = torch.argsort(noise, dim=1, stable=True)
        assert torch.equal(ids_restore, torch.argsort(ids_shuffle, dim=1))
        assert torch.equal(ids_keep, ids_shuffle[:, :8])
        expected_mask = torch.ones(3, 32)
        expected_mask[:, :8] = 0
        assert torch.equal(mask, torch.gather(expected_mask, 1, ids_restore))
        assert torch.equal(kept, torch.gather(tokens, 1, ids_keep[..., None].expand(3, 8, 8)))


# ONNX export takes 3-10 s per model on a busy 2-core machine: these tests are marked slow
@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """Every model class exported once (the export itself checks ONNX Runtime against PyTorch at 1e-4)."""
    folder = tmp_path_factory.mktemp("onnx")
    exported = {}
    for model_class in MODEL_CLASSES:
        model = build(model_class)
        report = export_onnx(model, folder / f"{model_class.__name__}.onnx")
        exported[model_class] = (model, report)
    return exported


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.slow
def test_onnx_export_reports_parity_with_pytorch(onnx_files, model_class):
    model, report = onnx_files[model_class]
    inputs, outputs = graph_signature(model)
    assert report.input_names == inputs and report.output_names == outputs
    assert set(report.max_abs_diff) == set(outputs)
    assert max(report.max_abs_diff.values()) <= 1e-4


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.slow
def test_onnx_runtime_model_returns_the_pytorch_outputs(onnx_files, model_class):
    model, report = onnx_files[model_class]
    runtime = S2MAEOnnxModel(report.path)
    assert runtime.model_class == model_class.__name__
    assert runtime.config.to_dict()["hidden_size"] == model.config.hidden_size
    pixels = pixel_batch(model.config, batch_size=4, seed=3)
    pixel_mask = torch.ones(4, 16, 16, dtype=torch.long)
    pixel_mask[2, :, :8] = 0
    kwargs = {"noise": masking_noise(model.config, batch_size=4)} if model_class is S2MAEForPreTraining else {}
    got = runtime(pixels, pixel_mask=pixel_mask, **kwargs)
    with torch.no_grad():
        expected = model(pixels, pixel_mask=pixel_mask, **kwargs)
    assert type(got) is type(expected)
    for name in report.output_names:
        assert got[name].shape == expected[name].shape, name
        assert torch.allclose(got[name].to(expected[name].dtype), expected[name], atol=1e-4), name


@pytest.mark.slow
def test_onnx_runtime_model_rejects_wrong_inputs(onnx_files):
    _, report = onnx_files[S2MAEModel]
    runtime = S2MAEOnnxModel(report.path)
    with pytest.raises(ValueError, match=r"takes pixel_values of shape \(B, 6, 16, 16\)"):
        runtime(torch.rand(2, 6, 32, 32))
    with pytest.raises(ValueError, match="Missing inputs"):
        runtime.run({"pixel_values": np.zeros((1, 6, 16, 16), np.float32)})


@pytest.mark.slow
def test_onnx_export_fails_when_parity_is_not_met(tmp_path):
    model = build(S2MAEForImageClassification)
    with pytest.raises(ValueError, match="differs from PyTorch by up to"):
        export_onnx(model, tmp_path / "model.onnx", atol=0.0)  # float32 kernels differ by ~1e-7


@pytest.mark.slow
def test_export_script_writes_onnx_config_and_processor(tmp_path):
    import importlib.util
    from pathlib import Path

    from transformers import AutoImageProcessor

    from modeling_s2mae.image_processing_s2mae import S2MAEImageProcessor

    model = build(S2MAEForImageClassification)
    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    S2MAEImageProcessor(band_names=list(model.config.band_names), size=16, scaling="reflectance").save_pretrained(
        checkpoint
    )
    path = Path(__file__).resolve().parent.parent / "examples" / "export_onnx.py"
    spec = importlib.util.spec_from_file_location("export_onnx_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output_dir = tmp_path / "exported"
    report = script.main(
        ["--model_name_or_path", str(checkpoint), "--output_dir", str(output_dir), "--task", "classification"]
    )
    assert max(report.max_abs_diff.values()) <= 1e-4
    assert {"model.onnx", "config.json", "preprocessor_config.json", "export_report.json"} <= {
        p.name for p in output_dir.iterdir()
    }
    assert json.loads((output_dir / "export_report.json").read_text())["output_names"] == ["logits"]

    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert processor.scaling == "reflectance"
    tile = np.random.default_rng(0).integers(0, 10000, size=(6, 16, 16), dtype=np.uint16)
    inputs = processor(tile, return_tensors="pt")
    got = S2MAEOnnxModel.from_pretrained(output_dir)(**inputs).logits
    with torch.no_grad():
        expected = model(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-4)


def _loss_and_gradients(model, module, run):
    """Loss of `run(module)` (the model or its compiled form) and the gradients it leaves on `model`."""
    model.zero_grad(set_to_none=True)
    loss = run(module)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model_class", [S2MAEForPreTraining, S2MAEForImageClassification])
def test_fullgraph_compile_matches_eager_forward_and_backward(model_class):
    """`fullgraph=True` fails on any graph break; aot_eager traces forward and backward without inductor's
    code generation (slow on 2 cores; `test_inductor_compile_matches_eager` runs it, marked slow)."""
    model = build(model_class).train()
    pixels = pixel_batch(model.config)
    if model_class is S2MAEForPreTraining:
        noise = masking_noise(model.config)

        def run(module):
            return module(pixels, noise=noise).loss
    else:
        labels = torch.tensor([0, 2])

        def run(module):
            return module(pixels, labels=labels).loss

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss, gradients = _loss_and_gradients(model, compiled, run)
    eager_loss, eager_gradients = _loss_and_gradients(model, model, run)
    assert torch.allclose(loss, eager_loss, atol=1e-6)
    assert gradients.keys() == eager_gradients.keys()
    for name, gradient in gradients.items():
        assert torch.allclose(gradient, eager_gradients[name], atol=1e-6), name


@pytest.mark.slow
def test_inductor_compile_matches_eager():
    model = build(S2MAEForPreTraining).train()
    pixels, noise = pixel_batch(model.config), masking_noise(model.config)

    def run(module):
        return module(pixels, noise=noise).loss

    torch._dynamo.reset()
    loss, gradients = _loss_and_gradients(model, torch.compile(model, fullgraph=True), run)
    eager_loss, eager_gradients = _loss_and_gradients(model, model, run)
    assert torch.allclose(loss, eager_loss, atol=1e-5)
    for name, gradient in gradients.items():
        assert torch.allclose(gradient, eager_gradients[name], atol=1e-4), name


def test_bf16_autocast_loss_is_float32_finite_and_close_to_float32():
    pretraining = build(S2MAEForPreTraining)
    classifier = build(S2MAEForImageClassification)
    pixels, noise, labels = pixel_batch(pretraining.config), masking_noise(pretraining.config), torch.tensor([0, 2])
    with torch.no_grad():
        reference = (pretraining(pixels, noise=noise).loss, classifier(pixels, labels=labels).loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pretraining_out = pretraining(pixels, noise=noise)
        classifier_out = classifier(pixels, labels=labels)
    assert pretraining_out.logits.dtype == torch.bfloat16  # the matmuls ran in bf16
    for loss, expected in zip((pretraining_out.loss, classifier_out.loss), reference):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert torch.allclose(loss, expected, rtol=0.05), (loss, expected)
    pretraining_out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in pretraining.parameters() if p.grad is not None)

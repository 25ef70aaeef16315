"""Export (torch.export, ONNX + ONNX Runtime), fullgraph compile and bf16 autocast of the three S2MAE models."""

import json

import numpy as np
import pytest
import torch
from model_tester import masking_noise, pixel_batch, tiny_config

from modeling_s2mae.export import (
    ExportWrapper,
    S2MAEOnnxModel,
    dynamic_hw_range,
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


# sizes other than the traced 16 x 16 (4 x 4 patches of 4 px), H != W, one smaller and one larger
OTHER_SIZES = [(8, 24), (28, 12)]


@pytest.mark.parametrize(
    ("model_class", "position_embedding_type"),
    [(S2MAEModel, "separable"), (S2MAEModel, "sincos"), (S2MAEForImageClassification, "wavelength")],
)
def test_torch_export_with_dynamic_hw_matches_eager_at_other_sizes(model_class, position_embedding_type):
    model = build(model_class, position_embedding_type=position_embedding_type)
    program = export_program(model, dynamic_hw=True)
    wrapper = ExportWrapper(model, interpolate_pos_encoding=True).eval()
    fixed = ExportWrapper(model).eval()
    traced = example_inputs(model, 3, seed=2)
    with torch.no_grad():  # at the traced size the interpolation reproduces the stored tables
        for value, reference in zip(program.module()(**traced), fixed(**traced)):
            assert torch.allclose(value, reference, atol=1e-6)
    for size in OTHER_SIZES:
        inputs = example_inputs(model, 3, seed=5, image_size=size)
        inputs["pixel_mask"][1, :4] = 0
        with torch.no_grad():
            expected = wrapper(**inputs)
        got = program.module()(**inputs)
        for value, reference in zip(got, expected):
            assert value.shape == reference.shape
            assert torch.allclose(value, reference, atol=1e-5), (model_class.__name__, size)
    # the program checks its input shapes: H must be a multiple of the patch size, and within the range
    with pytest.raises(AssertionError, match=r"pixel_values.size\(\)\[2\] % 4 == 0"):
        program.module()(pixel_values=torch.rand(2, 6, 18, 16), pixel_mask=torch.ones(2, 18, 16, dtype=torch.long))
    with pytest.raises(AssertionError, match=r"pixel_values.size\(\)\[3\] <= 128"):
        program.module()(pixel_values=torch.rand(2, 6, 16, 132), pixel_mask=torch.ones(2, 16, 132, dtype=torch.long))


def test_fixed_size_export_refuses_other_sizes_and_pretraining_refuses_dynamic_hw():
    model = build(S2MAEModel)
    program = export_program(model)
    with pytest.raises(AssertionError, match=r"pixel_values.size\(\)\[2\] == 16"):
        program.module()(pixel_values=torch.rand(2, 6, 24, 24), pixel_mask=torch.ones(2, 24, 24, dtype=torch.long))
    with pytest.raises(ValueError, match="S2MAEForPreTraining cannot be exported with a dynamic height / width"):
        export_program(build(S2MAEForPreTraining), dynamic_hw=True)
    assert dynamic_hw_range(model.config) == (8, 128)
    assert dynamic_hw_range(model.config, max_image_size=30) == (8, 28)
    with pytest.raises(ValueError, match="max_image_size must be at least config.image_size"):
        dynamic_hw_range(model.config, max_image_size=12)
    with pytest.raises(ValueError, match="multiples of patch_size 4, got 18x16"):
        example_inputs(model, image_size=(18, 16))


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
def test_onnx_export_with_dynamic_hw_runs_other_sizes_in_onnx_runtime(tmp_path):
    model = build(S2MAEForImageClassification)
    report = export_onnx(model, tmp_path / "model.onnx", dynamic_hw=True, max_image_size=64)
    assert report.dynamic_hw and report.image_size_range == (8, 64)
    assert report.check_image_sizes == [(16, 16), (24, 20)]  # the traced size and one 2 patches larger
    assert max(report.max_abs_diff.values()) <= 1e-4
    runtime = S2MAEOnnxModel(report.path)
    assert runtime.dynamic_hw and runtime.image_size_range == (8, 64)
    for size in OTHER_SIZES:
        pixels = torch.rand(3, 6, *size, generator=torch.Generator().manual_seed(4))
        pixel_mask = torch.ones(3, *size, dtype=torch.long)
        pixel_mask[0, :, :4] = 0
        got = runtime(pixels, pixel_mask=pixel_mask).logits
        with torch.no_grad():
            expected = model(pixels, pixel_mask=pixel_mask, interpolate_pos_encoding=True).logits
        assert torch.allclose(got, expected, atol=1e-4), size
    for size in ((18, 16), (16, 4), (16, 68)):
        with pytest.raises(ValueError, match=r"H and W multiples of patch_size 4 from 8 to 64 pixels"):
            runtime(torch.rand(2, 6, *size))
    fixed = S2MAEOnnxModel(export_onnx(model, tmp_path / "fixed.onnx", check=False).path)
    assert not fixed.dynamic_hw
    with pytest.raises(ValueError, match=r"takes pixel_values of shape \(B, 6, 16, 16\).*dynamic_hw=True"):
        fixed(torch.rand(2, 6, 24, 20))


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
    written = json.loads((output_dir / "export_report.json").read_text())
    assert written["output_names"] == ["logits"] and written["dynamic_hw"] is False

    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert processor.scaling == "reflectance"
    tile = np.random.default_rng(0).integers(0, 10000, size=(6, 16, 16), dtype=np.uint16)
    inputs = processor(tile, return_tensors="pt")
    got = S2MAEOnnxModel.from_pretrained(output_dir)(**inputs).logits
    with torch.no_grad():
        expected = model(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_export_script_with_dynamic_hw_records_it_in_the_export_report(tmp_path):
    import importlib.util
    from pathlib import Path

    checkpoint = tmp_path / "ckpt"
    build(S2MAEModel).save_pretrained(checkpoint)
    path = Path(__file__).resolve().parent.parent / "examples" / "export_onnx.py"
    spec = importlib.util.spec_from_file_location("export_onnx_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output_dir = tmp_path / "exported"
    script.main(["--model_name_or_path", str(checkpoint), "--output_dir", str(output_dir), "--dynamic_hw"])
    written = json.loads((output_dir / "export_report.json").read_text())
    assert written["dynamic_hw"] is True and written["image_size_range"] == [8, 128]
    assert written["check_image_sizes"] == [[16, 16], [24, 20]]
    assert max(written["max_abs_diff"].values()) <= 1e-4
    assert S2MAEOnnxModel.from_pretrained(output_dir)(torch.rand(1, 6, 32, 8)).pooler_output.shape == (1, 32)


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


def test_example_inputs_follow_the_model_device():
    # export_program traces with these inputs: on a CUDA model they must be CUDA tensors (meta stands in here)
    with torch.device("meta"):
        model = S2MAEForPreTraining(tiny_config())
    inputs = example_inputs(model)
    assert {value.device.type for value in inputs.values()} == {"meta"}
    cpu_inputs = example_inputs(build(S2MAEForPreTraining))
    assert {value.device.type for value in cpu_inputs.values()} == {"cpu"}
    assert torch.equal(cpu_inputs["noise"], example_inputs(build(S2MAEForPreTraining))["noise"])  # seeded

"""Registration with the Auto classes, checked in a fresh process (registration is process-global)."""

import subprocess
import sys
import textwrap


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_auto_classes_after_import_in_a_fresh_process(tmp_path):
    result = run_python(
        """
        import modeling_s2mae
        import torch
        from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                                  AutoModelForPreTraining)

        config = modeling_s2mae.S2MAEConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=64, decoder_hidden_size=32,
                                            decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                            decoder_intermediate_size=64)
        model = AutoModelForPreTraining.from_config(config)
        assert type(model).__name__ == "S2MAEForPreTraining"
        model.save_pretrained("ckpt")
        modeling_s2mae.S2MAEImageProcessor.from_model_config(config).save_pretrained("ckpt")
        assert type(AutoConfig.from_pretrained("ckpt")).__name__ == "S2MAEConfig"
        encoder = AutoModel.from_pretrained("ckpt")
        assert type(encoder).__name__ == "S2MAEModel"
        assert torch.equal(encoder.embeddings.cube_embeddings.projection.weight,
                           model.s2mae.embeddings.cube_embeddings.projection.weight)
        classifier = AutoModelForImageClassification.from_pretrained(
            "ckpt", num_labels=19, problem_type="multi_label_classification")
        assert type(classifier).__name__ == "S2MAEForImageClassification"
        assert classifier.config.problem_type == "multi_label_classification"
        processor = AutoImageProcessor.from_pretrained("ckpt")
        assert type(processor).__name__ == "S2MAEImageProcessor" and processor.size == 16
        print("ok")
        """,
        tmp_path,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_without_the_import_the_model_type_is_unknown(tmp_path):
    """Nothing auto-discovers the package: the user's code must import it (the README says so)."""
    run_python(
        """
        import modeling_s2mae
        modeling_s2mae.S2MAEConfig(image_size=16, patch_size=4).save_pretrained("ckpt")
        """,
        tmp_path,
    ).check_returncode()
    result = run_python(
        """
        from transformers import AutoConfig
        AutoConfig.from_pretrained("ckpt")
        """,
        tmp_path,
    )
    assert result.returncode != 0 and "s2mae" in result.stderr

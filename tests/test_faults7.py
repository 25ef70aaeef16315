"""Fault hunt 7: the training loop (empty data after filtering, metrics at the edges, resumption)."""

import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data import collate_pixels
from modeling_s2mae.data.pipeline import (
    SpectralDataArguments,
    build_datasets,
    local_training_records,
    statistics_samples,
)
from modeling_s2mae.data.training import SampleDataset
from modeling_s2mae.data.transforms import SampleTransform
from modeling_s2mae.metrics import MultiLabelMetrics, SegmentationMetrics
from modeling_s2mae.training import S2MAETrainer, check_metric_for_best_model, prepare_training_arguments

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_tester import TINY_DECODER, TINY_ENCODER, half_nodata_samples, tiny_overrides  # noqa: E402


class _Stream(torch.utils.data.IterableDataset):
    """A stream of `count` valid 12-band 32 px samples (0: every sample was rejected by the transform)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        for _ in range(self.count):
            yield {"pixel_values": torch.rand(12, 32, 32, generator=generator), "pixel_mask": torch.ones(32, 32)}


def _trainer(tmp_path: Path, train, evaluation=None, **arguments) -> S2MAETrainer:
    torch.manual_seed(0)
    model = S2MAEForPreTraining(S2MAEConfig(**TINY_ENCODER, **TINY_DECODER, image_size=32))
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, per_device_eval_batch_size=2, report_to="none",
        save_strategy="no", eval_strategy="no", use_cpu=True, remove_unused_columns=False,
        dataloader_pin_memory=False, accelerator_config={"dispatch_batches": False}, **arguments,
    )  # fmt: skip
    return S2MAETrainer(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation, data_collator=collate_pixels
    )


def test_a_stream_whose_every_sample_is_rejected_fails_instead_of_saving_an_untrained_model(tmp_path):
    trainer = _trainer(tmp_path, _Stream(0), max_steps=3)
    with pytest.raises(RuntimeError, match="No training step ran"):
        trainer.train()
    assert _trainer(tmp_path, _Stream(4), max_steps=3).train().global_step == 3  # a short stream is cycled


def test_an_evaluation_set_that_yields_nothing_is_an_error_not_metrics_without_a_loss(tmp_path):
    trainer = _trainer(tmp_path, _Stream(4), _Stream(0), max_steps=1)
    with pytest.raises(ValueError, match="yielded no sample"):
        trainer.evaluate()
    assert "eval_loss" in _trainer(tmp_path, _Stream(4), _Stream(3), max_steps=1).evaluate()


def _classes(records) -> set[str]:
    return {record["id"].split("/")[0] for record in records}


def test_max_samples_and_band_statistics_draw_from_every_class_not_the_first_listed(sample_data):
    """The stratified split lists the records class by class: `--max_train_samples 2` took both from the first class
    (a classifier trained on one class), and the band statistics read the first classes only."""
    seen_train, seen_eval = set(), set()
    for seed in range(6):
        args = SpectralDataArguments(
            train_dir=[str(sample_data / "eurosat_ms")], max_train_samples=2, max_eval_samples=1,
            validation_fraction=0.4,
        )  # fmt: skip
        found, train, evaluation = local_training_records(args, seed, labelled=True)
        assert len(train) == 2 and len(evaluation) == 1
        assert [r["id"] for r in local_training_records(args, seed, labelled=True)[1]] == [r["id"] for r in train]
        seen_train |= _classes(train)
        seen_eval |= _classes(evaluation)
    assert seen_train == seen_eval == set(found.classes)
    args = SpectralDataArguments(train_dir=[str(sample_data / "eurosat_ms")], statistics_max_samples=2)
    records = local_training_records(args, 0, labelled=True)
    samples = list(statistics_samples(args, records))
    assert len(samples) == 2 and {sample.id.split("/")[0] for sample in samples} == set(records[0].classes)
    args.statistics_max_samples = 100
    assert len(list(statistics_samples(args, records))) == len(records[1])


def test_an_evaluation_set_is_the_same_samples_at_every_evaluation(sample_data):
    """A rejected evaluation sample was replaced by one drawn from torch's global generator: each evaluation scored
    another multiset of samples (metrics that do not compare, a best checkpoint chosen on noise), and evaluating
    moved the training's random state."""
    processor = S2MAEImageProcessor(size=8, scaling="reflectance")
    transform = SampleTransform(processor, min_valid_fraction=0.5)
    evaluation = SampleDataset(half_nodata_samples(distinct=True, count=40), transform, deterministic=True)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = [evaluation[i]["pixel_values"] for i in range(1, 40, 2)]
    second = [evaluation[i]["pixel_values"] for i in range(1, 40, 2)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(torch.get_rng_state(), state)

    args = SpectralDataArguments(
        train_dir=[str(sample_data / "eurosat_ms")], scaling="minmax", validation_fraction=0.4
    )
    data = build_datasets(args, S2MAEImageProcessor(size=32, scaling="minmax"), seed=0, with_labels=True)
    assert data.evaluation.deterministic and not data.train.deterministic


def test_a_metric_for_best_model_the_run_does_not_report_fails_before_training(tmp_path, sample_data):
    """Trainer raised a KeyError at the first evaluation, after eval_steps of training and before saving them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import run_classification

    argv = [
        "--train_dir", str(sample_data / "eurosat_ms"), "--config_overrides", tiny_overrides(decoder=False),
        "--image_size", "32", "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--eval_strategy", "steps",
        "--eval_steps", "1", "--save_steps", "1", "--load_best_model_at_end", "--report_to", "none",
        "--validation_fraction", "0.4", "--metric_for_best_model", "micro_map",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"micro_map is not a metric .* \['loss', 'accuracy'\]"):
        run_classification.main(argv)
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy="steps", metric_for_best_model="eval_macro_map")
    check_metric_for_best_model(args, MultiLabelMetrics.metric_names)  # with the prefix, a reported metric
    check_metric_for_best_model(TrainingArguments(output_dir=str(tmp_path), metric_for_best_model="x"), [])  # no eval
    with pytest.raises(ValueError, match="iou_water"):
        check_metric_for_best_model(
            TrainingArguments(output_dir=str(tmp_path), eval_strategy="epoch", metric_for_best_model="accuracy"),
            SegmentationMetrics(["forest", "water"], change_class=1).metric_names,
        )


def test_a_probe_set_too_small_to_split_is_named_and_k_fits_the_probe_set(tmp_path, sample_data):
    """One tile per class: the probe's test split was empty and failed with "the dataset folder ... is empty"."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import run_pretrain

    for name in ("AnnualCrop", "Forest"):
        (tmp_path / "one" / name).mkdir(parents=True)
        (tmp_path / "one" / name / f"{name}_1.tif").write_bytes(
            (sample_data / "eurosat_ms" / name / f"{name}_1.tif").read_bytes()
        )
    processor = S2MAEImageProcessor(size=32, scaling="minmax")
    args = run_pretrain.DataArguments(train_dir=["x"], probe_train_dir=str(tmp_path / "one"), probe_k=10)
    with pytest.raises(ValueError, match="0 test samples.*at least 2 samples per class"):
        run_pretrain.probe_callback(args, processor, seed=0)
    args.probe_train_dir = str(sample_data / "eurosat_ms")
    assert run_pretrain.probe_callback(args, processor, seed=0).k == 4  # the 4 probe train samples, not 10


def test_keeping_one_checkpoint_with_the_best_model_warns_that_resuming_starts_from_the_best(tmp_path, caplog):
    args = TrainingArguments(
        output_dir=str(tmp_path), eval_strategy="steps", save_strategy="steps", load_best_model_at_end=True,
        save_total_limit=1,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="modeling_s2mae.training"):
        prepare_training_arguments(args)
    assert "resumes from the best step, not the last" in caplog.text

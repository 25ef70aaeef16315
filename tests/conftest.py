"""Shared pytest setup: offline Hugging Face, small thread count, the repository's sample data."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO_ROOT / "sample_data"


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The sample imagery shipped in the repository (real Sentinel-2 / EuroSAT / BigEarthNet files)."""
    return SAMPLE_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and much faster when other jobs share the cores.

    Use it in a module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

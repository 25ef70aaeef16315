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

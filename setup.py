"""Packaging for s2mae: the S2MAE spatial-spectral masked autoencoder as a Hugging Face Transformers model."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).parent / "README.md"

setup(
    name="s2mae",
    version="0.1.0",
    description="S2MAE spatial-spectral masked autoencoder for multispectral imagery, as a Transformers model",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["modeling_s2mae", "modeling_s2mae.*"]),
    package_data={"modeling_s2mae": ["py.typed", "templates/*.md"]},
    install_requires=[
        "torch>=2.5,<2.14",
        "transformers>=5.24,<6",
        "huggingface_hub>=1.0,<3",
        "safetensors>=0.5",
        "numpy>=1.26",
        "Pillow>=10",
        "rasterio>=1.3,<2",
        "datasets>=4,<6",
        "accelerate>=1.10,<2",
        "Jinja2>=3.1",
        "lmdb>=1.4",
    ],
    extras_require={
        "examples": ["matplotlib>=3.8", "tensorboard>=2.15"],
        "onnx": ["onnx>=1.23,<2", "onnxscript>=0.7,<1", "onnxruntime>=1.32,<2"],
        "tests": [
            "pytest>=8",
            "ruff>=0.6",
            "matplotlib>=3.8",
            "tensorboard>=2.15",
            "onnx>=1.23,<2",
            "onnxscript>=0.7,<1",
            "onnxruntime>=1.32,<2",
        ],
    },
)

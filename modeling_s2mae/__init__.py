"""S2MAE for Hugging Face Transformers.

Importing this package registers S2MAE with `AutoConfig`, `AutoModel`, `AutoModelForPreTraining`,
`AutoModelForImageClassification`, `AutoModelForSemanticSegmentation`, `AutoBackbone` and `AutoImageProcessor`.
"""

from .configuration_s2mae import (
    EUROSAT_MS_BANDS,
    S2MAE_PRESETS,
    SENTINEL2_13_BANDS,
    SENTINEL2_BANDS,
    SENTINEL2_WAVELENGTHS_NM,
    S2MAEConfig,
)
from .export import S2MAEOnnxModel, export_onnx, export_program
from .hub import prepare_for_remote_code, save_with_remote_code
from .image_processing_s2mae import S2MAEImageProcessor
from .model_card import write_model_card
from .modeling_s2mae import (
    S2MAEForImageClassification,
    S2MAEForPreTraining,
    S2MAEForPreTrainingOutput,
    S2MAEModel,
    S2MAEModelOutput,
    S2MAEPreTrainedModel,
)
from .modeling_s2mae_dense import (
    S2MAEBackbone,
    S2MAEChangeDetectionOutput,
    S2MAEForChangeDetection,
    S2MAEForSemanticSegmentation,
)
from .pipelines import PIPELINE_TASK, MultispectralFeatureExtractionPipeline
from .registration import register_auto_classes
from .sensors import SENSORS, Sensor, get_sensor, hyperspectral_sensor

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "MultispectralFeatureExtractionPipeline",
    "PIPELINE_TASK",
    "S2MAEOnnxModel",
    "export_onnx",
    "export_program",
    "SENSORS",
    "S2MAEBackbone",
    "S2MAEChangeDetectionOutput",
    "S2MAEForChangeDetection",
    "S2MAEForSemanticSegmentation",
    "Sensor",
    "get_sensor",
    "hyperspectral_sensor",
    "EUROSAT_MS_BANDS",
    "SENTINEL2_13_BANDS",
    "prepare_for_remote_code",
    "save_with_remote_code",
    "write_model_card",
    "S2MAEConfig",
    "S2MAEForImageClassification",
    "S2MAEForPreTraining",
    "S2MAEForPreTrainingOutput",
    "S2MAEImageProcessor",
    "S2MAEModel",
    "S2MAEModelOutput",
    "S2MAEPreTrainedModel",
    "S2MAE_PRESETS",
    "SENTINEL2_BANDS",
    "SENTINEL2_WAVELENGTHS_NM",
    "register_auto_classes",
]

"""Registration of S2MAE with the Transformers Auto classes (process-wide, idempotent)."""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoModelForSemanticSegmentation,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_s2mae import S2MAEConfig
from .image_processing_s2mae import S2MAEImageProcessor
from .modeling_s2mae import S2MAEForImageClassification, S2MAEForPreTraining, S2MAEModel
from .modeling_s2mae_dense import S2MAEBackbone, S2MAEForSemanticSegmentation
from .pipelines import PIPELINE_TASK, MultispectralFeatureExtractionPipeline


def register_auto_classes() -> None:
    """Register the config, the models (`AutoModel`, `AutoModelForPreTraining`, `AutoModelForImageClassification`,
    `AutoModelForSemanticSegmentation`, `AutoBackbone`) and the image processor under model type "s2mae", and the
    `multispectral-feature-extraction` pipeline.

    Safe to call more than once (the package calls it at import).
    """
    AutoConfig.register(S2MAEConfig.model_type, S2MAEConfig, exist_ok=True)
    AutoModel.register(S2MAEConfig, S2MAEModel, exist_ok=True)
    AutoModelForPreTraining.register(S2MAEConfig, S2MAEForPreTraining, exist_ok=True)
    AutoModelForImageClassification.register(S2MAEConfig, S2MAEForImageClassification, exist_ok=True)
    AutoModelForSemanticSegmentation.register(S2MAEConfig, S2MAEForSemanticSegmentation, exist_ok=True)
    AutoBackbone.register(S2MAEConfig, S2MAEBackbone, exist_ok=True)
    # the same class under both keys, so that no backend fallback warning is emitted
    AutoImageProcessor.register(
        S2MAEConfig,
        image_processor_classes={"pil": S2MAEImageProcessor, "torchvision": S2MAEImageProcessor},
        exist_ok=True,
    )
    registered = PIPELINE_REGISTRY.supported_tasks.get(PIPELINE_TASK, {}).get("impl")
    if registered is not MultispectralFeatureExtractionPipeline:  # registering again would log an overwrite warning
        PIPELINE_REGISTRY.register_pipeline(
            PIPELINE_TASK, pipeline_class=MultispectralFeatureExtractionPipeline, pt_model=AutoModel, type="image"
        )


__all__ = ["register_auto_classes"]

"""Converters from foreign checkpoint formats to S2MAE Transformers folders, each with a parity check.

- `convert_original_to_hf`: the original (SpectralGPT-layout) .pth checkpoints, checked against
  `original_reference`, a functional implementation of that architecture.
"""

"""Converters from foreign checkpoint formats to S2MAE Transformers folders, each with a parity check.

- `original`: the lab's original-format .pth checkpoints, checked against `original_reference`, a functional
  implementation of that architecture. Command line: `python conversion/convert_original_to_hf.py`.

Not among the Hub remote-code files (`modeling_s2mae.hub.remote_code_files`): a converted folder never needs it.
"""

from .original import ConversionError, ConversionResult, convert_checkpoint

__all__ = ["ConversionError", "ConversionResult", "convert_checkpoint"]

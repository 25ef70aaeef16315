"""Saving S2MAE checkpoints that load by repo id with the package installed, and without it (remote code).

A folder prepared here holds, next to the weights:

- the package's modeling files, flat (`configuration_s2mae.py`, `modeling_s2mae.py`, `masking.py`,
  `position_embeddings.py`, `image_processing_s2mae.py`): what `trust_remote_code=True` downloads and runs;
- `config.json` with `model_type: "s2mae"` AND an `auto_map` for `AutoConfig`, `AutoModel`,
  `AutoModelForPreTraining` and `AutoModelForImageClassification`;
- `preprocessor_config.json` (when a processor was saved) with an `auto_map` for `AutoImageProcessor`.

A user who ran `import modeling_s2mae` gets the installed classes (the package registers model type "s2mae", and
Transformers prefers registered code over `auto_map`); a user without the package passes `trust_remote_code=True`
and gets the copied files.

`register_for_auto_class` + `save_pretrained` is not used: it writes `auto_map` only for `AutoConfig` and the
class being saved, it sets a class attribute for the rest of the process (every later `save_pretrained` of that
class copies code too), and it cannot prepare a folder that was saved without it (a Trainer checkpoint, a
converted checkpoint). `prepare_for_remote_code` does the whole job on any saved S2MAE folder.
"""

import ast
import json
import shutil
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel
from transformers.dynamic_module_utils import get_relative_import_files

from .configuration_s2mae import S2MAEConfig
from .image_processing_s2mae import S2MAEImageProcessor
from .modeling_s2mae import S2MAEForImageClassification, S2MAEForPreTraining, S2MAEModel
from .modeling_s2mae_dense import S2MAEBackbone, S2MAEForSemanticSegmentation

PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGE_NAME = PACKAGE_DIR.name
CONFIG_NAME = "config.json"
PROCESSOR_CONFIG_NAME = "preprocessor_config.json"


def _class_reference(cls: type) -> str:
    """The `auto_map` reference of `cls`: its file name in the flat folder (without .py), a dot, the class name."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


CONFIG_AUTO_MAP: dict[str, str] = {
    "AutoConfig": _class_reference(S2MAEConfig),
    "AutoModel": _class_reference(S2MAEModel),
    "AutoModelForPreTraining": _class_reference(S2MAEForPreTraining),
    "AutoModelForImageClassification": _class_reference(S2MAEForImageClassification),
    "AutoModelForSemanticSegmentation": _class_reference(S2MAEForSemanticSegmentation),
    "AutoBackbone": _class_reference(S2MAEBackbone),
}
"""The `auto_map` written into `config.json`."""

PROCESSOR_AUTO_MAP: dict[str, str] = {"AutoImageProcessor": _class_reference(S2MAEImageProcessor)}
"""The `auto_map` written into `preprocessor_config.json`."""

_ENTRY_CLASSES = (S2MAEConfig, S2MAEModel, S2MAEBackbone, S2MAEImageProcessor)


def _check_flat_imports(module_file: Path) -> None:
    """Raise if `module_file` imports anything that remote code cannot resolve once the files are copied flat.

    Transformers copies a module and the targets of its `from .name import ...` statements into one folder and
    finds them with a regular expression. Allowed: `from .name import x` with `name.py` beside the file. Refused:
    `from . import name` (the expression misses it), `from ..x` or `from .a.b` (not flat), and absolute imports of
    this package (absent for a user without it).
    """
    tree = ast.parse(module_file.read_text(encoding="utf-8"), filename=str(module_file))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            statement = f"from {'.' * node.level}{node.module or ''} import ..."
            if node.level != 1 or node.module is None or "." in node.module:
                raise ValueError(
                    f"{module_file.name}:{node.lineno}: `{statement}` cannot be resolved by Hub remote code, which "
                    "copies the files into one flat folder: use `from .module import name` with module.py in the "
                    "same folder."
                )
            if not (module_file.parent / f"{node.module}.py").is_file():
                raise ValueError(f"{module_file.name}:{node.lineno}: `{statement}` has no {node.module}.py beside it.")
        absolute = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            absolute = [node.module]
        elif isinstance(node, ast.Import):
            absolute = [alias.name for alias in node.names]
        for name in absolute:
            if name.split(".")[0] == _PACKAGE_NAME:
                raise ValueError(
                    f"{module_file.name}:{node.lineno}: absolute import of {name!r}; remote code runs without the "
                    f"{_PACKAGE_NAME} package installed: use a same-folder relative import."
                )


def remote_code_files() -> list[Path]:
    """The package files a remote-code folder needs: the config, model and processor modules and, recursively, the
    modules they import relatively (found with Transformers' own `get_relative_import_files`).

    Raises:
        ValueError: if one of them uses an import that does not work once the files are copied flat.
    """
    files: dict[str, Path] = {}
    for cls in _ENTRY_CLASSES:
        entry = PACKAGE_DIR / f"{cls.__module__.rsplit('.', 1)[-1]}.py"
        for path in [entry, *map(Path, get_relative_import_files(str(entry)))]:
            files[path.name] = path
    for path in files.values():
        _check_flat_imports(path)
    return [files[name] for name in sorted(files)]


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    # the layout of Transformers' own `to_json_file`
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def prepare_for_remote_code(output_dir: str | Path) -> list[Path]:
    """Make a saved S2MAE folder loadable with `trust_remote_code=True` by a user who has not installed the package.

    Copies the modeling files (see `remote_code_files`) into `output_dir`, sets the complete `auto_map` in
    `config.json` (keeping `model_type: "s2mae"`, so that an installed package still wins) and, if the folder has a
    `preprocessor_config.json`, sets its `auto_map` too. Other `auto_map` entries are kept. Idempotent. The code
    copied is the installed package's: prepare a folder with the package version that wrote its weights.

    Args:
        output_dir: A folder written by `save_pretrained` of an S2MAE model (and optionally its image processor).

    Returns:
        The files written, in the order written.

    Raises:
        FileNotFoundError: `output_dir` has no `config.json`.
        ValueError: the folder is not an S2MAE checkpoint, its processor is not an `S2MAEImageProcessor`, or a
            modeling file uses an import that remote code cannot resolve.
    """
    output_dir = Path(output_dir)
    config_path = output_dir / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: save the model with `save_pretrained` first.")
    config = _read_json(config_path)
    if config.get("model_type") != S2MAEConfig.model_type:
        raise ValueError(
            f"{config_path} has model_type {config.get('model_type')!r}, expected {S2MAEConfig.model_type!r}: "
            "only S2MAE checkpoints can carry this package's code."
        )
    processor_path = output_dir / PROCESSOR_CONFIG_NAME
    processor_config = _read_json(processor_path) if processor_path.is_file() else None
    if processor_config is not None:
        processor_type = processor_config.get("image_processor_type")
        if processor_type not in (None, S2MAEImageProcessor.__name__):
            raise ValueError(
                f"{processor_path} is for {processor_type!r}, expected {S2MAEImageProcessor.__name__!r}: the copied "
                "code could not load it."
            )

    written = []
    for source in remote_code_files():
        target = output_dir / source.name
        shutil.copyfile(source, target)
        written.append(target)

    config["auto_map"] = {**config.get("auto_map", {}), **CONFIG_AUTO_MAP}
    _write_json(config_path, config)
    written.append(config_path)
    if processor_config is not None:
        processor_config["auto_map"] = {**processor_config.get("auto_map", {}), **PROCESSOR_AUTO_MAP}
        _write_json(processor_path, processor_config)
        written.append(processor_path)
    return written


def save_with_remote_code(
    model: PreTrainedModel,
    processor: S2MAEImageProcessor | None,
    output_dir: str | Path,
    **save_kwargs: Any,
) -> list[Path]:
    """`save_pretrained` the model (and processor), then `prepare_for_remote_code` the folder.

    The folder then loads by path or, once uploaded (e.g. `huggingface_hub.upload_folder`), by repo id:
    with `import modeling_s2mae` first, or with `trust_remote_code=True` and no package.

    Args:
        model: An S2MAE model (`S2MAEModel`, `S2MAEForPreTraining` or `S2MAEForImageClassification`).
        processor: Its image processor, or `None` to save the model alone.
        output_dir: Folder to write (created if needed).
        **save_kwargs: Passed to the model's `save_pretrained` (e.g. `max_shard_size`).

    Returns:
        The files `prepare_for_remote_code` wrote.
    """
    if not isinstance(model.config, S2MAEConfig):
        raise ValueError(f"Expected an S2MAE model, got {type(model).__name__} with {type(model.config).__name__}.")
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, **save_kwargs)
    if processor is not None:
        processor.save_pretrained(output_dir)
    return prepare_for_remote_code(output_dir)


__all__ = [
    "CONFIG_AUTO_MAP",
    "PROCESSOR_AUTO_MAP",
    "prepare_for_remote_code",
    "remote_code_files",
    "save_with_remote_code",
]

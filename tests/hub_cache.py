"""Fill a Hugging Face Hub cache offline, so that tests load a local folder by repo id without network.

The layout is the one `huggingface_hub` downloads into (see `huggingface_hub.file_download.hf_hub_download`):

    <cache>/models--<org>--<name>/
        blobs/<sha256 of the content>
        snapshots/<40-hex commit>/<file>  -> relative symlink to ../../blobs/<sha256>
        refs/<revision>                   (the commit hash, no newline)

With `HF_HUB_CACHE=<cache>` and `HF_HUB_OFFLINE=1`, `from_pretrained("<org>/<name>")` resolves `refs/main` to the
snapshot and reads the files there, as after a real download.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

REPO_ROOT = Path(__file__).resolve().parent.parent

BLOCK_PACKAGE = """
import importlib.abc
import sys


class _BlockS2MAE(importlib.abc.MetaPathFinder):
    # First on sys.meta_path, so it also hides an installed or editable-installed package.
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_s2mae" or name.startswith("modeling_s2mae."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, _BlockS2MAE())
try:
    import modeling_s2mae  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("modeling_s2mae is still importable: the test would not test remote code")
"""
"""Code to put first in a subprocess so that `modeling_s2mae` cannot be imported, however it is installed."""


def fill_hub_cache(folder: str | Path, cache_dir: str | Path, repo_id: str, revision: str = "main") -> Path:
    """Store every file under `folder` in the cache `cache_dir` as the model repo `repo_id` at `revision`.

    Args:
        folder: A saved model folder (`save_pretrained` output).
        cache_dir: The cache root (what `HF_HUB_CACHE` points to); created if needed.
        repo_id: "org/name".
        revision: Branch name written under `refs/`.

    Returns:
        The snapshot folder. Its commit hash is derived from the files' names and contents.
    """
    folder = Path(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    if not files:
        raise ValueError(f"{folder} holds no file to cache.")
    digests = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    commit = hashlib.sha1(
        "".join(f"{path.relative_to(folder).as_posix()}\0{digests[path]}\n" for path in files).encode()
    ).hexdigest()  # 40 hex digits, like a git commit

    storage = Path(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = storage / "snapshots" / commit
    for path in files:
        blob = storage / "blobs" / digests[path]
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(path, blob)
        pointer = snapshot / path.relative_to(folder)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    refs = storage / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(commit)
    return snapshot


def run_python(
    code: str, *args: str, cache_dir: str | Path, cwd: str | Path, with_package: bool, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `python -c code args...` in a fresh interpreter, offline, with its own Hugging Face folders.

    `HF_HUB_CACHE` is `cache_dir`; `HF_HOME` and `HF_MODULES_CACHE` (where remote code is copied to) are folders
    under `cwd`, so nothing is written to the user's cache. With `with_package`, the repository root is on
    `PYTHONPATH`; without, `PYTHONPATH` is cleared and `BLOCK_PACKAGE` runs first. Standard input is closed, so a
    `trust_remote_code` prompt fails instead of waiting. Raises `AssertionError` with the output if it fails.
    """
    cwd = Path(cwd)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_", "PYTHON"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(cache_dir),
        HF_HOME=str(cwd / "hf_home"),
        HF_MODULES_CACHE=str(cwd / "hf_modules"),
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
    )
    if with_package:
        env["PYTHONPATH"] = str(REPO_ROOT)
    else:
        code = BLOCK_PACKAGE + code
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"subprocess failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result

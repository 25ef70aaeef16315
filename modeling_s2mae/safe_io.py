"""Writing into output folders that someone else may have prepared: atomically, and never through a planted link."""

import os
from pathlib import Path


def write_text_safely(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` atomically (a temporary file renamed over it), replacing a link there, never following
    it: a link planted in an output folder cannot redirect the write elsewhere."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)  # replaces a symbolic link itself, not its target
    return path


__all__ = ["write_text_safely"]

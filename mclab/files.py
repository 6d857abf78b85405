"""Writing files and folders atomically: a crash leaves the old version or none, never half.

Everything the course writes that a later step reads (report rows, indexes, saved models,
converted model caches) goes through `atomic_path`: the content is written under a
temporary name beside the target, then moved into place with one `os.replace`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: Path, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one move.

    With `folder=True` the temporary path is an empty directory (for `save_pretrained`);
    otherwise it is a file name to write to. On an exception nothing is left behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-writing-", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}-writing-", suffix=target.suffix,
                                    dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if folder and target.is_dir():
            shutil.rmtree(target)  # os.replace cannot put a folder over a non-empty one
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, data) -> None:
    """JSON with one-space indents; numpy scalars and other numbers written as floats."""
    write_text_atomic(path, json.dumps(data, indent=1, default=float))

"""Atomic file writes: a temp file in the target folder, fsync, then rename over the target.

``data`` may also be a chunked writer (anything with ``write_to(fh)``, e.g. the builder's
:class:`~onnx2tflite_direct.builder.TFLiteFile`), so a model is streamed from its arrays to
disk without first being joined into one bytes object.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol


class ChunkWriter(Protocol):
    def write_to(self, fh: BinaryIO) -> None: ...


def write_atomic(path: Path, data: bytes | str | ChunkWriter) -> None:
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            if hasattr(data, "write_to"):
                data.write_to(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Atomic file writes: a temp file in the target folder, then rename over the target.

Other processes (a build step waiting for the file, a second conversion) see either the old
file or the complete new one, never a partial one, and a failed run leaves the old file in
place. There is no fsync: it guards against power loss, not against failures of the run, and
it costs more than writing a small model (10 ms for 14 MB); a build output is regenerated.

``data`` may also be a chunked writer (anything with ``write_to(fh)``, e.g. the builder's
:class:`~onnx2tflite_direct.builder.TFLiteFile`), so a model is streamed from its arrays to
disk without first being joined into one bytes object.

A file that must pass a check first is written with :func:`write_pending` and renamed into
place by :func:`publish` only once the check passed.
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
    publish(write_pending(path, data), path)


def write_pending(path: Path, data: bytes | str | ChunkWriter) -> Path:
    """Write ``data`` under a hidden temporary name beside ``path`` (``.<name>.<random>.pending``)
    and return that name; :func:`publish` later renames it to ``path``.

    Why: a file that must still pass a check (``--validate``) is written before the check
    (a large model is streamed to disk as soon as it is built), yet it must not replace the
    good file a previous run left until the check has passed. A run that fails unlinks it.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pending", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            if hasattr(data, "write_to"):
                data.write_to(fh)
            else:
                fh.write(data)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return Path(tmp)


def publish(pending: Path, path: Path) -> None:
    """Rename a :func:`write_pending` file over ``path`` (atomic on one file system)."""
    try:
        os.replace(pending, path)
    except BaseException:
        Path(pending).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Obtain LiteRT's schema.fbs at the pinned commit and verify its sha256.

Why: ``schema_gen`` regenerates the committed bindings from exactly one schema revision; this
tool gets that file either from a local copy (``--from``, e.g. ../shared/litert/schema.fbs,
for offline machines) or from raw.githubusercontent.com by commit, and refuses any file whose
hash differs from the pin in ``onnx2tflite_direct/schema_gen/pin.py``.

    python tools/fetch_schema.py [--from PATH] [--out build/schema.fbs] [--timeout 30]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnx2tflite_direct.schema_gen.pin import PINNED_SHA256, PINNED_URL  # noqa: E402


class FetchError(RuntimeError):
    """The schema could not be obtained or failed verification."""


def download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
            return resp.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FetchError(
            f"cannot download {url}: {exc}. Without network, pass --from PATH to a local copy "
            "(e.g. ../shared/litert/schema.fbs)."
        ) from exc


def fetch(source: Path | None, out: Path, timeout: float = 30.0, url: str = PINNED_URL) -> Path:
    """Copy or download the schema, verify the pinned sha256, write it to ``out``."""
    if source is not None:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise FetchError(f"cannot read {source}: {exc}") from exc
    else:
        data = download(url, timeout)
    digest = hashlib.sha256(data).hexdigest()
    if digest != PINNED_SHA256:
        raise FetchError(f"sha256 mismatch: got {digest}, pinned {PINNED_SHA256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", type=Path, help="local schema.fbs to copy")
    ap.add_argument("--out", type=Path, default=Path("build/schema.fbs"))
    ap.add_argument("--timeout", type=float, default=30.0, help="download timeout (seconds)")
    args = ap.parse_args(argv)
    try:
        path = fetch(args.source, args.out, args.timeout)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} (sha256 {PINNED_SHA256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

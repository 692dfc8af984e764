"""Build the installable release: ``make release RELEASE_BASE_URL=<url>``.

Writes ``<out>/satmachineadmin-<version>.zip`` (the extension's runtime files
under one top folder ``satmachineadmin/``, with ``config.json`` at the
release's version) and ``<out>/manifest.json`` in LNbits' manifest format
(``{"extensions": [...]}``; one entry per release: id, name, version, archive
URL under the base URL, sha256 hash, min LNbits version), which an LNbits
extension manager reads from ``LNBITS_EXTENSIONS_MANIFESTS``. An existing
manifest in ``<out>`` keeps its other releases, so it lists every version built
there. The zip is reproducible: sorted entries, fixed times and modes.

Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXT_ID = "satmachineadmin"
DEFAULT_BASE_URL = "https://github.com/aiolabs/satmachineadmin/releases/download"
# What LNbits runs: the modules at the root, the page and its assets, metadata.
RUNTIME_DIRS = ("static", "templates")
RUNTIME_FILES = ("config.json", "manifest.json", "README.md", "LICENSE")
SKIP_PARTS = {"__pycache__", ".DS_Store"}
VERSION = re.compile(r"^\d+\.\d+\.\d+([.-]?[0-9A-Za-z.]+)?$")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def tracked(repo: Path) -> set[Path] | None:
    """The files git tracks (a checkout's stray files never ship); None
    outside a git checkout."""
    try:
        listed = subprocess.run(  # noqa: S603
            ["git", "-C", str(repo), "ls-files", "-z"],  # noqa: S607
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {Path(name) for name in listed.decode().split("\0") if name}


def runtime_files(repo: Path = REPO) -> list[Path]:
    """The files LNbits needs, relative to the repository root, sorted."""
    files = _runtime_candidates(repo)
    known = tracked(repo)
    return sorted(f for f in files if known is None or f in known)


def _runtime_candidates(repo: Path) -> set[Path]:
    files = [p.relative_to(repo) for p in repo.glob("*.py")]
    files += [Path(name) for name in RUNTIME_FILES if (repo / name).is_file()]
    for folder in RUNTIME_DIRS:
        for path in (repo / folder).rglob("*"):
            rel = path.relative_to(repo)
            if path.is_file() and not SKIP_PARTS & set(rel.parts):
                files.append(rel)
    return set(files)


def build_zip(version: str, out: Path, repo: Path = REPO) -> Path:
    config = json.loads((repo / "config.json").read_text())
    config["version"] = version
    target = out / f"{EXT_ID}-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in runtime_files(repo):
            info = zipfile.ZipInfo(f"{EXT_ID}/{rel.as_posix()}", FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            if rel == Path("config.json"):
                data = (json.dumps(config, indent=2) + "\n").encode()
            else:
                data = (repo / rel).read_bytes()
            archive.writestr(info, data)
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_entry(version: str, archive: Path, base_url: str) -> dict:
    config = json.loads((REPO / "config.json").read_text())
    base = base_url.rstrip("/")
    return {
        "id": EXT_ID,
        "name": config["name"],
        "version": version,
        "short_description": config.get("short_description"),
        "icon": config.get("tile"),
        "repo": config.get("repo"),
        "archive": f"{base}/{archive.name}",
        "hash": sha256(archive),
        "min_lnbits_version": config.get("min_lnbits_version"),
        "html_url": config.get("repo"),
    }


def write_manifest(out: Path, entry: dict) -> Path:
    path = out / "manifest.json"
    manifest: dict = {"extensions": []}
    if path.is_file():
        manifest = json.loads(path.read_text())
        manifest.setdefault("extensions", [])
    manifest["extensions"] = [
        e
        for e in manifest["extensions"]
        if not (e.get("id") == EXT_ID and e.get("version") == entry["version"])
    ] + [entry]
    manifest["extensions"].sort(key=lambda e: (e.get("id"), _key(e.get("version"))))
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _key(version: str | None) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.-]", version or ""))


def main(argv: list[str] | None = None) -> int:
    config_version = json.loads((REPO / "config.json").read_text())["version"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--version", default=config_version, help="default: config.json's"
    )
    parser.add_argument("--out", default=str(REPO / "dist"), help="default: dist/")
    parser.add_argument(
        "--source",
        default=str(REPO),
        help="the extension's folder to package (default: this checkout)",
    )
    parser.add_argument(
        "--base-url",
        default="",
        help="where the zip is served; default: the GitHub release of the version",
    )
    args = parser.parse_args(argv)
    if not VERSION.match(args.version):
        parser.error(f"--version {args.version!r} is not a version like 2.0.0")
    base_url = args.base_url or f"{DEFAULT_BASE_URL}/v{args.version}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    archive = build_zip(args.version, out, Path(args.source))
    entry = manifest_entry(args.version, archive, base_url)
    manifest = write_manifest(out, entry)
    print(f"{archive} sha256 {entry['hash']}")
    print(f"{manifest}: {entry['archive']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

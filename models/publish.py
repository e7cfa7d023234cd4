"""Upload a zoo folder built by ``models/build_zoo.py`` to the Hugging Face Hub.

    python models/publish.py build/zoo [--repo pipdetect/pipnet] [--revision main] [--record]

The folder is checked first: ``manifest.json``, ``README.md`` and ``LICENSE.md``
present, every file of the manifest there with the recorded size and SHA-256,
no ONNX file the manifest does not describe. Then everything goes up in one
commit (``HfApi.upload_folder``), so the manifest and the files it describes
always change together. Credentials are huggingface_hub's own (``HF_TOKEN`` or
``hf auth login``), and ``HF_ENDPOINT`` is honoured.

``--record`` then writes the commit id, sizes and SHA-256 into
``models/catalogue.json`` and its packaged copy ``src/pipdetect/assets/zoo.json``:
the next pipdetect release then downloads exactly that commit by default, and
refuses any file (or manifest) that does not match the recorded size and SHA-256
(``pipdetect.zoo``: the packaged catalogue is checked first, the manifest second).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CATALOGUES = (HERE / "catalogue.json", HERE.parent / "src" / "pipdetect" / "assets" / "zoo.json")
REQUIRED = ("manifest.json", "README.md", "LICENSE.md")
UPLOADED = ["*.onnx", *REQUIRED]


class FolderError(ValueError):
    """The folder is not ready to publish."""


def check_folder(folder: Path) -> dict[str, Any]:
    """Check a built folder against its manifest; returns the manifest."""
    from pipdetect.zoo import file_sha256, parse_manifest

    folder = Path(folder)
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FolderError(f"{folder} lacks {', '.join(missing)}: run models/build_zoo.py first")
    text = (folder / "manifest.json").read_text("utf-8")
    records = parse_manifest(text, str(folder / "manifest.json"))
    if not records:
        raise FolderError(f"{folder}/manifest.json lists no files")
    problems = []
    for name, rec in records.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != rec.size or file_sha256(path) != rec.sha256:
            problems.append(f"{name} does not match the manifest")
    extra = sorted(p.name for p in folder.glob("*.onnx") if p.name not in records)
    if extra:
        problems.append(f"not in the manifest: {', '.join(extra)}")
    if problems:
        raise FolderError(f"{folder}: " + "; ".join(problems) + " (run models/build_zoo.py)")
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def publish(
    folder: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    message: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> str:
    """Upload ``folder`` to model repository ``repo_id`` in one commit; returns the commit id."""
    manifest = check_folder(folder)
    if api is None:
        from huggingface_hub import HfApi

        # HF_ENDPOINT read now, not when huggingface_hub was imported (as pipdetect.zoo does)
        api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    count = len(manifest["files"])
    info = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        allow_patterns=UPLOADED,
        commit_message=message or f"pipdetect model zoo: {count} model(s)",
    )
    return str(info.oid)


def record(
    manifest: dict[str, Any],
    repo_id: str,
    commit: str,
    catalogues: Sequence[Path] | None = None,
) -> None:
    """Write the published repository, commit, sizes and SHA-256 into the catalogue files.

    ``catalogues`` defaults to :data:`CATALOGUES` (the repository's and the package's copy).
    """
    files = manifest["files"]
    for path in CATALOGUES if catalogues is None else catalogues:
        data = json.loads(Path(path).read_text("utf-8"))
        data["repo_id"] = repo_id
        data["revision"] = commit
        for entry in data["models"]:
            rec = files.get(entry["file"])
            entry["size"] = rec["size"] if rec else None
            entry["sha256"] = rec["sha256"] if rec else None
        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Upload a built model zoo folder to the Hub.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repo", default=None, help="model repository (default: catalogue's)")
    parser.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--message", default=None, help="commit message")
    parser.add_argument("--record", action="store_true",
                        help="write the commit, sizes and sha256 into the catalogue files")
    args = parser.parse_args(argv)
    repo = args.repo or json.loads(CATALOGUES[0].read_text("utf-8"))["repo_id"]
    try:
        manifest = check_folder(args.folder)
        commit = publish(args.folder, repo, revision=args.revision, private=args.private,
                         message=args.message, api=api)
    except FolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published {len(manifest['files'])} model(s) to {repo} at commit {commit}")
    if args.record:
        record(manifest, repo, commit)
        print("recorded in " + ", ".join(str(p) for p in CATALOGUES))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the Hub-ready model zoo folder from the official PIP-Net checkpoints.

    python models/build_zoo.py CHECKPOINTS -o build/zoo [--only pipnet-r18-wflw ...]

``CHECKPOINTS`` is laid out like the reference repository's ``snapshots/``
folder (what the authors' Drive folder unpacks to), e.g.
``CHECKPOINTS/WFLW/pip_32_16_60_r18_l2_l1_10_1_nb10/epoch59.pth``; the
repository root itself (with ``snapshots/`` inside) and a flat folder of
``<model name>.pth`` files work too.

For every model of ``models/catalogue.json`` whose checkpoint is found, the
output folder gets ``<name>.onnx`` (converted with
:func:`pipdetect.convert.convert_checkpoint`, then loaded back and checked
against the catalogue). Then it gets ``manifest.json`` (size and SHA-256 of every
ONNX file in the folder: what pipdetect checks downloads against),
``README.md`` (the model card, from ``model_card.md.tmpl``) and ``LICENSE.md``.
Missing checkpoints are reported and skipped; a checkpoint whose size or
SHA-256 differs from the one recorded in the catalogue is refused.

Exit status: 0 when nothing failed (missing checkpoints are not failures),
1 when a conversion or check failed, 2 when no model is in the folder at all.
Upload the folder with ``models/publish.py``.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CATALOGUE = HERE / "catalogue.json"
CARD_TEMPLATE = HERE / "model_card.md.tmpl"

Converter = Callable[..., Any]
"""Signature of :func:`pipdetect.convert.convert_checkpoint` (checkpoint, output, **kw)."""

MIT_NOTICE = """\
MIT License

Copyright (c) 2021 Haibo Jin

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


@dataclass
class BuildReport:
    """What :func:`build` did."""

    folder: Path
    built: list[str] = field(default_factory=list)
    """Models converted in this run."""
    missing: dict[str, list[Path]] = field(default_factory=dict)
    """Models whose checkpoint was not found, with the places looked at."""
    failed: dict[str, str] = field(default_factory=dict)
    """Models whose conversion or check failed, with the reason."""
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def published(self) -> list[str]:
        """File names in the folder's manifest."""
        return sorted(self.manifest.get("files", {}))


def load_catalogue(path: Path = CATALOGUE) -> dict[str, Any]:
    """Read ``models/catalogue.json``."""
    data: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
    return data


def checkpoint_candidates(root: Path, entry: dict[str, Any]) -> list[Path]:
    """Where the checkpoint of a catalogue entry may be under ``root``, in order."""
    orig = entry["original"]
    rel = Path(orig["folder"]) / orig["file"]
    return [root / rel, root / "snapshots" / rel, root / f"{entry['name']}.pth"]


def check_original(path: Path, entry: dict[str, Any]) -> str | None:
    """``None`` if ``path`` matches the size / SHA-256 recorded for the original, else why not."""
    from pipdetect.zoo import file_sha256

    orig = entry["original"]
    size = path.stat().st_size
    if orig.get("size") is not None and size != orig["size"]:
        return f"{path} has {size} bytes, the official checkpoint {orig['size']}"
    if orig.get("sha256") and file_sha256(path) != orig["sha256"]:
        return f"{path} has another sha256 than the official checkpoint ({orig['sha256']})"
    return None


def verify_converted(path: Path, entry: dict[str, Any]) -> Any:
    """Load a converted model and check it against its catalogue entry; returns its spec."""
    from pipdetect.model import load_model

    spec = load_model(path).spec
    expected = {
        "name": entry["name"],
        "num_landmarks": entry["num_landmarks"],
        "num_nb": entry["num_nb"],
        "stride": entry["stride"],
        "dataset": entry["dataset"],
        "backbone": entry["backbone"],
    }
    actual = {key: getattr(spec, key) for key in expected}
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    if wrong:
        detail = ", ".join(f"{k} is {a!r}, catalogue says {e!r}" for k, (a, e) in wrong.items())
        raise ValueError(f"{path.name}: {detail}")
    return spec


def _default_converter() -> Converter:
    from pipdetect.convert import convert_checkpoint

    return convert_checkpoint


def build(
    checkpoints: Path,
    out_dir: Path,
    *,
    catalogue: dict[str, Any] | None = None,
    only: Sequence[str] | None = None,
    converter: Converter | None = None,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Convert the catalogue's checkpoints found under ``checkpoints`` into ``out_dir``.

    ``only`` restricts the run to some model names; models converted earlier into
    ``out_dir`` stay and are described by the manifest and card too.
    """
    catalogue = catalogue if catalogue is not None else load_catalogue()
    entries = catalogue["models"]
    names = [e["name"] for e in entries]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"not in the catalogue: {', '.join(unknown)}")
        entries = [e for e in entries if e["name"] in set(only)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport(folder=out_dir)
    convert = converter
    for entry in entries:
        name = entry["name"]
        places = checkpoint_candidates(Path(checkpoints), entry)
        found = next((p for p in places if p.is_file()), None)
        if found is None:
            report.missing[name] = places
            log(f"skip {name}: no checkpoint at {places[0]}")
            continue
        problem = check_original(found, entry)
        if problem is not None:
            report.failed[name] = problem
            log(f"FAIL {name}: {problem}")
            continue
        target = out_dir / entry["file"]
        try:
            if convert is None:
                convert = _default_converter()
            convert(found, target, backbone=entry["backbone"], dataset=entry["dataset"],
                    num_nb=entry["num_nb"], name=name)
            verify_converted(target, entry)
        except Exception as exc:  # report every model, then fail at the end
            target.unlink(missing_ok=True)
            report.failed[name] = f"{type(exc).__name__}: {exc}"
            log(f"FAIL {name}: {report.failed[name]}")
            continue
        report.built.append(name)
        log(f"ok   {name}: {target} ({target.stat().st_size:,} bytes)")
    write_folder_files(out_dir, catalogue, report)
    return report


def write_folder_files(out_dir: Path, catalogue: dict[str, Any], report: BuildReport) -> None:
    """Write ``manifest.json``, ``README.md`` and ``LICENSE.md`` for the ONNX files present."""
    from pipdetect.zoo import build_manifest

    present = [out_dir / e["file"] for e in catalogue["models"] if (out_dir / e["file"]).is_file()]
    manifest = build_manifest(present)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    specs = {p.name: verify_converted(p, _entry_for(catalogue, p.name)) for p in present}
    (out_dir / "README.md").write_text(render_card(catalogue, manifest, specs), "utf-8")
    (out_dir / "LICENSE.md").write_text(render_license(catalogue), "utf-8")
    report.manifest = manifest


def _entry_for(catalogue: dict[str, Any], file_name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in catalogue["models"] if e["file"] == file_name)
    return entry


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def render_card(
    catalogue: dict[str, Any], manifest: dict[str, Any], specs: dict[str, Any]
) -> str:
    """The model card (README.md of the Hub repository) for the files in ``manifest``."""
    from pipdetect import __version__
    from pipdetect.convert import CONVERTER_VERSION

    files = manifest.get("files", {})
    rows, prov, missing = [], [], []
    normalisations: dict[str, str] = {}
    for e in catalogue["models"]:
        rec = files.get(e["file"])
        if rec is None:
            missing.append(e["name"])
            continue
        nme = f"{e['nme']:.2f}" if e.get("nme") is not None else "–"
        if e.get("benchmark"):
            normalisations[e["dataset"]] = e["benchmark"]
        default = " (default)" if e["name"] == catalogue["default_model"] else ""
        rows.append(
            f"| `{e['name']}`{default} | {e['dataset']} ({e['training']}) | "
            f"{e['num_landmarks']} | {e['backbone']} | {nme} | {_size(rec['size'])} | "
            f"`{rec['sha256'][:16]}…` |"
        )
        provenance = getattr(specs.get(e["file"]), "provenance", {}) or {}
        src_sha = provenance.get("source_sha256") or e["original"].get("sha256") or "–"
        prov.append(
            f"| `{e['name']}` | `{e['original']['folder']}/{e['original']['file']}` | "
            f"`{src_sha}` |"
        )
    not_included = ""
    if missing:
        not_included = (
            "Also in pipdetect's catalogue but not in this repository (checkpoint not "
            f"available when it was built): {', '.join(f'`{m}`' for m in missing)}. "
            "Anyone holding such a checkpoint can convert it with `pipdetect convert`."
        )
    datasets = {e["dataset"]: e["license"] for e in catalogue["models"] if e["file"] in files}
    dataset_notes = "\n".join(f"* **{ds}**: {note}" for ds, note in datasets.items())
    nme_notes = "; ".join(f"{ds}: {b}" for ds, b in normalisations.items()) or "none published"
    template = string.Template(CARD_TEMPLATE.read_text("utf-8"))
    return template.substitute(
        license_name=catalogue["license"]["name"],
        license_summary=catalogue["license"]["summary"],
        default_model=catalogue["default_model"],
        models_table="\n".join(rows) or "| (none) | | | | | | |",
        nme_notes=nme_notes,
        not_included=not_included,
        dataset_notes=dataset_notes,
        code_license=catalogue["source"]["code_license"],
        pipdetect_version=__version__,
        converter_version=CONVERTER_VERSION,
        weights_url=catalogue["source"]["weights"],
        provenance_table="\n".join(prov) or "| (none) | | |",
    )


def render_license(catalogue: dict[str, Any]) -> str:
    """``LICENSE.md`` of the Hub repository."""
    notes = {e["dataset"]: e["license"] for e in catalogue["models"]}
    lines = [
        "# Licence of these model files",
        "",
        catalogue["license"]["summary"],
        "",
        "Training data of each model:",
        "",
        *[f"* {ds}: {note}" for ds, note in notes.items()],
        "",
        "The network definition and mean faces come from the PIP-Net code "
        f"({catalogue['source']['code']}), under this licence:",
        "",
        "```",
        MIT_NOTICE.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert the official PIP-Net checkpoints into a Hub-ready zoo folder."
    )
    parser.add_argument("checkpoints", type=Path, help="folder of official checkpoints")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to fill")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="convert only these models")
    parser.add_argument("--catalogue", type=Path, default=CATALOGUE)
    args = parser.parse_args(argv)
    if not args.checkpoints.is_dir():
        parser.error(f"not a folder: {args.checkpoints}")
    try:
        report = build(args.checkpoints, args.output, catalogue=load_catalogue(args.catalogue),
                       only=args.only)
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"{len(report.built)} converted, {len(report.missing)} missing, "
        f"{len(report.failed)} failed; {len(report.published)} model(s) in {report.folder}"
    )
    if report.failed:
        return 1
    return 0 if report.published else 2


if __name__ == "__main__":
    sys.exit(main())

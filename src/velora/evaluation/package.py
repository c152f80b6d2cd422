"""Where a trained model lives, and `velora package`: a training run -> a folder to share.

    OUT_DIR/
      adapters.safetensors  the run's best adapters: the trained tensors, with the config, class
                            names, training info and weights source in its header (all load needs)
      config.yaml           the resolved training config
      class_names.json      the class names, in label order
      weights_source.json   the frozen backbone's weights: hub id, tag, file and sha256, or the
                            shipped or local file and its sha256
      README.md             the model card (velora.evaluation.model_card)
      eval_test.json        the run's test evaluation (velora eval), when it has one, and
      eval_test_<m>.json    with one modality m only (velora eval --modalities m, or the demo's)

`velora.load(OUT_DIR)` reads adapters.safetensors; the other files are for people and the hub's
page. `velora.load("hf:org/name")` (or `hf:org/name@revision`) fetches such a folder from the
Hugging Face hub through its cache, reading HF_HUB_OFFLINE, HF_HUB_CACHE and HF_HOME when called;
the frozen backbone comes, as for any checkpoint, from the `model.weights` of the stored config.
`model_file` turns every form velora.load accepts into one file: an adapter file or an ONNX file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from velora.errors import CheckpointError, VeloraError
from velora.evaluation.model_card import model_card
from velora.model.adapter_file import read_adapters
from velora.model.weights_source import hub_cache_dir, hub_offline

BEST = "best.safetensors"  # in a training run's folder
ADAPTERS = "adapters.safetensors"  # in a package folder
HUB_PREFIX = "hf:"
ACCEPTED = (
    "velora.load takes a training run's folder (with best.safetensors), an adapter file (.safetensors), a folder "
    "written by velora package (with adapters.safetensors), hf:org/name for such a folder on the Hugging Face hub, "
    "or an ONNX file written by velora export (.onnx)"
)


class PackageError(VeloraError, ValueError):
    """A package cannot be written (its output folder exists, the run has no adapters)."""


# ---------------------------------------------------------------------------- finding the model file
def model_file(path_or_id: str | Path) -> Path:
    """The adapter file (.safetensors) or ONNX file (.onnx) behind anything velora.load accepts."""
    if isinstance(path_or_id, str) and path_or_id.startswith(HUB_PREFIX):
        return package_adapters(hub_folder(path_or_id), source=path_or_id)
    path = Path(path_or_id)
    if path.is_dir():
        if (path / BEST).is_file():
            return path / BEST
        if (path / ADAPTERS).is_file():
            return path / ADAPTERS
        raise FileNotFoundError(
            f"{path} is a folder without {BEST} (a training run) or {ADAPTERS} (a folder written by velora package); "
            f"{ACCEPTED}"
        )
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist; {ACCEPTED}")
    if path.suffix not in (".safetensors", ".onnx"):
        raise CheckpointError(f"'{path}' is not a model file velora can load (suffix '{path.suffix}'); {ACCEPTED}")
    return path


def package_adapters(folder: Path, source: str) -> Path:
    if not (folder / ADAPTERS).is_file():
        found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise CheckpointError(
            f"{source} is not a folder written by velora package: it has no {ADAPTERS} (it holds {found})"
        )
    return folder / ADAPTERS


def parse_hub_id(spec: str) -> tuple[str, str | None]:
    """'hf:org/name' or 'hf:org/name@revision' -> (repo id, revision or None)."""
    repo, _, revision = spec[len(HUB_PREFIX) :].partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or (revision == "" and "@" in spec):
        raise CheckpointError(f"'{spec}' is not a hub model id; give hf:org/name or hf:org/name@revision")
    return repo, revision or None


def hub_folder(spec: str) -> Path:
    """The folder of hub model `spec` ('hf:org/name[@revision]'), from the Hugging Face cache or
    downloaded into it; offline (HF_HUB_OFFLINE) only the cache is read."""
    from huggingface_hub import snapshot_download

    from velora.version import __version__

    repo, revision = parse_hub_id(spec)
    cache = hub_cache_dir()
    offline = hub_offline()
    try:
        folder = snapshot_download(
            repo,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            library_name="velora",
            library_version=__version__,
        )
    except Exception as error:  # offline miss, no network, unknown repository, HTTP error: one message
        where = cache or "~/.cache/huggingface/hub"
        reason = (
            f"HF_HUB_OFFLINE is set and the Hugging Face cache ({where}) has no copy of it"
            if offline
            else f"{type(error).__name__}: {error}"
        )
        raise CheckpointError(
            f"{spec}: cannot get {repo}{'@' + revision if revision else ''} from the Hugging Face hub ({reason}). "
            f"Load it once with network (velora.load('{spec}'), or `hf download {repo}`), copy a "
            "Hugging Face cache that holds it to this machine (HF_HUB_CACHE or HF_HOME says where it is read), "
            "or download the folder and give velora.load its path"
        ) from None
    return Path(folder)


# ---------------------------------------------------------------------------- writing a package
def write_package(
    run: str | Path, out_dir: str | Path, *, force: bool = False, name: str | None = None, dataset: str | None = None
) -> Path:
    """Write the package folder of a training run (its folder, or one adapter file of it) to `out_dir`.

    The folder is written next to `out_dir` under a temporary name and renamed into place, so an
    interrupted call leaves nothing half-written. `force` replaces an existing `out_dir`.
    name: the model card's title (default: out_dir's name); dataset: the dataset's name in the
    card (default: the name of the training config's data.root folder).
    """
    run = Path(run)
    adapters = run / BEST if run.is_dir() else run
    if run.is_dir() and not adapters.is_file():
        raise PackageError(f"{run} has no {BEST}: give the output folder of a finished velora train run")
    checkpoint = read_adapters(adapters)  # a CheckpointError for anything but velora adapters
    out = Path(out_dir)
    if out.exists() and not force:
        raise PackageError(f"{out} exists; choose another folder or pass --force to replace it")
    if out.resolve() == adapters.parent.resolve():
        raise PackageError(f"{out} is the run's own folder; write the package to another folder")
    run_dir = adapters.parent
    evaluation = read_json(run_dir / "eval_test.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copyfile(adapters, tmp / ADAPTERS)
        config = checkpoint.config.to_dict()
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / "class_names.json").write_text(json.dumps(checkpoint.class_names, indent=1) + "\n")
        (tmp / "weights_source.json").write_text(json.dumps(checkpoint.weights_source, indent=1) + "\n")
        if evaluation is not None:
            shutil.copyfile(run_dir / "eval_test.json", tmp / "eval_test.json")
        missing = missing_modality_evaluations(run_dir)
        for modalities, report in missing.items():
            (tmp / f"eval_test_{modalities}.json").write_text(json.dumps(report, indent=1))
        card = model_card(
            checkpoint,
            title=name or out.name,
            dataset=dataset,
            evaluation=evaluation,
            missing=missing,
            adapter_bytes=(tmp / ADAPTERS).stat().st_size,
        )
        (tmp / "README.md").write_text(card)
        tmp.chmod(0o755)  # mkdtemp's folder is private; a shared package is readable like any folder
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path} is not readable JSON ({exc}); run velora eval again to rewrite it") from None


def missing_modality_evaluations(run_dir: Path) -> dict[str, dict]:
    """The run's test evaluations with a modality left out: modalities -> report. velora eval
    --modalities writes eval_test_<modalities>.json next to the checkpoint; the demo writes them
    to without_<absent>/."""
    found = {}
    for path in sorted([*run_dir.glob("without_*/eval_test_*.json"), *run_dir.glob("eval_test_*.json")]):
        report = read_json(path)
        if report is not None:
            found[path.stem[len("eval_test_") :]] = report
    return found

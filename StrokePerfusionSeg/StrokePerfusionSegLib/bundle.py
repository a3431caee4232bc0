"""Model bundles: a folder ``<model-id>/`` with ``model.json`` and ``weights.safetensors``.

``model.json`` records everything needed to rebuild and trust the model: id, version,
architecture (:meth:`ModelConfig.to_dict`), inputs in branch order, the input encoding with
its windows and colour table (:func:`encoding.encoding_manifest`), image size, output classes,
training and evaluation summaries, and the sha256 of the weights file.

Weights are stored with safetensors and never unpickled. Loading verifies the sha256 first,
then that the tensors match the architecture exactly (names and shapes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .encoding import encoding_manifest
from .atomic import staged_folder, write_file_atomically
from .errors import InputError
from .labels import CLASS_NAMES

#: Version of the bundle layout this code writes; it reads this and older ones.
FORMAT_VERSION = 1
MANIFEST_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
#: Model ids are folder names and URL parts: letters, digits, ".", "_", "-".
MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_REQUIRED_KEYS = ("format_version", "id", "version", "architecture", "weights")


@dataclass
class Bundle:
    """A loaded model bundle.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode, on the requested device.
    config : ModelConfig
    manifest : dict
        The content of ``model.json``.
    path : Path
        The bundle folder.
    """

    model: object
    config: object
    manifest: dict
    path: Path

    @property
    def model_id(self) -> str:
        return self.manifest["id"]

    @property
    def version(self) -> str:
        return self.manifest["version"]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_id(model_id: str) -> str:
    """``model_id`` if it is a valid bundle id; an InputError otherwise."""
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
        raise InputError(
            f"invalid model id {model_id!r}: use letters, digits, '.', '_' or '-' (at most 100)"
        )
    return model_id


def output_classes(num_classes: int) -> list[dict]:
    """Output channel -> label value and class name, for ``num_classes`` 4 or 3."""
    labels = sorted(CLASS_NAMES)[len(CLASS_NAMES) - num_classes :]
    return [{"channel": channel, "label": label, "name": CLASS_NAMES[label]} for channel, label in enumerate(labels)]


def _json_safe(value):
    """``value`` with NaN/inf replaced by None, so ``model.json`` is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the model ``config`` describes, without allocating it."""
    import torch

    from .networks import build_model

    with torch.device("meta"):
        model = build_model(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _compare_tensors(expected: dict, actual: dict, where: str) -> None:
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    wrong = sorted(name for name in set(expected) & set(actual) if tuple(expected[name]) != tuple(actual[name]))
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            name = wrong[0]
            problems.append(f"{len(wrong)} of wrong shape (e.g. {name} {actual[name]} != {expected[name]})")
        raise InputError(
            f"{where}: weights do not match the architecture in {MANIFEST_FILE} "
            f"({'; '.join(problems)}): re-export the bundle from the model it was trained as"
        )


def save_bundle(
    folder: str | os.PathLike,
    model,
    config,
    *,
    model_id: str,
    version: str,
    description: str = "",
    training: dict | None = None,
    evaluation: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model bundle ``folder/<model_id>/`` atomically.

    Parameters
    ----------
    folder : path
        Parent folder; the bundle is the sub-folder named ``model_id``.
    model : torch.nn.Module
        A network built from ``config`` (its state dict must match the architecture).
    config : ModelConfig
    model_id, version : str
        Identity recorded in ``model.json`` (e.g. ``"sf-pms-nihss"``, ``"1.0.0"``).
    description : str
    training, evaluation : dict, optional
        JSON-ready summaries (hyper-parameters, data, epochs; metrics per group). NaN and
        infinities are stored as null.
    overwrite : bool
        Replace an existing bundle of that id; otherwise an existing folder is an InputError.

    Returns
    -------
    Path
        The bundle folder.
    """
    from safetensors.torch import save_file

    check_model_id(model_id)
    target = Path(folder) / model_id
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    _compare_tensors(_expected_shapes(config), {n: tuple(t.shape) for n, t in state.items()}, f"model {model_id}")

    with staged_folder(target, overwrite=overwrite) as staging:
        weights = staging / WEIGHTS_FILE
        # Through write_file_atomically for the usual file mode: safetensors writes 0600.
        metadata = {"model_id": model_id, "version": str(version)}
        write_file_atomically(weights, lambda temporary: save_file(state, str(temporary), metadata=metadata))
        manifest = {
            "format_version": FORMAT_VERSION,
            "id": model_id,
            "version": str(version),
            "description": description,
            "architecture": config.to_dict(),
            "inputs": list(config.inputs),
            "uses_nihss": config.use_nihss,
            "encoding": encoding_manifest(config.inputs, config.encoding),
            "image_size": config.image_size,
            "classes": output_classes(config.num_classes),
            "parameters": int(sum(tensor.numel() for tensor in state.values())),
            "weights": {
                "file": WEIGHTS_FILE,
                "sha256": sha256_file(weights),
                "size_bytes": weights.stat().st_size,
            },
            "training": _json_safe(training or {}),
            "evaluation": _json_safe(evaluation or {}),
            "library": {"name": "strokeperfusionseg", "version": __version__},
        }
        with open(staging / MANIFEST_FILE, "w", encoding="utf-8") as stream:
            json.dump(manifest, stream, indent=2, allow_nan=False)
            stream.write("\n")
    return target


def read_manifest(path: str | os.PathLike) -> dict:
    """``model.json`` of the bundle folder ``path``, checked for the required keys."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir() or not manifest_path.is_file():
        inner = sorted(path.glob(f"*/{MANIFEST_FILE}")) if path.is_dir() else []
        hint = f" (it holds the bundle {inner[0].parent}: pass that)" if len(inner) == 1 else ""
        raise InputError(
            f"no model bundle at {path}{hint}: give a folder holding {MANIFEST_FILE} and {WEIGHTS_FILE}"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{manifest_path} is not readable JSON ({error}): copy the bundle again") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_path} is not a JSON object: copy the bundle again")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise InputError(f"{manifest_path} lacks '{missing[0]}': the bundle is incomplete, export it again")
    if not isinstance(manifest["format_version"], int) or manifest["format_version"] > FORMAT_VERSION:
        raise InputError(
            f"bundle {path} has format version {manifest['format_version']!r}, this library reads "
            f"up to {FORMAT_VERSION}: upgrade strokeperfusionseg"
        )
    return manifest


def validate_bundle(path: str | os.PathLike, *, verify_checksum: bool = True):
    """Check a bundle folder without loading its weights.

    Checks ``model.json`` (readable, required keys, format version, a known architecture and
    a consistent input list), that the weights file exists, its sha256 (unless
    ``verify_checksum`` is False) and that its tensors match the architecture by name and
    shape.

    Returns
    -------
    (dict, ModelConfig)
        The manifest and the model configuration.

    Raises
    ------
    InputError
        Naming the bundle and the fix, for every problem above.
    """
    from safetensors import SafetensorError, safe_open

    from .networks import ModelConfig

    path = Path(path)
    manifest = read_manifest(path)
    try:
        config = ModelConfig.from_dict(manifest["architecture"])
    except InputError as error:
        raise InputError(f"bundle {path}: {error}") from None
    except TypeError as error:
        raise InputError(f"bundle {path}: architecture in {MANIFEST_FILE} is malformed ({error})") from None
    if "inputs" in manifest and list(manifest["inputs"]) != list(config.inputs):
        raise InputError(
            f"bundle {path}: inputs {manifest['inputs']} disagree with the architecture's "
            f"{list(config.inputs)}: fix {MANIFEST_FILE}"
        )
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"bundle {path} lacks {WEIGHTS_FILE}: copy or download the bundle again")
    expected_sha = manifest["weights"].get("sha256") if isinstance(manifest["weights"], dict) else None
    if not expected_sha:
        raise InputError(f"bundle {path}: {MANIFEST_FILE} records no weights sha256; export it again")
    if verify_checksum and sha256_file(weights) != expected_sha:
        raise InputError(
            f"bundle {path}: {WEIGHTS_FILE} fails its sha256 check (corrupted or altered): "
            "download or copy the bundle again"
        )
    try:
        with safe_open(str(weights), framework="pt") as stream:
            actual = {name: tuple(stream.get_slice(name).get_shape()) for name in stream.keys()}
    except (SafetensorError, OSError) as error:
        raise InputError(f"bundle {path}: {WEIGHTS_FILE} is not a readable safetensors file ({error})") from None
    _compare_tensors(_expected_shapes(config), actual, f"bundle {path}")
    return manifest, config


def load_bundle(
    path_or_id: str | os.PathLike,
    *,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    allow_download: bool = False,
) -> Bundle:
    """Load a bundle (folder path or registered model id), verified, in eval mode.

    ``path_or_id`` is resolved with :func:`registry.resolve_model` (which takes
    ``cache_dir``, ``offline_dir`` and ``allow_download``); the bundle is then validated
    (:func:`validate_bundle`, sha256 included) before any tensor is read.
    """
    import torch
    from safetensors.torch import load_file

    from .networks import build_model
    from .registry import resolve_model  # registry validates bundles with this module

    path = resolve_model(path_or_id, cache_dir=cache_dir, offline_dir=offline_dir, allow_download=allow_download)
    manifest, config = validate_bundle(path)
    state = load_file(str(path / WEIGHTS_FILE), device="cpu")
    # Built without memory and given the loaded tensors: no wasted random initialisation.
    with torch.device("meta"):
        model = build_model(config)
    model.load_state_dict(state, strict=True, assign=True)
    unloaded = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if unloaded:
        raise RuntimeError(f"{path}: tensors not restored from the weights file: {', '.join(unloaded[:3])}")
    model.eval()
    return Bundle(model=model.to(device), config=config, manifest=manifest, path=path)

"""The model bundle format on disk: file names, model ids, reading and checking a bundle folder.

A bundle is a folder ``<model-id>/`` holding ``model.json`` (the manifest) and
``weights.safetensors``. This module reads and validates one without loading its weights and
without resolving model ids: :mod:`bundle` writes and loads bundles, :mod:`registry` finds
them, and both build on this module (which imports neither).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .errors import InputError

#: Version of the bundle layout this code writes; it reads this and older ones.
FORMAT_VERSION = 1
MANIFEST_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
#: Model ids are folder names and URL parts: letters, digits, ".", "_", "-".
MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_REQUIRED_KEYS = ("format_version", "id", "version", "architecture", "weights")


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


def _expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the model ``config`` describes, without allocating it."""
    import torch

    from .networks import build_model

    with torch.device("meta"):
        model = build_model(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def check_tensors(config, actual: dict, where: str) -> None:
    """Raise an InputError, naming ``where``, unless ``actual`` (tensor name -> shape) fits ``config``."""
    expected = _expected_shapes(config)
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
    if "inputs" in manifest and manifest["inputs"] != list(config.inputs):
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
    check_tensors(config, actual, f"bundle {path}")
    return manifest, config

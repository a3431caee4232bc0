"""Model bundles: write one, and load one (by folder or registered id) as a ready network.

A bundle is a folder ``<model-id>/`` with ``model.json`` and ``weights.safetensors``; the
format itself (file names, reading and validating a folder) is :mod:`bundleformat`.

``model.json`` records everything needed to rebuild and trust the model: id, version,
architecture (:meth:`ModelConfig.to_dict`), inputs in branch order, the input encoding with
its windows and colour table (:func:`encoding.encoding_manifest`), image size, output classes,
training and evaluation summaries, and the sha256 of the weights file.

Weights are stored with safetensors and never unpickled. Loading verifies the sha256 first,
then that the tensors match the architecture exactly (names and shapes).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .encoding import encoding_manifest
from .atomic import staged_folder, write_file_atomically
from .bundleformat import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    check_model_id,
    check_tensors,
    sha256_file,
    validate_bundle,
)
from .errors import InputError
from .labels import CLASS_NAMES
from .registry import resolve_model


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
    check_tensors(config, {n: tuple(t.shape) for n, t in state.items()}, f"model {model_id}")

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
    (:func:`bundleformat.validate_bundle`, sha256 included) before any tensor is read. Without
    PyTorch it is an :class:`InputError` saying how to install it (thresholding needs none).
    """
    try:
        import torch
    except ImportError:
        raise InputError(
            "segmentation models need PyTorch, which is not installed: in 3D Slicer install it with the "
            "PyTorch extension (PyTorch Utils module), elsewhere `pip install torch`; or use the method 'threshold'"
        ) from None
    from safetensors.torch import load_file

    from .networks import build_model

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
    non_finite = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if non_finite:
        raise InputError(
            f"bundle {path}: {len(non_finite)} weight tensor(s) hold NaN or infinite values (e.g. {non_finite[0]}; "
            "a diverged training?): export the bundle from a finite checkpoint"
        )
    model.eval()
    return Bundle(model=model.to(device), config=config, manifest=manifest, path=path)

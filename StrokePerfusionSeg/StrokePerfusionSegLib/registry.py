"""The registry of known model bundles, the user cache, and verified downloads.

``data/models/registry.json`` (package data, so it ships with pip and Slicer alike) lists the
known bundles::

    {"format_version": 1, "default_model_id": "<id>" | null,
     "models": [{"id", "version", "description", "url", "sha256", "size_bytes",
                 "bundled", "path"}]}

* ``bundled: true``: the bundle folder ships in ``data/models/<path>``.
* Otherwise ``url`` points to a zip archive holding the bundle folder (``<id>/model.json``,
  ``<id>/weights.safetensors``) or its two files at the archive root; ``sha256`` and
  ``size_bytes`` are those of the archive. The weights inside are verified again against
  their own ``model.json`` when loaded.

:func:`resolve_model` looks for a model id in this order: the bundled folder, the user cache
(:func:`default_cache_dir`), an offline folder the caller names (holding ``<id>/`` or
``<id>.zip``), and last a download from ``url``, only when the caller allows it. Nothing is
ever downloaded at import or implicitly.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .bundleformat import MANIFEST_FILE, check_model_id, read_manifest, sha256_file, validate_bundle
from .errors import InputError

MODELS_DIR = Path(__file__).resolve().parent / "data" / "models"
REGISTRY_FILE = MODELS_DIR / "registry.json"
#: Environment variable that overrides the user cache folder.
CACHE_ENV = "STROKEPERFUSIONSEG_CACHE"
DOWNLOAD_SCHEMES = ("https", "http", "file")
_CHUNK = 1 << 20
#: Most bytes a bundle archive may unpack to (the paper's full-size SF model is 341 MB) and the
#: most it may expand over its own size (float weights hardly compress; a zip bomb does).
MAX_UNPACKED_BYTES = 2 << 30
MAX_EXPANSION = 20


@dataclass(frozen=True)
class RegistryEntry:
    """One known model bundle (see the module docstring for the fields)."""

    id: str
    version: str
    description: str = ""
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    bundled: bool = False
    path: str | None = None


@dataclass(frozen=True)
class Registry:
    """The parsed registry file."""

    default_model_id: str | None = None
    models: dict[str, RegistryEntry] = field(default_factory=dict)


def load_registry(path: str | os.PathLike = REGISTRY_FILE) -> Registry:
    """Parse a registry file; a malformed one is an InputError naming the file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        models = {}
        for item in document.get("models", []):
            entry = RegistryEntry(**item)
            models[check_model_id(entry.id)] = entry
            if entry.path is not None:
                _bundled_folder(entry, path)
        default = document.get("default_model_id")
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise InputError(f"model registry {path} is unreadable ({error}): reinstall or fix the file") from None
    if default is not None and default not in models:
        raise InputError(f"model registry {path}: default model '{default}' is not listed in it")
    return Registry(default, models)


def _bundled_folder(entry: RegistryEntry, registry_file: Path) -> Path:
    """The folder of a bundled model: ``path`` must name a folder inside the models folder."""
    text = entry.path or entry.id
    inside = isinstance(text, str) and "\\" not in text and not PurePosixPath(text).is_absolute()
    if not inside or ".." in PurePosixPath(text).parts or PurePosixPath(text) == PurePosixPath("."):
        raise InputError(
            f"model registry {registry_file}: path {entry.path!r} of model '{entry.id}' leaves the models "
            "folder: give a folder name inside it"
        )
    return MODELS_DIR / text


def default_model_id() -> str | None:
    """The model used when none is named (None until a trained model is registered).

    Read when asked, not at import: a damaged registry file is then a clear error at use.
    """
    return load_registry().default_model_id


def default_cache_dir() -> Path:
    """User cache folder for downloaded bundles.

    ``$STROKEPERFUSIONSEG_CACHE`` when set; otherwise ``%LOCALAPPDATA%\\strokeperfusionseg``
    on Windows, ``~/Library/Caches/strokeperfusionseg`` on macOS and
    ``$XDG_CACHE_HOME/strokeperfusionseg`` (default ``~/.cache``) elsewhere.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "strokeperfusionseg"


def _looks_like_path(id_or_path) -> bool:
    text = os.fspath(id_or_path)
    return isinstance(id_or_path, os.PathLike) or "/" in text or os.sep in text or Path(text).exists()


def _bundle_version(folder: Path) -> str | None:
    try:
        return str(read_manifest(folder)["version"])
    except InputError:
        return None


def resolve_model(
    id_or_path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    allow_download: bool = False,
    registry: Registry | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """The bundle folder of a model id or path.

    Parameters
    ----------
    id_or_path : str, path or None
        A bundle folder, or a model id; None or ``"default"``: the registry's default.
    cache_dir : path, optional
        User cache; default :func:`default_cache_dir`.
    offline_dir : path, optional
        A folder holding ``<id>/`` bundle folders or ``<id>.zip`` archives (e.g. copied from
        a machine with internet access). Archives are verified like downloads.
    allow_download : bool
        Download a registered model's archive when it is nowhere else.
    registry : Registry, optional
        Default: the package's registry file.
    progress : callable(done_bytes, total_bytes or None), optional
        Called while downloading.

    Returns
    -------
    Path
        A bundle folder holding ``model.json`` (validated in full when it was just installed).
    """
    registry = registry or load_registry()
    id_or_path = _named_or_default(id_or_path, registry)
    if _looks_like_path(id_or_path):
        folder = Path(id_or_path).expanduser()
        read_manifest(folder)
        return folder.resolve()
    model_id = check_model_id(str(id_or_path))
    entry = registry.models.get(model_id)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = _installed_bundle(model_id, entry, cache)
    if folder is None and offline_dir is not None:
        folder = _offline_bundle(model_id, entry, Path(offline_dir).expanduser(), cache)
    if folder is not None:
        return folder
    return _download_registered(model_id, entry, registry, cache, allow_download, progress)


def _named_or_default(id_or_path, registry: Registry):
    """``id_or_path``, or the registry's default model id when it is None or ``"default"``."""
    if id_or_path is not None and id_or_path != "default":
        return id_or_path
    if registry.default_model_id is None:
        raise InputError(
            "no default model is registered yet: train one (strokeperfusionseg-train) and pass its "
            "bundle folder, or use the threshold method"
        )
    return registry.default_model_id


def _installed_bundle(model_id: str, entry: RegistryEntry | None, cache: Path) -> Path | None:
    """The bundle shipped with the package, or a cached copy of the registered version; else None."""
    if entry is not None and entry.bundled:
        folder = _bundled_folder(entry, REGISTRY_FILE)
        read_manifest(folder)
        return folder
    cached = cache / model_id
    if (cached / MANIFEST_FILE).is_file() and (entry is None or _bundle_version(cached) == entry.version):
        return cached
    return None


def _offline_bundle(model_id: str, entry: RegistryEntry | None, offline: Path, cache: Path) -> Path | None:
    """``offline/<id>/``, or ``offline/<id>.zip`` verified and installed in ``cache``; else None."""
    if (offline / model_id / MANIFEST_FILE).is_file():
        return offline / model_id
    archive = offline / f"{model_id}.zip"
    if not archive.is_file():
        return None
    if entry is None or not entry.sha256:
        raise InputError(
            f"{archive} cannot be verified: model '{model_id}' has no sha256 in the registry; "
            "unzip it and pass the bundle folder instead"
        )
    _check_archive(archive, entry)
    return install_archive(archive, model_id, cache)


def _download_registered(model_id: str, entry: RegistryEntry | None, registry: Registry, cache: Path,
                         allow_download: bool, progress) -> Path:
    """Download a registered model found nowhere else; an InputError saying why it cannot be."""
    if entry is None:
        known = ", ".join(sorted(registry.models)) or "none registered yet"
        raise InputError(
            f"unknown model '{model_id}' (known: {known}): give a registered id or a bundle folder path"
        )
    if not entry.url:
        raise InputError(f"model '{model_id}' has no download address: ask its provider for the bundle folder")
    if not allow_download:
        raise InputError(
            f"model '{model_id}' is not in the cache {cache}: allow the download, or fetch {entry.url} "
            "and pass the folder holding it as the offline folder"
        )
    return download_model(entry, cache, progress=progress)


def _check_archive(archive: Path, entry: RegistryEntry) -> None:
    sha256, size = sha256_file(archive), archive.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise InputError(
            f"{archive} of model '{entry.id}' has {size} bytes, the registry says {entry.size_bytes}: "
            "the file is incomplete or not this model, fetch it again"
        )
    if sha256 != entry.sha256:
        raise InputError(
            f"{archive} of model '{entry.id}' fails its sha256 check (corrupted or altered): fetch it again"
        )


def download_model(
    entry: RegistryEntry,
    cache_dir: str | os.PathLike,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Download ``entry``'s archive, verify size and sha256, install it in ``cache_dir``.

    The archive goes to a temporary file in the cache folder and is removed afterwards; a
    failed check leaves nothing behind.
    """
    scheme = entry.url.split(":", 1)[0].lower() if entry.url and ":" in entry.url else ""
    if scheme not in DOWNLOAD_SCHEMES:
        raise InputError(f"model '{entry.id}' has an unsupported address {entry.url!r}: use https, http or file")
    if not entry.sha256:
        raise InputError(f"model '{entry.id}' has no sha256 in the registry: refusing an unverifiable download")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{entry.id}.", suffix=".zip.part", dir=cache)
    archive = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as output:
            try:
                with urllib.request.urlopen(entry.url, timeout=timeout_s) as response:
                    total = response.headers.get("Content-Length") if response.headers else None
                    total = int(total) if total else entry.size_bytes
                    done, limit = 0, entry.size_bytes if entry.size_bytes is not None else MAX_UNPACKED_BYTES
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        done += len(chunk)
                        if done > limit:
                            raise InputError(
                                f"download of model '{entry.id}' from {entry.url} goes on past the {limit} bytes "
                                "the registry gives: stopped; the address serves another file, tell its provider"
                            )
                        output.write(chunk)
                        if progress is not None:
                            progress(done, total)
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise InputError(
                    f"download of model '{entry.id}' from {entry.url} failed ({error}): check the "
                    "network, or fetch the file elsewhere and pass it as the offline folder"
                ) from None
        _check_archive(archive, entry)
        return install_archive(archive, entry.id, cache)
    finally:
        archive.unlink(missing_ok=True)


def _safe_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    """Members with paths inside the target and a total size a bundle can have (no zip bomb).

    The sizes are the ones the archive declares; zipfile stops each member there and checks
    its CRC, so a member cannot unpack to more than it declares.
    """
    members = archive.infolist()
    for member in members:
        name = PurePosixPath(member.filename)
        if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
            raise InputError(f"{source} holds an unsafe path {member.filename!r}: refusing to unpack it")
    unpacked = sum(member.file_size for member in members)
    limit = min(MAX_UNPACKED_BYTES, MAX_EXPANSION * source.stat().st_size + (1 << 20))
    if unpacked > limit:
        raise InputError(
            f"{source} would unpack to {unpacked / 2**20:.0f} MiB, more than a model bundle "
            f"({limit / 2**20:.0f} MiB at most for this archive): refusing it; fetch the bundle from its provider"
        )
    return members


def install_archive(archive: str | os.PathLike, model_id: str, cache_dir: str | os.PathLike) -> Path:
    """Unpack a verified bundle archive into ``cache_dir/<model_id>`` atomically.

    The archive holds the bundle folder or its files at the root. The bundle is validated in
    full (:func:`bundleformat.validate_bundle`) and must carry ``model_id`` before it replaces any
    cached version.
    """
    archive, cache = Path(archive), Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}.tmp-", dir=cache))
    try:
        try:
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(staging, members=_safe_members(opened, archive))
        except (zipfile.BadZipFile, NotImplementedError, EOFError):
            raise InputError(f"{archive} is not a complete zip archive: fetch the model again") from None
        manifests = sorted(staging.rglob(MANIFEST_FILE))
        if len(manifests) != 1 or len(manifests[0].relative_to(staging).parts) > 2:
            raise InputError(f"{archive} does not hold one model bundle ({MANIFEST_FILE} and weights)")
        folder = manifests[0].parent
        manifest, _ = validate_bundle(folder)
        if manifest["id"] != model_id:
            raise InputError(f"{archive} holds model '{manifest['id']}', not '{model_id}': fetch the right file")
        target = cache / model_id
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Registry resolution: bundled, cache, offline folder, verified download over loopback HTTP."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import zipfile

import pytest
import torch

from StrokePerfusionSegLib import registry as registry_module
from StrokePerfusionSegLib.bundle import load_bundle, save_bundle
from StrokePerfusionSegLib.bundleformat import MANIFEST_FILE
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.networks import ModelConfig, build_model
from StrokePerfusionSegLib.registry import (
    CACHE_ENV,
    Registry,
    RegistryEntry,
    default_cache_dir,
    load_registry,
    resolve_model,
)

CONFIG = ModelConfig(arch="EF", width=0.0625, image_size=32)
MODEL_ID = "ef-tiny"


@pytest.fixture()
def archive(tmp_path):
    """A bundle zipped as ``<id>/...`` in ``served/``, and its registry entry (no url yet)."""
    torch.manual_seed(0)
    folder = save_bundle(tmp_path / "made", build_model(CONFIG), CONFIG, model_id=MODEL_ID, version="1.0")
    served = tmp_path / "served"
    served.mkdir()
    path = served / f"{MODEL_ID}.zip"
    with zipfile.ZipFile(path, "w") as output:
        for file in folder.iterdir():
            output.write(file, f"{MODEL_ID}/{file.name}")
    data = path.read_bytes()
    entry = RegistryEntry(MODEL_ID, "1.0", "tiny", None, hashlib.sha256(data).hexdigest(), len(data))
    return path, entry


@pytest.fixture()
def server(archive):
    """A loopback-only HTTP server over the archive's folder; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive[0].parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _registry(entry, **changes):
    from dataclasses import replace

    entry = replace(entry, **changes)
    return Registry(default_model_id=entry.id, models={entry.id: entry})


def test_verified_download_over_http_then_cache_hit(archive, server, tmp_path):
    path, entry = archive
    registry = _registry(entry, url=f"{server}/{path.name}")
    cache = tmp_path / "cache"
    seen = []
    folder = resolve_model(
        MODEL_ID, cache_dir=cache, allow_download=True, registry=registry, progress=lambda d, t: seen.append((d, t))
    )
    assert folder == cache / MODEL_ID and (folder / MANIFEST_FILE).is_file()
    assert seen and seen[-1] == (entry.size_bytes, entry.size_bytes)
    assert sorted(p.name for p in cache.iterdir()) == [MODEL_ID]  # no partial files left
    # Second time: from the cache (no download allowed, so it must come from there).
    assert resolve_model("default", cache_dir=cache, registry=registry) == folder
    bundle = load_bundle(folder)
    assert bundle.model_id == MODEL_ID and bundle.config == CONFIG


def test_checksum_mismatch_leaves_nothing_behind(archive, server, tmp_path):
    path, entry = archive
    cache = tmp_path / "cache"
    registry = _registry(entry, url=f"{server}/{path.name}", sha256="0" * 64)
    with pytest.raises(InputError, match="fails its sha256 check"):
        resolve_model(MODEL_ID, cache_dir=cache, allow_download=True, registry=registry)
    registry = _registry(entry, url=f"{server}/{path.name}", size_bytes=entry.size_bytes + 1)
    with pytest.raises(InputError, match="incomplete"):
        resolve_model(MODEL_ID, cache_dir=cache, allow_download=True, registry=registry)
    assert list(cache.iterdir()) == []


def test_download_only_when_allowed_and_failures_are_input_errors(archive, server, tmp_path):
    path, entry = archive
    registry = _registry(entry, url=f"{server}/{path.name}")
    with pytest.raises(InputError, match="allow the download"):
        resolve_model(MODEL_ID, cache_dir=tmp_path / "cache", registry=registry)
    missing = _registry(entry, url=f"{server}/absent.zip")
    with pytest.raises(InputError, match="download of model 'ef-tiny'.*failed"):
        resolve_model(MODEL_ID, cache_dir=tmp_path / "cache", allow_download=True, registry=missing)


def test_file_url_download(archive, tmp_path):
    path, entry = archive
    registry = _registry(entry, url=path.as_uri())
    folder = resolve_model(MODEL_ID, cache_dir=tmp_path / "cache", allow_download=True, registry=registry)
    assert (folder / MANIFEST_FILE).is_file()


def test_offline_folder_with_archive_or_bundle_folder(archive, tmp_path):
    path, entry = archive
    registry = _registry(entry, url="https://example.invalid/never-fetched.zip")
    folder = resolve_model(MODEL_ID, cache_dir=tmp_path / "cache", offline_dir=path.parent, registry=registry)
    assert folder == tmp_path / "cache" / MODEL_ID
    # A plain bundle folder in the offline folder is used where it is.
    assert resolve_model(
        MODEL_ID, cache_dir=tmp_path / "empty-cache", offline_dir=tmp_path / "made", registry=registry
    ) == tmp_path / "made" / MODEL_ID
    # A tampered offline archive is refused.
    bad = _registry(entry, sha256="f" * 64)
    with pytest.raises(InputError, match="sha256"):
        resolve_model(MODEL_ID, cache_dir=tmp_path / "cache2", offline_dir=path.parent, registry=bad)


def test_stale_cached_version_is_not_used(archive, tmp_path):
    path, entry = archive
    cache = tmp_path / "cache"
    resolve_model(MODEL_ID, cache_dir=cache, offline_dir=path.parent, registry=_registry(entry))
    newer = _registry(entry, version="2.0", url=path.as_uri())
    with pytest.raises(InputError, match="not in the cache"):
        resolve_model(MODEL_ID, cache_dir=cache, registry=newer)


def test_archive_with_unsafe_paths_or_wrong_model_is_refused(archive, tmp_path):
    path, entry = archive
    evil = tmp_path / "evil" / f"{MODEL_ID}.zip"
    evil.parent.mkdir()
    with zipfile.ZipFile(evil, "w") as output:
        output.writestr("../outside.txt", "x")
    data = evil.read_bytes()
    registry = _registry(entry, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    with pytest.raises(InputError, match="unsafe path"):
        resolve_model(MODEL_ID, cache_dir=tmp_path / "cache", offline_dir=evil.parent, registry=registry)
    assert not (tmp_path / "cache" / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()
    other = _registry(RegistryEntry("other-id", "1.0", sha256=entry.sha256, size_bytes=entry.size_bytes))
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "other-id.zip").write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="holds model 'ef-tiny', not 'other-id'"):
        resolve_model("other-id", cache_dir=tmp_path / "cache", offline_dir=renamed, registry=other)


def test_paths_unknown_ids_and_no_default(archive, tmp_path):
    path, entry = archive
    assert resolve_model(tmp_path / "made" / MODEL_ID) == (tmp_path / "made" / MODEL_ID).resolve()
    with pytest.raises(InputError, match="no model bundle"):
        resolve_model(str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="unknown model 'nope'"):
        resolve_model("nope", cache_dir=tmp_path / "cache", registry=_registry(entry))
    with pytest.raises(InputError, match="no default model is registered"):
        resolve_model(None, registry=Registry())
    with pytest.raises(InputError, match="invalid model id"):
        resolve_model("bad id!", registry=Registry())


def test_package_registry_and_cache_location(tmp_path, monkeypatch):
    shipped = load_registry()
    assert registry_module.default_model_id() == shipped.default_model_id
    for entry in shipped.models.values():  # every bundled model really ships
        if entry.bundled:
            assert (registry_module.MODELS_DIR / (entry.path or entry.id) / MANIFEST_FILE).is_file()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "my-cache"))
    assert default_cache_dir() == tmp_path / "my-cache"
    broken = tmp_path / "registry.json"
    broken.write_text(json.dumps({"default_model_id": "x", "models": []}))
    with pytest.raises(InputError, match="not listed"):
        load_registry(broken)

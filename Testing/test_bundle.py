"""Model bundles: bit-exact round trip, manifest content, and every way a bundle can be broken."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from StrokePerfusionSegLib import mapspecs
from StrokePerfusionSegLib.bundle import load_bundle, save_bundle
from StrokePerfusionSegLib.bundleformat import MANIFEST_FILE, WEIGHTS_FILE, sha256_file, validate_bundle
from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.networks import ModelConfig, build_model

CONFIG = ModelConfig(
    arch="SF", inputs=("cbf", "cbv", "ttp", "tmax", "mip"), use_nihss=True, width=0.0625, image_size=32
)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(CONFIG)
    folder = save_bundle(
        tmp_path,
        model,
        CONFIG,
        model_id="sf-test",
        version="0.1.0",
        description="tiny test model",
        training={"epochs": 3, "best_val_loss": 0.42},
        evaluation={"LVO": {"core_dice": float("nan"), "penumbra_dice": 0.8}},
    )
    return model, folder


def _rewrite_manifest(folder, **changes):
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_round_trip_is_bit_exact(saved):
    model, folder = saved
    bundle = load_bundle(folder)
    original, loaded = model.state_dict(), bundle.model.state_dict()
    assert original.keys() == loaded.keys()
    for name in original:
        assert torch.equal(original[name], loaded[name]), name
    assert bundle.config == CONFIG and not bundle.model.training
    model.eval()
    images, nihss = torch.randn(1, 5, 3, 32, 32), torch.tensor([12.0])
    with torch.no_grad():
        assert torch.equal(model(images, nihss), bundle.model(images, nihss))


def test_manifest_records_everything_to_rebuild_and_trust(saved):
    _, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]
    manifest = json.loads((folder / MANIFEST_FILE).read_text())  # strict JSON: NaN stored as null
    assert manifest["id"] == "sf-test" and manifest["version"] == "0.1.0"
    assert ModelConfig.from_dict(manifest["architecture"]) == CONFIG
    assert manifest["inputs"] == list(CONFIG.inputs) and manifest["uses_nihss"] is True
    assert manifest["encoding"]["encoding"] == "rgb"
    assert manifest["encoding"]["inputs"][0]["window"] == list(mapspecs.MAP_SPECS["cbf"].window)
    assert manifest["image_size"] == 32
    assert [c["name"] for c in manifest["classes"]] == ["background", "brain", "penumbra", "core"]
    assert manifest["weights"]["sha256"] == sha256_file(folder / WEIGHTS_FILE)
    assert manifest["evaluation"]["LVO"]["core_dice"] is None
    assert manifest["training"]["epochs"] == 3
    # safetensors, not a pickle: an 8-byte header length, then a JSON header.
    raw = (folder / WEIGHTS_FILE).read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + header_length])["__metadata__"]["model_id"] == "sf-test"


def test_save_is_atomic_and_refuses_to_overwrite(saved, tmp_path):
    model, folder = saved
    with pytest.raises(InputError, match="already exists"):
        save_bundle(tmp_path, model, CONFIG, model_id="sf-test", version="0.2.0")
    save_bundle(tmp_path, model, CONFIG, model_id="sf-test", version="0.2.0", overwrite=True)
    assert json.loads((folder / MANIFEST_FILE).read_text())["version"] == "0.2.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sf-test"]  # no temporary folders left
    other = ModelConfig(arch="EF", width=0.0625, image_size=32)
    with pytest.raises(InputError, match="do not match the architecture"):
        save_bundle(tmp_path, model, other, model_id="mismatch", version="1")
    assert not (tmp_path / "mismatch").exists()
    with pytest.raises(InputError, match="invalid model id"):
        save_bundle(tmp_path, model, CONFIG, model_id="../escape", version="1")


def test_altered_weights_fail_their_checksum(saved):
    _, folder = saved
    weights = folder / WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="sha256.*download or copy the bundle again") as error:
        load_bundle(folder)
    assert str(folder) in str(error.value)


def test_missing_files(saved, tmp_path):
    _, folder = saved
    with pytest.raises(InputError, match="no model bundle"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(InputError, match=f"it holds the bundle {folder}: pass that"):
        load_bundle(tmp_path)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(InputError, match=f"lacks {WEIGHTS_FILE}"):
        validate_bundle(folder)
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(InputError, match="no model bundle"):
        validate_bundle(folder)


def test_unknown_architecture_and_malformed_manifest(saved):
    _, folder = saved
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    _rewrite_manifest(folder, architecture=dict(manifest["architecture"], arch="UNET"))
    with pytest.raises(InputError, match="unknown architecture 'UNET'"):
        validate_bundle(folder)
    _rewrite_manifest(folder, architecture=manifest["architecture"], format_version=99)
    with pytest.raises(InputError, match="upgrade"):
        validate_bundle(folder)
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not readable JSON"):
        validate_bundle(folder)


def test_missing_and_misshapen_tensors(saved):
    _, folder = saved
    weights = folder / WEIGHTS_FILE
    state = load_file(str(weights))
    dropped = sorted(state)[0]
    save_file({k: v for k, v in state.items() if k != dropped}, str(weights))
    _rewrite_manifest(folder, weights={"file": WEIGHTS_FILE, "sha256": sha256_file(weights)})
    with pytest.raises(InputError, match=f"1 missing \\(e.g. {dropped}\\)"):
        load_bundle(folder)
    state[dropped] = torch.zeros(1)
    save_file(state, str(weights))
    _rewrite_manifest(folder, weights={"file": WEIGHTS_FILE, "sha256": sha256_file(weights)})
    with pytest.raises(InputError, match="wrong shape"):
        load_bundle(folder)

"""Predictor with a real small network bundle: labels, probabilities, batching, progress,
cancel, determinism, precision and every bad input."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np
import pytest
import torch

from StrokePerfusionSegLib import colourcoding, mapspecs
from StrokePerfusionSegLib.brainmask import brain_mask_from_mip
from StrokePerfusionSegLib.bundle import load_bundle, save_bundle
from StrokePerfusionSegLib.errors import CancelledError, InputError
from StrokePerfusionSegLib.networks import ModelConfig, build_model
from StrokePerfusionSegLib.predictor import predict

SPACING = (5.0, 1.0, 1.0)
PMS = ("cbf", "cbv", "ttp", "tmax")


def synthetic_study(z=4, y=48, x=40, seed=0):
    """Elliptic 'head': soft-tissue brain (35 HU MIP) inside a bone ring (400 HU) in air,
    perfusion maps with a low-flow, late lesion on the left half."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:y, :x]
    radius = np.hypot((yy - y / 2) / (y / 2), (xx - x / 2) / (x / 2))
    mip = np.where(radius < 0.75, 35.0, np.where(radius < 0.9, 400.0, 0.0))
    mip = np.repeat(mip[None], z, axis=0).astype(np.float32)
    lesion = (radius < 0.6) & (xx < x / 2)
    maps_ = {
        "cbf": np.where(lesion, 10.0, 50.0),
        "cbv": np.where(lesion, 1.5, 4.0),
        "ttp": np.where(lesion, 25.0, 15.0),
        "tmax": np.where(lesion, 9.0, 1.5),
    }
    images = {
        name: (np.repeat(v[None], z, axis=0) + rng.normal(0, 0.5, (z, y, x))).astype(np.float32)
        for name, v in maps_.items()
    }
    return images, mip


def make_bundle(tmp_path, **config_values):
    torch.manual_seed(0)
    config = ModelConfig(**{"width": 1 / 16, "image_size": 64, **config_values})
    model = build_model(config)
    folder = save_bundle(tmp_path, model, config, model_id=f"test-{config.arch}-{len(tmp_path.parts)}",
                         version="0.0.1")
    return load_bundle(folder)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def nihss_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("nihss"), use_nihss=True, inputs=PMS + ("mip",))


@pytest.fixture(scope="module")
def study():
    return synthetic_study()


def test_end_to_end_labels_follow_probabilities_inside_the_brain(bundle, study):
    images, mip = study
    calls = []
    result = predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=1.0,
                     progress=lambda done, total: calls.append((done, total)))
    assert result.labels.shape == (4, 48, 40) and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (4, 4, 48, 40) and result.probabilities.dtype == np.float32
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    mask = brain_mask_from_mip(mip, SPACING)
    assert mask.any() and not mask.all()
    assert (result.labels[~mask] == 0).all()
    expected = 1 + result.probabilities[:, 1:].argmax(axis=1)
    assert np.array_equal(result.labels[mask], expected[mask])
    # A tiny budget gives batches of one slice: progress once per slice, ending at the total.
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert any("resampled from 40x48 to 64x64" in note for note in result.notes)
    assert set(result.timings) == {"checks_s", "encode_s", "network_s", "postprocess_s", "total_s"}


def test_deterministic_and_independent_of_batch_size(bundle, study):
    images, mip = study
    one = predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=1.0)
    again = predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=1.0)
    whole = predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=10_000)
    assert np.array_equal(one.probabilities, again.probabilities)
    assert np.array_equal(one.labels, again.labels)
    assert np.allclose(one.probabilities, whole.probabilities, atol=1e-5)


def test_back_to_grid_in_chunks_equals_whole_batches(bundle, study, monkeypatch):
    """to_grid one slice at a time (a chunk budget below one slice) gives the very labels and
    probabilities of one chunk per batch, in a batch of every slice, through the same
    antialiased bilinear resampling (the model's 64 px are more than 48) and crop."""
    import torch.nn.functional as F

    from StrokePerfusionSegLib import predictor

    images, mip = study
    whole = predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=10_000)
    monkeypatch.setattr(predictor, "GRID_CHUNK_BYTES", 1)
    chunked = predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=10_000)
    assert np.array_equal(whole.probabilities, chunked.probabilities)
    assert np.array_equal(whole.labels, chunked.labels)

    resampler = predictor.SliceResampler((48, 40), 64, predictor.padding_values(bundle.config))
    small = torch.softmax(torch.randn(3, 4, 64, 64), dim=1)
    labels, probabilities = np.empty((3, 48, 40), np.uint8), np.empty((3, 4, 48, 40), np.float32)
    predictor.to_grid(small, resampler, True, 4, torch.from_numpy(labels), torch.from_numpy(probabilities))
    expected = F.interpolate(small, size=(48, 48), mode="bilinear", align_corners=False, antialias=True)[..., 4:44]
    np.testing.assert_array_equal(probabilities, expected.numpy())
    np.testing.assert_array_equal(labels, 1 + expected[:, 1:].argmax(dim=1).numpy())


def test_colour_coded_maps_give_the_scalar_result(bundle, study):
    images, mip = study
    scalar = predict(images, SPACING, method=bundle, mip=mip)
    rgb = {name: colourcoding.encode_rgb(values, name) for name, values in images.items()}
    coded = predict(rgb, SPACING, method=bundle, mip=mip)
    assert np.array_equal(scalar.probabilities, coded.probabilities)
    assert any("cbf, cbv, ttp, tmax colour-coded" in note for note in scalar.notes)
    assert not any("colour-coded" in note for note in coded.notes)


def test_square_input_at_model_size_is_not_resampled(bundle):
    images, mip = synthetic_study(z=2, y=64, x=64)
    result = predict(images, SPACING, method=bundle, mip=mip)
    assert result.labels.shape == (2, 64, 64)
    assert not any("resampled" in note for note in result.notes)


def test_cancel_stops_between_batches(bundle, study):
    images, mip = study
    calls = []
    with pytest.raises(CancelledError):
        predict(images, SPACING, method=bundle, mip=mip, memory_budget_mb=1.0,
                progress=lambda done, total: calls.append(done), cancel=lambda: len(calls) >= 1)
    assert calls == [1]


def test_bf16_autocast_on_cpu_is_close_to_fp32(bundle, study):
    images, mip = study
    fp32 = predict(images, SPACING, method=bundle, mip=mip, precision="fp32")
    bf16 = predict(images, SPACING, method=bundle, mip=mip, precision="bf16")
    assert any("bfloat16" in note for note in bf16.notes)
    assert np.abs(fp32.probabilities - bf16.probabilities).max() < 0.05


def test_bf16_weights_are_cast_once_per_call_not_per_batch(bundle, study):
    """Autocast's weight cache works across the batches of one call (casts counted by the profiler)."""
    from torch.profiler import profile

    images, mip = study

    shapes = [list(parameter.shape) for parameter in bundle.model.parameters()]

    def casts(slices: int) -> int:
        """Casts of tensors shaped as a weight (the input's own transfers and casts are not)."""
        with profile(record_shapes=True) as prof:
            predict({n: v[:slices] for n, v in images.items()}, SPACING, method=bundle, mip=mip[:slices],
                    precision="bf16", memory_budget_mb=1e-3)  # one slice per batch
        return sum(event.count for event in prof.key_averages(group_by_input_shape=True)
                   if event.key == "aten::_to_copy" and event.input_shapes and event.input_shapes[0] in shapes)

    one, four = casts(1), casts(4)
    parameters = len(shapes)
    assert one >= parameters  # the first forward casts every weight
    assert four - one < parameters // 2, (one, four)


def test_nihss_model(nihss_bundle, study):
    images, mip = study
    with_mip = {**images, "mip": mip}
    low = predict(with_mip, SPACING, method=nihss_bundle, nihss=2)
    high = predict(with_mip, SPACING, method=nihss_bundle, nihss=40)
    assert not np.array_equal(low.probabilities, high.probabilities)
    with pytest.raises(InputError, match="NIHSS"):
        predict(with_mip, SPACING, method=nihss_bundle)
    for bad in (-1, 43, 2.5, float("nan"), "severe"):
        with pytest.raises(InputError, match="NIHSS"):
            predict(with_mip, SPACING, method=nihss_bundle, nihss=bad)


def test_nihss_for_a_model_without_it_is_noted(bundle, study):
    images, mip = study
    result = predict(images, SPACING, method=bundle, mip=mip, nihss=7)
    assert any("NIHSS given but this model does not read it" in note for note in result.notes)


def test_without_mip_the_network_decides_background(bundle, study, tmp_path):
    images, _ = study
    result = predict(images, SPACING, method=bundle)
    assert np.array_equal(result.labels, result.probabilities.argmax(axis=1))
    assert any("no MIP" in note for note in result.notes)
    three = make_bundle(tmp_path, num_classes=3)
    with pytest.raises(InputError, match="MIP"):
        predict(images, SPACING, method=three)


def test_three_class_model_labels_brain_penumbra_core(tmp_path, study):
    images, mip = study
    three = make_bundle(tmp_path, num_classes=3)
    result = predict(images, SPACING, method=three, mip=mip)
    mask = brain_mask_from_mip(mip, SPACING)
    assert result.probabilities.shape[1] == 3
    assert np.array_equal(result.labels[mask], 1 + result.probabilities.argmax(axis=1)[mask])
    assert (result.labels[~mask] == 0).all()


def _bad_inputs(images, mip):
    two_d = {**images, "cbf": images["cbf"][0]}
    shifted = {**images, "cbv": images["cbv"][:, :-1]}
    nan = {**images, "ttp": np.where(images["ttp"] > 20, np.nan, images["ttp"]).astype(np.float32)}
    missing = {k: v for k, v in images.items() if k != "tmax"}
    extra = {**images, "mtt": images["cbf"]}
    float_rgb = {**images, "cbf": colourcoding.encode_rgb(images["cbf"], "cbf").astype(np.float32)}
    colour_mip = colourcoding.encode_rgb(mip, "cbf")
    return [
        (dict(images=missing), "missing input map"),
        (dict(images=extra), "mtt not read"),
        (dict(images=shifted), "differ in shape"),
        (dict(images=nan), "NaN"),
        (dict(images=two_d), "3D"),
        (dict(images=float_rgb), "uint8"),
        (dict(mip=colour_mip), "grey levels"),
        (dict(mip=mip[:2]), "MIP has shape"),
        (dict(mip=np.where(mip > 300, np.inf, mip)), "NaN or infinite"),
        (dict(spacing=(5.0, 1.0)), "spacing"),
        (dict(spacing=(5.0, 0.0, 1.0)), "spacing"),
        (dict(method="unet"), "unknown method"),
        (dict(method=object()), "model bundle"),
        (dict(device="tpu"), "unknown device"),
        (dict(device="cpu", precision="fp16"), "fp16"),
        (dict(precision="int8"), "precision"),
        (dict(memory_budget_mb=0), "memory budget"),
    ]


def test_bad_inputs_are_one_line_input_errors(bundle, study):
    images, mip = study
    for overrides, message in _bad_inputs(images, mip):
        arguments = {**dict(images=images, spacing=SPACING, method=bundle, mip=mip), **overrides}
        with pytest.raises(InputError, match=message) as error:
            predict(arguments.pop("images"), arguments.pop("spacing"), **arguments)
        assert "\n" not in str(error.value)


def loading(bundle, after_s: float = 0.2) -> Future:
    """A model still loading (as the command line's, in a thread), ready after ``after_s``."""
    future = Future()
    threading.Timer(after_s, future.set_result, [bundle]).start()
    return future


def test_a_model_still_loading_gives_the_loaded_models_result_and_errors(bundle, study):
    """A Future of the bundle (the command line's model loading in a thread) is waited for, and
    the result, notes and input errors are those of the loaded bundle."""
    images, mip = study
    grey_mip = colourcoding.encode_rgb(mip, "mip")  # decoded with a note: notes keep their order
    for given_mip in (mip, grey_mip):
        loading_result = predict(images, SPACING, method=loading(bundle), mip=given_mip)
        loaded = predict(images, SPACING, method=bundle, mip=given_mip)
        assert loading_result.notes == loaded.notes
        assert np.array_equal(loading_result.labels, loaded.labels)
        assert np.array_equal(loading_result.probabilities, loaded.probabilities)
        assert loading_result.timings["wait_model_s"] >= 0 and "wait_model_s" not in loaded.timings
    for overrides, message in _bad_inputs(images, mip):
        if "method" in overrides:
            continue
        arguments = {**dict(images=images, spacing=SPACING, method=bundle, mip=mip), **overrides}
        messages = []
        for method in (bundle, loading(bundle, 0.0)):
            with pytest.raises(InputError, match=message) as error:
                predict(arguments["images"], arguments["spacing"], **{
                    **{k: v for k, v in arguments.items() if k not in ("images", "spacing")}, "method": method})
            messages.append(str(error.value))
        assert messages[0] == messages[1]


def test_brain_mask_is_made_before_a_loading_model_is_needed(study):
    """The mask is made while the model loads: a MIP with no brain tissue is the user's error,
    reported before the model is waited for (here: a load that failed)."""
    images, mip = study
    no_brain = np.where(mip > 300, mip, 0.0).astype(np.float32)  # bone and air, no soft tissue
    failed = Future()
    failed.set_exception(InputError("weights.safetensors fails its sha256 check"))
    with pytest.raises(InputError, match="brain mask is empty"):
        predict(images, SPACING, method=failed, mip=no_brain)
    with pytest.raises(InputError, match="sha256"):
        predict(images, SPACING, method=failed, mip=mip)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_requested_without_gpu(bundle, study):
    images, mip = study
    with pytest.raises(InputError, match="CUDA"):
        predict(images, SPACING, method=bundle, mip=mip, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_agrees_with_cpu_and_is_deterministic(bundle, study):
    images, mip = study
    cpu = predict(images, SPACING, method=bundle, mip=mip, device="cpu", precision="fp32")
    gpu = predict(images, SPACING, method=bundle, mip=mip, device="cuda", precision="fp32")
    assert gpu.device.startswith("cuda")
    assert np.abs(cpu.probabilities - gpu.probabilities).max() < 1e-3
    first = predict(images, SPACING, method=bundle, mip=mip, device="cuda")
    second = predict(images, SPACING, method=bundle, mip=mip, device="cuda")
    assert any("bfloat16" in note or "float16" in note for note in first.notes)
    assert np.array_equal(first.probabilities, second.probabilities)
    assert np.abs(cpu.probabilities - first.probabilities).max() < 0.05
    bundle.model.to("cpu")


def test_scalar_encoding_model_decodes_colour_coded_maps(tmp_path, study):
    images, mip = study
    scalar_model = make_bundle(tmp_path, encoding="scalar")
    plain = predict(images, SPACING, method=scalar_model, mip=mip)
    rgb = {name: colourcoding.encode_rgb(values, name) for name, values in images.items()}
    decoded = predict(rgb, SPACING, method=scalar_model, mip=mip)
    assert not any("decoded" in note for note in plain.notes)
    assert any("decoded from colour" in note for note in decoded.notes)
    assert np.abs(plain.probabilities - decoded.probabilities).max() < 0.05


def test_slice_resampler_pads_with_the_empty_map_value_and_round_trips():
    from StrokePerfusionSegLib.predictor import SliceResampler, padding_values

    config = ModelConfig(inputs=("cbf", "mip"), width=1 / 16, image_size=64)
    pad = padding_values(config)  # (2 branches, 3 channels)
    resampler = SliceResampler((48, 32), 64, pad)
    x = torch.full((1, 2, 3, 48, 32), 5.0)
    network = resampler.to_network(x)
    assert network.shape == (1, 2, 3, 64, 64)
    assert torch.allclose(network[..., 32, 32], torch.tensor(5.0))
    assert torch.allclose(network[0, :, :, 32, 0], torch.as_tensor(pad))  # left padding column
    back = resampler.to_input(torch.full((1, 4, 64, 64), 0.25))
    assert back.shape == (1, 4, 48, 32) and torch.allclose(back, torch.tensor(0.25))


def test_scalar_input_resampled_before_normalising_equals_encoding_first():
    """The scalar encoding resamples its 0..1 maps, then normalises: the same input (to
    rounding) as normalising all three channels on the input grid and resampling those."""
    from StrokePerfusionSegLib.encoding import encode_inputs
    from StrokePerfusionSegLib.predictor import SliceResampler, network_input, padding_values

    config = ModelConfig(inputs=("cbf", "tmax"), width=1 / 16, image_size=64, encoding="scalar")
    rng = np.random.default_rng(2)
    images = {"cbf": rng.uniform(-5, 90, (2, 96, 72)), "tmax": rng.uniform(0, 14, (2, 96, 72))}
    full_pad = encode_inputs({n: np.zeros((1, 1, 1)) for n in config.inputs}, config.inputs, "scalar")[0, :, :, 0, 0]
    expected = SliceResampler((96, 72), 64, full_pad).to_network(
        torch.from_numpy(encode_inputs(images, config.inputs, "scalar")))
    units_first = network_input(images, config, SliceResampler((96, 72), 64, padding_values(config)), "cpu")
    assert padding_values(config).shape == (2,)
    assert units_first.shape == expected.shape == (2, 2, 3, 64, 64)
    torch.testing.assert_close(units_first, expected, rtol=0, atol=1e-5)

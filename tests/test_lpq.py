import importlib

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_sample_images

from dwstft import lpq
from dwstft.lpq import lpq_operators
from lpq_reference import decorrelation, exact_zeros, lpq_reference


def greyscale(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma as MATLAB's rgb2gray computes it (ITU-R BT.601 weights, rounded)."""
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.round(rgb.astype(np.float64) @ weights).astype(np.uint8)


def reference_batch(images: np.ndarray, n: int, decorrelate: bool, exact: bool = True):
    results = [lpq_reference(im, n, decorrelate, exact=exact) for im in images]
    return np.stack([c for c, _ in results]), np.stack([h for _, h in results])


def digits_uint8() -> np.ndarray:
    return np.round(load_digits().images * 255 / 16).astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """china.jpg and flower.jpg from scikit-learn's wheel, greyscale (427×640)."""
    bunch = load_sample_images()
    assert [f.rsplit("/", 1)[-1] for f in bunch.filenames] == ["china.jpg", "flower.jpg"]
    return [greyscale(im) for im in bunch.images]


@pytest.mark.parametrize("n", [3, 5, 7, 9])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_random_float_images_match_the_reference(n, decorrelate):
    rng = np.random.default_rng(n)
    images = rng.normal(size=(5, 23, 30)) * 40
    codes_ref, hist_ref = reference_batch(images, n, decorrelate, exact=False)
    codes = lpq(torch.from_numpy(images), n, decorrelate, mode="im")
    np.testing.assert_array_equal(codes.numpy(), codes_ref)
    np.testing.assert_array_equal(lpq(torch.from_numpy(images), n, decorrelate, mode="h"), hist_ref)


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_random_uint8_images_match_the_reference(n, decorrelate):
    rng = np.random.default_rng(10 + n)
    images = rng.integers(0, 256, size=(6, 24, 31), dtype=np.uint8)
    codes_ref, hist_ref = reference_batch(images, n, decorrelate)
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(images), n, decorrelate, mode="im"), codes_ref
    )
    np.testing.assert_array_equal(lpq(torch.from_numpy(images), n, decorrelate, mode="h"), hist_ref)


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_embedded_digits_match_the_reference(n, decorrelate):
    images = digits_uint8()[:600]
    codes_ref, hist_ref = reference_batch(images, n, decorrelate)
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(images), n, decorrelate, mode="im"), codes_ref
    )
    nh = lpq(torch.from_numpy(images), n, decorrelate)
    np.testing.assert_array_equal(nh.numpy(), hist_ref / hist_ref.sum(1, keepdims=True))


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_upscaled_digits_with_many_exact_ties(n, decorrelate):
    # Nearest-neighbour upscaling makes flat and mirror-symmetric windows: coefficients that
    # are exactly zero, where lpq.m's bits follow rounding noise.
    images = np.repeat(np.repeat(digits_uint8()[:12], 4, 1), 4, 2)
    assert sum(exact_zeros(im, n).sum() for im in images) > 1000
    codes_ref, _ = reference_batch(images, n, decorrelate)
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(images), n, decorrelate, mode="im"), codes_ref
    )


@pytest.mark.parametrize(("n", "decorrelate"), [(3, True), (3, False), (7, True), (7, False)])
def test_scikit_learn_photos_match_the_reference(photos, n, decorrelate):
    crops = np.stack([photos[0][100:260, 200:380], photos[1][150:310, 250:430]])
    codes_ref, hist_ref = reference_batch(crops, n, decorrelate)
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(crops), n, decorrelate, mode="im"), codes_ref
    )
    np.testing.assert_array_equal(lpq(torch.from_numpy(crops), n, decorrelate, mode="h"), hist_ref)


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_whole_photos_default_arguments(photos, index):
    image = photos[index]
    codes_ref, hist_ref = lpq_reference(image, 7, True)
    assert lpq(torch.from_numpy(image)[None], mode="im").shape == (1, 421, 634)
    np.testing.assert_array_equal(lpq(torch.from_numpy(image)[None], mode="im")[0], codes_ref)
    np.testing.assert_array_equal(lpq(torch.from_numpy(image)[None], mode="h")[0], hist_ref)


def test_photos_have_ties_the_reference_leaves_to_rounding(photos):
    crop = photos[0][100:260, 200:380]
    exact, _ = lpq_reference(crop, 3, True)
    rounded, _ = lpq_reference(crop, 3, True, exact=False)
    assert (exact != rounded).sum() > 100  # so the tie handling is exercised above


def test_float64_fast_pass_gives_the_same_codes(monkeypatch):
    rng = np.random.default_rng(3)
    images = torch.from_numpy(np.repeat(rng.integers(0, 4, (4, 10, 12)), 3, 1).astype(np.uint8))
    expected = lpq(images, 5, mode="im")
    # ``dwstft.lpq`` is the function; the module behind it is in sys.modules.
    lpq_module = importlib.import_module("dwstft.lpq.descriptor")
    monkeypatch.setattr(lpq_module, "_fast_dtype", lambda device: torch.float64)
    torch.testing.assert_close(lpq(images, 5, mode="im"), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("height", "width"), [(7, 7), (7, 8), (8, 7), (7, 30), (31, 7), (12, 19), (19, 12)]
)
def test_one_row_or_column_of_codes_and_odd_widths_match_the_reference(height, width):
    rng = np.random.default_rng(height * width)
    images = rng.integers(0, 256, size=(3, height, width), dtype=np.uint8)
    codes_ref, hist_ref = reference_batch(images, 7, True)
    codes = lpq(torch.from_numpy(images), 7, mode="im")
    assert codes.is_contiguous()
    np.testing.assert_array_equal(codes, codes_ref)
    np.testing.assert_array_equal(lpq(torch.from_numpy(images), 7, mode="h"), hist_ref)


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 16 * 10 * 7 * 4])
def test_chunked_fast_pass_matches_the_reference(monkeypatch, chunk_bytes):
    # 14×17 images at n = 5: responses of 16 × 10 × 7 float32 per image; chunks of one image
    # and of three (the last one partial). A dark image, bright column-constant ones (six
    # of their eight raw coefficients are exact zeros) and a flat one.
    rng = np.random.default_rng(5)
    images = np.repeat(rng.integers(150, 256, (7, 1, 17)), 14, 1).astype(np.uint8)
    images[0] = rng.integers(0, 2, (14, 17))
    images[2] = 7  # a flat image: every coefficient an exact zero
    codes_ref, _ = reference_batch(images, 5, False)
    lpq_module = importlib.import_module("dwstft.lpq.descriptor")
    monkeypatch.setattr(lpq_module, "_CHUNK_BYTES", chunk_bytes)
    codes = lpq(torch.from_numpy(images), 5, False, mode="im")
    np.testing.assert_array_equal(codes, codes_ref)


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 16 * 10 * 7 * 4])
def test_each_chunk_compares_with_its_own_images_bounds(monkeypatch, chunk_bytes):
    lpq_module = importlib.import_module("dwstft.lpq.descriptor")
    monkeypatch.setattr(lpq_module, "_CHUNK_BYTES", chunk_bytes)
    images = torch.randint(
        1, 256, (7, 14, 17), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    weight = lpq_operators(5)[2].float()[:, None]
    bounds = torch.tensor([0.0, 1e30, 0.0, 0.0, 1e30, 0.0, 1e30])
    _, unsure = lpq_module._fast_codes(images, weight, bounds)
    assert unsure.shape == (7, 10, 14)
    assert unsure[:, :, :13].all(2).all(1).tolist() == (bounds > 0).tolist()
    assert not unsure[bounds == 0, :, :13].any()


def test_packing_gives_every_code_its_byte():
    lpq_module = importlib.import_module("dwstft.lpq.descriptor")
    bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1 == 1
    assert lpq_module._pack_bits(bits).tolist() == list(range(256))
    assert lpq_module._pack_bits(bits).dtype == torch.uint8


@pytest.mark.parametrize(("n", "decorrelate"), [(3, False), (7, True), (9, True)])
def test_separable_filters_rebuild_the_lpq_filters(n, decorrelate):
    lpq_module = importlib.import_module("dwstft.lpq.descriptor")
    _, _, combined = lpq_operators(n, decorrelate)
    horizontal, vertical = lpq_module._separable_operators(n, decorrelate, 0.9)
    rebuilt = torch.einsum("imr,mc->irc", vertical, horizontal)
    # Filter i is rebuilt up to the positive scale that makes its bound's sum 1.
    scale = rebuilt.reshape(8, -1).abs().sum(1) / combined.reshape(8, -1).abs().sum(1)
    assert (scale > 0).all()
    torch.testing.assert_close(rebuilt, combined * scale[:, None, None], rtol=0, atol=1e-15)
    bound_sums = (vertical.abs() * horizontal.abs().sum(1)[None, :, None]).sum((1, 2))
    torch.testing.assert_close(bound_sums, torch.ones(8, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 9, 4), (4, 122, 61)])
def test_rare_nonzero_is_nonzero(shape):
    lpq_module = importlib.import_module("dwstft.lpq.descriptor")
    generator = torch.Generator().manual_seed(sum(shape))
    for density in (0.0, 0.02, 0.5, 1.0):
        mask = torch.rand(shape, generator=generator) < density
        assert torch.equal(lpq_module._rare_nonzero(mask), mask.nonzero())


@pytest.mark.compile
def test_compiled_pass_matches_the_reference_on_photos(photos):
    crops = np.stack([photos[0][:128, :128], photos[1][100:228, 300:428], photos[0][200:328, :128]])
    codes_ref, hist_ref = reference_batch(crops, 7, True)
    images = torch.from_numpy(crops)
    np.testing.assert_array_equal(lpq(images, mode="im", compile=True), codes_ref)
    np.testing.assert_array_equal(lpq(images, mode="h", compile=True), hist_ref)
    torch.testing.assert_close(lpq(images, compile=True), lpq(images), rtol=0, atol=0)


@pytest.mark.compile
def test_compiled_pass_in_padded_chunks_matches_the_reference(monkeypatch):
    # Chunks of three images for 8 images: the last chunk, two images, is padded to three.
    lpq_module = importlib.import_module("dwstft.lpq.fused")
    monkeypatch.setattr(lpq_module, "_CHUNK_BYTES", 3 * 3 * 20 * 17 * 4)
    rng = np.random.default_rng(8)
    images = np.repeat(rng.integers(0, 6, (8, 10, 21)), 2, 1).astype(np.uint8)
    images[3] = 9  # flat: every coefficient an exact zero
    codes_ref, hist_ref = reference_batch(images, 5, False)
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(images), 5, False, mode="im", compile=True), codes_ref
    )
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(images), 5, False, mode="h", compile=True), hist_ref
    )
    floats = rng.normal(size=(8, 20, 21)) * 30
    codes_ref, _ = reference_batch(floats, 5, False, exact=False)
    np.testing.assert_array_equal(
        lpq(torch.from_numpy(floats), 5, False, mode="im", compile=True), codes_ref
    )


def test_compiled_pass_refuses_more_images_than_its_codes_can_index(monkeypatch):
    lpq_fused = importlib.import_module("dwstft.lpq.fused")
    # The largest code value, 256 (N - 1) + 255, must fit an int32.
    assert torch.iinfo(torch.int32).max >= 256 * lpq_fused.MAX_IMAGES - 1
    monkeypatch.setattr(lpq_fused, "MAX_IMAGES", 3)
    with pytest.raises(ValueError, match=r"at most 3 images per call .* got 4; split the batch"):
        lpq(torch.zeros(4, 9, 9, dtype=torch.uint8), compile=True)


def test_int8_images_of_their_most_negative_value():
    # abs(-128) overflows in int8: the rounding bounds must come from float magnitudes.
    # Column-constant images of -128 and 0: many coefficients are exact zeros.
    rng = np.random.default_rng(12)
    images = np.repeat(rng.choice(np.array([-128, 0], dtype=np.int8), (4, 1, 15)), 12, 1)
    codes_ref, _ = reference_batch(images.astype(np.float64), 5, False)
    np.testing.assert_array_equal(lpq(torch.from_numpy(images), 5, False, mode="im"), codes_ref)


def test_compiled_pass_falls_back_to_eager_when_torch_compile_has_no_room(monkeypatch):
    lpq_fused = importlib.import_module("dwstft.lpq.fused")
    # One other shape compiled already, and room for one in all.
    monkeypatch.setattr(lpq_fused, "_compiled_shapes", {("another shape",)})
    monkeypatch.setattr(lpq_fused, "shape_limit", lambda: 1)

    def refuse(*args):
        raise AssertionError("compiled a shape beyond the limit")

    monkeypatch.setattr(lpq_fused, "fused_codes", refuse)
    images = torch.randint(0, 256, (2, 12, 13), dtype=torch.uint8)
    with pytest.warns(UserWarning, match=r"limit of 1 compiled shapes .* runs the eager pass"):
        codes = lpq(images, 5, mode="im", compile=True)
    torch.testing.assert_close(codes, lpq(images, 5, mode="im"), rtol=0, atol=0)
    assert lpq_fused._compiled_shapes == {("another shape",)}
    monkeypatch.setattr(lpq_fused, "shape_limit", lambda: 2)
    assert lpq_fused.has_room(images, 5, torch.float32)


def test_input_forms_and_dtypes_agree():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 20, 18)).astype(np.uint8)
    expected = lpq(torch.from_numpy(images), 5, mode="im")
    for variant in (
        torch.from_numpy(images)[:, None],
        torch.from_numpy(images.astype(np.int32)),
        torch.from_numpy(images.astype(np.float32)),
        torch.from_numpy(images.astype(np.float64)),
    ):
        torch.testing.assert_close(lpq(variant, 5, mode="im"), expected, rtol=0, atol=0)


def test_output_modes():
    images = torch.randint(0, 256, (2, 17, 21), dtype=torch.uint8)
    codes = lpq(images, 5, mode="im")
    counts = lpq(images, 5, mode="h")
    normalised = lpq(images, 5, mode="nh")
    assert codes.shape == (2, 13, 17) and codes.dtype == torch.uint8
    assert counts.shape == (2, 256) and counts.dtype == torch.int64
    assert counts.sum(1).tolist() == [13 * 17, 13 * 17]
    for i in range(2):
        assert (
            counts[i].tolist() == torch.bincount(codes[i].flatten().long(), minlength=256).tolist()
        )
    assert normalised.dtype == torch.float64
    expected = counts.double() / counts.sum(1, keepdim=True)
    torch.testing.assert_close(normalised, expected, rtol=0, atol=0)


def test_decorrelation_matrix():
    filters, v, combined = lpq_operators(7, True, 0.9)
    torch.testing.assert_close(v.T @ v, torch.eye(8, dtype=torch.float64), rtol=0, atol=1e-12)
    np.testing.assert_allclose(v.numpy(), decorrelation(7, 0.9), rtol=0, atol=1e-8)
    real, imag = [0, 2, 4, 6], [1, 3, 5, 7]
    for column in v.T:  # each singular vector lives on the real or on the imaginary part
        assert (column[real] == 0).all() or (column[imag] == 0).all()
        assert column[column.abs().argmax()] > 0
    torch.testing.assert_close(combined, torch.einsum("ki,kuv->iuv", v, filters))
    _, identity, same = lpq_operators(3, False)
    assert torch.equal(identity, torch.eye(8, dtype=torch.float64))
    assert filters.shape == (8, 7, 7) and same.shape == (8, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_size": 4}, "window_size must be an odd int >= 3"),
        ({"window_size": 1}, "window_size"),
        ({"rho": 1.0}, r"rho must be a number in \(0, 1\)"),
        ({"rho": 0}, "rho"),
        ({"decorrelate": 1}, "decorrelate must be True or False"),
        ({"mode": "hist"}, "mode must be one of"),
        ({"compile": 1}, "compile must be True or False"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lpq(torch.zeros(1, 10, 10), **kwargs)


def test_bad_images():
    with pytest.raises(ValueError, match=r"greyscale \(N, H, W\) or \(N, 1, H, W\)"):
        lpq(torch.zeros(2, 3, 10, 10))
    with pytest.raises(ValueError, match="smaller than window_size=7"):
        lpq(torch.zeros(2, 6, 10))
    with pytest.raises(ValueError, match="finite"):
        lpq(torch.full((1, 9, 9), float("nan")))
    with pytest.raises(ValueError, match="real numbers"):
        lpq(torch.zeros(1, 9, 9, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        lpq(np.zeros((1, 9, 9)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(photos):
    crops = torch.from_numpy(np.stack([photos[0][:128, :128], photos[1][:128, :128]]))
    for n, decorrelate in [(3, True), (7, True), (7, False)]:
        expected = lpq(crops, n, decorrelate, mode="im")
        torch.testing.assert_close(lpq(crops.cuda(), n, decorrelate, mode="im").cpu(), expected)
        compiled = lpq(crops.cuda(), n, decorrelate, mode="im", compile=True)
        torch.testing.assert_close(compiled.cpu(), expected)

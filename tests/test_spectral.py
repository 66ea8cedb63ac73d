"""musadv.spectral: the paper's STFT (Hann 1024, hop 512, 513 bins), exact inverse, batched, differentiable."""

import librosa
import numpy as np
import pytest
import torch

from musadv.spectral import REFERENCE, STFTConfig, complex_abs, istft, magnitude, n_frames, stft


def _signal(n=22050 * 2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 22050
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("config", [STFTConfig(), REFERENCE], ids=["periodic-centred", "reference"])
def test_magnitudes_match_librosa(config):
    y = _signal()
    win = "hann" if config.window == "hann" else np.hanning(config.n_fft)
    ref = np.abs(librosa.stft(y, n_fft=1024, hop_length=512, window=win, center=config.center, pad_mode="constant")).T
    ours = magnitude(y, config)
    assert ours.shape == ref.shape and ours.shape[1] == 513
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-4


def test_paper_settings_are_the_default():
    c = STFTConfig()
    assert (c.sr, c.n_fft, c.hop, c.n_bins) == (22050, 1024, 512, 513)
    assert c.window == "hann" and c.center  # periodic Hann: exact overlap-add at 50 % hop
    assert REFERENCE.window == "hann_symmetric" and not REFERENCE.center
    np.testing.assert_allclose(
        torch.hann_window(1024, periodic=False).numpy(), np.hanning(1024), atol=1e-6
    )


def test_inverse_of_forward_is_identity_everywhere_when_centred():
    y = torch.from_numpy(_signal())
    back = istft(stft(y), length=len(y))
    assert torch.max(torch.abs(back - y)) < 1e-5


def test_inverse_of_forward_is_identity_away_from_edges_with_reference_framing():
    y = torch.from_numpy(_signal())
    back = istft(stft(y, REFERENCE), REFERENCE, length=len(y))
    inner = slice(1024, n_frames(len(y), REFERENCE) * 512)
    assert torch.max(torch.abs(back[inner] - y[inner])) < 1e-5


def test_frame_counts():
    assert n_frames(661500, STFTConfig()) == 1292 == magnitude(np.zeros(661500, np.float32)).shape[0]
    assert n_frames(661500, REFERENCE) == 1290
    assert n_frames(1000, REFERENCE) == 0


def test_batched_equals_one_by_one():
    ys = torch.from_numpy(np.stack([_signal(8000, s) for s in range(3)]))
    batch = stft(ys)
    assert batch.shape == (3, n_frames(8000, STFTConfig()), 513)
    for i in range(3):
        torch.testing.assert_close(batch[i], stft(ys[i]))
    torch.testing.assert_close(istft(batch, length=8000), torch.stack([istft(batch[i], length=8000) for i in range(3)]))
    assert magnitude(ys.reshape(3, 1, 8000)).shape == (3, 1, batch.shape[1], 513)


def test_differentiable_through_both_transforms():
    cfg = STFTConfig(sr=8000, n_fft=16, hop=8)
    y = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: magnitude(x, cfg).sum(dim=-1) ** 0.5, (y,))
    spec = stft(y.detach(), cfg).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: istft(s, cfg, length=64), (spec,))


def test_inverse_is_a_least_squares_projection():
    """istft of an arbitrary spectrum gives the signal whose STFT is nearest; projecting twice changes nothing."""
    rng = np.random.default_rng(1)
    spec = torch.from_numpy(rng.standard_normal((20, 513)) + 1j * rng.standard_normal((20, 513)))
    y1 = istft(spec)
    y2 = istft(stft(y1))
    torch.testing.assert_close(y1, y2)
    # Least squares: nudging the solution never brings its STFT closer to the target.
    base = torch.linalg.norm(stft(y1) - spec)
    for _ in range(3):
        nudged = y1 + 1e-3 * torch.from_numpy(rng.standard_normal(y1.shape))
        assert torch.linalg.norm(stft(nudged) - spec) >= base


@pytest.mark.parametrize("config", [STFTConfig(n_fft=512, hop=128), STFTConfig(n_fft=1000, hop=300),
                                    STFTConfig(n_fft=256, hop=256, window="hann_symmetric", center=False)],
                         ids=["quarter-hop", "hop-not-dividing", "no-overlap"])
def test_inverse_of_forward_is_identity_for_other_framings(config):
    """The window envelope the inverse divides by is right all along a long signal, ends included."""
    y = torch.from_numpy(_signal(22050 * 20))
    back = istft(stft(y, config), config, length=len(y))
    if config.hop == config.n_fft:  # no overlap: samples where the window is ~0 cannot be recovered
        covered = torch.hann_window(256, periodic=False).repeat(len(y) // 256 + 1)[: len(y)] ** 2 > 1e-3
        covered[n_frames(len(y), config) * 256 :] = False
        assert torch.max(torch.abs(back - y)[covered]) < 1e-4
    else:
        inner = slice(config.n_fft, len(y) - config.n_fft) if not config.center else slice(None)
        assert torch.max(torch.abs(back[inner] - y[inner])) < 1e-5


def test_complex_abs_is_the_modulus():
    spec = stft(torch.from_numpy(_signal()))
    spec[3, :10] = 0
    torch.testing.assert_close(complex_abs(spec), spec.abs(), rtol=1e-6, atol=0)
    leaf = spec.clone().requires_grad_(True)
    complex_abs(leaf).sum().backward()  # the gradient is defined where the spectrum is 0
    assert torch.isfinite(torch.view_as_real(leaf.grad)).all()

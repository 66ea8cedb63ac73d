"""Irrelevant transformations: changes to a recording that leave its music, and so its genre, as it was.

The "method of irrelevant transformations" (the paper's refs. [48], [52], [53]) asks whether a
system's answers follow such changes. Each transformation here is a pure function of a signal,
its rate and its parameters, returning the transformed signal (float32, the input's shape); the
size of the change is measured by the caller (``musadv.attack.snr_db`` against the original).

``eq``
    Minor linear time-invariant filtering: a random smooth gain curve within +-``max_db`` over
    octave bands, applied with zero phase (a real, symmetric frequency response).
``lowpass``
    A Butterworth low-pass (default 4th order at 9 kHz, as the authors' WASPAA 2015 follow-up),
    applied once forwards: the digital Butterworth's magnitude response (bilinear transform,
    -3 dB at the cut-off, ``1 / sqrt(1 + (tan(pi f / sr) / tan(pi fc / sr))^(2 order))``: at
    least ``6 order`` dB per octave beyond), its phase minimum.
``stretch``
    Pitch-preserving time-stretch with Rubber Band (through ``pedalboard``). Chosen over
    librosa's phase vocoder for speed (30 s of a tone at 22.05 kHz: 0.16 s against 3.7 s) and
    because Rubber Band keeps transients crisp where a plain phase vocoder smears them; both
    kept a 440 Hz tone's pitch.
``gain``
    A change of level in dB.
``mp3``
    An MP3 round-trip through libsndfile (LAME to encode, mpg123 to decode) at a constant
    bitrate: the signal rounded to 16 bits, encoded, decoded and aligned with the original.
``noise``
    White Gaussian noise added at a set SNR (dB, against the whole signal, every channel): a
    hiss, a noisy channel.
``resample``
    Resampling to a lower rate (SoX's resampler, as every file is resampled here) and back: what
    a system or a channel working at that rate keeps of the music (nothing above half the rate).
``room``
    Playing the recording in a room: a shoebox room's impulse response from ``pyroomacoustics``
    (image sources), its size, absorption and the source's and microphone's places drawn at
    random, its reverberation time (RT60, Schroeder integration of the response) the one drawn
    to within a few per cent; convolved with every channel, aligned on the direct sound and
    scaled to the response's unit energy, so that the room is neither a delay nor a gain.

:class:`Transformation` holds one kind with its settings and draws the parameters of random
trials (``eq``, ``stretch``, ``gain``, ``noise`` and ``room`` are random; ``lowpass``, ``mp3`` and
``resample`` are not), so that
the horse tests (:mod:`musadv.horse`) and the survival of adversaries
(:mod:`musadv.survival`) apply every kind the same way.

A stretched recording has another length, so its SNR against the original is not defined; the
size of a stretch is its rate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from . import audio, spectral
from .errors import MusadvError

__all__ = ["eq", "eq_curve", "lowpass", "stretch", "gain", "mp3", "noise", "resample", "room", "room_impulse_response", "lowpass_sos", "rt60_schroeder", "mp3_available", "mp3_rate", "mp3_bitrate", "random_eq_gains", "EQ_BANDS_HZ",
           "Transformation", "KINDS", "MP3_RATES"]

#: The kinds of :class:`Transformation`.
KINDS = ("eq", "stretch", "lowpass", "gain", "mp3", "noise", "resample", "room")
#: Sampling rates (Hz) MPEG-1, 2 and 2.5 layer III can hold.
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

#: Centre frequencies (Hz) of the octave bands whose gains the EQ draws.
EQ_BANDS_HZ = (31.25, 62.5, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)


def _as_2d(y) -> tuple[np.ndarray, bool]:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2):
        raise ValueError(f"signal must be (n_samples,) or (n_channels, n_samples), not {y.shape}")
    return np.atleast_2d(y), y.ndim == 1


def random_eq_gains(rng: np.random.Generator, max_db: float = 3.0) -> np.ndarray:
    """Gains in dB for :data:`EQ_BANDS_HZ`, uniform in ``[-max_db, max_db]``."""
    if not max_db >= 0:
        raise ValueError(f"max_db must be >= 0, not {max_db}")
    return rng.uniform(-max_db, max_db, len(EQ_BANDS_HZ))


def eq_curve(freqs, gains_db) -> np.ndarray:
    """The EQ's gain in dB at ``freqs`` (Hz): linear in log-frequency between band centres, flat beyond.

    Between two centres the curve never leaves the range of their gains, so it stays within
    +-``max_db`` of :func:`random_eq_gains` everywhere.
    """
    gains_db = np.asarray(gains_db, dtype=float)
    if gains_db.shape != (len(EQ_BANDS_HZ),):
        raise ValueError(f"gains_db must have one gain per band ({len(EQ_BANDS_HZ)}), not shape {gains_db.shape}")
    f = np.maximum(np.asarray(freqs, dtype=float), EQ_BANDS_HZ[0])
    return np.interp(np.log2(f), np.log2(EQ_BANDS_HZ), gains_db)


def eq(y, sr: int, gains_db) -> np.ndarray:
    """Zero-phase EQ of ``y`` by the curve of :func:`eq_curve` (one FFT of the whole signal per channel).

    Parameters
    ----------
    y : np.ndarray
        ``(n_samples,)`` or ``(n_channels, n_samples)`` at ``sr`` Hz.
    sr : int
        Sampling rate in Hz.
    gains_db : array-like
        One gain in dB per band of :data:`EQ_BANDS_HZ` (e.g. from :func:`random_eq_gains`).

    Returns
    -------
    np.ndarray
        Float32, shaped like ``y``.
    """
    x, mono = _as_2d(y)
    n = x.shape[-1]
    freqs = np.fft.rfftfreq(n, 1 / sr)
    response = 10 ** (eq_curve(freqs, gains_db) / 20)
    out = spectral.irfft(spectral.rfft(x) * response, n).astype(np.float32)
    return out[0] if mono else out


def lowpass(y, sr: int, cutoff_hz: float = 9000.0, order: int = 4) -> np.ndarray:
    """Butterworth low-pass of ``order`` at ``cutoff_hz``, applied once forwards (second-order sections).

    A cut-off at or above the Nyquist frequency ``sr / 2`` leaves nothing to remove (a 16 kHz
    file holds nothing above 8 kHz): ``y`` is returned unchanged.

    Raises
    ------
    ValueError
        If the cut-off is not above 0 or the order is below 1.
    """
    if not cutoff_hz > 0:
        raise ValueError(f"cutoff_hz must be > 0, not {cutoff_hz:g}")
    if order < 1:
        raise ValueError(f"order must be >= 1, not {order}")
    x, mono = _as_2d(y)
    if cutoff_hz >= sr / 2:
        return np.array(y, dtype=np.float32)
    out = sps.sosfilt(lowpass_sos(sr, cutoff_hz, order), x.astype(np.float64), axis=-1).astype(np.float32)
    return out[0] if mono else out


def lowpass_sos(sr: int, cutoff_hz: float, order: int) -> np.ndarray:
    """The second-order sections of :func:`lowpass`'s digital Butterworth (cut-off below ``sr / 2``)."""
    return sps.butter(order, cutoff_hz, btype="low", fs=sr, output="sos")


def stretch(y, sr: int, rate: float) -> np.ndarray:
    """Pitch-preserving time-stretch: ``rate`` > 1 plays faster (the result lasts ``1 / rate`` as long).

    Parameters
    ----------
    y : np.ndarray
        ``(n_samples,)`` or ``(n_channels, n_samples)`` at ``sr`` Hz.
    sr : int
        Sampling rate in Hz.
    rate : float
        Tempo factor, > 0 (e.g. in ``[0.94, 1.06]`` for the 6 % of the paper's ref. [53]).

    Returns
    -------
    np.ndarray
        Float32, ``(round(n_samples / rate),)`` or ``(n_channels, ...)``.
    """
    from pedalboard import time_stretch

    if not rate > 0:
        raise ValueError(f"rate must be > 0, not {rate}")
    x, mono = _as_2d(y)
    out = time_stretch(np.ascontiguousarray(x), float(sr), stretch_factor=float(rate), high_quality=True)
    out = np.asarray(out, dtype=np.float32)
    return out[0] if mono else out


def gain(y, gain_db: float) -> np.ndarray:
    """``y`` scaled by ``gain_db`` dB (float32; clipping is for whoever writes it to decide)."""
    x = np.asarray(y, dtype=np.float32)
    return (x * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def noise(y, snr_db: float, seed: int) -> np.ndarray:
    """``y`` plus white Gaussian noise (drawn from ``seed``) whose energy is ``snr_db`` dB under ``y``'s.

    The noise is scaled so that ``musadv.attack.snr_db(y, noise(y, ...))`` is ``snr_db``
    exactly (before any rounding); a silent ``y`` is returned unchanged.
    """
    x = np.asarray(y, dtype=np.float32)
    n = np.random.default_rng(seed).standard_normal(x.shape)
    energy = float(np.square(x, dtype=np.float64).sum())
    if energy == 0:
        return x.copy()
    n *= np.sqrt(energy / float(np.square(n).sum())) / 10 ** (snr_db / 20)
    return (x + n).astype(np.float32)


def resample(y, sr: int, resample_sr: int) -> np.ndarray:
    """``y`` resampled to ``resample_sr`` Hz and back to ``sr`` Hz (SoX 'HQ'); unchanged when ``resample_sr >= sr``.

    Returns
    -------
    np.ndarray
        Float32, shaped like ``y``.
    """
    x, mono = _as_2d(y)
    if resample_sr >= sr:
        return np.array(y, dtype=np.float32)
    out = audio.resample(audio.resample(x, sr, resample_sr), resample_sr, sr)
    n = x.shape[-1]
    out = out[:, :n] if out.shape[-1] >= n else np.pad(out, ((0, 0), (0, n - out.shape[-1])))
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[0] if mono else out


def mp3_available() -> bool:
    """Whether the installed libsndfile can encode MP3 (1.1.0 and later)."""
    import soundfile as sf

    return "MP3" in sf.available_formats()


def _mp3_bitrates(sr: int) -> tuple[int, int]:
    """The constant bitrates (kbps) libsndfile maps its compression level onto at ``sr`` Hz."""
    if sr >= 32000:
        return 32, 320  # MPEG-1
    if sr >= 16000:
        return 8, 160  # MPEG-2
    return 8, 64  # MPEG-2.5


def mp3_rate(sr: int) -> int:
    """The rate (Hz) at which :func:`mp3` codes a signal at ``sr`` Hz: the next one MP3 can hold."""
    return next((r for r in MP3_RATES if r >= sr), MP3_RATES[-1])


def mp3_bitrate(sr: int, bitrate_kbps: int) -> int:
    """The bitrate (kbps) :func:`mp3` asks of the encoder for a signal at ``sr`` Hz: capped by the MPEG version."""
    return int(min(bitrate_kbps, _mp3_bitrates(mp3_rate(sr))[1]))


def mp3(y, sr: int, bitrate_kbps: int = 128) -> np.ndarray:
    """A 16-bit MP3 round-trip at a constant bitrate: rounded to 16 bits, encoded, decoded.

    The decoder usually removes the encoder's delay (the LAME header says how much); where it
    does not (at low bitrates libsndfile writes no such header), the decoded signal is aligned
    with the original by cross-correlation and cut to its length. Rates MP3 cannot hold are
    resampled to the next one it can (48 kHz at most) and back. More than two channels are
    encoded one by one.

    Parameters
    ----------
    y : np.ndarray
        ``(n_samples,)`` or ``(n_channels, n_samples)`` at ``sr`` Hz.
    sr : int
        Sampling rate in Hz.
    bitrate_kbps : int
        Constant bitrate in kbit/s, from 32; capped at what the coded rate allows (160 kbps at
        16-24 kHz, 64 kbps below 16 kHz).

    Returns
    -------
    np.ndarray
        Float32, shaped like ``y``.

    Raises
    ------
    MusadvError
        If the installed libsndfile cannot encode MP3.
    """
    import io

    import soundfile as sf

    if not 32 <= bitrate_kbps <= 320:
        raise ValueError(f"bitrate_kbps must be between 32 and 320, not {bitrate_kbps}")
    if not mp3_available():
        raise MusadvError(f"this libsndfile ({sf.__libsndfile_version__}) cannot encode MP3; 1.1.0 or later can")
    x, mono = _as_2d(y)
    n = x.shape[-1]
    rate = mp3_rate(sr)
    lo, hi = _mp3_bitrates(rate)
    kbps = mp3_bitrate(sr, bitrate_kbps)
    coded = audio.quantize_pcm16(audio.resample(x, sr, rate))
    groups = [coded] if len(coded) <= 2 else [c[None] for c in coded]
    decoded = []
    for part in groups:
        buf = io.BytesIO()
        # libsndfile's constant bitrate is hi - level * (hi - lo); it refuses level 1, and LAME
        # rounds 32.3 kbps to the 32 a level just below gives.
        level = min((hi - kbps) / (hi - lo), 0.999)
        sf.write(buf, part.T, rate, format="MP3", bitrate_mode="CONSTANT", compression_level=level)
        buf.seek(0)
        z, _ = sf.read(buf, dtype="float32", always_2d=True)
        decoded.append(z.T)
    z = audio.resample(np.concatenate(decoded), rate, sr)
    z = _align(z, x, n)
    return z[0] if mono else z


def rt60_schroeder(h, sr: int, from_db: float = -5.0, to_db: float = -25.0) -> float:
    """Reverberation time (s) of an impulse response by Schroeder's backward integration.

    The energy decay curve ``10 log10`` of the backward-integrated squared response, normalised
    to 0 dB; a straight line fitted (least squares) between ``from_db`` and ``to_db`` (T20 by
    default) and extrapolated to a 60 dB decay.

    Raises
    ------
    ValueError
        If the response never decays to ``to_db``.
    """
    h = np.asarray(h, dtype=np.float64)
    edc = np.cumsum(np.square(h)[::-1])[::-1]
    if edc[0] <= 0:
        raise ValueError("a silent impulse response has no reverberation time")
    with np.errstate(divide="ignore"):
        edc_db = 10 * np.log10(edc / edc[0])
    fit = np.flatnonzero((edc_db <= from_db) & (edc_db >= to_db))
    if len(fit) < 2 or edc_db[-1] > to_db:
        raise ValueError(f"the impulse response does not decay by {-to_db:g} dB")
    slope = np.polyfit(fit / sr, edc_db[fit], 1)[0]  # dB per second, negative
    return float(-60.0 / slope)


#: Tries at absorption per room draw before its RT60 is accepted (see :func:`room_impulse_response`).
ROOM_FITS = 4
#: How close (relative) a room's measured RT60 must come to the one asked for.
ROOM_RT60_TOLERANCE = 0.03


def room_impulse_response(sr: int, rt60_s: float, dims_m, source_m, mic_m) -> np.ndarray:
    """The impulse response of a shoebox room with the RT60 asked for, from ``pyroomacoustics``.

    The walls' absorption starts at Sabine's (``pyroomacoustics.inverse_sabine``); image sources
    of a finite order make a response that decays otherwise than Sabine says, so the absorption
    is scaled by the ratio of measured (:func:`rt60_schroeder`) to asked RT60 until they agree
    within :data:`ROOM_RT60_TOLERANCE` (at most :data:`ROOM_FITS` responses).

    Parameters
    ----------
    sr : int
        Rate of the response (Hz).
    rt60_s : float
    dims_m, source_m, mic_m : sequence of 3 floats
        The room's size and the places of the source and microphone inside it (m).

    Returns
    -------
    np.ndarray
        float64, starting at the direct sound, of unit energy.
    """
    try:
        import pyroomacoustics as pra
    except ImportError:  # pragma: no cover - a dependency of musadv
        raise MusadvError("the room transformation needs pyroomacoustics (pip install pyroomacoustics)") from None

    absorption, max_order = pra.inverse_sabine(rt60_s, list(dims_m))
    h = None
    for _ in range(ROOM_FITS):
        room = pra.ShoeBox(list(dims_m), fs=sr, materials=pra.Material(float(absorption)), max_order=max_order)
        room.add_source(list(source_m))
        room.add_microphone(list(mic_m))
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        measured = rt60_schroeder(h, sr)
        if abs(measured / rt60_s - 1) <= ROOM_RT60_TOLERANCE:
            break
        absorption = min(1.0, absorption * measured / rt60_s)  # Sabine: RT60 is inversely proportional to it
    h = h[int(np.argmax(np.abs(h))):]
    return h / np.sqrt(np.square(h).sum())


#: Room responses kept by :meth:`Transformation.room_response`: a horse test plays every recording in the same rooms.
ROOMS_KEPT = 32


@functools.lru_cache(maxsize=ROOMS_KEPT)
def _kept_room(sr: int, rt60_s: float, dims_m: tuple, source_m: tuple, mic_m: tuple) -> np.ndarray:
    h = room_impulse_response(sr, rt60_s, dims_m, source_m, mic_m)
    h.setflags(write=False)  # shared by every caller
    return h


def room(y, sr: int, rir) -> np.ndarray:
    """``y`` (``(n_samples,)`` or ``(n_channels, n_samples)``) convolved with the impulse response ``rir``
    (every channel; as long as ``y``: the reverberant tail after its end is dropped)."""
    x, mono = _as_2d(y)
    out = sps.fftconvolve(x.astype(np.float64), np.asarray(rir, dtype=np.float64)[None], axes=-1)[:, : x.shape[-1]]
    out = out.astype(np.float32)
    return out[0] if mono else out


def _align(z: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """``z`` (n_channels, m) shifted to line up with ``x`` and cut or padded to ``n`` samples."""
    lag = 0
    if z.shape[-1] != n:
        # The encoder's delay: at most a few MP3 frames (1152 samples each) beyond the length difference.
        most = max(z.shape[-1] - n, 0) + 2304
        a, b = z.mean(0).astype(np.float64), x.mean(0).astype(np.float64)
        seg = min(n, 1 << 17)
        start = max((n - seg) // 2, 0)
        ref = b[start : start + seg - most] if seg > most else b[start : start + seg]
        window = a[start : start + len(ref) + most]
        scores = sps.correlate(window, ref, mode="valid", method="fft")
        lag = int(np.argmax(scores)) if len(scores) else 0
    out = z[:, lag : lag + n]
    if out.shape[-1] < n:
        out = np.pad(out, ((0, 0), (0, n - out.shape[-1])))
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class Transformation:
    """One kind of irrelevant transformation with its settings; random kinds draw a change per trial.

    Parameters
    ----------
    kind : {'eq', 'stretch', 'lowpass', 'gain', 'mp3', 'noise', 'resample', 'room'}
    max_db : float, optional
        ``eq``: every band's gain uniform in +-``max_db`` dB (default 3); ``gain``: the level
        change uniform in +-``max_db`` dB (default 6).
    max_rate_change : float
        ``stretch``: the tempo factor uniform in ``[1 - r, 1 + r]`` (default 0.06, the paper's
        ref. [53]).
    cutoff_hz : float
        ``lowpass``: cut-off in Hz (default 9000).
    order : int
        ``lowpass``: filter order (default 4).
    bitrate_kbps : int
        ``mp3``: constant bitrate in kbit/s (default 128).
    snr_db : float
        ``noise``: the SNR of the added white noise in dB (default 30).
    resample_sr : int
        ``resample``: the lower rate in Hz (default 16000).
    rt60_s : tuple of float
        ``room``: the reverberation time (s) uniform in this range (default 0.2 to 0.8 s); the
        room 4-10 x 3-8 x 2.5-4 m, source and microphone at least 0.5 m from every wall and
        1 m apart.
    """

    kind: str
    max_db: float | None = None
    max_rate_change: float = 0.06
    cutoff_hz: float = 9000.0
    order: int = 4
    bitrate_kbps: int = 128
    snr_db: float = 30.0
    resample_sr: int = 16000
    rt60_s: tuple = (0.2, 0.8)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.max_db is not None and not self.max_db >= 0:
            raise ValueError(f"max_db must be >= 0, not {self.max_db}")
        if not 0 <= self.max_rate_change < 1:
            raise ValueError(f"max_rate_change must be in [0, 1), not {self.max_rate_change}")
        if not self.cutoff_hz > 0:
            raise ValueError(f"cutoff_hz must be > 0, not {self.cutoff_hz}")
        if self.order < 1:
            raise ValueError(f"order must be >= 1, not {self.order}")
        if not (len(self.rt60_s) == 2 and 0 < self.rt60_s[0] <= self.rt60_s[1] <= 3.0):
            raise ValueError(f"rt60_s must be (low, high) seconds with 0 < low <= high <= 3, not {self.rt60_s}")
        if not 32 <= self.bitrate_kbps <= 320:
            raise ValueError(f"bitrate_kbps must be between 32 and 320, not {self.bitrate_kbps}")
        if not np.isfinite(self.snr_db):
            raise ValueError(f"snr_db must be a finite number of dB, not {self.snr_db}")
        if not self.resample_sr >= 1000:
            raise ValueError(f"resample_sr must be at least 1000 Hz, not {self.resample_sr}")

    @property
    def random(self) -> bool:
        """Whether trials differ: ``lowpass``, ``mp3`` and ``resample`` make the same change every time."""
        return self.kind in ("eq", "stretch", "gain", "noise", "room")

    @property
    def db(self) -> float:
        """The bound in dB of ``eq`` and ``gain`` (their defaults where ``max_db`` is not given)."""
        return self.max_db if self.max_db is not None else (6.0 if self.kind == "gain" else 3.0)

    def settings(self) -> dict:
        """The settings that matter to this kind (what a run records and checks on resuming)."""
        keys = {"eq": {"max_db": self.db}, "gain": {"max_db": self.db},
                "stretch": {"max_rate_change": self.max_rate_change},
                "lowpass": {"cutoff_hz": self.cutoff_hz, "order": self.order},
                "mp3": {"bitrate_kbps": self.bitrate_kbps}, "noise": {"snr_db": self.snr_db},
                "resample": {"resample_sr": self.resample_sr}, "room": {"rt60_s": list(self.rt60_s)}}[self.kind]
        return {"kind": self.kind, **keys}

    def describe(self) -> str:
        """The transformation in words, for reports."""
        return {"eq": f"random EQ within +-{self.db:g} dB over {len(EQ_BANDS_HZ)} octave bands (zero-phase)",
                "gain": f"random level change within +-{self.db:g} dB",
                "stretch": f"pitch-preserving time-stretch by a factor in [{1 - self.max_rate_change:g}, "
                           f"{1 + self.max_rate_change:g}] (Rubber Band)",
                "lowpass": f"order-{self.order} Butterworth low-pass at {self.cutoff_hz:g} Hz",
                "mp3": f"16-bit MP3 round-trip at {self.bitrate_kbps} kbps (constant bitrate)",
                "noise": f"white noise at {self.snr_db:g} dB SNR",
                "resample": f"resampled to {self.resample_sr} Hz and back (SoX)",
                "room": f"a random shoebox room, RT60 {self.rt60_s[0]:g} to {self.rt60_s[1]:g} s (pyroomacoustics)"}[self.kind]

    def draw(self, rng: np.random.Generator) -> dict:
        """The parameters of one trial (JSON-ready; the same for every trial of a kind that is not random)."""
        if self.kind == "eq":
            return {"gains_db": [round(float(g), 4) for g in random_eq_gains(rng, self.db)]}
        if self.kind == "gain":
            return {"gain_db": round(float(rng.uniform(-self.db, self.db)), 4)}
        if self.kind == "stretch":
            return {"rate": round(float(rng.uniform(1 - self.max_rate_change, 1 + self.max_rate_change)), 6)}
        if self.kind == "lowpass":
            return {"cutoff_hz": self.cutoff_hz, "order": self.order}
        if self.kind == "room":
            return _draw_room(rng, self.rt60_s)
        if self.kind == "noise":
            return {"snr_db": self.snr_db, "noise_seed": int(rng.integers(2**31))}
        if self.kind == "resample":
            return {"resample_sr": self.resample_sr}
        return {"bitrate_kbps": self.bitrate_kbps}

    def room_response(self, sr: int, params: dict) -> np.ndarray:
        """The impulse response at ``sr`` Hz of a ``room`` draw (:func:`room_impulse_response`; read-only,
        simulated once per process for each of the last :data:`ROOMS_KEPT` rooms asked for)."""
        return _kept_room(int(sr), float(params["rt60_s"]), *(tuple(map(float, params[k])) for k in ("dims_m", "source_m", "mic_m")))

    def apply(self, y, sr: int, params: dict) -> np.ndarray:
        """``y`` (``(n_samples,)`` or ``(n_channels, n_samples)`` at ``sr`` Hz) transformed with ``params``.

        The result is float32; its length is ``y``'s except for ``stretch``.
        """
        if self.kind == "eq":
            return eq(y, sr, params["gains_db"])
        if self.kind == "gain":
            return gain(y, params["gain_db"])
        if self.kind == "stretch":
            return stretch(y, sr, params["rate"])
        if self.kind == "lowpass":
            return lowpass(y, sr, params["cutoff_hz"], params["order"])
        if self.kind == "room":
            return room(y, sr, self.room_response(sr, params))
        if self.kind == "noise":
            return noise(y, params["snr_db"], params["noise_seed"])
        if self.kind == "resample":
            return resample(y, sr, params["resample_sr"])
        return mp3(y, sr, params["bitrate_kbps"])


def _draw_room(rng: np.random.Generator, rt60_range: tuple) -> dict:
    """A room draw: RT60, size, and source and microphone places (see :class:`Transformation`)."""
    dims = np.array([rng.uniform(4, 10), rng.uniform(3, 8), rng.uniform(2.5, 4)])
    place = lambda: rng.uniform(0.5, dims - 0.5)  # noqa: E731
    source = place()
    mic = place()
    while np.linalg.norm(mic - source) < 1.0:
        mic = place()
    r = lambda v: [round(float(c), 3) for c in v]  # noqa: E731
    return {"rt60_s": round(float(rng.uniform(*rt60_range)), 4), "dims_m": r(dims), "source_m": r(source), "mic_m": r(mic)}

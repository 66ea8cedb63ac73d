"""Reading and writing audio files.

Decoding goes through libsndfile (``soundfile``), which reads WAV, AU, FLAC, OGG/Vorbis and MP3;
resampling uses the SoX resampler (``soxr``). Every failure is raised as :class:`AudioError`
with a one-line message that names the file, so that batch jobs can skip and list bad files.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import AudioError
from .io import write_bytes_atomic

__all__ = ["decode", "conform", "resample", "load", "save", "quantize_pcm16", "check_signal", "AUDIO_EXTENSIONS", "SILENCE_DB"]

#: File name endings recognised as audio when scanning folders.
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3")

#: A recording whose RMS level is below this (dB relative to full scale) counts as silent:
#: 16-bit dither alone sits near -101 dBFS, so nothing musical is lost by this bound.
SILENCE_DB = -90.0


def _declared_wav_bytes(fh) -> tuple[int, int] | None:
    """Return (declared size, offset) of the RIFF/WAVE ``data`` chunk, or None if not found."""
    header = fh.read(12)
    if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
        return None
    endian = "<" if header[:4] == b"RIFF" else ">"
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        cid, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
        if cid == b"data":
            return size, fh.tell()
        fh.seek(size + (size & 1), os.SEEK_CUR)


def _check_truncated(path: Path) -> None:
    """Raise if a WAV or AU header promises more sample bytes than the file holds.

    libsndfile silently clamps such files to the bytes present, which would hide a broken
    download or copy; the header is the only place the intended length is recorded.
    """
    suffix = path.suffix.lower()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if suffix == ".wav":
            found = _declared_wav_bytes(fh)
            # 0 and 0xFFFFFFFF mean "unknown length" (streamed writers); nothing to check then.
            if found and found[0] not in (0, 0xFFFFFFFF) and found[1] + found[0] > size:
                missing = found[1] + found[0] - size
                raise AudioError(f"{path}: truncated WAV file ({missing} bytes of audio data missing)")
        elif suffix in (".au", ".snd"):
            header = fh.read(12)
            if len(header) == 12 and header[:4] == b".snd":
                offset, nbytes = struct.unpack(">II", header[4:12])
                if nbytes != 0xFFFFFFFF and offset + nbytes > size:
                    missing = offset + nbytes - size
                    raise AudioError(f"{path}: truncated AU file ({missing} bytes of audio data missing)")


#: libsndfile formats whose header states the exact number of samples: a file that decodes to
#: fewer is really missing data. MP3 and Ogg (Vorbis, Opus) only estimate it (encoder delay,
#: padding, pre-skip, files without a length tag), so a shortfall there is not an error.
EXACT_LENGTH_FORMATS = ("WAV", "WAVEX", "W64", "RF64", "AU", "AIFF", "CAF", "FLAC")


def decode(
    path: str | os.PathLike,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file as it is: every channel, at the file's own sampling rate.

    Parameters
    ----------
    path : str or path-like
        WAV, AU, FLAC, AIFF, OGG (Vorbis, Opus) or MP3 file.
    offset : float
        Start reading this many seconds into the file.
    duration : float or None
        Read at most this many seconds (``None``: to the end). Only this part is decoded,
        so taking the first 30 s of a long track is cheap.

    Returns
    -------
    y : np.ndarray, float32
        Shape ``(n_channels, n_samples)``, nominally in [-1, 1].
    sr : int
        The file's sampling rate in Hz.

    Raises
    ------
    AudioError
        If the file is missing, empty, not audio, corrupt, or truncated (a format that states
        its exact length, see :data:`EXACT_LENGTH_FORMATS`, holding fewer samples).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(f"{path}: offset must be >= 0 s and duration > 0 s")
    _check_truncated(path)
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr, container = f.samplerate, f.format
            expected = f.frames
            start = int(round(offset * native_sr))
            if start > 0:
                if start >= expected:
                    raise AudioError(f"{path}: offset {offset} s is past the end of the file")
                f.seek(start)
            count = -1 if duration is None else int(round(duration * native_sr))
            data = f.read(frames=count, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        reason = str(exc).replace("\n", " ")
        # libsndfile repeats the path in its message; keep only what went wrong.
        reason = reason.replace(f"Error opening {str(path)!r}: ", "").strip()
        raise AudioError(f"{path}: cannot decode audio ({reason})") from None
    wanted = expected - start if duration is None else min(count, expected - start)
    if len(data) < wanted and container in EXACT_LENGTH_FORMATS:
        raise AudioError(
            f"{path}: truncated file (decoded {len(data)} of {wanted} samples the header announces)"
        )
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no audio samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(native_sr)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(..., n_samples)`` from ``sr_in`` to ``sr_out`` Hz with the SoX resampler ('HQ').

    The output has ``round(n_samples * sr_out / sr_in)`` samples, aligned with the input.
    """
    if sr_in == sr_out:
        return y
    # soxr works on (samples, channels).
    return np.ascontiguousarray(soxr.resample(np.asarray(y).T, sr_in, sr_out, quality="HQ").T, dtype=np.float32)


def conform(y: np.ndarray, sr_in: int, sr: int | None, mono: bool = True) -> np.ndarray:
    """What a model hears of decoded audio: channels averaged (``mono``), resampled to ``sr`` Hz.

    :func:`load` is :func:`decode` followed by this; the adversary calls it on the samples it
    is about to write, so that it judges exactly what decoding the file will give.

    Parameters
    ----------
    y : np.ndarray, float32
        ``(n_channels, n_samples)`` at ``sr_in`` Hz.
    sr_in : int
    sr : int or None
        Target rate in Hz; ``None`` keeps ``sr_in``.
    mono : bool

    Returns
    -------
    np.ndarray, float32
        ``(n_samples',)`` if ``mono`` else ``(n_channels, n_samples')``.
    """
    if mono:
        y = y.mean(axis=0)
    return np.ascontiguousarray(resample(y, sr_in, sr or sr_in), dtype=np.float32)


def load(
    path: str | os.PathLike,
    sr: int | None = 22050,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file to a float32 signal at a chosen rate: :func:`decode`, then :func:`conform`.

    Parameters
    ----------
    path : str or path-like
        WAV, AU, FLAC, AIFF, OGG (Vorbis, Opus) or MP3 file.
    sr : int or None
        Target sampling rate in Hz; ``None`` keeps the file's own rate.
    mono : bool
        Average all channels into one.
    offset : float
        Start reading this many seconds into the file.
    duration : float or None
        Read at most this many seconds (``None``: to the end).

    Returns
    -------
    y : np.ndarray, float32
        Shape ``(n_samples,)`` if ``mono`` else ``(n_channels, n_samples)``, in [-1, 1].
    sr : int
        Sampling rate of ``y`` in Hz.

    Raises
    ------
    AudioError
        As :func:`decode`.
    """
    y, native_sr = decode(path, offset, duration)
    return conform(y, native_sr, sr, mono), int(sr or native_sr)


def check_signal(y: np.ndarray, sr: int, min_samples: int, name: str = "signal") -> None:
    """Raise :class:`AudioError` if a decoded signal is too short or silent to analyse.

    Parameters
    ----------
    y : np.ndarray
        Mono signal.
    sr : int
        Sampling rate in Hz (for the message).
    min_samples : int
        Fewest samples that make one analysis element (e.g. one STFT frame of 1024 samples).
    name : str
        File name or label to put in the message.
    """
    if y.shape[-1] < min_samples:
        raise AudioError(
            f"{name}: too short ({y.shape[-1] / sr:.3f} s; one analysis element needs "
            f"{min_samples} samples = {min_samples / sr:.3f} s)"
        )
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    level = 20 * np.log10(rms) if rms > 0 else -np.inf
    if level < SILENCE_DB:
        raise AudioError(f"{name}: silent (RMS level {level:.1f} dBFS, below {SILENCE_DB:.0f} dBFS)")


def save(
    path: str | os.PathLike,
    y: np.ndarray,
    sr: int,
    float_wav: bool = False,
    on_clip: str = "error",
) -> Path:
    """Write a WAV file atomically (a crash never leaves a half-written file under ``path``).

    Parameters
    ----------
    path : str or path-like
        Destination ``.wav`` file; parent folders are created.
    y : np.ndarray
        Signal, shape ``(n_samples,)`` or ``(n_channels, n_samples)``, nominal range [-1, 1].
    sr : int
        Sampling rate in Hz.
    float_wav : bool
        Write 32-bit float samples (lossless, may exceed [-1, 1]) instead of 16-bit PCM.
    on_clip : {'error', 'clip'}
        What to do when a 16-bit file would clip (a sample beyond [-1, 1)): raise
        :class:`AudioError` saying by how much, or clip silently.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    y = np.asarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    if not float_wav:
        peak = float(np.max(np.abs(y))) if y.size else 0.0
        if peak > 1.0:
            if on_clip == "error":
                n = int(np.sum(np.abs(y) > 1.0))
                raise AudioError(
                    f"{path}: 16-bit WAV would clip {n} samples (peak {20 * np.log10(peak):+.2f} dBFS); "
                    "write a float WAV or lower the level"
                )
            if on_clip != "clip":
                raise ValueError(f"on_clip must be 'error' or 'clip', not {on_clip!r}")
    # Encoded in memory and written by the one atomic writer: a full disk or a read-only folder is
    # then an OSError naming the file, where libsndfile would only say "System error".
    buf = io.BytesIO()
    if float_wav:
        sf.write(buf, y.T, sr, format="WAV", subtype="FLOAT")
    else:
        # Quantise here rather than in libsndfile so that what is written is exactly
        # quantize_pcm16(y): callers can predict the decoded file bit for bit.
        sf.write(buf, _to_int16(y).T, sr, format="WAV", subtype="PCM_16")
    write_bytes_atomic(path, buf.getbuffer())
    return path


def _to_int16(y: np.ndarray) -> np.ndarray:
    # In float32, in place: scaling by 2**15 is exact, so rounding gives what float64 would.
    t = np.multiply(np.asarray(y, np.float32), np.float32(32768.0))
    np.round(t, out=t)
    np.clip(t, -32768, 32767, out=t)
    return t.astype(np.int16)


def quantize_pcm16(y, in_place: bool = False):
    """Round a float signal to the values a 16-bit PCM WAV written by :func:`save` holds.

    Reading such a file back with :func:`load` (at its own rate) returns exactly this array.
    Accepts a NumPy array or a PyTorch tensor and returns the same kind (float32); both round
    half to even, so they agree bit for bit. ``in_place``: round a float32 tensor in place.
    """
    if isinstance(y, torch.Tensor):
        # Scaling by a power of two is exact in float32, so no float64 detour is needed.
        t = y.mul_(32768.0) if in_place else y.float() * 32768.0
        return t.round_().clamp_(-32768, 32767).div_(32768.0)
    return (_to_int16(y) / 32768.0).astype(np.float32)

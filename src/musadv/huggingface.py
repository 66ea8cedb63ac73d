"""Hugging Face ``transformers`` audio classifiers as musadv systems: ``hf:PATH_OR_NAME``.

A checkpoint of ``AutoModelForAudioClassification`` (a wav2vec 2.0, HuBERT or WavLM encoder
with a classification head, or an Audio Spectrogram Transformer) saved with
``save_pretrained`` beside its feature extractor is read offline, from a local directory or
the local Hugging Face cache, and only from safetensors (never a pickled ``.bin``). Its labels
are ``config.id2label``, its rate and normalisation the saved feature extractor's.

What the model hears is what its feature extractor would give it, rebuilt in PyTorch so that
the adversary's gradient reaches the magnitude STFT through the inverse STFT:

``'waveform'`` (``Wav2Vec2FeatureExtractor``: wav2vec 2.0, HuBERT, WavLM, data2vec-audio)
    The samples of each chunk, standardised to zero mean and unit variance per chunk when
    the extractor's ``do_normalize`` says so (its ``zero_mean_unit_var_norm``).
``'ast'`` (``ASTFeatureExtractor``)
    :func:`ast_fbank`, the extractor's Kaldi-style log-mel filterbank (25 ms frames, 10 ms hop,
    DC removal, pre-emphasis, Hann window, Kaldi mel scale), padded with zeros or truncated to
    ``max_length`` frames, then ``(x - mean) / (2 std)``.

The model hears a recording up to its last whole STFT hop, which is what the inverse STFT of
its magnitudes gives back (``n_frames - 1`` hops), so that a recording's label and its
adversary's judgement hear the same samples. It is cut into chunks (the model's window: ``max_length`` frames for AST, ``chunk_s``
seconds for waveform models) and its label follows eq. 3-4: the mean of the chunk posteriors.
A last, partial chunk is heard as the extractor would hear a short recording (shorter, or
padded) when it is at least half a chunk long, and left out otherwise; a recording shorter
than one chunk is one chunk.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ModelError, MusadvError
from .interface import DifferentiableClassifier, evaluating
from .models import check_finite_weights
from .spectral import STFTConfig, istft

__all__ = ["HuggingFaceClassifier", "FRONT_ENDS", "ast_fbank", "ast_filterbank", "chunk_bounds", "load_huggingface",
           "HF_SPEC", "DEFAULT_CHUNK_S"]

FRONT_ENDS = ("waveform", "ast")
#: Chunk of a waveform model when the spec gives none (seconds).
DEFAULT_CHUNK_S = 10.0
#: ``hf:PATH_OR_NAME`` with an optional ``@SECONDS`` chunk for waveform models.
HF_SPEC = re.compile(r"hf:(?P<name>.+?)(?:@(?P<chunk>\d+(?:\.\d+)?))?")
INSTALL_HINT = "pip install 'musadv[hf]' (Hugging Face transformers)"

# The framing of ASTFeatureExtractor's NumPy filterbank (Kaldi's 25 ms and 10 ms at 16 kHz).
AST_FRAME, AST_HOP, AST_NFFT, AST_PREEMPHASIS, AST_MEL_FLOOR = 400, 160, 512, 0.97, 1.192092955078125e-07
WAVE_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's


def ast_filterbank(n_mels: int, sr: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mel filters ``(n_fft // 2 + 1, n_mels)`` and the symmetric Hann window ``(400,)`` of
    ``ASTFeatureExtractor``'s NumPy path, made by ``transformers``' own functions (float64)."""
    from transformers.audio_utils import mel_filter_bank, window_function

    filters = mel_filter_bank(num_frequency_bins=AST_NFFT // 2 + 1, num_mel_filters=n_mels, min_frequency=20,
                              max_frequency=sr // 2, sampling_rate=sr, norm=None, mel_scale="kaldi",
                              triangularize_in_mel_space=True)
    return torch.from_numpy(filters), torch.from_numpy(window_function(AST_FRAME, "hann", periodic=False))


def ast_fbank(signal: torch.Tensor, filters: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Log-mel filterbank ``(n_frames, n_mels)`` of a mono signal as ``ASTFeatureExtractor`` computes it.

    Frames of 400 samples every 160 (no centring), each with its mean removed, pre-emphasised
    (``y[n] = x[n] - 0.97 x[n-1]``, ``y[0] = 0.03 x[0]``) and windowed; the power spectrum of
    a 512-point FFT through ``filters``, floored at the float32 machine epsilon, natural log.
    Differentiable in ``signal``; computed in ``signal``'s dtype.

    Parameters
    ----------
    signal : torch.Tensor
        ``(n_samples,)`` at the extractor's rate, at least 400 samples.
    filters, window : torch.Tensor
        From :func:`ast_filterbank`.
    """
    frames = signal.unfold(-1, AST_FRAME, AST_HOP)
    frames = frames - frames.mean(-1, keepdim=True)
    frames = torch.cat([frames[..., :1] * (1 - AST_PREEMPHASIS),
                        frames[..., 1:] - AST_PREEMPHASIS * frames[..., :-1]], -1)
    spec = torch.fft.rfft(frames * window.to(signal.dtype), n=AST_NFFT)
    power = spec.real.square() + spec.imag.square()
    return torch.log((power @ filters.to(signal.dtype)).clamp_min(AST_MEL_FLOOR))


def chunk_bounds(n_samples: int, chunk: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks a recording of ``n_samples`` is heard in (see the module notes)."""
    full = n_samples // chunk
    bounds = [(i * chunk, (i + 1) * chunk) for i in range(full)]
    tail = n_samples - full * chunk
    if tail and (full == 0 or 2 * tail >= chunk):
        bounds.append((full * chunk, n_samples))
    return bounds


class HuggingFaceClassifier(nn.Module, DifferentiableClassifier):
    """A ``transformers`` audio classification model with its feature extractor's preprocessing.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Takes ``input_values`` and returns an output with ``logits`` ``(n, n_labels)``.
    labels : list of str
    sr : int
        The feature extractor's sampling rate (Hz); the system analyses at this rate with
        musadv's default framing otherwise.
    front_end : {'waveform', 'ast'}
    chunk_samples : int
        Samples per chunk the model hears (for AST: what makes ``max_length`` frames).
    normalize : bool
        ``'waveform'``: zero mean and unit variance per chunk. ``'ast'``: ``(x - mean) / (2 std)``.
    n_mels, max_length, mean, std
        ``'ast'`` settings: mel bands, frames per input, the log-mel statistics.
    min_samples : int
        The shortest chunk the model can hear (its convolutions' receptive field, or one frame).
    info : dict, optional
    """

    needs_signal = True

    def __init__(self, model: nn.Module, labels, sr: int, front_end: str = "waveform", chunk_samples: int = 160000,
                 normalize: bool = True, n_mels: int = 128, max_length: int = 1024, mean: float = 0.0,
                 std: float = 1.0, min_samples: int = 1, info: dict | None = None):
        super().__init__()
        if front_end not in FRONT_ENDS:
            raise MusadvError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        if not (isinstance(chunk_samples, int) and chunk_samples >= min_samples):
            raise MusadvError(f"chunk_samples must be an integer >= {min_samples}, not {chunk_samples!r}")
        self._settings = dict(labels=list(labels), sr=int(sr), front_end=front_end, chunk_samples=chunk_samples,
                              normalize=normalize, n_mels=n_mels, max_length=max_length, mean=mean, std=std,
                              min_samples=min_samples)
        self.model, self.labels, self.front_end = model, list(labels), front_end
        self.stft = STFTConfig(sr=int(sr))
        self.chunk_samples, self.normalize, self.min_samples = chunk_samples, normalize, min_samples
        self.max_length, self.mean_value, self.std_value = max_length, mean, std
        self.element_frames = -(-chunk_samples // self.stft.hop)
        self.info, self.path = dict(info or {}), None
        filters, window = ast_filterbank(n_mels, int(sr)) if front_end == "ast" else (None, None)
        self.register_buffer("filters", None if filters is None else filters.float(), persistent=False)
        self.register_buffer("window", None if window is None else window.float(), persistent=False)

    def __reduce__(self):
        # Worker processes get the system pickled; transformers' modules may hold parametrizations
        # (HuBERT's weight-normed positional convolution) that refuse pickling, so the model
        # travels as its config and weights and is rebuilt from them.
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return _rebuild, (self.model.config, state, self._settings, self.info, self.path)

    def features(self, chunk: torch.Tensor) -> torch.Tensor:
        """The model's ``input_values`` for one chunk ``(n_samples,)``: ``(n_samples,)`` or ``(max_length, n_mels)``."""
        if self.front_end == "waveform":
            if not self.normalize:
                return chunk
            centred = chunk - chunk.mean()
            return centred / torch.sqrt(centred.square().mean() + WAVE_NORM_EPS)
        fbank = ast_fbank(chunk, self.filters, self.window)[: self.max_length]
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, self.max_length - len(fbank)))
        return (fbank - self.mean_value) / (2 * self.std_value) if self.normalize else fbank

    def signal_logits(self, signal: torch.Tensor, batch: int = 8) -> torch.Tensor:
        """Logits ``(n_chunks, n_labels)`` of a mono signal at ``stft.sr`` Hz, differentiable in it."""
        return self._signals_logits([signal], batch)[0]

    def _signals_logits(self, signals: list[torch.Tensor], batch: int = 8) -> list[torch.Tensor]:
        """:meth:`signal_logits` of several signals: their whole chunks go through the model
        ``batch`` at a time together, each shorter last chunk alone."""
        chunks = [[sig[a:b] for a, b in chunk_bounds(sig.shape[-1], self.chunk_samples) if b - a >= self.min_samples]
                  for sig in signals]
        whole = [(r, k) for r, cs in enumerate(chunks) for k, c in enumerate(cs) if len(c) == self.chunk_samples]
        logits = {}
        for i in range(0, len(whole), batch):
            keys = whole[i : i + batch]
            out = self(torch.stack([self.features(chunks[r][k]) for r, k in keys]))
            logits.update(zip(keys, out))
        for r, cs in enumerate(chunks):
            for k, c in enumerate(cs):
                if (r, k) not in logits:
                    logits[r, k] = self(self.features(c)[None])[0]
        empty = lambda sig: torch.zeros((0, len(self.labels)), dtype=sig.dtype, device=sig.device)  # noqa: E731
        return [torch.stack([logits[r, k] for k in range(len(cs))]) if cs else empty(sig)
                for r, (cs, sig) in enumerate(zip(chunks, signals))]

    def logits(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Chunk logits ``(n_chunks, n_labels)`` of the waveform ``istft(mags * phase)``, differentiable in ``mags``."""
        return self.logits_many([mags], [phase])[0]

    def logits_many(self, mags: list[torch.Tensor], phases: list) -> list[torch.Tensor]:
        """:meth:`logits` of several recordings, their whole chunks batched together."""
        if any(p is None for p in phases):
            raise MusadvError("a Hugging Face model hears the waveform: give the phase with the magnitudes")
        return self._signals_logits([istft(m * p, self.stft) for m, p in zip(mags, phases)])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's logits for a batch of :meth:`features`."""
        return self.model(input_values=inputs).logits

    def posteriors(self, frames: np.ndarray, signal: np.ndarray | None = None, chunk_frames: int = 4096) -> np.ndarray:
        """Chunk posteriors ``(n_chunks, n_labels)`` of the recording's waveform ``signal`` (up to its last whole hop)."""
        if signal is None:
            raise MusadvError("a Hugging Face model hears the waveform: give the signal, not only magnitudes")
        heard = np.asarray(signal, np.float32)[: len(signal) // self.stft.hop * self.stft.hop]
        with evaluating(self), torch.no_grad():
            return self.probabilities(self.signal_logits(torch.from_numpy(heard).to(self.device))).cpu().numpy()


def _rebuild(config, state: dict, settings: dict, info: dict, path) -> HuggingFaceClassifier:
    """The system :meth:`HuggingFaceClassifier.__reduce__` pickled."""
    from transformers import AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_config(config)
    model.load_state_dict(state)
    system = HuggingFaceClassifier(model.eval(), info=info, **settings)
    system.path = path
    return system.eval()


def _receptive_field(config) -> int:
    """Samples one output frame of a waveform model's convolutional feature encoder sees (1 without one)."""
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if not kernels or not strides:
        return 1
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field, jump = field + (k - 1) * jump, jump * s
    return field


def load_huggingface(name: str | os.PathLike, chunk_s: float | None = None) -> HuggingFaceClassifier:
    """An ``AutoModelForAudioClassification`` checkpoint and its feature extractor as a musadv system.

    Parameters
    ----------
    name : str or path
        A directory written by ``save_pretrained`` (model and feature extractor), or a model
        name found in the local Hugging Face cache. Nothing is downloaded.
    chunk_s : float, optional
        Seconds per chunk of a waveform model (default :data:`DEFAULT_CHUNK_S`); AST models
        hear ``max_length`` frames and take none.

    Returns
    -------
    HuggingFaceClassifier
        Its ``info['factory']`` is the spec that rebuilds it with :func:`musadv.systems.load_system`
        (``hf:`` and the directory's absolute path), recorded with runs.

    Raises
    ------
    ModelError
        When ``transformers`` is not installed, the checkpoint cannot be read (or is only a
        pickle), it is not an audio classifier, or its feature extractor is of a kind musadv
        cannot differentiate.
    """
    if Path(name).is_dir():  # runs record the spec that rebuilds the system, from any directory
        name = Path(name).resolve()
    spec = f"hf:{name}" + ("" if chunk_s is None else f"@{chunk_s:g}")
    if importlib.util.find_spec("transformers") is None:
        raise ModelError(f"{spec}: Hugging Face models need transformers: {INSTALL_HINT}")
    from transformers import (ASTFeatureExtractor, AutoFeatureExtractor, AutoModelForAudioClassification,
                              Wav2Vec2FeatureExtractor)
    from transformers.utils import logging as hf_logging

    where = str(name)
    # Its progress bar would print on every load, in logs too; musadv shows its own.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(where, local_files_only=True)
        model = AutoModelForAudioClassification.from_pretrained(where, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{spec}: cannot be loaded as a Hugging Face audio classifier offline ({reason})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    config = model.config
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    sr = int(extractor.sampling_rate)
    info = {"factory": spec, "pretrained": f"transformers {type(model).__name__}",
            "model_type": config.model_type, "feature_extractor": type(extractor).__name__}
    if isinstance(extractor, ASTFeatureExtractor):
        if chunk_s is not None:
            raise ModelError(f"{spec}: an AST model hears {extractor.max_length} frames; it takes no @SECONDS chunk")
        system = HuggingFaceClassifier(
            model, labels, sr, "ast", chunk_samples=AST_FRAME + AST_HOP * (extractor.max_length - 1),
            normalize=bool(extractor.do_normalize), n_mels=extractor.num_mel_bins, max_length=extractor.max_length,
            mean=float(extractor.mean), std=float(extractor.std), min_samples=AST_FRAME, info=info)
    elif isinstance(extractor, Wav2Vec2FeatureExtractor):
        seconds = DEFAULT_CHUNK_S if chunk_s is None else float(chunk_s)
        chunk = round(seconds * sr)
        field = _receptive_field(config)
        if chunk < field:
            raise ModelError(f"{spec}: a chunk of {seconds} s is shorter than the model's receptive field ({field} samples)")
        info["chunk_s"] = seconds
        system = HuggingFaceClassifier(model, labels, sr, "waveform", chunk_samples=chunk,
                                       normalize=bool(extractor.do_normalize), min_samples=field, info=info)
    else:
        raise ModelError(f"{spec}: its feature extractor {type(extractor).__name__} is not one musadv can differentiate "
                         "(Wav2Vec2FeatureExtractor for waveform models, ASTFeatureExtractor)")
    check_finite_weights(system, spec)
    return system.eval()


def load_hf_spec(spec: str) -> HuggingFaceClassifier:
    """``hf:PATH_OR_NAME[@SECONDS]``: see :func:`load_huggingface`."""
    match = HF_SPEC.fullmatch(spec)
    if match is None:
        raise ModelError(f"{spec}: expected hf:PATH_OR_NAME or hf:PATH_OR_NAME@SECONDS")
    return load_huggingface(match["name"], None if match["chunk"] is None else float(match["chunk"]))


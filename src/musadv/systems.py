"""Feature systems of the paper: DNN activations + random forest (Table I), and the MFCC baseline (Fig. 6).

Both label a recording by majority vote over its texture windows; their confidence per label
is the share of windows that voted for it. Like the networks, each is saved as a directory with
a ``model.json``, and loading never unpickles: the forest is stored with skops (only
scikit-learn and NumPy types are accepted), the baseline's Gaussians in safetensors.

:func:`load_system` opens any saved model (DNN, CDNN, forest or baseline) and
:func:`musadv.classify.classify_recording` labels a recording with any of them, so ``musadv test``,
``musadv classify`` and the re-scoring of attack runs treat them alike.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import librosa
import numpy as np
import skops.io as sio
from safetensors.numpy import load_file, save_file
from sklearn.ensemble import RandomForestClassifier

from .progress import progress_bar
from .cache import SpectraCache
from .classify import Prediction
from .errors import MusadvError
from .features import TEXTURE_HOP, TEXTURE_WINDOW, dnn_activations, texture_stats, window_frames
from .io import atomic_path, write_json_atomic
from .models import FORMAT, ModelError, load_model, read_model_info
from .spectral import STFTConfig, magnitude

__all__ = ["ForestSystem", "MFCCBaseline", "train_forest", "train_baseline", "load_system", "mfcc_zcr"]


def _texture(meta: dict, config: STFTConfig) -> tuple[int, int]:
    """Texture window and hop in frames from a system file (files before 0.2 gave them in seconds)."""
    if "window_frames" in meta:
        return meta["window_frames"], meta["hop_frames"]
    return window_frames(meta["window_s"], config), window_frames(meta["hop_s"], config)


def _vote(labels: list[str], window_labels: np.ndarray) -> Prediction:
    counts = np.bincount(window_labels, minlength=len(labels))
    share = counts / counts.sum()
    return Prediction(labels[int(np.argmax(counts))], dict(zip(labels, map(float, share))), int(counts.sum()))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def forest_features(dnn, frames, layers: str, window: int, hop: int) -> np.ndarray:
    """Mean and standard deviation of a DNN's hidden activations over texture windows (``window``, ``hop`` in frames)."""
    acts = dnn_activations(dnn, frames, layers)
    return texture_stats(acts, window, hop, "std")


def baseline_features(signal, config: STFTConfig, window: int, hop: int) -> np.ndarray:
    """Mean and variance of MFCCs and zero-crossing rate over texture windows (``window``, ``hop`` in frames)."""
    return texture_stats(mfcc_zcr(signal, config), window, hop, "var")


class ForestSystem:
    """A random forest on texture statistics of a DNN's hidden activations.

    Parameters
    ----------
    dnn : DNN
        The feature extractor (its labels and STFT settings are the system's).
    forest : RandomForestClassifier
        Trained on windows; its classes are label indices.
    layers : {'1', '2', '3', 'all'}
    window, hop : int
        Texture window length and hop in STFT frames (reference: 200 and 100, 4.6 s and 2.3 s
        at 22050 Hz with a hop of 512 samples).
    """

    kind = "forest"
    needs_audio = False

    def __init__(self, dnn, forest: RandomForestClassifier, layers: str = "all", window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP):
        if getattr(dnn, "arch", None) != "dnn":
            raise ModelError("the forest system takes its features from a DNN")
        self.dnn, self.forest, self.layers, self.window, self.hop = dnn, forest, layers, window, hop
        self.labels, self.stft = dnn.labels, dnn.stft

    def features(self, frames) -> np.ndarray:
        """Texture features ``(n_windows, 2 * n_units)`` of a recording's magnitude frames."""
        return forest_features(self.dnn, frames, self.layers, self.window, self.hop)

    def classify(self, frames, signal=None) -> Prediction:
        """Majority vote of the forest over the recording's texture windows."""
        return _vote(self.labels, self.forest.predict(self.features(frames)).astype(int))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "forest.skops", ".skops") as tmp:
            sio.dump(self.forest, tmp)
        dnn_dir = Path(self.dnn.path).resolve()
        write_json_atomic(path / "model.json", {
            "format": FORMAT, "version": 1, "config": {"arch": "forest"}, "labels": self.labels,
            "stft": self.stft.to_dict(), "layers": self.layers, "window_frames": self.window, "hop_frames": self.hop,
            "n_trees": self.forest.n_estimators,
            "dnn": os.path.relpath(dnn_dir, path.resolve()), "dnn_sha256": _sha256(dnn_dir / "model.safetensors"),
            "data": self.dnn.info.get("data", {}), **getattr(self, "extra_info", {}),
        })
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ForestSystem":
        path = Path(path)
        meta = read_model_info(path)
        dnn_dir = (path / meta["dnn"]).resolve()
        dnn = load_model(dnn_dir)
        if _sha256(dnn_dir / "model.safetensors") != meta["dnn_sha256"]:
            raise ModelError(f"{path}: its DNN at {dnn_dir} has changed since the forest was trained")
        file = path / "forest.skops"
        untrusted = sio.get_untrusted_types(file=file)
        foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
        if foreign:
            raise ModelError(f"{file}: refuses to load types other than scikit-learn's and NumPy's: {foreign}")
        system = cls(dnn, sio.load(file, trusted=untrusted), meta["layers"], *_texture(meta, dnn.stft))
        system.info, system.path = meta, path
        return system


def train_forest(dnn, cache: SpectraCache, layers: str = "all", splits=("train",), n_trees: int = 500,
                 window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP, seed: int = 0, jobs: int | None = None,
                 progress: bool = True) -> ForestSystem:
    """Train the random forest system on the texture features of a DNN (paper Table I).

    Parameters
    ----------
    dnn : DNN
        A trained DNN (loaded from its directory, so the forest can refer to it).
    cache : SpectraCache
    layers : {'1', '2', '3', 'all'}
    splits : tuple of str
        Splits whose recordings train the forest.
    n_trees : int
        Trees in the forest (the paper: 500).
    window, hop : int
        Texture window and hop in STFT frames.
    seed : int
    jobs : int, optional
        Cores for the forest (default: all).
    """
    feats, targets = [], []
    entries = [e for s in splits for e in cache.split(s)]
    for e in progress_bar(entries, desc=f"features (layers {layers})", enabled=progress, leave=False):
        f = forest_features(dnn, cache.frames(e), layers, window, hop)
        feats.append(f)
        targets.append(np.full(len(f), dnn.labels.index(e.label)))
    rf = RandomForestClassifier(n_estimators=n_trees, n_jobs=jobs or os.cpu_count(), random_state=seed)
    rf.fit(np.vstack(feats), np.concatenate(targets))
    system = ForestSystem(dnn, rf, layers, window, hop)
    system.extra_info = {"trained_on": list(splits), "seed": seed}
    return system


def mfcc_zcr(signal: np.ndarray, config: STFTConfig = STFTConfig(), n_mfcc: int = 13) -> np.ndarray:
    """Per frame: the first ``n_mfcc`` MFCCs and the zero-crossing rate, ``(n_frames, n_mfcc + 1)``.

    MFCCs come from the project's own STFT (46 ms frames, 50 % hop) through librosa's mel
    filterbank and DCT; the zero-crossing rate is counted over the same frames.
    """
    power = magnitude(np.asarray(signal, np.float32), config).T.astype(np.float64) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=config.sr, n_fft=config.n_fft)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=n_mfcc)
    zcr = librosa.feature.zero_crossing_rate(signal, frame_length=config.n_fft, hop_length=config.hop,
                                             center=config.center)
    n = min(mfcc.shape[1], zcr.shape[1])
    return np.vstack([mfcc[:, :n], zcr[:, :n]]).T


class MFCCBaseline:
    """Minimum Mahalanobis distance classifier on MFCC + ZCR texture statistics (Fig. 6).

    One Gaussian per label (mean and covariance of the texture features of its training
    windows); a window goes to the label at the smallest Mahalanobis distance, a recording to
    the majority of its windows.
    """

    kind = "mfcc_baseline"
    needs_audio = True

    def __init__(self, labels, means: np.ndarray, inv_covs: np.ndarray, config: STFTConfig = STFTConfig(),
                 window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP):
        self.labels, self.means, self.inv_covs = list(labels), means, inv_covs
        self.stft, self.window, self.hop = config, window, hop

    def features(self, signal) -> np.ndarray:
        return baseline_features(signal, self.stft, self.window, self.hop)

    def distances(self, feats: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of every window to every label, ``(n_windows, n_labels)``."""
        d = feats[:, None, :] - self.means[None, :, :]
        return np.einsum("wki,kij,wkj->wk", d, self.inv_covs, d)

    def classify(self, frames, signal) -> Prediction:
        if signal is None:
            raise MusadvError("the MFCC baseline needs the waveform, not only magnitudes")
        return _vote(self.labels, np.argmin(self.distances(self.features(signal)), axis=1))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "gaussians.safetensors", ".safetensors") as tmp:
            save_file({"means": self.means, "inv_covs": self.inv_covs}, str(tmp))
        write_json_atomic(path / "model.json", {
            "format": FORMAT, "version": 1, "config": {"arch": "mfcc_baseline"}, "labels": self.labels,
            "stft": self.stft.to_dict(), "window_frames": self.window, "hop_frames": self.hop,
            **getattr(self, "extra_info", {}),
        })
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MFCCBaseline":
        path = Path(path)
        meta = read_model_info(path)
        g = load_file(str(path / "gaussians.safetensors"))
        config = STFTConfig.from_dict(meta["stft"])
        system = cls(meta["labels"], g["means"], g["inv_covs"], config, *_texture(meta, config))
        system.info, system.path = meta, path
        return system


def train_baseline(cache: SpectraCache, splits=("train", "valid"), window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP,
                   ridge: float = 1e-6, progress: bool = True) -> MFCCBaseline:
    """Fit the MFCC baseline on the texture features of the recordings of ``splits`` (paper: train + valid).

    ``ridge`` (relative to the mean variance) keeps each class covariance invertible.
    """
    config = cache.config
    by_label: dict[int, list[np.ndarray]] = {}
    entries = [e for s in splits for e in cache.split(s)]
    for e in progress_bar(entries, desc="MFCC features", enabled=progress, leave=False):
        signal = cache.signal(e)
        by_label.setdefault(cache.labels.index(e.label), []).append(baseline_features(signal, config, window, hop))
    dim = next(iter(by_label.values()))[0].shape[1]
    means = np.zeros((len(cache.labels), dim))
    inv = np.zeros((len(cache.labels), dim, dim))
    missing = [lab for k, lab in enumerate(cache.labels) if k not in by_label]
    if missing:
        raise MusadvError(f"{cache.path}: no training recordings of {missing} for the baseline")
    for k in range(len(cache.labels)):
        f = np.vstack(by_label[k]).astype(np.float64)
        means[k] = f.mean(0)
        cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros((dim, dim))
        cov += ridge * max(np.trace(cov) / dim, 1e-12) * np.eye(dim)
        inv[k] = np.linalg.pinv(cov)
    system = MFCCBaseline(cache.labels, means, inv, config, window, hop)
    system.extra_info = {"trained_on": list(splits)}
    return system


def load_system(path: str | os.PathLike):
    """Load any saved model: a DNN or CDNN (element model), a forest system or the MFCC baseline."""
    arch = read_model_info(path)["config"].get("arch")
    if arch == "forest":
        return ForestSystem.load(path)
    if arch == "mfcc_baseline":
        return MFCCBaseline.load(path)
    return load_model(path)


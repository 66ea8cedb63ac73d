"""Feature systems of the paper: DNN activations + random forest (Table I), and the MFCC baseline (Fig. 6).

Both are :class:`TextureSystem` classifiers: frame features summarised over texture windows, a
scikit-learn classifier labelling each window (a :class:`~sklearn.ensemble.RandomForestClassifier`,
or :class:`MahalanobisClassifier`, an estimator that passes scikit-learn's checks), and a
majority vote over the windows; the confidence per label is the share of windows that voted
for it. Like the networks each is an :class:`~musadv.interface.AudioClassifier`, saved as a
directory with a ``model.json`` (:func:`musadv.models.write_model_files`), and loading never
unpickles: the forest is stored with skops (only scikit-learn and NumPy types are accepted),
the baseline's Gaussians in safetensors.

:func:`load_system` opens any saved model (DNN, CDNN, forest or baseline), so ``musadv test``,
``musadv classify`` and the re-scoring of attack runs treat them alike.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
from abc import abstractmethod
from pathlib import Path

import librosa
import numpy as np
import skops.io as sio
from safetensors.numpy import load_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .progress import progress_bar
from .cache import SpectraCache
from .errors import MusadvError
from .features import TEXTURE_HOP, TEXTURE_WINDOW, dnn_activations, texture_stats, window_frames
from .interface import AudioClassifier, Prediction
from .io import atomic_path
from .models import DNN, ModelError, load_model, read_model_info, write_model_files
from .spectral import STFTConfig, magnitude

__all__ = ["TextureSystem", "ForestSystem", "MFCCBaseline", "MahalanobisClassifier", "train_forest", "train_baseline",
           "load_system", "mfcc_zcr"]


def _texture(meta: dict, config: STFTConfig) -> tuple[int, int]:
    """Texture window and hop in frames from a system file (files before 0.2 gave them in seconds)."""
    if "window_frames" in meta:
        return meta["window_frames"], meta["hop_frames"]
    return window_frames(meta["window_s"], config), window_frames(meta["hop_s"], config)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def forest_features(dnn, frames, layers: str, window: int, hop: int) -> np.ndarray:
    """Mean and standard deviation of a DNN's hidden activations over texture windows (``window``, ``hop`` in frames)."""
    acts = dnn_activations(dnn, frames, layers)
    return texture_stats(acts, window, hop, "std")


def baseline_features(signal, config: STFTConfig, window: int, hop: int) -> np.ndarray:
    """Mean and variance of MFCCs and zero-crossing rate over texture windows (``window``, ``hop`` in frames)."""
    return texture_stats(mfcc_zcr(signal, config), window, hop, "var")


class TextureSystem(AudioClassifier):
    """A classifier of texture windows and a majority vote over a recording's windows.

    Parameters
    ----------
    labels : list of str
    stft : STFTConfig
    classifier : scikit-learn classifier
        Fitted on texture windows; its classes are label indices.
    window, hop : int
        Texture window length and hop in STFT frames (reference: 200 and 100, 4.6 s and 2.3 s
        at 22050 Hz with a hop of 512 samples).
    info : dict, optional
        Metadata kept in ``model.json`` (training splits, seed, data).
    """

    def __init__(self, labels, stft: STFTConfig, classifier, window: int, hop: int, info: dict | None = None):
        self.labels, self.stft, self.classifier = list(labels), stft, classifier
        self.window, self.hop = window, hop
        self.info, self.path = dict(info or {}), None

    @abstractmethod
    def features(self, frames: np.ndarray, signal: np.ndarray | None) -> np.ndarray:
        """Texture features ``(n_windows, n_features)`` of one recording."""

    def predict(self, frames: np.ndarray, signal: np.ndarray | None = None, name: str = "recording") -> Prediction:
        """Majority vote of the classifier over the recording's texture windows."""
        counts = np.bincount(self.classifier.predict(self.features(frames, signal)).astype(int), minlength=len(self.labels))
        share = counts / counts.sum()
        return Prediction(self.labels[int(np.argmax(counts))], dict(zip(self.labels, map(float, share))), int(counts.sum()))


class ForestSystem(TextureSystem):
    """A random forest on texture statistics of a DNN's hidden activations (Table I).

    Parameters
    ----------
    dnn : DNN
        The feature extractor (its labels and STFT settings are the system's).
    forest : RandomForestClassifier
        Trained on windows; its classes are label indices.
    layers : {'1', '2', '3', 'all'}
    window, hop : int
        Texture window and hop in STFT frames.
    info : dict, optional
    """

    def __init__(self, dnn: DNN, forest: RandomForestClassifier, layers: str = "all", window: int = TEXTURE_WINDOW,
                 hop: int = TEXTURE_HOP, info: dict | None = None):
        if not isinstance(dnn, DNN):
            raise ModelError("the forest system takes its features from a DNN")
        # A recording has a few texture windows: spreading 500 trees over threads costs more than
        # it saves at prediction (training has set its own cores).
        forest.set_params(n_jobs=1)
        super().__init__(dnn.labels, dnn.stft, forest, window, hop, {"data": dnn.info.get("data", {}), **(info or {})})
        self.dnn, self.layers = dnn, layers

    def features(self, frames: np.ndarray, signal: np.ndarray | None = None) -> np.ndarray:
        """Texture features ``(n_windows, 2 * n_units)`` of a recording's magnitude frames."""
        return forest_features(self.dnn, frames, self.layers, self.window, self.hop)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "forest.skops", ".skops") as tmp:
            sio.dump(self.classifier, tmp)
        dnn_dir = Path(self.dnn.path).resolve()
        return write_model_files(path, {"arch": "forest"}, self.labels, self.stft, info={
            **self.info, "layers": self.layers, "window_frames": self.window, "hop_frames": self.hop,
            "n_trees": self.classifier.n_estimators,
            "dnn": os.path.relpath(dnn_dir, path.resolve()), "dnn_sha256": _sha256(dnn_dir / "model.safetensors"),
        })

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
        system = cls(dnn, sio.load(file, trusted=untrusted), meta["layers"], *_texture(meta, dnn.stft), info=meta)
        system.path = path
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
    return ForestSystem(dnn, rf, layers, window, hop, info={"trained_on": list(splits), "seed": seed})


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


class MahalanobisClassifier(ClassifierMixin, BaseEstimator):
    """Minimum Mahalanobis distance classifier: one Gaussian (mean, covariance) per class.

    Parameters
    ----------
    ridge : float
        Added to each class covariance's diagonal, relative to its mean variance, so that it is
        invertible (a class with one example or constant features).

    Attributes
    ----------
    classes_ : np.ndarray
        Class labels seen in ``fit``, sorted.
    means_ : np.ndarray
        ``(n_classes, n_features)``.
    inv_covs_ : np.ndarray
        ``(n_classes, n_features, n_features)``: inverse (ridged) covariances.
    n_features_in_ : int
    """

    def __init__(self, ridge: float = 1e-6):
        self.ridge = ridge

    def fit(self, X, y):
        """Mean and covariance of the examples of every class.

        Parameters
        ----------
        X : array ``(n_samples, n_features)``
        y : array ``(n_samples,)``
        """
        if not (isinstance(self.ridge, (int, float)) and self.ridge >= 0):
            raise ValueError(f"ridge must be a number >= 0, not {self.ridge!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        dim = X.shape[1]
        self.means_ = np.zeros((len(self.classes_), dim))
        self.inv_covs_ = np.zeros((len(self.classes_), dim, dim))
        for k in range(len(self.classes_)):
            f = X[index == k]
            self.means_[k] = f.mean(0)
            cov = np.atleast_2d(np.cov(f, rowvar=False)) if len(f) > 1 else np.zeros((dim, dim))
            cov = cov + self.ridge * max(np.trace(cov) / dim, 1e-12) * np.eye(dim)
            self.inv_covs_[k] = np.linalg.pinv(cov)
        return self

    def distances(self, X) -> np.ndarray:
        """Squared Mahalanobis distance of every example to every class, ``(n_samples, n_classes)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        d = X[:, None, :] - self.means_[None, :, :]
        return np.einsum("wki,kij,wkj->wk", d, self.inv_covs_, d)

    def predict(self, X) -> np.ndarray:
        """The class at the smallest Mahalanobis distance."""
        d = self.distances(X)
        return self.classes_[np.argmin(d, axis=1)]


class MFCCBaseline(TextureSystem):
    """Minimum Mahalanobis distance on MFCC + ZCR texture statistics (Fig. 6).

    One Gaussian per label (mean and covariance of the texture features of its training
    windows); a window goes to the label at the smallest Mahalanobis distance, a recording to
    the majority of its windows. It hears the waveform (``needs_signal``).

    Parameters
    ----------
    labels : list of str
    classifier : MahalanobisClassifier
        Fitted on windows; its classes are label indices.
    config : STFTConfig
    window, hop : int
    info : dict, optional
    """

    needs_signal = True

    def __init__(self, labels, classifier: MahalanobisClassifier, config: STFTConfig = STFTConfig(),
                 window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP, info: dict | None = None):
        super().__init__(labels, config, classifier, window, hop, info)

    def features(self, frames: np.ndarray | None, signal: np.ndarray | None) -> np.ndarray:
        if signal is None:
            raise MusadvError("the MFCC baseline needs the waveform, not only magnitudes")
        return baseline_features(signal, self.stft, self.window, self.hop)

    def save(self, path: str | os.PathLike) -> Path:
        c = self.classifier
        return write_model_files(path, {"arch": "mfcc_baseline", "ridge": c.ridge}, self.labels, self.stft,
                                 {"means": c.means_, "inv_covs": c.inv_covs_, "classes": c.classes_},
                                 {**self.info, "window_frames": self.window, "hop_frames": self.hop})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MFCCBaseline":
        path = Path(path)
        meta = read_model_info(path)
        file = path / "model.safetensors"
        if not file.exists():
            file = path / "gaussians.safetensors"  # files before 0.3
        g = load_file(str(file))
        classifier = MahalanobisClassifier(meta["config"].get("ridge", 1e-6))
        classifier.means_, classifier.inv_covs_ = g["means"], g["inv_covs"]
        classifier.classes_ = g.get("classes", np.arange(len(meta["labels"])))
        classifier.n_features_in_ = g["means"].shape[1]
        config = STFTConfig.from_dict(meta["stft"])
        system = cls(meta["labels"], classifier, config, *_texture(meta, config), info=meta)
        system.path = path
        return system


def train_baseline(cache: SpectraCache, splits=("train", "valid"), window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP,
                   ridge: float = 1e-6, progress: bool = True) -> MFCCBaseline:
    """Fit the MFCC baseline on the texture features of the recordings of ``splits`` (paper: train + valid).

    ``ridge`` (relative to the mean variance) keeps each class covariance invertible.
    """
    config = cache.config
    entries = [e for s in splits for e in cache.split(s)]
    present = {e.label for e in entries}
    missing = [lab for lab in cache.labels if lab not in present]
    if missing:
        raise MusadvError(f"{cache.path}: no training recordings of {missing} for the baseline")
    feats, targets = [], []
    for e in progress_bar(entries, desc="MFCC features", enabled=progress, leave=False):
        f = baseline_features(cache.signal(e), config, window, hop)
        feats.append(f)
        targets.append(np.full(len(f), cache.labels.index(e.label)))
    classifier = MahalanobisClassifier(ridge).fit(np.vstack(feats), np.concatenate(targets))
    return MFCCBaseline(cache.labels, classifier, config, window, hop, info={"trained_on": list(splits)})


FACTORY = re.compile(r"(?P<module>[A-Za-z_][\w.]*):(?P<name>[A-Za-z_]\w*)")


def load_factory(spec: str) -> AudioClassifier:
    """Call ``package.module:factory``, a function of no arguments that returns a classifier.

    The current directory is searched for the module first, as Python does for a script, so a
    ``mymodel.py`` beside the data needs no installing.

    Raises
    ------
    ModelError
        If the module cannot be imported, has no such function, or the function returns
        something that is not an :class:`~musadv.interface.AudioClassifier` (for a PyTorch
        module, wrap it in :class:`musadv.wrappers.TorchClassifier`).
    """
    match = FACTORY.fullmatch(spec)
    if match is None:
        raise ModelError(f"{spec}: not a model directory, nor package.module:factory")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(match["module"])
    except ImportError as exc:
        raise ModelError(f"{spec}: cannot import {match['module']} ({exc})") from None
    factory = vars(module).get(match["name"])
    if not callable(factory):
        raise ModelError(f"{spec}: {match['module']} has no function {match['name']}")
    system = factory()
    if not isinstance(system, AudioClassifier):
        raise ModelError(f"{spec}: returned a {type(system).__name__}, not a musadv AudioClassifier "
                         "(wrap a PyTorch module in musadv.wrappers.TorchClassifier)")
    system.info = {**system.info, "factory": spec}
    return system


def load_system(spec: str | os.PathLike) -> AudioClassifier:
    """Load any model: a saved DNN or CDNN, forest system or MFCC baseline (a directory), or the
    classifier a ``package.module:factory`` function returns (see :func:`load_factory`)."""
    if Path(spec).is_dir():
        arch = read_model_info(spec)["config"].get("arch")
        if arch == "forest":
            return ForestSystem.load(spec)
        if arch == "mfcc_baseline":
            return MFCCBaseline.load(spec)
        return load_model(spec)
    if isinstance(spec, str) and FACTORY.fullmatch(spec):
        return load_factory(spec)
    raise ModelError(f"{spec}: no such model directory (nor package.module:factory)")

"""Feature systems of the paper: DNN activations + random forest (Table I), and the MFCC baseline (Fig. 6).

Both are :class:`TextureSystem` classifiers: a recording's frame features (a DNN's activations,
or MFCCs and the zero-crossing rate) through a scikit-learn :class:`~sklearn.pipeline.Pipeline`
whose samples are recordings (:func:`texture_pipeline`): :class:`~musadv.features.TextureFeatures`
summarises them over texture windows, :class:`WindowVote` labels each window with a classifier
(a :class:`~sklearn.ensemble.RandomForestClassifier`, or :class:`MahalanobisClassifier`, an
estimator that passes scikit-learn's checks) and the recording by the majority of its windows;
the confidence per label is the share of windows that voted for it. Training is the
pipeline's ``fit`` on the training recordings and their labels. Like the networks each is an :class:`~musadv.interface.AudioClassifier`, saved as a
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
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .progress import progress_bar
from .cache import SpectraCache
from .errors import MusadvError
from .features import TEXTURE_HOP, TEXTURE_WINDOW, TextureFeatures, dnn_activations, texture_starts, window_frames
from .interface import AudioClassifier, Prediction
from .io import atomic_path
from .models import DNN, ModelError, check_finite_weights, load_model, read_model_info, write_model_files
from .spectral import STFTConfig, magnitude

__all__ = ["TextureSystem", "ForestSystem", "MFCCBaseline", "MahalanobisClassifier", "WindowVote", "texture_pipeline",
           "train_forest", "train_baseline", "load_system", "mfcc_zcr",
           "zero_crossing_rate"]


def _texture(meta: dict, config: STFTConfig) -> tuple[int, int]:
    """Texture window and hop in frames from a system file (files before 0.2 gave them in seconds)."""
    if "window_frames" in meta:
        return meta["window_frames"], meta["hop_frames"]
    return window_frames(meta["window_s"], config), window_frames(meta["hop_s"], config)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class WindowVote(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier of recordings: ``estimator`` labels each texture window, the majority of a
    recording's windows labels the recording (the paper's systems).

    A sample is a recording given as its texture windows ``(n_windows, n_features)`` (what
    :class:`musadv.features.TextureFeatures` makes); ``fit`` trains a clone of ``estimator`` on
    the windows of all recordings, each window with its recording's label.

    Parameters
    ----------
    estimator : scikit-learn classifier
        The window classifier (a random forest, :class:`MahalanobisClassifier`, a pipeline).

    Attributes
    ----------
    estimator_ : classifier
        The fitted window classifier.
    classes_ : np.ndarray
        Class labels seen in ``fit``, sorted.
    n_features_in_ : int
        Features per window.
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    @staticmethod
    def _recordings(X) -> tuple[np.ndarray, np.ndarray]:
        """All windows stacked, and each recording's number of windows."""
        windows = [np.asarray(w) for w in X]
        if not windows or any(w.ndim != 2 or len(w) == 0 for w in windows):
            raise ValueError("WindowVote takes a sequence of recordings, each (n_windows >= 1, n_features)")
        return np.vstack(windows), np.array([len(w) for w in windows])

    def fit(self, X, y) -> "WindowVote":
        """Fit the window classifier on every recording's windows labelled with its ``y``.

        Parameters
        ----------
        X : sequence of np.ndarray
            Texture windows ``(n_windows_i, n_features)`` of each recording.
        y : array ``(n_recordings,)``
        """
        if self.estimator is None:
            raise ValueError("estimator must be a scikit-learn classifier of texture windows, not None")
        windows, counts = self._recordings(X)
        y = np.asarray(y)
        if len(y) != len(counts):
            raise ValueError(f"{len(counts)} recordings but {len(y)} labels")
        check_classification_targets(y)
        self.estimator_ = clone(self.estimator).fit(windows, np.repeat(y, counts))
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = windows.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Share of each recording's windows that vote for each class, ``(n_recordings, n_classes)``."""
        check_is_fitted(self)
        windows, counts = self._recordings(X)
        votes = np.searchsorted(self.classes_, self.estimator_.predict(windows))  # one call for all recordings
        tally = np.zeros((len(counts), len(self.classes_)))
        np.add.at(tally, (np.repeat(np.arange(len(counts)), counts), votes), 1)
        return tally / counts[:, None]

    def predict(self, X) -> np.ndarray:
        """The class most of each recording's windows vote for (the first such class on a tie)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def texture_pipeline(classifier, window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP, spread: str = "std") -> Pipeline:
    """``texture`` (:class:`~musadv.features.TextureFeatures`) then ``vote`` (:class:`WindowVote`
    of ``classifier``): recordings' frame features in, recording labels out."""
    return Pipeline([("texture", TextureFeatures(window, hop, spread)), ("vote", WindowVote(classifier))])


def _fitted_pipeline(classifier, window: int, hop: int, spread: str, n_frame_features: int) -> Pipeline:
    """The pipeline of a saved system around its fitted window classifier (stateless texture step)."""
    pipeline = texture_pipeline(classifier, window, hop, spread)
    pipeline["texture"].n_features_in_ = n_frame_features
    vote = pipeline["vote"]
    vote.estimator_, vote.classes_, vote.n_features_in_ = classifier, classifier.classes_, classifier.n_features_in_
    return pipeline


class TextureSystem(AudioClassifier):
    """A recording's frame features through a fitted :func:`texture_pipeline`: texture windows,
    a label per window, the majority vote.

    Parameters
    ----------
    labels : list of str
    stft : STFTConfig
    pipeline : sklearn.pipeline.Pipeline
        Fitted, from a recording's frame features to its label; its classes are label indices.
    info : dict, optional
        Metadata kept in ``model.json`` (training splits, seed, data).
    """

    def __init__(self, labels, stft: STFTConfig, pipeline: Pipeline, info: dict | None = None):
        self.labels, self.stft, self.pipeline = list(labels), stft, pipeline
        self.info, self.path = dict(info or {}), None

    @property
    def texture(self) -> TextureFeatures:
        return self.pipeline["texture"]

    @property
    def classifier(self):
        """The fitted classifier of texture windows."""
        return self.pipeline["vote"].estimator_

    @abstractmethod
    def frame_features(self, frames: np.ndarray | None, signal: np.ndarray | None) -> np.ndarray:
        """Frame features ``(n_frames, n_features)`` of one recording."""

    def features(self, frames: np.ndarray | None, signal: np.ndarray | None = None) -> np.ndarray:
        """Texture windows ``(n_windows, n_features)`` of one recording, as the classifier sees them."""
        return self.texture.transform([self.frame_features(frames, signal)])[0]

    def predict(self, frames: np.ndarray, signal: np.ndarray | None = None, name: str = "recording") -> Prediction:
        """Majority vote of the classifier over the recording's texture windows."""
        return self.predict_many([frames], [signal], [name])[0]

    def predict_many(self, frames: list[np.ndarray], signals: list[np.ndarray | None],
                     names: list[str]) -> list[Prediction]:
        """:meth:`predict` of several recordings, the windows of all voted on in one call of the classifier."""
        frame_features = [self.frame_features(f, s) for f, s in zip(frames, signals)]
        shares = self.pipeline.predict_proba(frame_features)
        classes = self.pipeline["vote"].classes_.astype(int)
        out = []
        for features, share in zip(frame_features, shares):
            confidence = dict.fromkeys(self.labels, 0.0)
            for c, p in zip(classes, share):
                confidence[self.labels[c]] = float(p)
            n_windows = len(texture_starts(len(features), self.texture.window, self.texture.hop))
            out.append(Prediction(self.labels[classes[int(np.argmax(share))]], confidence, n_windows))
        return out


class ForestSystem(TextureSystem):
    """A random forest on texture statistics of a DNN's hidden activations (Table I).

    Parameters
    ----------
    dnn : DNN
        The feature extractor (its labels and STFT settings are the system's).
    pipeline : sklearn.pipeline.Pipeline
        A fitted :func:`texture_pipeline` (spread ``'std'``) of a random forest; classes are
        label indices.
    layers : {'1', '2', '3', 'all'}
    info : dict, optional
    """

    def __init__(self, dnn: DNN, pipeline: Pipeline, layers: str = "all", info: dict | None = None):
        if not isinstance(dnn, DNN):
            raise ModelError("the forest system takes its features from a DNN")
        # A recording has a few texture windows: spreading 500 trees over threads costs more than
        # it saves at prediction (training has set its own cores).
        pipeline["vote"].estimator_.set_params(n_jobs=1)
        super().__init__(dnn.labels, dnn.stft, pipeline, {"data": dnn.info.get("data", {}), **(info or {})})
        self.dnn, self.layers = dnn, layers

    def to(self, device) -> "ForestSystem":
        """The DNN that gives the features to ``device``; the forest votes on the CPU."""
        self.dnn.to(device)
        return self

    def frame_features(self, frames: np.ndarray, signal: np.ndarray | None = None) -> np.ndarray:
        """The DNN's hidden activations ``(n_frames, n_units)`` of a recording's magnitude frames."""
        return dnn_activations(self.dnn, frames, self.layers)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "forest.skops", ".skops") as tmp:
            sio.dump(self.classifier, tmp)
        dnn_dir = Path(self.dnn.path).resolve()
        return write_model_files(path, {"arch": "forest"}, self.labels, self.stft, info={
            **self.info, "layers": self.layers, "window_frames": self.texture.window, "hop_frames": self.texture.hop,
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
        forest = sio.load(file, trusted=untrusted)
        n_units = forest.n_features_in_ // 2
        pipeline = _fitted_pipeline(forest, *_texture(meta, dnn.stft), "std", n_units)
        system = cls(dnn, pipeline, meta["layers"], info=meta)
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
    entries = [e for s in splits for e in cache.split(s)]
    frame_features = (dnn_activations(dnn, cache.frames(e), layers)
                      for e in progress_bar(entries, desc=f"features (layers {layers})", enabled=progress, leave=False))
    rf = RandomForestClassifier(n_estimators=n_trees, n_jobs=jobs or os.cpu_count(), random_state=seed)
    pipeline = texture_pipeline(rf, window, hop, "std").fit(frame_features, [dnn.labels.index(e.label) for e in entries])
    return ForestSystem(dnn, pipeline, layers, info={"trained_on": list(splits), "seed": seed})


def mfcc_zcr(signal: np.ndarray, config: STFTConfig = STFTConfig(), n_mfcc: int = 13,
             frames: np.ndarray | None = None) -> np.ndarray:
    """Per frame: the first ``n_mfcc`` MFCCs and the zero-crossing rate, ``(n_frames, n_mfcc + 1)``.

    MFCCs come from the project's own STFT (46 ms frames, 50 % hop) through librosa's mel
    filterbank and DCT; the zero-crossing rate is counted over the same frames. ``frames``: the
    signal's magnitude frames ``(n_frames, n_bins)`` (:func:`~musadv.spectral.magnitude` with
    ``config``) when the caller has them already (a query's candidate does), else computed here.
    """
    mags = magnitude(np.asarray(signal, np.float32), config) if frames is None else np.asarray(frames)
    power = mags.T.astype(np.float64) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=config.sr, n_fft=config.n_fft)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=n_mfcc)
    zcr = zero_crossing_rate(signal, config)
    n = min(mfcc.shape[1], len(zcr))
    return np.vstack([mfcc[:, :n], zcr[None, :n]]).T


def zero_crossing_rate(signal: np.ndarray, config: STFTConfig = STFTConfig()) -> np.ndarray:
    """The share of samples where the sign changes ``(n_frames,)``, in the frames of ``config``'s STFT."""
    return librosa.feature.zero_crossing_rate(signal, frame_length=config.n_fft, hop_length=config.hop,
                                              center=config.center)[0]


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
    pipeline : sklearn.pipeline.Pipeline
        A fitted :func:`texture_pipeline` (spread ``'var'``) of a :class:`MahalanobisClassifier`;
        classes are label indices.
    config : STFTConfig
    info : dict, optional
    """

    needs_signal = True

    def __init__(self, labels, pipeline: Pipeline, config: STFTConfig = STFTConfig(), info: dict | None = None):
        super().__init__(labels, config, pipeline, info)

    def frame_features(self, frames: np.ndarray | None, signal: np.ndarray | None) -> np.ndarray:
        """MFCCs and zero-crossing rate ``(n_frames, 14)`` of the recording's waveform."""
        if signal is None:
            raise MusadvError("the MFCC baseline needs the waveform, not only magnitudes")
        return mfcc_zcr(signal, self.stft, frames=frames)

    def save(self, path: str | os.PathLike) -> Path:
        c = self.classifier
        return write_model_files(path, {"arch": "mfcc_baseline", "ridge": c.ridge}, self.labels, self.stft,
                                 {"means": c.means_, "inv_covs": c.inv_covs_, "classes": c.classes_},
                                 {**self.info, "window_frames": self.texture.window, "hop_frames": self.texture.hop})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MFCCBaseline":
        path = Path(path)
        meta = read_model_info(path)
        file = path / "model.safetensors"
        try:
            g = load_file(str(file))
        except (OSError, SafetensorError) as exc:
            raise ModelError(f"{file}: cannot be read ({exc})") from None
        classifier = MahalanobisClassifier(meta["config"].get("ridge", 1e-6))
        classifier.means_, classifier.inv_covs_ = g["means"], g["inv_covs"]
        classifier.classes_ = g.get("classes", np.arange(len(meta["labels"])))
        classifier.n_features_in_ = g["means"].shape[1]
        config = STFTConfig.from_dict(meta["stft"])
        pipeline = _fitted_pipeline(classifier, *_texture(meta, config), "var", classifier.n_features_in_ // 2)
        system = cls(meta["labels"], pipeline, config, info=meta)
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
    frame_features = (mfcc_zcr(cache.signal(e), config)
                      for e in progress_bar(entries, desc="MFCC features", enabled=progress, leave=False))
    pipeline = texture_pipeline(MahalanobisClassifier(ridge), window, hop, "var")
    pipeline.fit(frame_features, [cache.labels.index(e.label) for e in entries])
    return MFCCBaseline(cache.labels, pipeline, config, info={"trained_on": list(splits)})


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
    try:
        system = factory()
    except Exception as exc:  # the user's own code: one line first, then its traceback (the cause)
        raise ModelError(f"{spec}: the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(system, AudioClassifier):
        raise ModelError(f"{spec}: returned a {type(system).__name__}, not a musadv AudioClassifier "
                         "(wrap a PyTorch module in musadv.wrappers.TorchClassifier)")
    if isinstance(system, torch.nn.Module):
        check_finite_weights(system, spec)
    system.info = {**system.info, "factory": spec}
    return system


MUSICNN = re.compile(r"musicnn:(?P<name>\w+)(?::(?P<map>.+))?")


def load_musicnn_spec(spec: str) -> AudioClassifier:
    """``musicnn:NAME`` (a tagger) or ``musicnn:NAME:MAP`` (a genre system by the tag map MAP, built-in or a JSON file)."""
    from .musicnn import load_musicnn
    from .taggers import read_tag_map

    match = MUSICNN.fullmatch(spec)
    tag_map = None if match["map"] is None else read_tag_map(match["map"], match["name"].split("_")[0])
    return load_musicnn(match["name"], tag_map, spec=spec)


def load_system(spec: str | os.PathLike) -> AudioClassifier:
    """Load any model: a saved DNN or CDNN, forest system or MFCC baseline (a directory), one of
    musicnn's published taggers (``musicnn:NAME[:MAP]``, see :mod:`musadv.musicnn`), a Hugging
    Face audio classifier (``hf:PATH_OR_NAME[@SECONDS]``, see :mod:`musadv.huggingface`), any of these
    smoothed (``smooth:MODEL@SNR[xN]``, see :mod:`musadv.smoothing`), or the
    classifier a ``package.module:factory`` function returns (see :func:`load_factory`).

    Raises
    ------
    ModelError
        For a spec that names no model, a model file that cannot be read, or a network whose
        weights hold NaN or infinity (:func:`musadv.models.check_finite_weights`).
    """
    if isinstance(spec, str) and spec.startswith("smooth:"):
        from .smoothing import load_smoothed_spec

        return load_smoothed_spec(spec)
    if isinstance(spec, str) and MUSICNN.fullmatch(spec):
        return load_musicnn_spec(spec)
    if isinstance(spec, str) and spec.startswith("hf:"):
        from .huggingface import load_hf_spec

        return load_hf_spec(spec)
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

"""musadv: deep music classifiers and the adversary that tests whether they learned music.

Implements "Deep Learning and Music Adversaries" (Kereliuk, Sturm & Larsen, IEEE TMM 2015).
Modules: :mod:`audio` (files in and out), :mod:`spectral` (STFT), :mod:`datasets`,
:mod:`partitions`, :mod:`cache` (spectra cache), :mod:`synth` (built-in data).
"""

__version__ = "0.1.0"

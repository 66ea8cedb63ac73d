"""Taggers as genre systems: a map from a dataset's labels to a tagger's tags.

A tagger (sigmoid outputs, one independent likelihood per tag, such as musicnn's) says nothing
directly about a dataset whose labels are not its tags. A tag map names, for each label, the
tag that stands for it (or ``None``: the tagger has no tag for that label). The genre system
made from it scores each mapped label by its tag's likelihood and labels a recording with the
highest: it is evaluated, attacked, horse-tested and survival-tested like any system, with no
training. Recordings of labels the map declares uncovered are left out of those judgements
(and counted), labels the map does not name at all are refused.

A map file is JSON: ``{"label": "tag", "other label": null, ...}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from .errors import MusadvError

__all__ = ["TagSelect", "GTZAN_MSD", "GTZAN_MTT", "BUILTIN_MAPS", "read_tag_map", "TAG_THRESHOLD", "tags_on",
           "tag_changes", "tag_changes_summary"]

#: A tag is on a recording when its mean likelihood reaches this (the adversary's add and remove goals too).
TAG_THRESHOLD = 0.5

#: GTZAN's genres -> MSD tags (musicnn's MSD models). Classical, disco and reggae have no MSD tag
#: among the 50 ("dance" is not disco).
GTZAN_MSD = {"blues": "blues", "classical": None, "country": "country", "disco": None, "hiphop": "Hip-Hop",
             "jazz": "jazz", "metal": "metal", "pop": "pop", "reggae": None, "rock": "rock"}
#: GTZAN's genres -> MTT tags (musicnn's MTT models). Blues, disco, hip-hop, jazz and reggae have
#: no MTT tag among the 50.
GTZAN_MTT = {"blues": None, "classical": "classical", "country": "country", "disco": None, "hiphop": None,
             "jazz": None, "metal": "metal", "pop": "pop", "reggae": None, "rock": "rock"}
#: Built-in maps by name and the tag vocabulary (``'MSD'`` or ``'MTT'``) they are for.
BUILTIN_MAPS = {"gtzan": {"MSD": GTZAN_MSD, "MTT": GTZAN_MTT}}


class TagSelect(nn.Module):
    """A tagger's logits for some of its tags, in a given order: ``tagger(x)[:, indices]``."""

    def __init__(self, tagger: nn.Module, indices: list[int]):
        super().__init__()
        self.tagger = tagger
        self.register_buffer("indices", torch.as_tensor(indices, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tagger(x).index_select(-1, self.indices)


def read_tag_map(source: str | os.PathLike, vocabulary: str | None = None) -> dict[str, str | None]:
    """A tag map: a built-in one by name (for the tagger's ``vocabulary``) or a JSON file.

    Parameters
    ----------
    source : str or path
        ``'gtzan'`` or the path of a JSON object ``{label: tag or null}``.
    vocabulary : str, optional
        The tagger's tag set (``'MSD'``, ``'MTT'``), to choose among the built-in maps.

    Raises
    ------
    MusadvError
        If the file cannot be read, is not such an object, or the built-in map has no version
        for the vocabulary.
    """
    if str(source) in BUILTIN_MAPS:
        maps = BUILTIN_MAPS[str(source)]
        if vocabulary not in maps:
            raise MusadvError(f"the built-in tag map {source!r} exists for {', '.join(maps)} tags, not {vocabulary}")
        return dict(maps[vocabulary])
    path = Path(source)
    try:
        mapping = json.loads(path.read_text())
    except OSError as exc:
        raise MusadvError(f"{path}: cannot read the tag map ({exc.strerror or exc}); built-in maps: "
                          f"{', '.join(BUILTIN_MAPS)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MusadvError(f"{path}: not a JSON tag map ({exc})") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                                for k, v in mapping.items()):
        raise MusadvError(f"{path}: a tag map is a JSON object of label -> tag (or null for no tag)")
    return mapping


def tags_on(likelihoods: dict[str, float]) -> set[str]:
    """The tags whose likelihood reaches :data:`TAG_THRESHOLD`."""
    return {tag for tag, p in likelihoods.items() if p >= TAG_THRESHOLD}


def tag_changes(before: dict[str, float], after: dict[str, float]) -> tuple[list[str], list[str]]:
    """The tags a change turned on (gained) and off (lost), each sorted."""
    on_before, on_after = tags_on(before), tags_on(after)
    return sorted(on_after - on_before), sorted(on_before - on_after)


def tag_changes_summary(pairs: list[tuple[dict, dict]]) -> dict | None:
    """Tag-level figures of changed recordings against their originals.

    Parameters
    ----------
    pairs : list of (dict, dict)
        For each changed recording (a draw, a transformed example), the tag likelihoods of the
        recording it changes and its own.

    Returns
    -------
    dict or None
        ``gained_per_change`` and ``lost_per_change`` (mean number of tags turned on and off),
        ``changed`` (share of changes with any tag turned on or off), ``roc_auc`` (per tag, the
        area under the ROC curve of the changed likelihoods against the tags on before: 1 when
        the change keeps every tag's ranking of on and off; tags on everywhere or nowhere before
        are left out) and ``mean_roc_auc``; None without pairs.
    """
    if not pairs:
        return None
    changes = [tag_changes(before, after) for before, after in pairs]
    tags = list(pairs[0][0])
    auc = {}
    for tag in tags:
        truth = np.array([before[tag] >= TAG_THRESHOLD for before, _ in pairs])
        if truth.all() or not truth.any():
            continue
        auc[tag] = float(roc_auc_score(truth, [after[tag] for _, after in pairs]))
    return {"gained_per_change": float(np.mean([len(g) for g, _ in changes])),
            "lost_per_change": float(np.mean([len(lost) for _, lost in changes])),
            "changed": float(np.mean([bool(g or lost) for g, lost in changes])),
            "roc_auc": auc, "mean_roc_auc": float(np.mean(list(auc.values()))) if auc else None, "n": len(pairs)}

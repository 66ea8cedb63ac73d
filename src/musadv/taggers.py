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

import torch
from torch import nn

from .errors import MusadvError

__all__ = ["TagSelect", "GTZAN_MSD", "GTZAN_MTT", "BUILTIN_MAPS", "read_tag_map"]

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

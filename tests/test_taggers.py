"""musadv.taggers: tag maps (built-in and JSON files) and the tag-level figures of changed recordings."""

import json

import pytest

from musadv.errors import MusadvError
from musadv.taggers import GTZAN_MSD, GTZAN_MTT, read_tag_map, tag_changes, tag_changes_summary


def test_built_in_maps_are_chosen_by_the_taggers_vocabulary():
    assert read_tag_map("gtzan", "MSD") == GTZAN_MSD
    assert read_tag_map("gtzan", "MTT") == GTZAN_MTT
    with pytest.raises(MusadvError, match="for MSD, MTT tags, not XYZ"):
        read_tag_map("gtzan", "XYZ")


def test_a_map_file_is_a_json_object_of_label_to_tag_or_null(tmp_path):
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"samba": "dance", "tango": None}))
    assert read_tag_map(good) == {"samba": "dance", "tango": None}
    for name, text in (("list.json", "[1, 2]"), ("number.json", '{"samba": 3}'), ("broken.json", "{")):
        (tmp_path / name).write_text(text)
        with pytest.raises(MusadvError, match=name.replace(".", r"\.")):
            read_tag_map(tmp_path / name)
    with pytest.raises(MusadvError, match="missing.json: cannot read the tag map"):
        read_tag_map(tmp_path / "missing.json")


def test_tags_turned_on_and_off_cross_one_half():
    before = {"rock": 0.7, "pop": 0.2, "jazz": 0.49}
    after = {"rock": 0.3, "pop": 0.2, "jazz": 0.5}
    assert tag_changes(before, after) == (["jazz"], ["rock"])
    assert tag_changes(before, before) == ([], [])


def test_the_summary_counts_changes_and_ranks_each_tag_against_the_clean_tags():
    clean = [{"rock": 0.9, "pop": 0.1}, {"rock": 0.2, "pop": 0.8}, {"rock": 0.6, "pop": 0.3}]
    kept = [(c, c) for c in clean]
    s = tag_changes_summary(kept)
    assert s["gained_per_change"] == 0 and s["lost_per_change"] == 0 and s["changed"] == 0
    assert s["roc_auc"] == {"rock": 1.0, "pop": 1.0}
    # A change that swaps the two tags everywhere: every tag gained and lost, the ranking reversed.
    swapped = [(c, {"rock": c["pop"], "pop": c["rock"]}) for c in clean]
    s = tag_changes_summary(swapped)
    assert s["gained_per_change"] == 1 and s["lost_per_change"] == 1 and s["changed"] == 1
    assert s["roc_auc"]["rock"] == 0.0 and s["mean_roc_auc"] == 0.0
    # A tag on everywhere before has no ROC curve.
    assert "rock" not in tag_changes_summary([({"rock": 0.9, "pop": 0.1}, {"rock": 0.9, "pop": 0.6})])["roc_auc"]
    assert tag_changes_summary([]) is None

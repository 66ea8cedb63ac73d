"""musadv.identity: a system is named by what it computes, not by when or where its files were written."""

import json

from musadv.identity import system_sha256
from musadv.systems import load_system, train_forest


def test_a_forest_written_twice_in_two_folders_is_one_system_and_another_forest_is_not(forest, trained_dnn, learn_cache,
                                                                                         tmp_path):
    system = load_system(forest)
    # skops names the arrays after object ids and the model file records the folder it was made from: both
    # change from one writing to the next.
    first, second = system.save(tmp_path / "a" / "forest"), system.save(tmp_path / "b" / "forest")
    info = json.loads((second / "model.json").read_text())
    info["data"] = {"cache": str(tmp_path / "elsewhere")}
    (second / "model.json").write_text(json.dumps(info))
    assert (first / "forest.skops").read_bytes() != (second / "forest.skops").read_bytes()
    assert system_sha256(load_system(first)) == system_sha256(load_system(second)) == system_sha256(system)
    other = train_forest(trained_dnn, learn_cache, "all", n_trees=100, window=86, hop=43, seed=1, progress=False)
    assert system_sha256(load_system(other.save(tmp_path / "c" / "forest"))) != system_sha256(system)

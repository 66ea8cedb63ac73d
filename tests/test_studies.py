"""musadv.studies: a study's stages run once, resume, and refuse to mix runs made with other settings."""

import json

import pytest

from musadv.errors import MusadvError
from musadv.studies import Stages


def test_a_stage_runs_once_and_a_rerun_reads_its_result(tmp_path):
    calls = []
    st = Stages(tmp_path, lambda m: None)
    assert st("prepare", lambda: calls.append(1) or {"recordings": 4}, settings={"seed": 0}) == {"recordings": 4}
    again = Stages(tmp_path, lambda m: None)
    assert again("prepare", lambda: pytest.fail("ran again"), settings={"seed": 0}) == {"recordings": 4}
    assert calls == [1]


def test_a_stage_recorded_under_other_settings_is_refused(tmp_path):
    Stages(tmp_path, lambda m: None)("prepare", lambda: {}, settings={"seed": 0})
    with pytest.raises(MusadvError, match="stage prepare was done with other settings"):
        Stages(tmp_path, lambda m: None)("prepare", lambda: pytest.fail("mixed"), settings={"seed": 1})


def test_a_stage_an_earlier_musadv_recorded_without_its_settings_is_taken_as_done(tmp_path):
    st = Stages(tmp_path, lambda m: None)
    (tmp_path / "stages" / "train-dnn.json").write_text(json.dumps({"result": {"best_epoch": 3}, "settings": None,
                                                                     "seconds": 1.0}))
    assert st("train-dnn", lambda: pytest.fail("trained again"), settings={"arch": {"arch": "dnn"}}) == {"best_epoch": 3}

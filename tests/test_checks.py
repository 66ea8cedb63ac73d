"""musadv.checks and what the attack does with its findings: a masked gradient never reads as robustness."""

import csv
import json
import subprocess
import sys

import pytest

from musadv.attack import AttackConfig, attack
from musadv.checks import check_gradient
from musadv.errors import MusadvError
from musadv.report import write_report
from musadv.runs import recordings_from_split, run_attacks

FRONT_ENDS = '''
import os

import torch

from musadv.interface import DifferentiableClassifier
from musadv.models import load_model


class FrontEnd(torch.nn.Module, DifferentiableClassifier):
    """A network behind a front end that changes its input magnitudes."""

    def __init__(self, net, front, outputs=None):
        super().__init__()
        self.net, self.front, self.outputs = net, front, outputs
        self.labels, self.stft, self.element_frames = net.labels, net.stft, net.element_frames
        self.info, self.path = {}, None

    def logits(self, mags, phase=None):
        out = self.net.logits(self.front(mags))
        return out if self.outputs is None else self.outputs(out)


def _net():
    return load_model(os.environ["MUSADV_TEST_DNN"])


def rounded():
    def front(mags):  # a local function: the model cannot be pickled
        return torch.round(mags / 1e-3) * 1e-3
    return FrontEnd(_net(), front)


def detached():
    return FrontEnd(_net(), lambda mags: mags.detach())


def noisy():
    return FrontEnd(_net(), lambda mags: mags * (1 + 0.05 * torch.randn_like(mags)))


def softmaxed():
    return FrontEnd(_net(), lambda mags: mags, lambda out: torch.softmax(out, -1))


def plain():
    return FrontEnd(_net(), lambda mags: mags)


def reversed_gradient():
    # The same values, the gradient turned around: usable-looking, and misleading.
    return FrontEnd(_net(), lambda mags: 2 * mags.detach() - mags)
'''


@pytest.fixture(scope="module")
def front_ends(trained_dnn, tmp_path_factory):
    """A module of front ends around trained_dnn, importable as ``front_ends`` from its folder."""
    folder = tmp_path_factory.mktemp("factories")
    (folder / "front_ends.py").write_text(FRONT_ENDS)
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSADV_TEST_DNN", str(trained_dnn.path))
    mp.syspath_prepend(str(folder))
    import front_ends

    yield folder, front_ends
    mp.undo()


@pytest.fixture(scope="module")
def clip(learn_cache):
    return learn_cache.signal(learn_cache.split("test")[0])


def test_a_usable_gradient_passes(front_ends, clip):
    check = check_gradient(front_ends[1].plain(), clip, "clip")
    assert check.ok and not check.warnings and check.line().endswith("gradient usable (checked on clip)")


@pytest.mark.parametrize("name, found", [
    ("rounded", "input gradient is zero"),
    ("detached", "do not depend on the input magnitudes"),
])
def test_a_masked_gradient_is_a_problem(front_ends, clip, name, found):
    check = check_gradient(getattr(front_ends[1], name)(), clip, "clip")
    assert not check.ok and len(check.problems) == 1 and found in check.problems[0]


@pytest.mark.parametrize("name, found", [
    ("noisy", "two predictions of the same recording differ"),
    ("softmaxed", "probabilities where logits are expected"),
])
def test_randomness_and_probabilities_are_warnings(front_ends, clip, name, found):
    check = check_gradient(getattr(front_ends[1], name)(), clip, "clip")
    assert check.ok and len(check.warnings) == 1 and found in check.warnings[0]


def test_a_system_without_a_network_gives_no_gradient(forest, clip):
    from musadv.systems import load_system

    check = check_gradient(load_system(forest), clip, "clip")
    assert check.problems == ["it gives no gradient (not a network musadv can differentiate)"]


@pytest.mark.parametrize("name", ["rounded", "detached"])
def test_a_gradient_attack_on_a_masked_gradient_stops_in_one_line(front_ends, clip, name):
    model = getattr(front_ends[1], name)()
    with pytest.raises(MusadvError, match="attack it through queries") as info:
        attack(model, clip, model.labels[1], AttackConfig(max_iter=5))
    assert "\n" not in str(info.value)


def test_auto_attacks_a_rounding_front_end_through_queries_and_says_so(front_ends, learn_cache, tmp_path):
    model = front_ends[1].rounded()
    refs = recordings_from_split(learn_cache, "test", limit=3)
    config = AttackConfig(snr_db=15, stop="label", max_iter=40)
    m = run_attacks(model, refs, "all_wrong", tmp_path / "auto", config, progress=False)
    assert m["gradient_check"]["attacked_through"] == "queries"
    assert "input gradient is zero" in m["gradient_check"]["problems"][0]
    assert m["success_rate"] >= 2 / 3 and m["queries"]["median"] > 0
    rows = list(csv.DictReader(open(tmp_path / "auto" / "results.csv")))
    assert {r["gradient"] for r in rows} == {"queries"}
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["attack"]["gradient"] == "queries"
    with pytest.raises(MusadvError, match="a gradient attack would read as robustness") as info:
        run_attacks(model, refs, "all_wrong", tmp_path / "refused", config, progress=False, gradient="autograd")
    assert "\n" not in str(info.value)
    # The plain network keeps its gradient attack.
    plain = run_attacks(front_ends[1].plain(), refs[:1], "all_wrong", tmp_path / "plain", config, progress=False)
    assert plain["gradient_check"]["attacked_through"] == "autograd" and plain["queries"] is None


def _cli(folder, *args):
    return subprocess.run([sys.executable, "-m", "musadv.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=folder, env={**__import__("os").environ})


def test_the_command_line_attacks_a_model_it_cannot_pickle_or_differentiate(front_ends, learn_cache, tmp_path):
    folder, _ = front_ends
    files = [learn_cache.source(e) for e in learn_cache.split("test")[:2]]
    target = learn_cache.labels[0]
    run = _cli(folder, "attack", "front_ends:rounded", *files, "--target", target, "--stop", "label", "--max-iter", "30",
               "--jobs", "2", "--out", tmp_path / "cli", "--no-report", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "cannot be sent to worker processes" in run.stderr  # a local function: worked in this process
    assert "gradient check: its input gradient is zero" in run.stderr and "attacked through queries" in run.stderr
    assert "queries per example: median" in run.stdout
    refused = _cli(folder, "attack", "front_ends:detached", files[0], "--target", target, "--gradient", "autograd",
                   "--out", tmp_path / "refused", "--quiet")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "do not depend on the input magnitudes" in refused.stderr


def test_queries_that_succeed_where_gradients_failed_flag_a_masked_gradient(front_ends, learn_cache, tmp_path):
    model = front_ends[1].reversed_gradient()
    refs = recordings_from_split(learn_cache, "test", limit=2)
    assert check_gradient(model, learn_cache.signal(learn_cache.split("test")[0]), "clip").ok  # nothing to see beforehand
    config = AttackConfig(snr_db=15, stop="label", max_iter=20)
    unchecked = run_attacks(model, refs, "all_wrong", tmp_path / "unchecked", config, progress=False)
    assert unchecked["success_rate"] == 0 and unchecked["flags"] == [] and unchecked["query_check"] is None
    m = run_attacks(model, refs, "all_wrong", tmp_path / "checked", config, progress=False, query_check=600)
    assert m["success_rate"] == 0  # the gradient attack's own figure is not changed by the check
    assert m["query_check"]["n_tried"] == 2 and m["query_check"]["n_fooled"] >= 1
    assert m["flags"] == [f"masked gradient: queries reached the goal of {m['query_check']['n_fooled']} of the 2 "
                          "examples the gradient attack missed"]
    rows = list(csv.DictReader(open(tmp_path / "checked" / "results.csv")))
    assert sum(int(r["query_check_success"]) for r in rows) == m["query_check"]["n_fooled"]
    page = write_report(tmp_path / "checked").read_text()
    assert f"Flag: {m['flags'][0]}." in page and "examples the gradient attack missed were reached through queries" in page
    for r in json.loads((tmp_path / "checked" / "metrics.json").read_text())["query_check"]["fooled"]:
        record = json.loads((tmp_path / "checked" / "examples" / f"{r}.json").read_text())
        check = record["query_check"]
        assert check["queries"] <= 600 and check["snr_wave_db"] >= 15.0
        assert (tmp_path / "checked" / check["wav"]).exists() and check["wav"] in record["files"]

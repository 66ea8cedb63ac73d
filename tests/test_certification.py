"""musadv.certification and ``musadv certify``: one certificate per recording, resumable, and figures read from its files."""

import csv
import json

import pytest

from tests.conftest import run_musadv


@pytest.fixture(scope="module")
def certified(trained_dnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("certify") / "run"
    done = run_musadv("certify", trained_dnn.path, "--sigma-snr", "10", "--limit", "6", "-n", "60", "--n0", "10",
                      "--snr", "90,67.7,20", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    return out, done


def test_certified_accuracies_are_those_of_the_written_certificates(certified):
    out, done = certified
    rows = list(csv.DictReader(open(out / "certify.csv")))
    results = json.loads((out / "certify.json").read_text())["results"]
    assert len(rows) == results["n_recordings"] == 6
    correct = [r for r in rows if r["correct"] == "True"]
    assert correct, "no recording certified correctly: nothing below is checked"
    for budget in ("90", "67.7", "20"):
        expected = sum(float(r["certified_snr_db"]) <= float(budget) for r in correct) / len(rows)
        assert results["certified_accuracy"][budget] == expected
    # The budgets fall between certified SNRs (about 67 and 69 dB here), so that the comparison matters.
    assert len({results["certified_accuracy"][b] for b in ("90", "67.7", "20")}) == 3
    assert results["certified_accuracy"]["any"] == len(correct) / len(rows)
    # A certified SNR is the recording's energy over the radius: the radius is a distance in samples.
    for r in correct:
        assert float(r["radius"]) > 0 and float(r["certified_snr_db"]) > float(r["noise_snr_db"])
    assert f"certified accuracy 90 dB {results['certified_accuracy']['90']:.2f}" in done.stdout
    # PREDICT's figures are those of its written labels; an abstention is not correct.
    assert results["predict_accuracy"] == sum(r["predicted"] == r["true"] for r in rows) / len(rows)
    assert results["predict_abstained"] == sum(r["predicted"] == "(abstain)" for r in rows) / len(rows)
    assert {r["predicted"] for r in rows} <= {r["true"] for r in rows} | {r["label"] for r in rows} | {"(abstain)"}


def test_a_certification_resumes_with_the_same_certificates_and_refuses_other_settings(certified, trained_dnn):
    out, _ = certified
    records = sorted((out / "recordings").glob("*.json"))
    kept, removed = records[0].read_text(), records[1]
    before = json.loads(removed.read_text())
    removed.unlink()
    again = run_musadv("certify", trained_dnn.path, "--sigma-snr", "10", "--limit", "6", "-n", "60", "--n0", "10",
                       "--snr", "90,67.7,20", "--out", out, "--quiet")
    assert again.returncode == 0, again.stderr
    after = json.loads(removed.read_text())
    # The noise comes from the seed and the waveform: a recording certified again gets the same certificate.
    assert {k: v for k, v in after.items() if k != "seconds"} == {k: v for k, v in before.items() if k != "seconds"}
    assert records[0].read_text() == kept  # the finished ones were not done again
    other = run_musadv("certify", trained_dnn.path, "--sigma-snr", "10", "--limit", "6", "-n", "80", "--n0", "10",
                       "--out", out, "--quiet")
    assert other.returncode == 1
    assert "holds a certification with other n (60 there, 80 now)" in other.stderr


def test_a_smoothed_model_goes_wherever_a_model_goes(trained_dnn, learn_cache):
    from musadv.runs import recordings_from_split

    ref = recordings_from_split(learn_cache, "test", 1)[0]
    done = run_musadv("classify", f"smooth:{trained_dnn.path}@20x8", ref.source, "--json")
    assert done.returncode == 0, done.stderr
    shares = json.loads(done.stdout.splitlines()[0])["confidence"]
    # Confidences are shares of 8 votes.
    assert sum(shares.values()) == pytest.approx(1.0) and all(round(8 * v, 9) == int(round(8 * v)) for v in shares.values())
    refused = run_musadv("certify", f"smooth:{trained_dnn.path}@20", "--sigma-snr", "20", "--out", "x")
    assert refused.returncode == 2 and "give the base model" in refused.stderr


def test_a_recording_that_cannot_be_certified_is_one_line_and_a_row_of_errors_csv(trained_dnn, tmp_path):
    (tmp_path / "ambient").mkdir()
    (tmp_path / "ambient" / "broken.wav").write_text("not audio")
    done = run_musadv("certify", trained_dnn.path, tmp_path / "ambient" / "broken.wav", "--sigma-snr", "30", "-n", "10",
                      "--n0", "5", "--out", tmp_path / "out", "--quiet")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"1 of 1 recordings could not be certified: see {tmp_path / 'out' / 'errors.csv'}"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "errors.csv")))
    assert len(rows) == 1 and "broken.wav" in rows[0]["error"]

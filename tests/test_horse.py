"""musadv.horse: irrelevant transformations can make a horse perfect or always wrong, judged on what is written."""

import csv
import json

import numpy as np
import pytest

from musadv import audio
from musadv.cache import analyse_file
from musadv.classify import classify_file
from musadv.errors import MusadvError
from musadv.horse import SHARED_ROOMS, horse_test, horse_tests
from musadv.interface import AudioClassifier, Prediction
from musadv.runs import RecordingRef
from musadv.spectral import STFTConfig
from musadv.transforms import Transformation

SR = 22050
BAND_HZ = (1414.0, 2828.0)  # the octave around the EQ's 2 kHz band


class BandLoudness(AudioClassifier):
    """A horse: says 'loud' when the 2 kHz octave holds more than ``threshold_db`` of the energy."""

    def __init__(self, threshold_db: float):
        self.labels, self.stft, self.info, self.path = ["loud", "quiet"], STFTConfig(), {}, None
        self.threshold_db = threshold_db

    def share_db(self, frames: np.ndarray) -> float:
        freqs = np.fft.rfftfreq(self.stft.n_fft, 1 / self.stft.sr)
        power = (frames.astype(np.float64) ** 2).sum(0)
        band = (freqs >= BAND_HZ[0]) & (freqs < BAND_HZ[1])
        return float(10 * np.log10(power[band].sum() / power.sum()))

    def predict(self, frames, signal=None, name="recording"):
        p = 1 / (1 + np.exp(-(self.share_db(frames) - self.threshold_db)))
        conf = {"loud": float(p), "quiet": float(1 - p)}
        return Prediction(max(conf, key=conf.get), conf, len(frames))


@pytest.fixture(scope="module")
def noise_jobs(tmp_path_factory):
    """White-noise recordings, half called 'loud' and half 'quiet': their band shares are all near one level."""
    base = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(6):
        path = base / f"noise{i}.wav"
        audio.save(path, 0.1 * rng.standard_normal(2 * SR).astype(np.float32), SR)
        jobs.append(RecordingRef(str(path), path.name, "loud" if i % 2 else "quiet"))
    return jobs


@pytest.fixture(scope="module")
def horse(noise_jobs):
    system = BandLoudness(threshold_db=0.0)
    # The threshold at the median share of the originals: each recording sits near it, on either side.
    system.threshold_db = float(np.median([system.share_db(analyse_file(j.source, system.stft)[1]) for j in noise_jobs]))
    return system


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def eq_run(horse, noise_jobs, tmp_path_factory):
    out = tmp_path_factory.mktemp("horse") / "eq"
    return out, horse_test(horse, noise_jobs, out, Transformation("eq"), trials=20, progress=False)


def test_eq_within_3_db_makes_a_band_loudness_horse_perfect_and_always_wrong(eq_run):
    out, m = eq_run
    acc = m["normalised_accuracy"]
    assert acc["best"] == 1.0 and acc["worst"] == 0.0
    assert 0.0 < acc["clean"] < 1.0  # the originals alone show neither
    for case in ("clean", "random", "best", "worst"):
        assert np.sum(m["figures"][case]["confusion"]) == 6
    assert m["changed_recordings"] == 1.0 and m["snr_db"]["min"] > 5


def test_the_kept_draws_are_written_and_their_files_get_the_labels_reported(eq_run, horse, noise_jobs):
    out, m = eq_run
    assert m["written_disagree"] == 0
    for job in noise_jobs:
        record = json.loads(next((out / "recordings").glob(f"{job.name[:-4]}-*.json")).read_text())
        right, wrong = record["right"], record["wrong"]
        assert classify_file(horse, out / right["wav"]).label == job.true_label == right["label"]
        assert classify_file(horse, out / wrong["wav"]).label == wrong["label"] != job.true_label
        # The kept draws are the extremes of the true label's confidence among the draws.
        confs = [t["true_confidence"] for t in record["trials"]]
        assert record["trials"][right["trial"]]["true_confidence"] == max(confs)
        assert record["trials"][wrong["trial"]]["true_confidence"] == min(confs)
        # The file holds that draw: the EQ of the original with its gains, rounded to 16 bits.
        params = record["trials"][wrong["trial"]]["params"]
        original, _ = audio.decode(out / record["original_wav"])
        written, _ = audio.decode(out / wrong["wav"])
        np.testing.assert_array_equal(written, audio.quantize_pcm16(Transformation("eq").apply(original, SR, params)))


def test_horse_csv_has_a_row_per_recording_and_draw_with_its_parameters(eq_run):
    out, m = eq_run
    rows = _rows(out / "horse.csv")
    assert len(rows) == 6 * 20
    assert all(len(r["gains_db"].split()) == 10 for r in rows)
    assert sum(r["kept"] == "right" for r in rows) == sum(r["kept"] == "wrong" for r in rows) == 6
    wrong = [r for r in rows if r["label"] != r["true"]]
    assert m["normalised_accuracy"]["random"] == pytest.approx(
        np.mean([np.mean([r["label"] == r["true"] for r in rows if r["trial"] == "0" and r["true"] == lab])
                 for lab in ("loud", "quiet")]))
    assert wrong and all(0.0 <= float(r["true_confidence"]) < 0.5 for r in wrong)


def test_several_systems_share_each_draw_and_get_what_they_get_alone(horse, noise_jobs, tmp_path):
    other = BandLoudness(horse.threshold_db + 1.0)
    jobs = noise_jobs[:3]
    together = horse_tests([(horse, tmp_path / "a"), (other, tmp_path / "b")], jobs, Transformation("gain"), trials=4,
                           progress=False)
    alone = horse_test(other, jobs, tmp_path / "alone", Transformation("gain"), trials=4, progress=False)
    assert together[1] == alone
    for p in (tmp_path / "alone" / "recordings").glob("*.json"):
        assert p.read_text() == (tmp_path / "b" / "recordings" / p.name).read_text()


def test_a_horse_run_resumes_and_refuses_other_settings(eq_run, horse, noise_jobs):
    out, m = eq_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "recordings").glob("*.json")}
    assert horse_test(horse, noise_jobs, out, Transformation("eq"), trials=20, progress=False) == m
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    with pytest.raises(MusadvError, match="transformation"):
        horse_test(horse, noise_jobs, out, Transformation("eq", max_db=6.0), trials=20, progress=False)
    with pytest.raises(MusadvError, match="trials"):
        horse_test(horse, noise_jobs, out, Transformation("eq"), trials=5, progress=False)


def test_a_transformation_that_is_not_random_is_drawn_once_and_a_stretch_has_no_snr(horse, noise_jobs, tmp_path):
    m = horse_test(horse, noise_jobs[:2], tmp_path / "low", Transformation("lowpass", cutoff_hz=1000.0), trials=20,
                   progress=False)
    assert m["n_recordings"] == 2 and len(_rows(tmp_path / "low" / "horse.csv")) == 2  # one draw each
    # A 1 kHz low-pass takes most of the 2 kHz octave and leaves what lies below: every recording is "quiet".
    assert {r["label"] for r in _rows(tmp_path / "low" / "horse.csv")} == {"quiet"}
    s = horse_test(horse, noise_jobs[:2], tmp_path / "stretch", Transformation("stretch"), trials=3, progress=False)
    assert s["snr_db"] is None and all(r["snr_db"] == "" for r in _rows(tmp_path / "stretch" / "horse.csv"))


def test_recordings_without_true_labels_are_refused(horse, noise_jobs, tmp_path):
    with pytest.raises(MusadvError, match="true label"):
        horse_test(horse, [RecordingRef(noise_jobs[0].source, "x.wav")], tmp_path, Transformation("eq"), progress=False)



def test_a_room_is_a_horse_test_whose_draws_are_recorded_and_whose_files_get_the_labels_reported(horse, noise_jobs,
                                                                                                 tmp_path):
    m = horse_test(horse, noise_jobs[:2], tmp_path / "room", Transformation("room", rt60_s=(0.3, 0.6)), trials=3,
                   progress=False)
    rows = _rows(tmp_path / "room" / "horse.csv")
    assert m["n_recordings"] == 2 and len(rows) == 6
    assert all(0.3 <= float(r["rt60_s"]) <= 0.6 for r in rows)
    # Every recording is played in the same rooms, one per trial (a room's simulation takes about a second).
    rooms = {r["trial"]: (r["rt60_s"], r["dims_m"], r["source_m"], r["mic_m"]) for r in rows}
    assert len(rooms) == 3 and len(set(rooms.values())) == 3
    assert all(rooms[r["trial"]] == (r["rt60_s"], r["dims_m"], r["source_m"], r["mic_m"]) for r in rows)
    assert all(len(r["dims_m"].split()) == 3 and r["snr_db"] for r in rows)
    assert m["written_disagree"] == 0
    for job in noise_jobs[:2]:
        record = json.loads(next((tmp_path / "room" / "recordings").glob(f"{job.name[:-4]}-*.json")).read_text())
        for kept in (record["right"], record["wrong"]):
            if kept:
                assert classify_file(horse, tmp_path / "room" / kept["wav"]).label == kept["label"]
        # The file holds that draw: the original in its room, rounded to 16 bits.
        kept = record["right"] or record["wrong"]
        original, _ = audio.decode(tmp_path / "room" / record["original_wav"])
        written, _ = audio.decode(tmp_path / "room" / kept["wav"])
        params = record["trials"][kept["trial"]]["params"]
        np.testing.assert_array_equal(written, audio.quantize_pcm16(Transformation("room").apply(original, SR, params)))


def test_a_room_run_of_per_recording_rooms_is_not_resumed_with_shared_ones(horse, noise_jobs, tmp_path):
    room = Transformation("room", rt60_s=(0.2, 0.3))
    horse_test(horse, noise_jobs[:1], tmp_path / "room", room, trials=1, progress=False)
    settings = json.loads((tmp_path / "room" / "horse.json").read_text())
    assert settings["rooms"] == SHARED_ROOMS
    del settings["rooms"]  # as a run of an earlier musadv wrote it
    (tmp_path / "room" / "horse.json").write_text(json.dumps(settings))
    with pytest.raises(MusadvError, match="other rooms"):
        horse_test(horse, noise_jobs[:2], tmp_path / "room", room, trials=1, progress=False)


def test_the_command_line_runs_a_room_horse_test_on_a_network(trained_dnn, tmp_path):
    from musadv import cli

    cli.main(["horse", str(trained_dnn.path), "--transform", "room", "--rt60", "0.2,0.4", "--trials", "2", "--limit", "2",
              "--out", str(tmp_path / "room"), "--quiet"])
    settings = json.loads((tmp_path / "room" / "horse.json").read_text())
    assert settings["transformation"] == {"kind": "room", "rt60_s": [0.2, 0.4]}
    assert len(_rows(tmp_path / "room" / "horse.csv")) == 4

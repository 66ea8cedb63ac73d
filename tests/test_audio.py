"""musadv.audio: every supported format decodes to float32 mono at the asked rate; bad files fail in one line."""

import numpy as np
import pytest
import soundfile as sf

from musadv import audio
from musadv.errors import AudioError

from .conftest import tone

FORMATS = {".wav": "PCM_16", ".au": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}


@pytest.mark.parametrize("ext", list(FORMATS))
def test_reads_every_format_as_float32_mono(write_tone, ext):
    path = write_tone("clip" + ext, freq=440, seconds=1.0, subtype=FORMATS[ext])
    y, sr = audio.load(path)
    assert sr == 22050 and y.dtype == np.float32 and y.ndim == 1
    # Lossy codecs add delay and padding; the length stays within one codec frame of 1 s.
    assert abs(len(y) - 22050) < 2500
    spectrum = np.abs(np.fft.rfft(y[2500:-2500]))
    assert abs(np.argmax(spectrum) * 22050 / len(y[2500:-2500]) - 440) < 3


def test_lossless_formats_return_the_written_samples(write_tone):
    path = write_tone("clip.flac", seconds=0.5, subtype="PCM_16")
    y, _ = audio.load(path)
    np.testing.assert_allclose(y, audio.quantize_pcm16(tone(seconds=0.5)), atol=1e-7)


def test_stereo_is_averaged_to_mono_or_kept(write_tone):
    path = write_tone("stereo.wav", channels=2, subtype="FLOAT")
    data, _ = sf.read(path, dtype="float32")
    y, _ = audio.load(path)
    np.testing.assert_allclose(y, data.mean(axis=1), atol=1e-7)
    both, _ = audio.load(path, mono=False)
    assert both.shape == (2, len(data))


def test_resamples_any_rate_with_frequency_and_duration_kept(write_tone):
    path = write_tone("hi.wav", freq=1000, seconds=2.0, sr=44100, subtype="FLOAT")
    y, sr = audio.load(path, sr=22050)
    assert sr == 22050 and len(y) == 44100
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 22050 / len(y) - 1000) < 1
    native, native_sr = audio.load(path, sr=None)
    assert native_sr == 44100 and len(native) == 88200


def test_offset_and_duration_read_only_that_part(tmp_path):
    sr = 8000
    ramp = (np.arange(sr * 3) / (sr * 3)).astype(np.float32) * 0.9
    sf.write(tmp_path / "ramp.wav", ramp, sr, subtype="FLOAT")
    y, _ = audio.load(tmp_path / "ramp.wav", sr=None, offset=1.0, duration=0.5)
    np.testing.assert_allclose(y, ramp[sr : sr + sr // 2])


def _one_line_error(path, **kw):
    with pytest.raises(AudioError) as info:
        audio.load(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_empty_and_corrupt_files_are_named(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "empty.wav")
    (tmp_path / "junk.mp3").write_bytes(bytes(range(256)) * 8)
    assert "cannot decode" in _one_line_error(tmp_path / "junk.mp3")
    (tmp_path / "notes.txt").write_text("not audio at all")
    assert "cannot decode" in _one_line_error(tmp_path / "notes.txt")
    assert "directory" in _one_line_error(tmp_path)


@pytest.mark.parametrize("ext", [".wav", ".au", ".flac", ".ogg"])
def test_truncated_files_are_detected(write_tone, ext):
    path = write_tone("full" + ext, seconds=1.0, subtype=FORMATS[ext])
    data = path.read_bytes()
    cut = path.with_name("cut" + ext)
    cut.write_bytes(data[: len(data) // 2])
    msg = _one_line_error(cut)
    assert "truncated" in msg or "cannot decode" in msg


def test_silence_and_too_short_are_rejected_by_check_signal():
    with pytest.raises(AudioError, match="silent"):
        audio.check_signal(np.zeros(22050, np.float32), 22050, 1024, "quiet.wav")
    with pytest.raises(AudioError, match="too short"):
        audio.check_signal(tone(seconds=0.01), 22050, 1024, "blip.wav")
    audio.check_signal(tone(seconds=0.1), 22050, 1024, "ok.wav")


def test_save_writes_16_bit_pcm_that_reads_back_as_quantized(tmp_path):
    y = tone(seconds=0.3)
    path = audio.save(tmp_path / "out" / "a.wav", y, 22050)
    assert sf.info(path).subtype == "PCM_16"
    back, sr = audio.load(path, sr=None)
    np.testing.assert_array_equal(back, audio.quantize_pcm16(y))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_save_float_wav_is_exact_and_may_exceed_full_scale(tmp_path):
    y = tone(seconds=0.3, amp=1.5)
    path = audio.save(tmp_path / "f.wav", y, 22050, float_wav=True)
    assert sf.info(path).subtype == "FLOAT"
    np.testing.assert_array_equal(audio.load(path, sr=None)[0], y)


def test_save_reports_clipping_instead_of_hiding_it(tmp_path):
    y = tone(seconds=0.3, amp=1.2)
    with pytest.raises(AudioError, match="clip") as info:
        audio.save(tmp_path / "loud.wav", y, 22050)
    assert "loud.wav" in str(info.value) and "float" in str(info.value)
    assert not (tmp_path / "loud.wav").exists()
    audio.save(tmp_path / "loud.wav", y, 22050, on_clip="clip")
    assert np.max(np.abs(audio.load(tmp_path / "loud.wav", sr=None)[0])) <= 1.0


def _encode(tool_args, src, dst):
    import shutil
    import subprocess

    if shutil.which(tool_args[0]) is None:
        pytest.skip(f"{tool_args[0]} is not installed (make test installs Debian's lame and vorbis-tools as root)")
    subprocess.run([*tool_args[:-2], str(src), tool_args[-2], str(dst)] if tool_args[-2] == "-o" else
                   [*tool_args, str(src), str(dst)], check=True, capture_output=True)
    return dst


def test_an_mp3_whose_header_estimates_its_length_is_decoded_not_refused(write_tone, tmp_path):
    """Without a LAME/Xing tag the MP3 length is estimated from the file size; players play what decodes."""
    mp3 = _encode(["lame", "--quiet", "-t"], write_tone("src.wav", seconds=3.3, sr=44100, channels=2, subtype="PCM_16"),
                  tmp_path / "song.mp3")
    with sf.SoundFile(mp3) as f:
        announced, decoded = f.frames, len(f.read())
    assert announced > decoded  # the file this test is about
    y, sr = audio.load(mp3)
    assert sr == 22050 and abs(len(y) - decoded * 22050 / 44100) <= 1
    assert audio.decode(mp3)[0].shape == (2, decoded)


def test_a_truncated_flac_is_still_refused(write_tone):
    path = write_tone("clip.flac", seconds=2.0, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(AudioError, match="clip.flac"):
        audio.load(path)

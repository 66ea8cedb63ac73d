"""The ``musadv`` command-line program: a thin layer over the Python API.

Each command parses options, calls one or two library functions and prints where the results
went. Errors caused by input (:class:`musadv.errors.MusadvError`) are printed as one line.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import click

import json

from . import cache, datasets, partitions, synth
from .errors import MusadvError
from .spectral import REFERENCE, STFTConfig


class _FiniteFloat(click.ParamType):
    """A float option that refuses nan and inf: neither is a setting, and both would be written into a run."""

    name = "float"

    def convert(self, value, param, ctx):
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


FINITE = _FiniteFloat()


def _exit_if_skipped(skipped: int, total: int, unit: str, verb: str, out: Path) -> None:
    """A command that could not do part of its work says so in one line on stderr and exits 1."""
    if skipped:
        click.echo(f"{skipped} of {total} {unit}s could not be {verb}: see {out / 'errors.csv'}", err=True)
        sys.exit(1)


def _snr_levels(text: str) -> list[float]:
    """``--snr 40,30,20``: at least one finite level in dB."""
    try:
        snrs = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint="--snr") from None
    if not snrs or not all(math.isfinite(v) for v in snrs):
        raise click.BadParameter(f"give at least one finite level, got {text!r}", param_hint="--snr")
    return snrs


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three comma-separated numbers, got {text!r}") from None
    if len(parts) != 3:
        raise click.BadParameter(f"expected three comma-separated numbers, got {text!r}")
    return parts


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="musadv")
def cli():
    """musadv: is your music classifier learning music, or is it a horse?

    Train deep genre classifiers on magnitude spectra and attack them with an adversary that
    makes them say any label while the audio stays the same (Kereliuk, Sturm & Larsen).
    """


@cli.command("make-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips", default=20, show_default=True, help="Clips per style.")
@click.option("--duration", default=10.0, show_default=True, help="Clip length in seconds.")
@click.option("--seed", default=0, show_default=True, help="Seed; the same seed writes the same files.")
def make_data(out_dir: Path, clips: int, duration: float, seed: int):
    """Write the built-in dataset of synthesized music to OUT_DIR (GTZAN layout, WAV)."""
    ds = synth.generate(out_dir, n_per_style=clips, duration=duration, seed=seed)
    click.echo(f"{len(ds)} clips in {len(ds.labels)} styles ({', '.join(ds.labels)}) in {out_dir}")


def _make_partition(data, labels_file, method, fractions, seed, lists, artists, allow_missing, k):
    ds = datasets.open_dataset(data, labels_file)
    if method == "stratified":
        return [partitions.stratified(ds, fractions, seed)]
    if method == "lists":
        if not lists or len(lists) != 3:
            raise click.UsageError("--method lists needs --lists TRAIN VALID TEST")
        return [partitions.from_lists(ds, *lists, allow_missing=allow_missing)]
    if method == "artist":
        table = datasets.read_artists(artists) if artists else None
        return [partitions.artist_filtered(ds, table, fractions, seed)]
    return partitions.kfold(ds, k, seed)


_partition_options = [
    click.option("--labels-file", type=click.Path(exists=True, dir_okay=False), help="Text file of 'path label' lines (instead of label folders)."),
    click.option("--fractions", default="0.5,0.25,0.25", show_default=True, callback=lambda c, p, v: _fractions(v), help="Train,valid,test shares (stratified and artist methods)."),
    click.option("--seed", default=0, show_default=True, help="Seed of the random split."),
]


def _engine_options(f):
    """``--jobs``, ``--threads`` and ``--ray``, given to the command as one ``engine`` (:mod:`musadv.parallel`)."""

    @click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=None,
                  help="Worker processes on this machine, one recording each at a time (default: all cores).")
    @click.option("--threads", type=click.IntRange(min=1), default=None,
                  help="PyTorch threads per recording (default: the cores shared among --jobs; 1 on Ray); the same "
                       "--threads gives the same files with any --jobs or on Ray.")
    @click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
                  help="One task per recording on a Ray cluster: auto (the cluster this machine joined), HOST:PORT, "
                       "ray://HOST:10001, or local (start one here). Needs pip install 'musadv[ray]' and the run "
                       "directory and audio on storage every node sees at the same path.")
    @click.option("--gpus-per-task", type=click.FloatRange(min=0, min_open=True), default=None,
                  help="With --ray and --device cuda: GPUs each task takes (a fraction shares one).")
    @functools.wraps(f)
    def wrapper(*args, n_jobs, threads, ray_address, gpus_per_task, **kwargs):
        from .parallel import engine_from_options

        # With --device cuda on a machine of several GPUs, the --jobs workers take them in turn.
        engine = engine_from_options(n_jobs, threads, ray_address, gpus_per_task, kwargs.get("device"))
        try:
            return f(*args, engine=engine, **kwargs)
        finally:
            # Waits for workers still starting: one left to start after this process exits finds the
            # pool's shared objects gone and prints a traceback (seen in a fresh-clone CI run).
            engine.close()

    return wrapper


def _device_option(f):
    """``--device``: where the networks, the STFT and the adversary's loop run; given as a checked ``torch.device``."""

    def check(ctx, param, value):
        from .devices import resolve_device

        return resolve_device(value)  # a MusadvError: one line, before any work

    return click.option("--device", default="cpu", show_default=True, callback=check, expose_value=True,
                        help="cpu, cuda, cuda:N, mps or auto (the first GPU there is, else the CPU). Written files and "
                             "their judgement are the same on every device.")(f)


def _apply(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


@cli.command("partition")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--method", type=click.Choice(["stratified", "lists", "artist", "kfold"]), default="stratified", show_default=True)
@_apply(_partition_options)
@click.option("--lists", nargs=3, type=click.Path(exists=True, dir_okay=False), help="TRAIN VALID TEST list files of relative paths (--method lists).")
@click.option("--allow-missing", is_flag=True, help="Drop listed files the dataset lacks instead of failing.")
@click.option("--artists", type=click.Path(exists=True, dir_okay=False), help="CSV with path and artist columns (--method artist).")
@click.option("-k", "--folds", "k", default=5, show_default=True, help="Number of folds (--method kfold).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="JSON file to write (kfold: one file per fold, suffixed -foldN).")
def partition_cmd(data, method, labels_file, fractions, seed, lists, allow_missing, artists, k, out):
    """Split the dataset DATA (folder of label folders, GTZAN folder or CSV) and save it as JSON."""
    parts = _make_partition(data, labels_file, method, fractions, seed, lists, artists, allow_missing, k)
    for i, p in enumerate(parts):
        path = out if len(parts) == 1 else out.with_name(f"{out.stem}-fold{i}{out.suffix}")
        partitions.save(p, path)
        c = p.counts()
        click.echo(f"{path}: train {c['train']}, valid {c['valid']}, test {c['test']} ({p.method})")


@cli.command("prepare")
@click.argument("data", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--partition", "partition_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Partition JSON from 'musadv partition' (default: a seeded stratified split of DATA).")
@_apply(_partition_options)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Cache folder to write.")
@click.option("--duration", type=FINITE, default=None, help="Use only this many seconds of each recording (LMD: 30).")
@click.option("--offset", type=FINITE, default=0.0, show_default=True, help="Start this many seconds into each recording.")
@click.option("--sr", type=int, default=None, help="Analysis sampling rate in Hz (default 22050).")
@click.option("--reference-framing", is_flag=True, help="Symmetric Hann, no centring, as the authors' code (default: periodic Hann, centred: exact resynthesis).")
@click.option("--like", "like_model", metavar="MODEL", default=None,
              help="Analyse as MODEL does (its rate and framing), e.g. musicnn:MSD_musicnn (16 kHz, n_fft 512, hop 256).")
@click.option("--jobs", type=int, default=None, help="Worker processes (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare_cmd(data, partition_file, labels_file, fractions, seed, out, duration, offset, sr, reference_framing, like_model,
                jobs, quiet):
    """Decode every recording once and cache its magnitude spectrum for training and attacks.

    Rerunning skips recordings already done and redoes those whose source file changed.
    Files that cannot be used are skipped and listed in OUT/errors.csv.
    """
    if partition_file is not None:
        part = partitions.load(partition_file, root=data)
    elif data is not None:
        part = _make_partition(data, labels_file, "stratified", fractions, seed, None, None, False, 0)[0]
    else:
        raise click.UsageError("give a DATA folder, a --partition file, or both")
    if like_model is not None:
        if sr is not None or reference_framing:
            raise click.UsageError("--like takes the model's rate and framing: give neither --sr nor --reference-framing")
        config = _load_any_model(like_model).stft
    else:
        base = REFERENCE if reference_framing else STFTConfig()
        config = STFTConfig(sr=sr or base.sr, n_fft=base.n_fft, hop=base.hop, window=base.window, center=base.center)
    result = cache.prepare(part, out, config, offset=offset, duration=duration, jobs=jobs, progress=not quiet)
    n = len(result.entries)
    frames = sum(e.n_frames for e in result.entries)
    click.echo(f"{out}: {n} recordings cached ({frames} frames of {config.n_bins} bins)")
    if result.errors:
        for e in result.errors[:5]:
            click.echo(f"  {e['error']}", err=True)
    _exit_if_skipped(len(result.errors), n + len(result.errors), "recording", "cached", out)


def _pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected two integers like 4x400, got {text!r}") from None
    return a, b


@cli.command("train")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(["dnn", "cdnn"]), default="dnn", show_default=True)
@click.option("--units", type=int, default=None, help="Hidden units per layer (DNN: 50 or 500 in the paper; CDNN: fully connected layer, 50).")
@click.option("--layers", type=int, default=3, show_default=True, help="DNN hidden layers.")
@click.option("--dropout", type=FINITE, default=0.0, show_default=True, help="Dropout probability after hidden layers.")
@click.option("--patch", type=int, default=100, show_default=True, help="CDNN: frames per patch.")
@click.option("--filters", type=int, default=32, show_default=True, help="CDNN: filters per convolution.")
@click.option("--kernel1", default="4x400", show_default=True, help="CDNN: first kernel, frames x bins.")
@click.option("--kernel2", default="8x8", show_default=True, help="CDNN: second kernel, frames x bins.")
@click.option("--epochs", type=int, default=None, help="Most epochs (reference: DNN 200, CDNN 30).")
@click.option("--batch-size", type=int, default=None, help="Elements per step (reference: DNN 1200 frames, CDNN 5 patches).")
@click.option("--lr", type=FINITE, default=None, help="Initial learning rate (reference: DNN 0.01, CDNN 0.001).")
@click.option("--patience", type=int, default=None, help="Epochs without 0.1 %% validation improvement before stopping (10).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--adversarial", type=click.Choice(["fgsm", "fgsm_reference", "pgd", "trades"]), default=None,
              help="Also train on adversarial versions of each batch: fgsm (Alg. 2), fgsm_reference (as the reference code, see "
                   "the README), pgd (Madry et al.'s projected attack within --adv-snr) or trades (clean loss plus --trades-beta "
                   "times the divergence under that attack).")
@click.option("--adv-step", type=FINITE, default=0.25, show_default=True, help="fgsm: sign step mu on raw magnitudes.")
@click.option("--adv-fraction", type=FINITE, default=None,
              help="fgsm, pgd: replace this share of each batch by adversarial versions (default: join them to the batch; 1: Madry et al.).")
@click.option("--adv-snr", type=FINITE, default=30.0, show_default=True,
              help="pgd, trades: the budget, the smallest SNR in dB of a frame's or patch's change.")
@click.option("--adv-steps", type=int, default=5, show_default=True, help="pgd, trades: gradient steps of the attack.")
@click.option("--trades-beta", type=FINITE, default=6.0, show_default=True, help="trades: weight of the divergence (0: plain training).")
@click.option("--noise-snr", type=FINITE, default=None,
              help="Train on each batch as it would be with white noise this many dB below a -20 dBFS recording "
                   "(the base of smooth:MODEL@SNR at the same level).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Model directory to write.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from the checkpoint in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar (epoch lines are still printed).")
@_device_option
def train_cmd(cache_dir, arch, units, layers, dropout, patch, filters, kernel1, kernel2, epochs, batch_size, lr,
              patience, seed, adversarial, adv_step, adv_fraction, adv_snr, adv_steps, trades_beta, noise_snr, out, resume, quiet,
              device):
    """Train a DNN or CDNN on the train split of a prepared cache (early stopping on valid)."""
    from .training import TrainConfig, train

    if arch == "dnn":
        spec = {"arch": "dnn", "hidden": units or 50, "layers": layers, "dropout": dropout}
    else:
        spec = {"arch": "cdnn", "patch": patch, "filters": filters, "kernel1": list(_pair(kernel1)),
                "kernel2": list(_pair(kernel2)), "hidden": units or 50, "dropout": dropout}
    config = TrainConfig.reference(arch, max_epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                                   adversarial=adversarial, adv_step=adv_step, adv_fraction=adv_fraction,
                                   adv_snr_db=adv_snr, adv_steps=adv_steps, trades_beta=trades_beta, noise_snr_db=noise_snr)
    model = train(cache.SpectraCache(cache_dir), spec, out, config, resume=resume, progress=not quiet, device=device)
    t = model.info["training"]
    click.echo(f"{out}: best epoch {t['best_epoch']}, validation error {t['best_valid_error']}")
    if t["diverged_epoch"] is not None:
        click.echo(f"{out}: training diverged in epoch {t['diverged_epoch']} (its loss is not finite) and stopped; "
                   f"the model is epoch {t['best_epoch']}'s: try a lower --lr", err=True)
        sys.exit(1)


def _load_any_model(spec: str, device=None):
    """Any MODEL (see ``_MODEL_HELP``) on ``device`` (default the CPU); imported lazily to keep --help fast."""
    from .systems import load_system

    system = load_system(spec)
    return system if device is None else system.to(device)


_MODEL_HELP = ("MODEL is a model directory (DNN, CDNN, forest, MFCC baseline), one of musicnn's taggers "
               "(musicnn:MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg; musicnn:NAME:gtzan or :MAP.json for a genre "
               "system made from its tags), a Hugging Face audio classifier (hf:DIR or hf:NAME in the local cache; "
               "hf:DIR@SECONDS sets a waveform model's chunk), or package.module:factory, a Python function returning a musadv "
               "classifier (see the README, 'Bring your own model').")


@cli.command("classify", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--duration", type=FINITE, default=None, help="Use only this many seconds of each file.")
@click.option("--offset", type=FINITE, default=0.0, show_default=True, help="Start this many seconds into each file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file instead of text.")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Print only the N most likely labels (default: all; a tagger's 10 most likely tags).")
@_device_option
def classify_cmd(model_spec, files, duration, offset, as_json, top, device):
    """Label audio FILES (any format, rate, channels, length) with MODEL.

    Prints each file's label and the confidence of every label (mean element posterior; for a
    tagger, such as musicnn:MSD_musicnn, the mean tag likelihood of its 3 s patches, most likely
    first). A file that cannot be used gets a one-line error; the others are still classified.
    """
    from .classify import classify_file

    model = _load_any_model(model_spec, device)
    failed = 0
    for f in files:
        try:
            pred = classify_file(model, f, offset=offset, duration=duration)
        except MusadvError as exc:
            failed += 1
            if as_json:
                click.echo(json.dumps({"file": str(f), "error": str(exc)}))
            click.echo(f"error: {exc}", err=True)
            continue
        if as_json:
            click.echo(json.dumps({"file": str(f), **pred.to_dict()}))
        else:
            ranked = sorted(pred.confidence.items(), key=lambda kv: -kv[1])
            tagger = model.activation == "sigmoid"
            shown = ranked[: top or (10 if tagger else len(ranked))]
            more = f" ... {len(ranked) - len(shown)} more" if len(shown) < len(ranked) else ""
            click.echo(f"{f}: {pred.label}  (" + ("tags: " if tagger else "") +
                       ", ".join(f"{k} {v:.3f}" for k, v in shown) + more + ")")
    if failed:
        sys.exit(1)


@cli.command("test", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True)
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Prepared cache (default: the one the model was trained on).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for predictions.csv, metrics.json and metrics.txt (default: MODEL_DIR/test-SPLIT).")
@_device_option
def test_cmd(model_spec, split, cache_dir, out, device):
    """Figures of merit of MODEL on a split: confusion matrix, recall, precision, F, binomial test."""
    from .evaluate import evaluate_model, format_table

    model = _load_any_model(model_spec, device)
    if out is None and model.path is None:
        raise click.UsageError("give --out for a model made by a factory")
    out = out or Path(model.path) / f"test-{split}"
    fom = evaluate_model(model, _model_cache(model, cache_dir), split, out)
    click.echo(format_table(fom))
    click.echo(f"written to {out}")


_TRANSFORM_KINDS = ["eq", "stretch", "lowpass", "gain", "mp3", "noise", "resample", "room"]
# The settings every transformation command shares (the attack's robust adversary takes those
# that do not clash with its own options: its EQ, gain and stretch ranges are the defaults).
_shared_transform_settings = [
    click.option("--cutoff", type=FINITE, default=9000.0, show_default=True, help="lowpass: cut-off in Hz."),
    click.option("--bitrate", type=int, default=128, show_default=True, help="mp3: constant bitrate in kbit/s (32-320)."),
    click.option("--rt60", default="0.2,0.8", show_default=True, help="room: the reverberation time's range in seconds, LOW,HIGH."),
    click.option("--noise-snr", type=FINITE, default=30.0, show_default=True, help="noise: SNR of the added white noise in dB."),
    click.option("--resample-sr", type=int, default=16000, show_default=True, help="resample: the lower rate in Hz."),
]

@cli.command("attack", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default=None, help="Attack a split of the cache instead of FILES.")
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Prepared cache for --split (default: the model's).")
@click.option("--policy", default=None, help="random, all_wrong, perfect, every_label or label:NAME (default: random for --split).")
@click.option("--target", default=None, help="Make the model say this label (same as --policy label:NAME).")
@click.option("--snr", type=FINITE, default=15.0, show_default=True, help="Minimum SNR in dB of the adversarial example.")
@click.option("--no-snr-limit", is_flag=True, help="No SNR limit (Table III).")
@click.option("--step", type=FINITE, default=None, help="The paper's gradient step mu on raw magnitudes (Table II: 0.1); depends on the model's gradient scale. Default: the scale-free step of --step-fraction.")
@click.option("--step-fraction", type=FINITE, default=0.1, show_default=True, help="Without --step: each step moves the magnitudes by this fraction of the SNR ball's radius (normalised gradient), whatever the model.")
@click.option("--threshold", type=FINITE, default=0.9, show_default=True, help="Stop when the target's mean posterior reaches this.")
@click.option("--stop", type=click.Choice(["threshold", "label"]), default="threshold", show_default=True,
              help="threshold: stop at --threshold; label: stop as soon as the model says the target.")
@click.option("--goal", type=click.Choice(["label", "add", "remove"]), default="label", show_default=True,
              help="label: make the target the model's label (top tag); add / remove: for taggers, make the target tag's "
                   "likelihood reach 0.5 / fall below it (random targets among the tags a recording lacks / has).")
@click.option("--max-iter", type=int, default=100, show_default=True, help="Most iterations.")
@click.option("--momentum/--no-momentum", default=True, show_default=True, help="FISTA momentum.")
@click.option("--order", type=click.Choice(["consistent", "paper"]), default="consistent", show_default=True,
              help="consistent: SNR bound on the waveform, 16-bit rounding in the loop; paper: GL then SNR ball on magnitudes.")
@click.option("--float-wav", is_flag=True, help="Write 32-bit float WAVs and do not round to 16 bits in the loop.")
@click.option("--model-rate", is_flag=True, help="Write examples mono at the model's rate (default: at each original's rate and channels).")
@click.option("--repairs", type=int, default=1, show_default=True, help="Rounds of more iterations for a written file that misses its target.")
@click.option("--visqol", is_flag=True, help="Also measure each example's ViSQOL MOS-LQO against its original (about 3 s per 30 s).")
@click.option("--nmr", is_flag=True, help="Also measure each example's noise-to-mask ratio against its original's masking "
              "threshold (MPEG-1 psychoacoustic model 1; about 2 s per 30 s; always with --masking).")
@click.option("--minimize", is_flag=True, help="Write each example at the highest SNR (to 0.5 dB, --snr the floor) at which the model says the target: a warm-started search; the SNR columns are then minimal-perturbation SNRs.")
@click.option("--limit", type=int, default=None, help="Attack only the first N recordings of the split.")
@click.option("--duration", type=FINITE, default=None, help="FILES: use only this many seconds.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random targets.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory (rerun to resume).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--no-report", is_flag=True, help="Do not write report.html at the end.")
@click.option("--masking", "masking_db", type=FINITE, default=None,
              help="Keep the change this many dB under the music's masking threshold (MPEG-1 psychoacoustic model 1) "
                   "in every STFT bin, beside the SNR bound; results.csv then gives each file's noise-to-mask ratio.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Attack this many examples at once, one network pass per iteration for all (what makes a GPU pay); "
                   "the examples get the labels, successes and SNRs of --batch 1. Not with --minimize.")
@click.option("--robust-to", default=None, metavar="KIND[,KIND...]",
              help="Make each example survive these transformations (" + ", ".join(_TRANSFORM_KINDS) + "): every "
                   "iteration also judges transformed copies (expectation over transformation); results.csv gives the "
                   "share of 10 fresh draws of each that keep the target. Settings as for survive (EQ +-3 dB, gain "
                   "+-6 dB, stretch +-6 %, order-4 low-pass). Not with --minimize.")
@click.option("--draws", type=click.IntRange(min=1), default=2, show_default=True,
              help="--robust-to: copies per iteration of each random transformation.")
@click.option("--black-box", is_flag=True,
              help="Attack through queries alone: each step estimated from the model's predictions of changed "
                   "recordings, nothing else (any MODEL: the forest, the MFCC baseline, a network). Same goals, "
                   "bounds and files as the gradient attack; results.csv counts each example's queries.")
@click.option("--gradient", type=click.Choice(["auto", "autograd"]), default="auto", show_default=True,
              help="Without --black-box: the model is checked first (input gradient missing, zero or not finite; "
                   "randomness; probabilities for logits). auto: such a model is attacked through queries, and "
                   "the finding is said in one line; autograd: such a model is refused.")
@click.option("--max-queries", type=click.IntRange(min=1), default=None,
              help="Through queries: most predictions per example (the default: as many as --max-iter steps take).")
@click.option("--surrogate", "surrogate_spec", default=None, metavar="MODEL",
              help="With --black-box: a network on the same analysis settings and labels (the DNN a forest's features "
                   "come from, any model you have), or an MFCC baseline (its differentiable replica), whose gradient "
                   "guides the steps while it lowers MODEL's loss; MODEL is still judged by its predictions alone.")
@click.option("--query-check", type=click.IntRange(min=0), default=500, show_default=True,
              help="A gradient attack's example whose file misses its goal is tried again through at most this many "
                   "queries; queries succeeding where gradients failed flag a masked gradient (0: no check).")
@_apply(_shared_transform_settings)
@_engine_options
@_device_option
def attack_cmd(model_spec, files, split, cache_dir, policy, target, snr, no_snr_limit, step, step_fraction, threshold, stop, goal,
               max_iter, momentum, order, float_wav, model_rate, repairs, visqol, nmr, minimize, limit, duration, seed, out, quiet,
               no_report, masking_db, batch, robust_to, draws, black_box, gradient, max_queries, surrogate_spec, query_check,
               engine, device, **settings):
    """Make MODEL say a chosen label for FILES, or for every recording of a --split, within an SNR.

    Writes the adversarial WAVs, results.csv (one row per example, judged on the decoded file),
    traces.csv and metrics.json into --out. A killed run resumes when rerun with the same options.
    """
    from .attack import AttackConfig
    from .models import check_compatible
    from .runs import recordings_from_files, recordings_from_split, run_attacks

    if bool(files) == bool(split):
        raise click.UsageError("give audio FILES or --split, not both or neither")
    if target and policy:
        raise click.UsageError("give --target or --policy, not both")
    policy = f"label:{target}" if target else (policy or ("random" if split else None))
    if policy is None:
        raise click.UsageError("for FILES give --target NAME or --policy")
    model = _load_any_model(model_spec, device)
    if goal != "label" and model.activation != "sigmoid":
        raise click.UsageError(f"--goal {goal} adds or removes a tag: {model_spec} is not a tagger")
    extra = {}
    if split:
        spectra = _model_cache(model, cache_dir)
        check_compatible(model, spectra.config, spectra.labels, str(spectra.path))
        recordings = recordings_from_split(spectra, split, limit, model.labels)
        extra = {"cache": str(spectra.path.resolve()), "split": split}
    else:
        recordings = recordings_from_files(files, duration=duration)
    robust = ()
    if robust_to:
        kinds = [k.strip() for k in robust_to.split(",")]
        unknown = [k for k in kinds if k not in _TRANSFORM_KINDS]
        if unknown:
            raise click.BadParameter(f"{', '.join(unknown)}: not a transformation ({', '.join(_TRANSFORM_KINDS)})",
                                     param_hint="--robust-to")
        robust = tuple(_transformation(k, **settings) for k in kinds)
        if minimize:
            raise click.UsageError("--minimize seeks where the label changes; --robust-to is judged on transformed copies "
                                   "too: not both")
    surrogate = None
    if surrogate_spec is not None:
        if not black_box:
            raise click.UsageError("--surrogate guides an attack through queries: give --black-box")
        from .replicas import as_surrogate

        surrogate = as_surrogate(_load_any_model(surrogate_spec, device))
    try:
        config = AttackConfig(snr_db=None if no_snr_limit else snr, step=step, step_fraction=step_fraction,
                              threshold=threshold, stop=stop, max_iter=max_iter, momentum=momentum, order=order,
                              quantize=not float_wav, goal=goal, masking_db=masking_db, robust_to=robust, draws=draws,
                              gradient="queries" if black_box else "autograd", max_queries=max_queries,
                              surrogate=surrogate)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if max_queries is not None and not black_box and gradient == "autograd":
        raise click.UsageError("--max-queries limits an attack through queries: give --black-box (or --gradient auto)")
    if repairs < 0:
        raise click.BadParameter("must be >= 0", param_hint="--repairs")
    if minimize and (order != "consistent" or no_snr_limit):
        raise click.UsageError("--minimize searches in the consistent order above the --snr floor "
                               "(not with --order paper or --no-snr-limit)")
    if batch > 1 and minimize:
        raise click.UsageError("--minimize searches one example at a time; leave out --batch")
    metrics = run_attacks(model, recordings, policy, out, config, seed=seed, progress=not quiet, extra=extra,
                          model_rate=model_rate, repairs=repairs, visqol=visqol, nmr=nmr, minimal=minimize, engine=engine,
                          batch=batch, gradient=gradient, query_check=query_check)
    _print_attack_summary(metrics, out)
    if not no_report and metrics["n_examples"]:
        from .report import write_report

        click.echo(f"report: {write_report(out)}")
    _exit_if_skipped(metrics["n_skipped"], len(recordings), "recording", "attacked", out)


def _print_attack_summary(m: dict, out: Path) -> None:
    check = m.get("gradient_check")
    if check and (check["problems"] or check["warnings"]):
        through = " - attacked through queries" if check["attacked_through"] == "queries" and check["problems"] else ""
        click.echo(f"gradient check: {'; '.join(check['problems'] + check['warnings'])}{through}", err=True)
    if not m["n_examples"]:
        click.echo(f"{out}: no examples")
        return
    snr, trim = m["snr_wave_db"], m["snr_trim_db"]
    line = f"{out}: {m['n_examples']} examples, success {m['success_rate']:.1%} on the decoded files"
    if snr:
        line += f", SNR {snr['mean']:.1f} +- {snr['std']:.1f} dB (median {snr['median']:.1f}, min {snr['min']:.1f})"
    if trim:
        line += f", edge-trimmed {trim['mean']:.1f} dB (min {trim['min']:.1f})"
    if m["visqol_mos"]:
        line += f", ViSQOL MOS-LQO {m['visqol_mos']['mean']:.2f} (min {m['visqol_mos']['min']:.2f})"
    if m.get("nmr_db"):
        line += (f", NMR median {m['nmr_db']['median']:.1f} dB (max {m['nmr_db']['max']:.1f}), "
                 f"{m['above_mask_share']['mean']:.2%} of critical bands (per frame) above the masking threshold")
    click.echo(line)
    if m.get("held_out"):
        shares = ", ".join(f"{kind} {'-' if v is None else f'{v:.1%}'}" for kind, v in m["held_out"].items())
        click.echo(f"held-out transformed copies that keep the target (over the successful examples): {shares}")
    if m.get("queries"):
        q = m["queries"]
        click.echo(f"queries per example: median {q['median']:.0f} (mean {q['mean']:.0f}, max {q['max']:.0f})")
    if m.get("minimal"):
        mm = m["minimal"]
        median = "inf" if mm["median_snr_db"] is None else f"{mm['median_snr_db']:.1f} dB"
        click.echo(f"minimal perturbations: median SNR {median} over the {mm['n_success']} examples that reached "
                   f"their target ({mm['n_unchanged']} needed no change), {mm['mean_levels']:.1f} levels and "
                   f"{mm['mean_iterations']:.0f} iterations per example")
    if m["failed"]:
        click.echo(f"{len(m['failed'])} written files miss their target: " + ", ".join(m["failed"][:10])
                   + (" ..." if len(m["failed"]) > 10 else ""))
    if "normalised_accuracy" in m:
        click.echo(f"normalised accuracy {m['normalised_accuracy_before']:.3f} before, {m['normalised_accuracy']:.3f} under attack")
    if m.get("query_check"):
        qc = m["query_check"]
        click.echo(f"query check: {qc['n_fooled']} of the {qc['n_tried']} examples the gradient attack missed were "
                   "reached through queries")
    for flag in m.get("flags") or []:
        click.echo(f"flag: {flag}", err=True)
    if m["lost_when_written"]:
        click.echo(f"warning: {len(m['lost_when_written'])} examples reached their target in memory but not in the "
                   "written 16-bit file; rerun with --float-wav to keep them", err=True)


def _model_cache(model, cache_dir):
    cache_dir = cache_dir or model.info.get("data", {}).get("cache")
    if not cache_dir:
        raise click.UsageError("the model does not name its cache; give --cache")
    return cache.SpectraCache(cache_dir)


@cli.command("train-forest")
@click.argument("dnn_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--layers", type=click.Choice(["1", "2", "3", "all"]), default="all", show_default=True, help="Hidden layers whose activations are the features.")
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Prepared cache (default: the DNN's).")
@click.option("--trees", type=int, default=500, show_default=True)
@click.option("--window", type=click.IntRange(min=1), default=200, show_default=True, help="Texture window in STFT frames (the reference's 200 = 4.6 s).")
@click.option("--hop", type=click.IntRange(min=1), default=100, show_default=True, help="Texture window hop in STFT frames.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def train_forest_cmd(dnn_dir, layers, cache_dir, trees, window, hop, seed, out):
    """Train a random forest on a DNN's hidden activations (texture windows, majority vote)."""
    from .evaluate import evaluate_model
    from .systems import train_forest

    dnn = _load_any_model(dnn_dir)
    spectra = _model_cache(dnn, cache_dir)
    system = train_forest(dnn, spectra, layers, n_trees=trees, window=window, hop=hop, seed=seed)
    system.save(out)
    fom = evaluate_model(system, spectra, "test")
    click.echo(f"{out}: forest on layers {layers}, normalised accuracy on test {fom['normalised_accuracy']:.3f}")


@cli.command("train-baseline")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--window", type=click.IntRange(min=1), default=200, show_default=True, help="Texture window in STFT frames (the reference's 200 = 4.6 s).")
@click.option("--hop", type=click.IntRange(min=1), default=100, show_default=True, help="Texture window hop in STFT frames.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def train_baseline_cmd(cache_dir, window, hop, out):
    """Train the MFCC + ZCR minimum-Mahalanobis baseline on train + valid of a cache."""
    from .evaluate import evaluate_model
    from .systems import train_baseline

    spectra = cache.SpectraCache(cache_dir)
    system = train_baseline(spectra, window=window, hop=hop)
    system.info["data"] = {"cache": str(Path(cache_dir).resolve())}
    system.save(out)
    fom = evaluate_model(system, spectra, "test")
    click.echo(f"{out}: MFCC baseline, normalised accuracy on test {fom['normalised_accuracy']:.3f}")


@cli.command("rescore", epilog=_MODEL_HELP)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_spec", metavar="MODEL")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: RUN_DIR/rescore-<model folder>.")
def rescore_cmd(run_dir, model_spec, out):
    """Judge the original and adversarial audio of an attack run with MODEL (e.g. a forest)."""
    from .runs import rescore

    m = rescore(_load_any_model(model_spec), run_dir, out)
    line = f"{m['n_examples']} examples: the adversary's target reached by this model in {m['success_rate']:.1%}"
    if "normalised_accuracy" in m:
        line += f"; normalised accuracy {m['normalised_accuracy_before']:.3f} before, {m['normalised_accuracy']:.3f} under attack"
    click.echo(line)


@cli.command("robustness", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True, help="The recordings judged.")
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Prepared cache (default: the model's).")
@click.option("--snr", "levels", default="60,50,40,30,20,10", show_default=True, help="SNR levels in dB, comma-separated.")
@click.option("--policy", default="all_wrong", show_default=True, help="Targets: random, all_wrong, perfect or label:NAME.")
@click.option("--adversary", "adversary_spec", default=None, help="Network whose adversarial examples MODEL is judged on (default: MODEL; needed for a forest or baseline).")
@click.option("--examples-from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Judge the examples of this robustness run of a network instead of attacking again (same recordings, levels, policy, seed).")
@click.option("--step-fraction", type=FINITE, default=0.1, show_default=True, help="The adversary's scale-free step.")
@click.option("--max-iter", type=int, default=100, show_default=True, help="Most iterations per level.")
@click.option("--masking", "masking_db", type=FINITE, default=None,
              help="The perceptual adversary: its change kept this many dB under the music's masking threshold (see attack).")
@click.option("--nmr", is_flag=True, help="Also measure each level's example's noise-to-mask ratio (about 2 s per 30 s).")
@click.option("--limit", type=int, default=None, help="Only the first N recordings of the split.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the targets and the noise.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory (rerun to resume).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_engine_options
@_device_option
def robustness_cmd(model_spec, split, cache_dir, levels, policy, adversary_spec, examples_from, step_fraction, max_iter,
                   masking_db, nmr, limit, seed, out, quiet, engine, device):
    """Accuracy of MODEL under the adversary and under noise controls at each SNR level.

    For each level and recording: the adversarial example within that SNR, white noise, noise
    shaped like the recording's spectrum, and the adversary's own magnitudes with random phase,
    all at exactly that SNR. Writes curve.csv, curve.png, results.csv, metrics.json and
    report.html into --out.
    """
    from .attack import AttackConfig
    from .models import check_compatible
    from .report import write_report
    from .robustness import CURVE_PATIENCE, robustness_curve
    from .runs import recordings_from_split

    snrs = _snr_levels(levels)
    if adversary_spec and examples_from:
        raise click.UsageError("give --adversary or --examples-from, not both")
    try:
        config = AttackConfig(step_fraction=step_fraction, max_iter=max_iter, patience=CURVE_PATIENCE, masking_db=masking_db)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    system = _load_any_model(model_spec, device)
    adversary = _load_any_model(adversary_spec, device) if adversary_spec else None
    # A forest or baseline made outside musadv may not name its cache; its adversary's serves.
    named = system if system.info.get("data") or adversary is None else adversary
    spectra = _model_cache(named, cache_dir)
    check_compatible(system, spectra.config, spectra.labels, str(spectra.path))
    recordings = recordings_from_split(spectra, split, limit, system.labels)
    m = robustness_curve(system, recordings, out, snrs, policy, config, seed=seed,
                         adversary=adversary, examples_from=examples_from, progress=not quiet,
                         extra={"cache": str(spectra.path.resolve()), "split": split}, engine=engine,
                         nmr=nmr or masking_db is not None)
    click.echo(f"{out}: {m['n_recordings']} recordings; clean normalised accuracy {_num(m['clean_accuracy'])}")
    measured = any(row.get("adversary_nmr_db_median") is not None for row in m["curve"])
    click.echo("   SNR  adversary  white  shaped  random-phase  success" + ("  adversary's median NMR dB" if measured else ""))
    for row in m["curve"]:
        nmr_db = row.get("adversary_nmr_db_median")
        click.echo(f"{row['snr_db']:6.1f}  {_num(row['adversary_accuracy']):>9s}  {_num(row['white_noise_accuracy']):>5s}  "
                   f"{_num(row['shaped_noise_accuracy']):>6s}  {_num(row['random_phase_accuracy']):>12s}  {row['success_rate']:6.1%}"
                   + (f"  {'-inf' if nmr_db is None else f'{nmr_db:.1f}':>26s}" if measured else ""))
    click.echo(f"report: {write_report(out)}")
    _exit_if_skipped(m["n_skipped"], len(recordings), "recording", "judged", out)


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


_transform_options = [
    click.option("--transform", "kind", required=True, type=click.Choice(_TRANSFORM_KINDS),
                 help="eq: random smooth EQ; stretch: pitch-preserving tempo change; lowpass: Butterworth; gain: level; mp3: MP3 "
                      "round-trip; noise: white noise; resample: to a lower rate and back; room: a random simulated room "
                      "(pyroomacoustics)."),
    click.option("--max-db", type=FINITE, default=None, help="eq: each band's gain within +-dB (default 3); gain: within +-dB (default 6)."),
    click.option("--max-rate-change", type=FINITE, default=0.06, show_default=True, help="stretch: tempo factor within 1 +- this."),
    click.option("--order", "filter_order", type=int, default=4, show_default=True, help="lowpass: Butterworth order."),
    *_shared_transform_settings,
]


def _transformation(kind, max_db=None, max_rate_change=0.06, cutoff=9000.0, filter_order=4, bitrate=128, rt60="0.2,0.8",
                    noise_snr=30.0, resample_sr=16000):
    from .transforms import Transformation, mp3_available

    try:
        rt60_s = tuple(float(v) for v in rt60.split(","))
    except ValueError:
        raise click.BadParameter(f"{rt60!r} is not LOW,HIGH seconds", param_hint="--rt60") from None

    if kind == "mp3" and not mp3_available():
        raise click.UsageError("this libsndfile cannot encode MP3 (1.1.0 or later can)")
    try:
        return Transformation(kind, max_db=max_db, max_rate_change=max_rate_change, cutoff_hz=cutoff, order=filter_order,
                              bitrate_kbps=bitrate, rt60_s=rt60_s, snr_db=noise_snr, resample_sr=resample_sr)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@cli.command("horse", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True, help="The recordings transformed.")
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Prepared cache (default: the model's).")
@_apply(_transform_options)
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True, help="Random draws per recording.")
@click.option("--limit", type=int, default=None, help="Only the first N recordings of the split.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory (rerun to resume).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_engine_options
@_device_option
def horse_cmd(model_spec, split, cache_dir, kind, trials, limit, seed, out, quiet, engine, device, **settings):
    """Is MODEL a horse? Its figures of merit under irrelevant transformations of each recording.

    Each recording is transformed up to --trials times (a random draw each time); per recording
    a draw that makes MODEL right and one that makes it wrong are kept and written as WAV.
    Prints the normalised accuracy on the originals, on one random draw per recording, and the
    best and worst that choosing draws reaches; writes horse.csv, horse.json and report.html.
    """
    from .horse import CASES, horse_test
    from .models import check_compatible
    from .report import write_report
    from .runs import recordings_from_split

    transformation = _transformation(kind, **settings)
    system = _load_any_model(model_spec, device)
    spectra = _model_cache(system, cache_dir)
    check_compatible(system, spectra.config, spectra.labels, str(spectra.path))
    recordings = recordings_from_split(spectra, split, limit, system.labels)
    m = horse_test(system, recordings, out, transformation, trials, seed, progress=not quiet,
                   extra={"cache": str(spectra.path.resolve()), "split": split}, engine=engine)
    click.echo(f"{out}: {m['n_recordings']} recordings, {transformation.describe()}, "
               f"{trials if transformation.random else 1} draws each")
    acc = m["normalised_accuracy"]
    click.echo("normalised accuracy  " + "  ".join(f"{c} {_num(acc[c])}" for c in CASES) + f"  (chance {m['chance']:.3f})")
    changed = m["changed_trials"]
    if changed is not None:
        click.echo(f"{changed:.1%} of draws change the original's label; {m['changed_recordings']:.1%} of recordings "
                   "have at least one such draw")
    click.echo(f"report: {write_report(out)}")
    _exit_if_skipped(m["n_skipped"], len(recordings), "recording", "judged", out)


@cli.command("survive", epilog=_MODEL_HELP)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_apply(_transform_options)
@click.option("--model", "model_spec", default=None, help="The system that judges (default: the model the run attacked).")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True,
              help="Draws of a random transformation per example (and its original); the shares are over all draws.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws of a random transformation.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: RUN_DIR/survive-<transform>.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_engine_options
@_device_option
def survive_cmd(run_dir, kind, model_spec, draws, seed, out, quiet, engine, device, **settings):
    """Do the adversarial examples of an attack run survive an irrelevant transformation?

    Transforms every example and its original alike, writes both, and reports the share of
    examples that keep the adversary's target, the share that return to the original's label,
    and the SNR of each transformed example against its transformed original.
    """
    from .report import write_report
    from .survival import survive

    transformation = _transformation(kind, **settings)
    system = _load_any_model(model_spec, device) if model_spec else None
    out = out or run_dir / f"survive-{kind}"
    m = survive(run_dir, transformation, out, system, seed, progress=not quiet, engine=engine, device=device, draws=draws)
    n = m["n_draws"]
    click.echo(f"{out}: {m['n_adversarial']} adversarial examples of {m['n_examples']}, {transformation.describe()}"
               + (f", {n} draws each" if n > 1 else ""))
    if m["n_adversarial"]:
        click.echo(f"keep the target {m['survived']:.1%}, return to the original's label {m['returned']:.1%}, "
                   f"other {m['other']:.1%}; transformed originals keep their label {m['original_kept']:.1%}")
        snr = lambda v: "inf" if v is None else f"{v:.1f} dB"  # noqa: E731
        click.echo(f"median SNR {snr(m['median_snr_db_before'])} before, {snr(m['median_snr_db_after'])} after "
                   "(transformed example against transformed original)")
    click.echo(f"report: {write_report(out)}")
    _exit_if_skipped(m["n_skipped"], m["n_examples"] + m["n_skipped"], "example", "judged", out)


_PLAN_HELP = ("quick (one budget, 30 dB, always-wrong targets), standard (40, 30, 20 dB, always-wrong and random "
              "targets, noise controls, the smallest change with NMR and ViSQOL, survival, horse tests) or a JSON file "
              "of a plan's settings.")


def _labelled_recordings(model, model_spec: str, files, cache_dir, split, limit) -> tuple[list, dict]:
    """The recordings a verdict is about, with their true labels: FILES labelled by their folder, or a cache
    split (default: the model's own cache, its test split); and what names the data in the results."""
    from .runs import RecordingRef, recordings_from_split

    if files and (split or cache_dir):
        raise click.UsageError("give audio FILES or a --cache split, not both")
    if files:
        unknown = sorted({f.resolve().parent.name for f in files} - set(model.labels))
        if unknown:
            raise click.UsageError(f"FILES are labelled by their folder: {', '.join(unknown)} is not a label of {model_spec}")
        return [RecordingRef(str(f.resolve()), str(f), f.resolve().parent.name) for f in files][:limit], {}
    spectra = _model_cache(model, cache_dir)
    split = split or "test"
    # Every stage decodes the source files at the model's own rate: the cache gives the recordings and
    # their labels, whatever its analysis settings.
    unknown = sorted({e.label for e in spectra.split(split)} - set(model.labels) - set(model.uncovered_labels))
    if unknown:
        raise click.UsageError(f"{spectra.path}: {', '.join(unknown)} is not a label of {model_spec}")
    return recordings_from_split(spectra, split, limit, model.labels), {"cache": str(spectra.path.resolve()), "split": split}


@cli.command("judge", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Prepared cache whose --split is judged (default: the model's own).")
@click.option("--split", default=None, help="The cache split to judge (default: test, when no FILES are given).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Judge only the first N recordings.")
@click.option("--plan", "plan_spec", default="quick", show_default=True, help=_PLAN_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the targets, the queries and the intervals.")
@click.option("--surrogate", "surrogate_spec", default=None, metavar="MODEL",
              help="A network (or MFCC baseline) that guides the query-only adversary, as attack --surrogate (default: "
                   "a forest's own DNN, the MFCC baseline's replica, none for other models).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_engine_options
@_device_option
def judge_cmd(model_spec, files, cache_dir, split, limit, plan_spec, seed, surrogate_spec, out, quiet, engine, device):
    """One verdict for MODEL: clean accuracy, model checks, and robust accuracy under the worst of a gradient
    and a query-only adversary at fixed SNR budgets, all in OUT/evaluation.json and OUT/report.html.

    FILES are labelled by the folder each lies in (genre/x.wav); without FILES, a cache split is judged.
    A killed judgement resumes when rerun into the same OUT.
    """
    from .judge import judge, read_plan

    plan = read_plan(plan_spec)
    model = _load_any_model(model_spec, device)
    recordings, data = _labelled_recordings(model, model_spec, files, cache_dir, split, limit)
    surrogate = None
    if surrogate_spec is not None:
        from .replicas import as_surrogate

        surrogate = as_surrogate(_load_any_model(surrogate_spec, device))
    e = judge(model, recordings, out, plan, seed=seed, progress=not quiet, engine=engine, data=data, surrogate=surrogate)
    click.echo(f"{e['model']['name']}: {e['headline']['verdict']}")
    for flag in e["flags"]:
        click.echo(f"flag: {flag['flag']}: {flag['reason']}")
    click.echo(f"report: {out / 'report.html'}")


@cli.command("certify", epilog=_MODEL_HELP)
@click.argument("model_spec", metavar="MODEL")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--sigma-snr", type=FINITE, required=True,
              help="The smoothing noise: this many dB below a recording at -20 dBFS RMS (musadv.smoothing.REFERENCE_RMS).")
@click.option("--cache", "cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Prepared cache whose --split is certified (default: the model's own).")
@click.option("--split", default=None, help="The cache split (default: test, when no FILES are given).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Certify only the first N recordings.")
@click.option("-n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="Noisy copies that bound each label's share.")
@click.option("--n0", type=click.IntRange(min=1), default=100, show_default=True, help="Noisy copies that select each recording's label.")
@click.option("--alpha", type=click.FloatRange(min=0, max=0.5, min_open=True, max_open=True), default=0.001, show_default=True,
              help="Each certificate is wrong with probability at most alpha.")
@click.option("--snr", "budgets", default="40,30,20", show_default=True, help="SNR budgets (dB) of the certified accuracies.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Noisy copies labelled together.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the noise (with each recording's samples).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_engine_options
@_device_option
def certify_cmd(model_spec, files, sigma_snr, cache_dir, split, limit, n, n0, alpha, budgets, batch, seed, out, quiet, engine, device):
    """Randomized smoothing's certificate for each recording: MODEL voting over noisy copies (Cohen et al.'s CERTIFY).

    Writes OUT/certify.csv (per recording: the certified label or (abstain), the lower bound on its
    share of votes, the certified L2 radius of the waveform and the certified SNR: no change that
    many dB below the recording can move its label; and Cohen et al.'s PREDICT from the --n0
    selection copies, a label or (abstain)) and OUT/certify.json with the certified accuracy at each
    --snr budget and PREDICT's accuracy. FILES are labelled by their folder. A killed run resumes
    into the same OUT.
    """
    from .certification import certify_recordings
    from .smoothing import SmoothedClassifier

    if model_spec.startswith("smooth:"):
        raise click.UsageError("certify smooths MODEL itself at --sigma-snr: give the base model, not smooth:...")
    base = _load_any_model(model_spec, device)
    recordings, _ = _labelled_recordings(base, model_spec, files, cache_dir, split, limit)
    system = SmoothedClassifier(base, sigma_snr, seed=seed, batch=batch, spec=f"smooth:{model_spec}@{sigma_snr:g}")
    r = certify_recordings(system, recordings, out, n0=n0, n=n, alpha=alpha, budgets=_snr_levels(budgets),
                           engine=engine, progress=not quiet)
    if r["n_recordings"]:  # with no certificate there are no figures to print
        acc = r["certified_accuracy"]
        click.echo(f"{out}: {r['n_recordings']} recordings, abstained {r['abstained']:.2f}, certified accuracy "
                   + ", ".join(f"{k} dB {v:.2f}" if k != "any" else f"at any radius {v:.2f}" for k, v in acc.items()))
        if r["predict_accuracy"] is not None:
            click.echo(f"PREDICT (from the {n0} selection copies): accuracy {r['predict_accuracy']:.2f}, abstained "
                       f"{r['predict_abstained']:.2f}")
    snr = r["certified_snr_db"]
    if snr:
        noise = "" if r["noise_snr_db"] is None else f"; noise {r['noise_snr_db']:.1f} dB below the recordings (median)"
        click.echo(f"certified SNR of the correct certificates: median {snr['median']:.1f} dB (min {snr['min']:.1f}, "
                   f"max {snr['max']:.1f}){noise}")
    _exit_if_skipped(len(recordings) - r["n_recordings"], len(recordings), "recording", "certified", out)


@cli.command("leaderboard")
@click.argument("eval_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--mixed", is_flag=True, help="Put evaluations of different protocols, plans or data in one table, saying so.")
def leaderboard_cmd(eval_dirs, out, mixed):
    """One row per judged model (folders of musadv judge, or evaluation.json files kept on their own):
    OUT/leaderboard.md, .csv and a sortable .html."""
    from .judge import leaderboard

    rows = leaderboard(list(eval_dirs), out, mixed=mixed)
    click.echo((out / "leaderboard.md").read_text(), nl=False)
    click.echo(f"{len(rows)} models: {out / 'leaderboard.html'}")


@cli.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--open", "open_", is_flag=True, help="Open the page in a web browser.")
def report_cmd(run_dir, open_):
    """Write RUN_DIR/report.html for a demo, experiment, attack, test, judgement or model directory."""
    from .report import write_report

    if (run_dir / "evaluation.json").exists():
        from .judge import write_judgement_report

        page = write_judgement_report(run_dir)
    else:
        page = write_report(run_dir)
    click.echo(str(page))
    if open_:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


@cli.command("listen")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder of the test's page and excerpts.")
@click.option("--kind", type=click.Choice(["abx", "mushra"]), default="abx", show_default=True,
              help="abx: is X the original or the adversarial example? mushra: score the adversarial example, a hidden "
                   "reference and a same-SNR white-noise anchor against the reference.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="ABX trials per listener (the examples in turn); MUSHRA: screens, one per example.")
@click.option("--excerpt", "excerpt_seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds of each example played: where its change is loudest relative to the music.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the anchors' noise.")
def listen_cmd(run_dir, out, kind, trials, excerpt_seconds, seed):
    """Write a listening test of the successful examples of the attack run RUN_DIR: a page that needs
    no server, which listeners open in a browser; each saves their answers as a file for listen-results."""
    from .listening import write_listening_test

    page = write_listening_test(run_dir, out, kind=kind, trials=trials, excerpt_seconds=excerpt_seconds, seed=seed)
    click.echo(f"{page}: open it in a browser (file:// works); listeners save their answers as JSON or CSV")


@cli.command("listen-results")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--test", "test_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The test's test.json (written by listen): checks the answers belong to it and adds each example's figures.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def listen_results_cmd(files, test_file, out):
    """Pool the answer FILES of several listeners: ABX detection rates with a binomial test against
    guessing and MUSHRA scores with 95 % confidence intervals, per example and overall."""
    from .io import read_tagged_json
    from .listening import TEST_FORMAT, evaluate, pool_answers, write_results

    manifest = None
    if test_file:
        manifest = read_tagged_json(test_file, TEST_FORMAT, MusadvError, "no such test file",
                                    "not the test.json of musadv listen")
    summary = evaluate(pool_answers(list(files), manifest), manifest)
    paths = write_results(summary, out)
    click.echo(f"{len(summary['listeners'])} listeners, {summary['sessions']} sessions")
    if "abx" in summary:
        o = summary["abx"]["overall"]
        click.echo(f"ABX: {o['correct']} of {o['trials']} trials right ({o['detection_rate']:.0%}), "
                   f"p = {o['p_value']:.3g} against guessing (one-sided binomial)")
    if "mushra" in summary:
        for c, v in summary["mushra"]["overall"].items():
            ci = (f"95 % CI over listeners {v['ci_low']:.1f} to {v['ci_high']:.1f}" if v["ci_low"] is not None
                  else "one listener: no interval")
            click.echo(f"MUSHRA {c.replace('_', ' '):17s} {v['mean']:5.1f} ({ci}; {v['listeners']} listeners, {v['n']} scores)")
    click.echo(", ".join(str(p) for p in paths))


def _print_study(out: Path) -> None:
    """A study's leaderboard, and where its pages are."""
    click.echo((out / "leaderboard" / "leaderboard.md").read_text(), nl=False)
    click.echo(f"\nreport: {out / 'report.html'}\nleaderboard: {out / 'leaderboard' / 'leaderboard.html'}\n"
               f"summary: {out / 'summary.json'}")


@cli.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), help="A dataset (GTZAN folder, label folders or CSV) instead of the built-in data.")
@click.option("--partition", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Partition JSON for --data (default: seeded stratified 50/25/25).")
@click.option("--quick", is_flag=True, help="Smaller systems judged under the quick plan.")
@click.option("--plan", "plan_spec", default=None, help="Judge under this plan instead (default: standard; quick with --quick): " + _PLAN_HELP)
@click.option("--quiet", is_flag=True, help="No progress bars (stage lines are still printed).")
@_engine_options
@_device_option
def demo_cmd(out, data, partition, quick, plan_spec, quiet, engine, device):
    """The paper's study in one command: train a DNN, a CDNN, the forest on the DNN's features and the MFCC
    baseline, judge each on the test split under one plan (musadv judge), and rank them in one leaderboard.

    Writes judgements/SYSTEM (evaluation.json, report.html), leaderboard/, summary.json and report.html into
    --out. A second run into the same --out reuses finished stages.
    """
    import time

    from .experiments import run_demo
    from .judge import read_plan

    t = time.perf_counter()
    plan = read_plan(plan_spec) if plan_spec else None
    run_demo(out, str(data) if data else None, str(partition) if partition else None, quick=quick, progress=not quiet,
             engine=engine, device=device, plan=plan)
    _print_study(out)
    click.echo(f"total {time.perf_counter() - t:.0f} s")


@cli.group("experiment")
def experiment():
    """The paper's tables as one command each (resumable; --quick for a few minutes on built-in data)."""


def _print_table(out: Path, name: str) -> None:
    click.echo((out / f"{name}.md").read_text())
    click.echo(f"written: {out / (name + '.csv')}, {out / (name + '.md')}, {out / 'report.html'}")


@experiment.command("table1")
@click.argument("data", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--partition", "partition_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Partition JSON (give two for the paper's two columns, e.g. random and fault-filtered).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="Small data, few epochs, 100 trees.")
@click.option("--quiet", is_flag=True)
def table1_cmd(data, partition_files, out, quick, quiet):
    """Table I: random forests on the activations of DNNs (50/500 units, with/without dropout, layers 1/2/3/all)."""
    from .tables import run_table1

    if len(partition_files) > 2:
        raise click.UsageError("give at most two --partition files")
    run_table1(out, str(data) if data else None, list(partition_files) or None, quick=quick, progress=not quiet)
    _print_table(out, "table1")


@experiment.command("table3")
@click.argument("data", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--partition", type=click.Path(exists=True, dir_okay=False), help="Partition JSON for DATA.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--alg2", type=click.Choice(["fgsm", "fgsm_reference"]), default="fgsm", show_default=True,
              help="Alg. 2 as musadv does it, or as the reference code does (standardised step, 15 dB ball, any target, adversarial batch alone).")
@click.option("--quick", is_flag=True, help="Small data, few epochs.")
@click.option("--quiet", is_flag=True)
def table3_cmd(data, partition, out, alg2, quick, quiet):
    """Table III: DNN, DNN+ADV, CDNN, CDNN+ADV clean and under the always-wrong adversary with no SNR limit."""
    from .tables import run_table3

    run_table3(out, str(data) if data else None, partition, quick=quick, progress=not quiet, alg2=alg2)
    _print_table(out, "table3")


@experiment.command("defences")
@click.argument("data", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--partition", type=click.Path(exists=True, dir_okay=False), help="Partition JSON for DATA.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--archs", default="dnn,cdnn", show_default=True, help="The networks defended, comma-separated.")
@click.option("--adv-snr", type=FINITE, default=30.0, show_default=True, help="PGD's and TRADES's budget (dB SNR of each element's change).")
@click.option("--adv-steps", type=click.IntRange(min=1), default=5, show_default=True, help="PGD's and TRADES's attack steps.")
@click.option("--trades-beta", type=FINITE, default=6.0, show_default=True, help="TRADES's weight of the divergence.")
@click.option("--adv-epochs", type=click.IntRange(min=1), default=None,
              help="The most epochs PGD and TRADES train for (default: the plain network's).")
@click.option("--smoothing-snr", type=FINITE, default=30.0, show_default=True,
              help="The smoothed systems' noise, and their bases' training noise (dB below -20 dBFS).")
@click.option("--copies", type=click.IntRange(min=1), default=8, show_default=True, help="Noisy copies a smoothed system votes over when judged.")
@click.option("-n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="Copies that bound each certificate.")
@click.option("--n0", type=click.IntRange(min=1), default=100, show_default=True, help="Copies that select each certified label.")
@click.option("--quick", is_flag=True, help="Small data and networks, judged under the quick plan.")
@click.option("--plan", "plan_spec", default=None, help="Judge under this plan instead (default: standard; quick with --quick): " + _PLAN_HELP)
@click.option("--quiet", is_flag=True, help="No progress bars (stage lines are still printed).")
@_engine_options
@_device_option
def defences_cmd(data, partition, out, archs, adv_snr, adv_steps, trades_beta, adv_epochs, smoothing_snr, copies, n, n0, quick, plan_spec,
                 quiet, engine, device):
    """Table III extended: each network trained plainly, with Alg. 2 (FGSM), PGD and TRADES, and smoothed over noise
    (its base trained on that noise); every one judged under one plan (musadv judge), the smoothed ones certified.
    Writes table3-extended.md and .csv, judgements/, certified/, leaderboard/ and summary.json into --out; a rerun
    reuses finished stages."""
    from .judge import read_plan
    from .tables import DefenceSettings, run_table3_extended

    names = tuple(a.strip() for a in archs.split(",") if a.strip())
    unknown = sorted(set(names) - {"dnn", "cdnn"})
    if unknown or not names:
        raise click.BadParameter(f"expected dnn and/or cdnn, got {archs!r}", param_hint="--archs")
    defences = DefenceSettings(archs=names, adv_snr_db=adv_snr, adv_steps=adv_steps, trades_beta=trades_beta,
                               adv_epochs=adv_epochs, smoothing_snr_db=smoothing_snr, smoothing_copies=copies, certify_n0=n0, certify_n=n)
    run_table3_extended(out, str(data) if data else None, partition, quick=quick, progress=not quiet, engine=engine,
                        device=device, plan=read_plan(plan_spec) if plan_spec else None, defences=defences)
    click.echo((out / "table3-extended.md").read_text())
    click.echo(f"written: {out / 'table3-extended.csv'}, {out / 'leaderboard' / 'leaderboard.html'}, {out / 'report.html'}")


@experiment.command("musicnn")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--models", default=",".join(("MSD_musicnn", "MTT_musicnn")), show_default=True,
              help="musicnn models, comma-separated (MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg).")
@click.option("--tag-map", default="gtzan", show_default=True, help="Built-in tag map (gtzan) or a JSON file of label -> tag.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Judge at most N recordings, spread over the genres (default: all).")
@click.option("--quick", is_flag=True, help="Judge under the quick plan.")
@click.option("--plan", "plan_spec", default=None, help="Judge under this plan instead (default: standard; quick with --quick): " + _PLAN_HELP)
@click.option("--quiet", is_flag=True, help="No progress bars (stage lines are still printed).")
@_engine_options
@_device_option
def musicnn_cmd(data, out, models, tag_map, limit, quick, plan_spec, quiet, engine, device):
    """musicnn's published taggers as genre systems on DATA (every recording a test recording, no training),
    each judged under one plan (musadv judge) on the genres every model has a tag for, and ranked in one
    leaderboard. Writes judgements/MODEL, leaderboard/ and summary.json into --out; a rerun reuses finished stages."""
    from .experiments import run_musicnn_study
    from .judge import read_plan

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    plan = read_plan(plan_spec) if plan_spec else None
    run_musicnn_study(out, data, names, tag_map, quick=quick, progress=not quiet, engine=engine, limit=limit,
                      plan=plan, device=device)
    _print_study(out)


def main(argv=None):
    """Entry point: run the CLI, turning input errors into one-line messages."""
    try:
        cli.main(args=argv, prog_name="musadv", standalone_mode=False)
    except MusadvError as exc:
        click.echo(f"error: {exc}", err=True)
        if exc.__cause__ is not None:  # the user's own code failed (a factory): its traceback helps them
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # the system's: a full disk, a read-only or missing folder, a path under a file
        where = exc.filename or ""
        click.echo(f"error: {where}{': ' if where else ''}{exc.strerror or exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

"""The ``musadv`` command-line program: a thin layer over the Python API.

Each command parses options, calls one or two library functions and prints where the results
went. Errors caused by input (:class:`musadv.errors.MusadvError`) are printed as one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import cache, datasets, partitions, synth
from .errors import MusadvError
from .spectral import REFERENCE, STFTConfig


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
@click.option("--duration", type=float, default=None, help="Use only this many seconds of each recording (LMD: 30).")
@click.option("--offset", type=float, default=0.0, show_default=True, help="Start this many seconds into each recording.")
@click.option("--sr", type=int, default=22050, show_default=True, help="Analysis sampling rate in Hz.")
@click.option("--reference-framing", is_flag=True, help="Symmetric Hann, no centring, as the authors' code (default: periodic Hann, centred: exact resynthesis).")
@click.option("--jobs", type=int, default=None, help="Worker processes (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare_cmd(data, partition_file, labels_file, fractions, seed, out, duration, offset, sr, reference_framing, jobs, quiet):
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
    base = REFERENCE if reference_framing else STFTConfig()
    config = STFTConfig(sr=sr, n_fft=base.n_fft, hop=base.hop, window=base.window, center=base.center)
    result = cache.prepare(part, out, config, offset=offset, duration=duration, jobs=jobs, progress=not quiet)
    n = len(result.entries)
    frames = sum(e.n_frames for e in result.entries)
    click.echo(f"{out}: {n} recordings cached ({frames} frames of {config.n_bins} bins)")
    if result.errors:
        click.echo(f"{len(result.errors)} recordings skipped, listed in {out / 'errors.csv'}:", err=True)
        for e in result.errors[:5]:
            click.echo(f"  {e['error']}", err=True)


def main(argv=None):
    """Entry point: run the CLI, turning input errors into one-line messages."""
    try:
        cli.main(args=argv, prog_name="musadv", standalone_mode=False)
    except MusadvError as exc:
        click.echo(f"error: {exc}", err=True)
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

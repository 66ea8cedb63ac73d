"""Rewrite the generated tables of a leaderboard page from the evaluation entries kept beside it.

    python scripts/leaderboard_page.py docs/leaderboard-gtzan-mini.md

Each table stands between ``<!-- leaderboard [--mixed] NAME... -->`` and ``<!-- /leaderboard -->``;
it is replaced by the ``leaderboard.md`` that ``musadv leaderboard`` writes from the entries
``NAME.json`` in the folder named as the page without ``.md`` (for docs/leaderboard-gtzan-mini.md,
docs/leaderboard-gtzan-mini/). To add a judged model: copy its ``evaluation.json`` there as
``NAME.json``, add NAME to a marker, and run this. The test suite checks that every such table is
what this writes.
"""

import argparse
import re
import tempfile
from pathlib import Path

from musadv.judge import leaderboard

MARKER = re.compile(r"^(<!-- leaderboard ([^\n]+?) -->\n)(.*?)^(<!-- /leaderboard -->)", re.S | re.M)


def table(entries: Path, args: str) -> str:
    """The leaderboard.md of the entries a marker names."""
    names = args.split()
    mixed = names[0] == "--mixed"
    with tempfile.TemporaryDirectory() as tmp:
        leaderboard([entries / f"{n}.json" for n in names[mixed:]], tmp, mixed=mixed)
        return (Path(tmp) / "leaderboard.md").read_text()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    page = parser.parse_args().page
    entries = page.with_suffix("")
    text = page.read_text()
    if not MARKER.search(text):
        raise SystemExit(f"{page}: no <!-- leaderboard NAME... --> marker")
    page.write_text(MARKER.sub(lambda m: m[1] + table(entries, m[2]) + m[4], text))
    print(f"{page}: {len(MARKER.findall(text))} tables written")


if __name__ == "__main__":
    main()

"""What the study scripts share: running a musadv command in this process, and writing a section of a results page.

Imported by ``perceptual_study.py`` and ``robust_study.py`` (run from this folder's parent as
``python scripts/NAME.py``, which puts this folder on the import path).
"""

import re
from pathlib import Path

from musadv import cli


def run_cli(cli_args: list[str]) -> int:
    """``musadv CLI_ARGS`` in this process; its exit status (an attack with missed targets exits non-zero:
    the study's table says how many, so the study goes on)."""
    try:
        cli.main(cli_args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"musadv {' '.join(cli_args[:2])}: exit {exc.code}")
            return int(exc.code) if isinstance(exc.code, int) else 1
    return 0


def _section_pattern(marker: str) -> re.Pattern:
    # The newlines are optional so that a section typed on one line (<!-- m --><!-- /m -->) is still found.
    return re.compile(rf"<!-- {marker} -->\n?(.*?)\n?<!-- /{marker} -->", re.S)


def read_section(page: Path, marker: str) -> list[str] | None:
    """The lines :func:`write_section` put between the page's markers (None: the page has no such section)."""
    m = _section_pattern(marker).search(page.read_text())
    return None if m is None else m[1].split("\n")


def write_section(page: Path, marker: str, lines: list[str]) -> None:
    """Put ``lines`` between the page's ``<!-- marker -->`` and ``<!-- /marker -->`` (appended if it has none)."""
    text = page.read_text()
    block = f"<!-- {marker} -->\n" + "\n".join(lines) + f"\n<!-- /{marker} -->"
    pattern = _section_pattern(marker)
    page.write_text(pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n")

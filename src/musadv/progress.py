"""Progress bars for long jobs: drawn on a terminal, silent when the output goes to a file.

A bar redrawn into a log file writes megabytes of carriage-return updates; every long job
makes its bars here so that they all behave the same way.
"""

from __future__ import annotations

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """A ``tqdm`` bar on stderr that is shown only when ``enabled`` and stderr is a terminal.

    Parameters
    ----------
    iterable : iterable, optional
    enabled : bool
        ``False`` hides the bar wherever the output goes (``--quiet``).
    **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ``leave``...).
    """
    # disable=None is tqdm's "off unless the stream is a terminal".
    return tqdm(iterable, disable=None if enabled else True, dynamic_ncols=True, **kwargs)

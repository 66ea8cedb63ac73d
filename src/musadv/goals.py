"""What an attack aims at, and the one judgement of whether a prediction meets it.

``'label'``: the system's label is the target (the paper's adversary; a tagger's most likely
tag). For taggers, ``'add'``: the target tag's mean likelihood reaches
:data:`~musadv.taggers.TAG_THRESHOLD`; ``'remove'``: it falls below it.
"""

from __future__ import annotations

from .taggers import TAG_THRESHOLD

__all__ = ["GOALS", "goal_reached", "goal_candidates"]

GOALS = ("label", "add", "remove")


def goal_reached(goal: str, target: str, label: str, confidence: dict) -> bool:
    """Whether a recording's prediction meets an attack's goal: the one judgement of success.

    Parameters
    ----------
    goal : {'label', 'add', 'remove'}
        See :class:`AttackConfig`.
    target : str
    label : str
        The system's label for the recording.
    confidence : dict
        Its confidence (mean likelihood, for a tagger) of every label. A system without the
        target (another system judging the example) cannot meet the goal.
    """
    if target not in confidence:
        return False
    if goal == "add":
        return confidence[target] >= TAG_THRESHOLD
    if goal == "remove":
        return confidence[target] < TAG_THRESHOLD
    return label == target


def goal_candidates(goal: str, labels: list[str], confidence: dict) -> list[str]:
    """The labels an attack with ``goal`` can go for: all for ``'label'``; the tags a recording
    lacks for ``'add'``, those it has for ``'remove'``."""
    if goal == "label":
        return list(labels)
    return [lab for lab in labels if not goal_reached(goal, lab, "", confidence)]

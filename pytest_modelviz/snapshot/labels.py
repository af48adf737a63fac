"""The one rule for the labels of a test's snapshots (the ``[name]`` of their files).

A name the user gives must be unique within its test and kind: the same ``name=`` twice is a
``ModelvizUsageError`` naming the test and the name. Suffixing it instead (``head-2``) would give
the second assertion a file that the first one owns on another run where the calls come in
another order. A label the plugin chooses is the model's class name, then ``-2``, ``-3``... in
call order, skipping any label already taken, so it is the same on every run of the same code.

Architecture and parameter-statistics snapshots are stored in files of different extensions, so
each kind has its own labels: ``graph_snapshot(net)`` and ``graph_snapshot.parameters(net)`` are
both ``Net``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_modelviz.errors import ModelvizUsageError


@dataclass
class _Labels:
    used: set[str] = field(default_factory=set)
    defaults: dict[str, int] = field(default_factory=dict)  # class name -> its last number


@dataclass
class _RunLabels:
    run: weakref.ref[Any]  # the syrupy ``snapshot`` of the run that took these labels
    kinds: dict[str, _Labels] = field(default_factory=dict)


_LABELS_KEY = pytest.StashKey[_RunLabels]()


def snapshot_label(item: pytest.Item, run: Any, kind: str, name: object, default: str) -> str:
    """The label of the next ``kind`` snapshot of ``item``: ``name`` when given, else ``default``
    numbered (``Net``, ``Net-2``...). ``kind`` names the kind in messages (``graph_snapshot``).

    ``run`` is the test's syrupy ``snapshot`` fixture value, made anew for each run of the test:
    a test run again on the same item (a rerun plugin) starts from no labels, so it takes the
    same names as its first run.
    """
    state = item.stash.get(_LABELS_KEY, None)
    if state is None or state.run() is not run:
        state = item.stash[_LABELS_KEY] = _RunLabels(weakref.ref(run))
    labels = state.kinds.setdefault(kind, _Labels())
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ModelvizUsageError(f"{kind} name must be a non-empty string, got {name!r}")
        label = name.strip()
        if label in labels.used:
            raise ModelvizUsageError(
                f"{kind} name {label!r} is used twice in this test ({item.nodeid}); give each snapshot "
                "its own name=, since two snapshots of one name would share one file"
            )
    else:
        count = labels.defaults.get(default, 0) + 1
        label = default if count == 1 else f"{default}-{count}"
        while label in labels.used:
            count += 1
            label = f"{default}-{count}"
        labels.defaults[default] = count
    labels.used.add(label)
    return label

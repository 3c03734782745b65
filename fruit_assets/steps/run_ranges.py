"""Which partition ranges to run for a selection of classes, in the instance's partition order. No
Dagster."""

from __future__ import annotations


def contiguous_ranges(selected: list[str], ordered: list[str]) -> list[tuple[str, str]]:
    """Partition ranges (first, last) covering exactly ``selected`` in the instance's order:
    one run per contiguous block, so 'all classes' is a single run."""
    wanted = set(selected)
    ranges, start, previous = [], None, None
    for key in ordered:
        if key in wanted and start is None:
            start = key
        elif key not in wanted and start is not None:
            ranges.append((start, previous))
            start = None
        previous = key
    if start is not None:
        ranges.append((start, previous))
    return ranges


def spanning_range(selected: list[str], ordered: list[str]) -> list[tuple[str, str]]:
    """One partition range from the first to the last of ``selected`` in the instance's order (none
    if nothing is selected): one run however scattered the changes, each run paying a run start and
    a Spark application (a pod and executors on Kubernetes). The classes in between that did not
    change cost a manifest read in it: the embedding step leaves them as published."""
    wanted = set(selected)
    inside = [key for key in ordered if key in wanted]
    return [(inside[0], inside[-1])] if inside else []


def spanning_ranges(selected: list[str], ordered: list[str], barriers=()) -> list[tuple[str, str]]:
    """``spanning_range`` within each stretch of ``ordered`` between ``barriers``: partitions that
    stay registered although their folder is gone (a refused deletion). A range across one would
    run raw_images on a class with no objects, and fail."""
    barriers = set(barriers)
    ranges, stretch = [], []
    for key in list(ordered) + [None]:
        if key is None or key in barriers:
            in_stretch = set(stretch)
            ranges += spanning_range([c for c in selected if c in in_stretch], stretch)
            stretch = []
        else:
            stretch.append(key)
    return ranges

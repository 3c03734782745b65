"""Partition ranges for a selection of classes."""

from fruit_assets.steps.run_ranges import contiguous_ranges, spanning_ranges


def test_contiguous_ranges_cover_exactly_the_selection():
    order = ["a", "b", "c", "d", "e"]
    assert contiguous_ranges(order, order) == [("a", "e")]
    assert contiguous_ranges(["b", "c", "e"], order) == [("b", "c"), ("e", "e")]
    assert contiguous_ranges([], order) == []


def test_spanning_ranges_never_cross_a_partition_whose_folder_is_gone():
    order = ["a", "b", "c", "d", "e"]
    assert spanning_ranges(["a", "e"], order) == [("a", "e")]
    assert spanning_ranges(["a", "e"], order, barriers={"c"}) == [("a", "a"), ("e", "e")]
    assert spanning_ranges(["a", "b", "e"], order, barriers={"c", "d"}) == [("a", "b"), ("e", "e")]
    assert spanning_ranges(["b"], order, barriers={"a", "e"}) == [("b", "b")]
    assert spanning_ranges([], order, barriers={"c"}) == []

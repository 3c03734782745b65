from fruit_assets.steps.changes import contiguous_ranges, decode_cursor, diff, encode_cursor


def test_contiguous_ranges_cover_exactly_the_selection():
    order = ["a", "b", "c", "d", "e"]
    assert contiguous_ranges(order, order) == [("a", "e")]
    assert contiguous_ranges(["b", "c", "e"], order) == [("b", "c"), ("e", "e")]
    assert contiguous_ranges([], order) == []


def test_diff_and_cursor_round_trip():
    changes = diff({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (changes.new, changes.changed, changes.deleted) == (["d"], ["b"], ["c"])
    assert changes.to_run == ["b", "d"]
    assert decode_cursor(encode_cursor({"x y": "f"})) == {"x y": "f"}
    assert decode_cursor(None) == {} and decode_cursor('{"v": 0, "classes": {"a": "1"}}') == {}

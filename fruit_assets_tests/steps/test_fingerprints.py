"""Change detection for the sensor: the changes between two sets of fingerprints, and its cursor."""

from fruit_assets.steps.fingerprints import decode_cursor, diff, encode_cursor


def test_diff_and_cursor_round_trip():
    changes = diff({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (changes.new, changes.changed, changes.deleted) == (["d"], ["b"], ["c"])
    assert changes.to_run == ["b", "d"]
    assert decode_cursor(encode_cursor({"x y": "f"})) == {"x y": "f"}
    assert decode_cursor(None) == {} and decode_cursor('{"v": 0, "classes": {"a": "1"}}') == {}

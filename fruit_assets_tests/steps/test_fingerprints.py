"""Change detection for the sensor: the changes between two sets of fingerprints, and its cursor."""

from fruit_assets.steps.fingerprints import decode_cursor, diff, encode_cursor


def test_diff_and_cursor_round_trip():
    changes = diff({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (changes.new, changes.changed, changes.deleted) == (["d"], ["b"], ["c"])
    assert changes.to_run == ["b", "d"]
    assert decode_cursor(encode_cursor({"x y": "f"})) == {"x y": "f"}
    assert decode_cursor(None) == {} and decode_cursor('{"v": 0, "classes": {"a": "1"}}') == {}


def test_local_files_are_hashed_again_only_when_their_mtime_cannot_vouch_for_them(tmp_path):
    """rsync's quick check for local files: a file untouched since (and well before) the listing
    that hashed it is not read again; a rewrite of the same size is read and seen."""
    import os
    import time

    from fruit_assets.layout import DataLayout
    from fruit_assets.steps.fingerprints import matches_manifest
    from fruit_assets.steps.manifest import build_manifests, manifest_listed_at, read_manifest
    from fruit_assets.storage import open_store

    folder = tmp_path / "Training" / "Kiwi"
    folder.mkdir(parents=True)
    old = time.time() - 60
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(b"kiwi " + name.encode())
        os.utime(folder / name, (old, old))
    layout = DataLayout.at(str(tmp_path))
    build_manifests(layout, ["Kiwi"])
    manifest = read_manifest(layout, "Kiwi")
    assert abs(manifest_listed_at(manifest) - time.time()) < 30

    def listing():
        uri = layout.training_class("Kiwi")
        return list(open_store(uri).list_objects(uri, content_hash=False))

    assert matches_manifest(layout, "Kiwi", listing())
    # Same size, same mtime to the millisecond, other bytes: not read, so not seen (the quick
    # check's one blind spot, which only a deliberate touch -d makes).
    (folder / "a.jpg").write_bytes(b"KIWI a.jpg")
    os.utime(folder / "a.jpg", (old, old))
    assert matches_manifest(layout, "Kiwi", listing())
    # A rewrite of the same size now: its mtime moved, it is hashed, the change is seen.
    (folder / "a.jpg").write_bytes(b"kiwi A.jpg")
    assert not matches_manifest(layout, "Kiwi", listing())
    (folder / "a.jpg").write_bytes(b"kiwi a.jpg")  # the recorded bytes again: hashed, equal
    assert matches_manifest(layout, "Kiwi", listing())

    # Files modified within RACY_SECONDS before the listing are hashed whatever their mtime says.
    recent = time.time() - 0.5
    os.utime(folder / "b.jpg", (recent, recent))
    build_manifests(layout, ["Kiwi"])
    (folder / "b.jpg").write_bytes(b"KIWI b.jpg")
    os.utime(folder / "b.jpg", (recent, recent))
    assert not matches_manifest(layout, "Kiwi", listing())

    # A manifest without the listing's time (written before it was recorded): every file hashed.
    (folder / "b.jpg").write_bytes(b"kiwi b.jpg")
    os.utime(folder / "b.jpg", (old, old))
    build_manifests(layout, ["Kiwi"])
    untimed = read_manifest(layout, "Kiwi").replace_schema_metadata(None)
    (folder / "b.jpg").write_bytes(b"KIWI b.jpg")
    os.utime(folder / "b.jpg", (old, old))
    assert matches_manifest(layout, "Kiwi", listing())
    assert not matches_manifest(layout, "Kiwi", listing(), untimed)

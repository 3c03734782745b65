"""The one rule for classes (registration, deletion, the mass-deletion guard) and the checks of
class folder names. Pure functions; the sensor's and the command's use of them is tested with a
real Dagster instance in test_sensors.py and cli/test_main.py."""

import unicodedata

import pytest

from fruit_assets.layout import LONGEST_CLASS_FILE_NAME, S3_KEY_BYTES, DataLayout
from fruit_assets.steps.classes import MassDeletionError, check_class_names, plan_classes
from fruit_assets.storage.class_folders import escape_partition_value

WHERE = "s3://b/p/Training"


def test_nothing_gone_registers_the_new_classes():
    plan = plan_classes(["a", "b", "c"], registered=["a", "b"], published=["a"], allow_mass_deletion=False, where=WHERE)
    assert (plan.to_register, plan.gone, plan.refused, plan.to_remove) == (["c"], [], None, [])
    assert plan.known == ["a", "b"]


def test_an_empty_listing_with_known_classes_is_refused_and_with_none_is_nothing():
    plan = plan_classes([], registered=["a"], published=["a", "b"], allow_mass_deletion=False, where=WHERE)
    assert plan.gone == ["a", "b"] and plan.to_remove == [] and plan.to_deregister == []
    assert plan.refused.startswith(f"no class folders under {WHERE}/ ") and "outputs of 2 classes" in plan.refused
    with pytest.raises(MassDeletionError, match="^no class folders under "):
        plan.raise_if_refused()
    empty = plan_classes([], registered=[], published=[], allow_mass_deletion=False, where=WHERE)
    assert (empty.gone, empty.refused) == ([], None)


def test_exactly_half_gone_proceeds_more_than_half_is_refused():
    half = plan_classes(["a", "b"], ["a", "b", "c", "d"], [], allow_mass_deletion=False, where=WHERE)
    assert half.refused is None and half.to_remove == ["c", "d"] and half.to_deregister == ["c", "d"]
    # One class of two renamed: the old name is half of what was known, the new one is new.
    renamed = plan_classes(["a", "b2"], ["a", "b"], ["a", "b"], allow_mass_deletion=False, where=WHERE)
    assert renamed.refused is None and renamed.to_remove == ["b"] and renamed.to_register == ["b2"]
    more = plan_classes(["a", "b"], ["a", "b", "c", "d", "e"], [], allow_mass_deletion=False, where=WHERE)
    assert more.to_remove == [] and more.gone == ["c", "d", "e"]
    assert more.refused.startswith(f"3 of 5 classes are gone from {WHERE}/ at once (c, d, e): refusing")


def test_the_denominator_is_every_class_in_view_known_or_on_training():
    # Known: registered here or published under the root, counted once; in view: those and the
    # folders on Training/ now. A rename brings a new name; an outage or half a listing brings none.
    renamed = plan_classes(["c", "x"], registered=["a", "b"], published=["b", "c"], allow_mass_deletion=False,
                           where=WHERE)
    assert renamed.known == ["a", "b", "c"] and renamed.in_view == 4 and renamed.to_register == ["c", "x"]
    assert renamed.refused is None and renamed.to_remove == ["a", "b"] and renamed.to_deregister == ["a", "b"]
    lost = plan_classes(["c"], registered=["a", "b"], published=["b", "c"], allow_mass_deletion=False, where=WHERE)
    assert lost.in_view == 3 and lost.refused.startswith("2 of 3 classes are gone") and lost.to_remove == []
    # A class known only by its outputs (another instance registered it) is removed, never deregistered.
    small = plan_classes(["a", "b", "c"], registered=["a", "b", "c"], published=["d"], allow_mass_deletion=False,
                         where=WHERE)
    assert small.to_remove == ["d"] and small.to_deregister == []


def test_a_deliberate_mass_deletion_proceeds():
    plan = plan_classes([], registered=["a", "b"], published=["b", "c"], allow_mass_deletion=True, where=WHERE)
    assert plan.refused is None and plan.to_remove == ["a", "b", "c"] and plan.to_deregister == ["a", "b"]
    plan.raise_if_refused()


@pytest.fixture(params=["s3", "local"])
def layout(request, tmp_path):
    return DataLayout.at("s3://bucket/fruits" if request.param == "s3" else str(tmp_path / "data"))


def test_each_kind_of_invalid_name_is_reported_and_skipped(layout):
    too_long = "é" * (layout.max_class_name_bytes() // 2 + 1)
    names = ["Banana", "", ".", "..", "Bad\nName", "Tab\tbed", "Del\x7f", "C1\x85", "Bad\udcffUTF8",
             "Range...Like", too_long, "Apple Red 1"]
    valid, invalid = check_class_names(names, layout)
    assert valid == ["Apple Red 1", "Banana"]
    reasons = {i.name: i.reason for i in invalid}
    assert set(reasons) == set(names) - set(valid)
    assert reasons[""].startswith("empty name")
    assert reasons["."] == reasons[".."] == "a relative path segment, not a folder name"
    assert reasons["Bad\nName"] == "holds the control character U+000A"
    assert reasons["Tab\tbed"] == "holds the control character U+0009"
    assert reasons["Del\x7f"] == "holds the control character U+007F"
    assert reasons["C1\x85"] == "holds the control character U+0085"
    assert reasons["Bad\udcffUTF8"] == "not valid UTF-8"
    assert reasons["Range...Like"] == "holds '...', Dagster's partition-range separator"
    assert reasons[too_long].startswith(f"{len(too_long.encode())} bytes as a folder name: over the "
                                        f"{layout.max_class_name_bytes()} ")
    # Shown escaped, so a log line or a Markdown table stays one line.
    assert "\n" not in str(next(i for i in invalid if i.name == "Bad\nName"))


def test_the_longest_name_allowed_keeps_every_derived_key_within_the_storage_limit(layout):
    limit = layout.max_class_name_bytes()
    # Escaping counts: '%' becomes '%25' in folder names.
    fits, over = "%" * (limit // 3), "%" * (limit // 3 + 1)
    assert check_class_names([fits, over], layout)[0] == [fits]
    longest = "a" * limit
    assert check_class_names([longest, longest + "a"], layout)[0] == [longest]
    files = [f"{folder}/{'f' * LONGEST_CLASS_FILE_NAME}" for folder in layout.class_paths(longest)]
    if layout.root.startswith("s3://"):
        keys = [uri.split("/", 3)[3] for uri in files]
        assert max(len(k.encode()) for k in keys) == S3_KEY_BYTES
        assert limit > 800  # room for real names: Fruits-360's longest is 25 bytes
    else:
        folder_names = [part for uri in files for part in uri[len("file://"):].split("/")]
        assert max(len(n.encode()) for n in folder_names) == 255
    assert escape_partition_value(longest) == longest


def test_nfc_and_nfd_twins_are_one_class_never_two():
    layout = DataLayout.at("s3://bucket/fruits")
    nfc = unicodedata.normalize("NFC", "Pêche")
    nfd = unicodedata.normalize("NFD", "Pêche")
    assert nfc != nfd
    # Not normalized: the kept name is a real folder, so manifests name real keys.
    valid, [twin] = check_class_names([nfd, nfc, "Banana"], layout)
    assert valid == ["Banana", nfc] and twin.name == nfd and "another Unicode normalization" in twin.reason
    # A class already known keeps its name: a twin uploaded later never displaces it.
    valid, [twin] = check_class_names([nfd, nfc], layout, keep=[nfd])
    assert valid == [nfd] and twin.name == nfc
    # A lone NFD name is a class like any other.
    assert check_class_names([nfd], layout) == ([nfd], [])


def test_only_valid_names_are_looked_into_and_empty_folders_are_no_class():
    layout = DataLayout.at("s3://bucket/fruits")
    asked = []

    def present(names):
        asked.extend(names)
        return [n for n in names if n != "Emptied"]

    nfc, nfd = unicodedata.normalize("NFC", "Pêche"), unicodedata.normalize("NFD", "Pêche")
    valid, invalid = check_class_names(["", "Banana", "Emptied", nfd, nfc], layout, keep=[nfc, nfd], present=present)
    assert "" not in asked and sorted(asked) == sorted(["Banana", "Emptied", nfd, nfc])
    assert valid == ["Banana", nfc] and [i.name for i in invalid] == ["", nfd]

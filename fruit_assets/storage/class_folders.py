"""Hive-style class folders: ``<dataset>/fruit_class=<name>/``, the name escaped as Spark escapes
partition values, so Spark and ``pyarrow.dataset`` read every output with partition discovery."""

from __future__ import annotations

from fruit_assets.storage.objects import open_store
from fruit_assets.storage.uris import join_uri

# The characters Spark escapes in partition folder names (ExternalCatalogUtils.charToEscape).
_ESCAPED = set("\"#%'*/:=?\\\x7f{[]^") | {chr(c) for c in range(0x20)}


def escape_partition_value(value: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in value)


def class_folder(dataset_uri: str, fruit_class: str) -> str:
    return join_uri(dataset_uri, f"fruit_class={escape_partition_value(fruit_class)}")


def unescape_partition_value(escaped: str) -> str:
    """The class name a folder name holds (Spark's ExternalCatalogUtils.unescapePathName)."""
    out, index = [], 0
    while index < len(escaped):
        if escaped[index] == "%" and _is_hex(escaped[index + 1 : index + 3]):
            out.append(chr(int(escaped[index + 1 : index + 3], 16)))
            index += 3
        else:
            out.append(escaped[index])
            index += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def classes_in(dataset_uri: str) -> list[str]:
    """The classes that have a folder in a dataset (``fruit_class=<name>/``), by name."""
    prefix = "fruit_class="
    return sorted(
        unescape_partition_value(name[len(prefix) :])
        for name in open_store(dataset_uri).list_folders(dataset_uri)
        if name.startswith(prefix)
    )

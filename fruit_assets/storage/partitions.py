"""Hive-style class folders: ``<dataset>/fruit_class=<name>/``, the name escaped as Spark escapes
partition values, so Spark and ``pyarrow.dataset`` read every output with partition discovery."""

from __future__ import annotations

from fruit_assets.storage.objects import join_uri

# The characters Spark escapes in partition folder names (ExternalCatalogUtils.charToEscape).
_ESCAPED = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(0x20)}


def escape_partition_value(value: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in value)


def class_folder(dataset_uri: str, fruit_class: str) -> str:
    return join_uri(dataset_uri, f"fruit_class={escape_partition_value(fruit_class)}")

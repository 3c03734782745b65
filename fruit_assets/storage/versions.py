"""Published versions of the data root: every class's files of embeddings, quarantine and reduced
features, plus the PCA basis, switched in one atomic write. No Dagster, no Spark.

A version is one immutable object, ``<root>/_publications/v<number>.json``, created only if absent
(S3: ``PUT`` with ``If-None-Match: *``; local files: a hard link, which fails if the name exists).
The highest number is the current version. Readers take their file set from it, never from a
listing, so a listing taken mid-commit cannot mix versions; a writer that raced another one to the
same number fails loudly (:class:`ConcurrentPublicationError`) instead of deleting its files.

A publication, step by step (each step a named checkpoint, see ``_checkpoint``):

1. ``intent``: ``_publications/_pending/<writer>.json`` names the files about to appear in the data
   folders; whatever this writer leaves behind is found from it.
2. ``copy``: the staged files that successful task attempts reported are copied (S3) or moved
   (local) into the class folders under their unique names. Nothing refers to them yet.
3. ``switch``: the next version object is created. This is the commit point: before it, readers get
   the previous version; after it, the new one.
4. ``cleanup``: the files no version in the grace period names are deleted (superseded ones, and
   leftovers of dead attempts), then the intent. After it, a plain Parquet reader of a data folder
   reads exactly the current version's rows.

A crash between any two steps leaves the previous version (before the switch) or the new one
(after it) complete; :func:`recover`, run by the next publishing step, deletes what the dead
attempt left and its intent. Files are immutable: a name is never rewritten.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from fruit_assets.storage.objects import LocalObjectStore, ObjectStore, StorageError, join_uri, normalize_uri, open_store
from fruit_assets.storage.partitions import class_folder, unescape_partition_value

LOG = "_publications"
PENDING = "_pending"
# Dataset name -> folder under the root. The order is the order files are copied in: the published
# features last, so an interrupted copy leaves the least visible part behind.
DATASETS = {"embeddings": "embeddings", "quarantine": "quarantine",
            "reduced_features": "output/resultats_features_parquet"}
KEEP_VERSIONS = 20  # version objects kept for history and for readers of slightly older versions
# An intent younger than this, written by another Dagster instance, may belong to a live writer:
# its files are left alone. Intents of this instance are dead by the time a step of it recovers,
# since the instance's pool runs one publishing step per data root at a time (concurrency.py).
FOREIGN_INTENT_LEASE_SECONDS = 15 * 60


class ConcurrentPublicationError(StorageError):
    """Another writer published the version this one was building on."""


@dataclass(frozen=True)
class Version:
    root: str
    number: int
    # dataset -> class -> file paths relative to the root
    files: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    pca: dict | None = None  # {"fingerprint", "k", "model": path relative to the root}
    made_from: dict = field(default_factory=dict)  # class -> what its features were made from
    created: float = 0.0

    def classes(self, dataset: str) -> list[str]:
        return sorted(self.files.get(dataset, {}))

    def class_uris(self, dataset: str, fruit_class: str) -> list[str]:
        return [join_uri(self.root, path) for path in self.files.get(dataset, {}).get(fruit_class, ())]

    def uris(self, dataset: str) -> list[str]:
        return [uri for fruit_class in self.classes(dataset) for uri in self.class_uris(dataset, fruit_class)]

    def all_paths(self) -> set[str]:
        paths = {p for classes in self.files.values() for files in classes.values() for p in files}
        if self.pca and self.pca.get("model"):
            paths.add(self.pca["model"])
        return paths

    def to_json(self) -> bytes:
        return json.dumps({"version": self.number, "created": self.created, "pca": self.pca,
                           "made_from": self.made_from,
                           "files": {d: {c: list(f) for c, f in classes.items()} for d, classes in self.files.items()}},
                          indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, root: str, data: bytes) -> "Version":
        record = json.loads(data)
        return cls(root, record["version"], {d: {c: tuple(f) for c, f in classes.items()}
                                             for d, classes in record["files"].items()},
                   record.get("pca"), record.get("made_from") or {}, record.get("created", 0.0))


def dataset_location(dataset_uri: str) -> tuple[str, str]:
    """``<root>/output/resultats_features_parquet`` -> (root, "reduced_features")."""
    dataset_uri = normalize_uri(dataset_uri)
    for name, folder in DATASETS.items():
        if dataset_uri.endswith("/" + folder):
            return dataset_uri[: -len(folder) - 1], name
    raise StorageError(f"{dataset_uri} is not a published dataset ({', '.join(DATASETS.values())})")


def _log(root: str) -> str:
    return join_uri(root, LOG)


def _version_uri(root: str, number: int) -> str:
    return join_uri(_log(root), f"v{number:010d}.json")


def _version_numbers(store: ObjectStore, root: str) -> list[int]:
    numbers = []
    for info in store.list_objects(_log(root), recursive=False, content_hash=False):
        name = info.uri.rsplit("/", 1)[-1]
        if name.startswith("v") and name.endswith(".json") and name[1:-5].isdigit():
            numbers.append(int(name[1:-5]))
    return sorted(numbers)


def current_version(root: str) -> Version:
    """The last published version; for a root written before versions existed, the committed
    files of its class folders (version 0, which the next publication turns into version 1)."""
    root = normalize_uri(root)
    store = open_store(root)
    for _attempt in range(5):
        numbers = _version_numbers(store, root)
        if not numbers:
            return _legacy_version(store, root)
        try:
            return Version.from_json(root, store.read_bytes(_version_uri(root, numbers[-1])))
        except (FileNotFoundError, StorageError):
            if store.exists(_version_uri(root, numbers[-1])):
                raise
            # pruned between the listing and the read: a newer version exists, list again
    raise StorageError(f"the version log under {_log(root)} changes faster than it can be read")


def _legacy_version(store: ObjectStore, root: str) -> Version:
    files: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, folder in DATASETS.items():
        dataset_uri = join_uri(root, folder)
        for fruit_class_folder in store.list_folders(dataset_uri):
            if not fruit_class_folder.startswith("fruit_class="):
                continue
            fruit_class = unescape_partition_value(fruit_class_folder[len("fruit_class="):])
            folder_uri = join_uri(dataset_uri, fruit_class_folder)
            paths = tuple(sorted(info.uri[len(root) + 1:] for info in store.list_committed(folder_uri)
                                 if _is_data_file(info.uri)))
            if paths:
                files.setdefault(name, {})[fruit_class] = paths
    # Read after the listing: a writer names its files in an intent before it copies any, so files
    # of a writer still at work (or dead before its first switch) are not taken for published ones.
    pending = _intent_paths(store, root)
    files = {d: {c: kept for c, paths in classes.items() if (kept := tuple(p for p in paths if p not in pending))}
             for d, classes in files.items()}
    return Version(root, 0, {d: classes for d, classes in files.items() if classes})


def _intent_paths(store: ObjectStore, root: str) -> set[str]:
    paths: set[str] = set()
    for info in store.list_objects(join_uri(_log(root), PENDING), content_hash=False):
        try:
            paths.update(json.loads(store.read_bytes(info.uri)).get("paths", []))
        except (FileNotFoundError, StorageError, ValueError):
            continue
    return paths


def _is_data_file(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith((".", "_"))


# ------------------------------------------------------------------------------------------------
# Fault injection: FRUIT_PUBLICATION_KILL_AT=<checkpoint>[@<dataset>][:<n>] SIGKILLs this process the
# n-th time it reaches that checkpoint (of a publication that changes <dataset>, if given). The crash
# tests use it to stop a real publication between any two of its storage operations; unset, it does
# nothing.
_reached: Counter = Counter()


def _checkpoint(name: str, datasets: Iterable[str] = ()) -> None:
    target = os.environ.get("FRUIT_PUBLICATION_KILL_AT")
    if not target:
        return
    wanted, _, nth = target.partition(":")
    wanted, _, dataset = wanted.partition("@")
    if wanted == name and (not dataset or dataset in datasets):
        _reached[target] += 1
        if _reached[target] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _writer_scope() -> str:
    """Which Dagster instance this writer belongs to (see FOREIGN_INTENT_LEASE_SECONDS)."""
    return os.environ.get("FRUIT_PUBLICATION_SCOPE") or os.environ.get("DAGSTER_HOME", "") or "no-dagster-home"


def _intent_uri(root: str, writer: str) -> str:
    return join_uri(_log(root), PENDING, f"{writer}.json")


def _final_path(store: ObjectStore, root: str, dataset: str, fruit_class: str, staged_uri: str, taken: set[str]) -> str:
    """The staged file's name in its class folder, made unique if any file ever had it: a name is
    never given to other bytes, so a reader of an older version never reads a newer file."""
    folder = class_folder(DATASETS[dataset], fruit_class)
    name = staged_uri.rsplit("/", 1)[-1]
    path = f"{folder}/{name}"
    while path in taken or store.exists(join_uri(root, path)):
        stem, dot, extension = name.rpartition(".")
        path = f"{folder}/{stem}-{uuid.uuid4().hex[:8]}{dot}{extension}"
    taken.add(path)
    return path


def publish(root: str, writer: str, changes: dict[str, dict[str, list[str]]] | None = None,
            removed_classes: Iterable[str] = (), pca: dict | None = None, pca_model_uri: str = "",
            made_from: dict | None = None, grace_seconds: float = 0.0) -> Version:
    """Publishes the next version: for each dataset and class in ``changes``, exactly the staged
    files listed (an empty list: the class has no file in that dataset); ``removed_classes`` leave
    every dataset; ``pca`` (with ``pca_model_uri``, the basis file, copied in under its
    fingerprint) becomes the published basis; ``made_from`` entries replace those of their
    classes. Returns the new version, after the cleanup."""
    root = normalize_uri(root)
    store = open_store(root)
    changes = changes or {}
    removed = set(removed_classes)
    recover(root)
    base = current_version(root)

    moves: list[tuple[str, str]] = []  # (staged uri, final path)
    taken = base.all_paths()
    files = {d: dict(classes) for d, classes in base.files.items()}
    for dataset in DATASETS:
        for fruit_class, staged in sorted((changes.get(dataset) or {}).items()):
            finals = [_final_path(store, root, dataset, fruit_class, uri, taken) for uri in staged]
            moves.extend(zip(staged, finals))
            if finals:
                files.setdefault(dataset, {})[fruit_class] = tuple(sorted(finals))
            else:
                files.get(dataset, {}).pop(fruit_class, None)
    for dataset in files:
        for fruit_class in removed:
            files[dataset].pop(fruit_class, None)
    files = {d: classes for d, classes in files.items() if classes}
    new_pca = base.pca
    if pca is not None:
        model_path = f"models/pca/{pca['fingerprint']}.npz"
        if model_path not in base.all_paths():  # the same basis published again: its file is there
            moves.append((pca_model_uri, model_path))
        new_pca = {**pca, "model": model_path}
    made = {c: e for c, e in base.made_from.items() if c not in removed}
    made.update(made_from or {})

    intent = {"base": base.number, "paths": [final for _, final in moves], "scope": _writer_scope(),
              "host": socket.gethostname(), "pid": os.getpid(), "created": time.time()}
    store.write_bytes(_intent_uri(root, writer), json.dumps(intent).encode())
    _checkpoint("intent", changes)
    for staged_uri, final in moves:
        if staged_uri != join_uri(root, final):
            store.copy(staged_uri, join_uri(root, final))
        _checkpoint("copy", changes)

    version = Version(root, base.number + 1, files, new_pca, made, time.time())
    _checkpoint("switch", changes)
    if not _switch(store, _version_uri(root, version.number), version.to_json()):
        _undo(store, root, writer, [final for _, final in moves], base)
        raise ConcurrentPublicationError(
            f"another writer published version {version.number} of {root} while this one was building it: "
            "nothing of this run was published; run it again (two Dagster instances writing one data root?)")
    _checkpoint("switched", changes)
    cleanup(root, grace_seconds)
    _checkpoint("cleaned", changes)
    store.delete([_intent_uri(root, writer)])
    return version


def _switch(store: ObjectStore, version_uri: str, record: bytes) -> bool:
    """Creates the version object; False if another writer's has that number. A conditional PUT
    that succeeded but whose answer was lost is retried by the client and then refused (412):
    the object holding exactly our bytes (they name our unique files) means the switch was ours."""
    if store.write_bytes_if_absent(version_uri, record):
        return True
    try:
        return store.read_bytes(version_uri) == record
    except (FileNotFoundError, StorageError):
        return False


def _undo(store: ObjectStore, root: str, writer: str, paths: list[str], base: Version) -> None:
    current = current_version(root).all_paths() | base.all_paths()
    store.delete(join_uri(root, p) for p in paths if p not in current)
    store.delete([_intent_uri(root, writer)])


def _live_intents(store: ObjectStore, root: str) -> tuple[set[str], list[str]]:
    """(paths named by intents of possibly live writers, intent objects of dead ones)."""
    live, dead = set(), []
    now, scope = time.time(), _writer_scope()
    for info in store.list_objects(join_uri(_log(root), PENDING), content_hash=False):
        try:
            intent = json.loads(store.read_bytes(info.uri))
        except (FileNotFoundError, StorageError, ValueError):
            continue  # its writer just finished, or it was cut short
        same_process = intent.get("host") == socket.gethostname() and intent.get("pid") == os.getpid()
        foreign_and_fresh = intent.get("scope") != scope and now - intent.get("created", 0) < FOREIGN_INTENT_LEASE_SECONDS
        if same_process or foreign_and_fresh:
            live.update(intent.get("paths", []))
        else:
            dead.append(info.uri)
    return live, dead


def cleanup(root: str, grace_seconds: float = 0.0) -> None:
    """Deletes every data file no version created in the last ``grace_seconds`` (and the current
    one) names and no live writer is about to publish, then old version objects."""
    root = normalize_uri(root)
    store = open_store(root)
    # List first, then learn what is protected: a file a concurrent writer adds after the listing is
    # not in it, and one added before it has its writer's intent (written before any copy) or its
    # writer's finished version in place by the time they are read below.
    listed = [info.uri for folder in DATASETS.values()
              for info in store.list_objects(join_uri(root, folder), content_hash=False)]
    listed += [info.uri for info in store.list_objects(join_uri(root, "models", "pca"), recursive=False,
                                                       content_hash=False)
               if info.uri.endswith(".npz") and info.uri.rsplit("/", 1)[-1] != "pca.npz"]
    numbers = _version_numbers(store, root)
    if not numbers:
        return
    protected = current_version(root).all_paths()
    for number in reversed(numbers[:-1]):
        if grace_seconds <= 0:
            break
        try:
            older = Version.from_json(root, store.read_bytes(_version_uri(root, number)))
        except (FileNotFoundError, StorageError):
            continue
        if older.created < time.time() - grace_seconds:
            break
        protected |= older.all_paths()
    live, _dead = _live_intents(store, root)
    protected |= live
    doomed = [uri for uri in listed
              if uri[len(root) + 1:] not in protected and not uri.rsplit("/", 1)[-1].startswith(".tmp-")]
    # One file at a time locally (a crash test stops between any two), S3's batch size there.
    batch = 1 if isinstance(store, LocalObjectStore) else 1000
    for start in range(0, len(doomed), batch):
        store.delete(doomed[start:start + batch])
        _checkpoint("delete", ("cleanup",))
    store.delete(_version_uri(root, n) for n in numbers[:-KEEP_VERSIONS])


def recover(root: str) -> list[str]:
    """After a crash at any step of a publication: deletes what dead attempts left (files no
    version names, their intents); returns the intents removed. The current version is untouched."""
    root = normalize_uri(root)
    store = open_store(root)
    _live, dead = _live_intents(store, root)
    if not dead:
        return []  # nothing left behind: files appear only after their writer's intent
    published = current_version(root).all_paths() if _version_numbers(store, root) else set()
    for intent_uri in dead:
        # Its copies, unless its switch happened (then the current version names them).
        try:
            paths = json.loads(store.read_bytes(intent_uri)).get("paths", [])
        except (FileNotFoundError, StorageError, ValueError):
            paths = []
        store.delete(join_uri(root, p) for p in paths if p not in published)
        store.delete([intent_uri])
    cleanup(root)  # superseded files a writer killed after its switch had not deleted yet
    return dead

"""Published versions of the data root: every class's files of embeddings, quarantine and reduced
features, plus the PCA basis, switched in one atomic write. No Dagster, no Spark.

A version is one immutable object, ``<root>/_publications/v<number>.json``, created only if absent
(S3: ``PUT`` with ``If-None-Match: *``; local files: a hard link, which fails if the name exists).
The highest number is the current version. Readers take their file set from it, never from a
listing, so a listing taken mid-commit cannot mix versions; a writer that raced another one to the
same number fails loudly (:class:`ConcurrentPublicationError`) instead of deleting its files.

A publication, step by step (each step a named checkpoint, see storage/checkpoints.py):

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
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from fruit_assets.storage.checkpoints import checkpoint
from fruit_assets.storage.class_folders import class_folder
from fruit_assets.storage.errors import StorageError, TransientStorageError
from fruit_assets.storage.local_store import LocalObjectStore
from fruit_assets.storage.objects import ObjectStore, open_store
from fruit_assets.storage.uris import join_uri, normalize_uri
from fruit_assets.storage.version_record import DATASETS, Version

LOG = "_publications"
PENDING = "_pending"
KEEP_VERSIONS = 20  # version objects kept for history and for readers of slightly older versions
# A writer renews its intent every third of this while it works; an intent not renewed for this
# long (by the storage's clock) belongs to a dead writer, whom recovery fences off before deleting
# its files. Long enough for a stalled request or a GC pause, short enough that a crash's leftovers
# go with the next publication a few minutes on.
DEFAULT_LEASE_SECONDS = 120.0
# Superseded files stay this long after the version that named them stopped being current: a reader
# (or a Spark job) that took version N's file list can finish with it meanwhile.
DEFAULT_GRACE_SECONDS = 3600.0
# What a plain reader opens for the basis (the README's recipe): copies of the current version's,
# written only after the version that switches the rows to that basis (see _plain_basis_follows).
PLAIN_BASIS, PLAIN_BASIS_RECORD = "models/pca/pca.npz", "models/pca/pca.json"


class ConcurrentPublicationError(StorageError):
    """Another writer published the version this one was building on."""


def _log(root: str) -> str:
    return join_uri(root, LOG)


def _version_uri(root: str, number: int) -> str:
    return join_uri(_log(root), f"v{number:010d}.json")


def _log_entries(store: ObjectStore, root: str) -> dict[int, float]:
    """Version number -> when its object was written, by the storage's clock."""
    entries = {}
    for info in store.list_objects(_log(root), recursive=False, content_hash=False):
        name = info.uri.rsplit("/", 1)[-1]
        if name.startswith("v") and name.endswith(".json") and name[1:-5].isdigit():
            entries[int(name[1:-5])] = info.mtime
    return entries


def _version_numbers(store: ObjectStore, root: str) -> list[int]:
    return sorted(_log_entries(store, root))


def current_version(root: str) -> Version:
    """The last published version; for a root with none yet, an empty version 0 (the next
    publication is version 1)."""
    root = normalize_uri(root)
    store = open_store(root)
    for _attempt in range(5):
        numbers = _version_numbers(store, root)
        if not numbers:
            return Version(root, 0)
        try:
            return Version.from_json(root, store.read_bytes(_version_uri(root, numbers[-1])))
        except (FileNotFoundError, StorageError):
            if store.exists(_version_uri(root, numbers[-1])):
                raise
            # pruned between the listing and the read: a newer version exists, list again
    raise StorageError(f"the version log under {_log(root)} changes faster than it can be read")


def grace_seconds() -> float:
    """FRUIT_PUBLICATION_GRACE_SECONDS, else an hour."""
    return float(os.environ.get("FRUIT_PUBLICATION_GRACE_SECONDS", DEFAULT_GRACE_SECONDS))


def lease_seconds() -> float:
    """How long an intent that its writer stopped renewing still protects that writer's files."""
    return float(os.environ.get("FRUIT_PUBLICATION_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


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


class _Lease:
    """Keeps an intent's lease live while its writer works: the intent is rewritten every third of
    the lease (its mtime is the storage's clock), but only while it exists, so a writer that
    recovery has judged dead does not bring its intent back."""

    def __init__(self, store: ObjectStore, intent_uri: str, record: bytes):
        self.store, self.intent_uri, self.record = store, intent_uri, record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="publication-lease", daemon=True)

    def __enter__(self) -> _Lease:
        self.store.write_bytes(self.intent_uri, self.record)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._stop.wait(lease_seconds() / 3):
            try:
                if self.store.exists(self.intent_uri):
                    self.store.write_bytes(self.intent_uri, self.record)
            except StorageError:
                pass  # a missed renewal shortens the lease; the fence keeps a late switch out


def publish(
    root: str,
    writer: str,
    changes: dict[str, dict[str, list[str]]] | None = None,
    removed_classes: Iterable[str] = (),
    pca: dict | None = None,
    pca_model_uri: str = "",
    made_from: dict | None = None,
    grace: float | None = None,
    expected_base: int | None = None,
) -> Version:
    """Publishes the next version: for each dataset and class in ``changes``, exactly the staged
    files listed (an empty list: the class has no file in that dataset); ``removed_classes`` leave
    every dataset; ``pca`` (with ``pca_model_uri``, the basis file, copied in under its
    fingerprint) becomes the published basis; ``made_from`` entries replace those of their
    classes. ``expected_base``: the version the caller computed its changes from; a version
    published since that changes the same classes (or basis) is a ConcurrentPublicationError,
    never overwritten. ``grace``: seconds superseded files stay (None: grace_seconds()). Returns
    the new version, after the cleanup."""
    root = normalize_uri(root)
    store = open_store(root)
    changes = changes or {}
    removed = set(removed_classes)
    # Unique per attempt: a name from configuration (a run id, a DAGSTER_HOME) can be shared by
    # two live writers, and then one's recovery would take the other's intent for its own.
    writer = f"{writer}-{uuid.uuid4().hex[:12]}"
    recover(root)
    base = current_version(root)
    if expected_base is not None and base.number != expected_base:
        touched = _touched_since(store, root, expected_base, base, changes, removed, pca is not None)
        if touched:
            raise _concurrent(
                root,
                base.number,
                f"since version {expected_base}, which this step read, changing what this step changes ({touched})",
            )

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

    intent_uri = _intent_uri(root, writer)
    finals = [final for _, final in moves]
    intent = {"base": base.number, "paths": finals, "host": socket.gethostname(), "pid": os.getpid()}
    version = Version(root, base.number + 1, files, new_pca, made, time.time())
    with _Lease(store, intent_uri, json.dumps(intent).encode()):
        checkpoint("intent", changes)
        for staged_uri, final in moves:
            if staged_uri != join_uri(root, final):
                store.copy(staged_uri, join_uri(root, final))
            checkpoint("copy", changes)
        checkpoint("switch", changes)
        # Last look before the commit point: a recovery that took this writer for dead deleted its
        # intent (and may have deleted its copies); a version published meanwhile is newer than
        # the base these changes were computed on.
        latest, fenced = _latest_number(store, root), not store.exists(intent_uri)
        if fenced or latest != base.number:
            _undo(store, root, intent_uri, finals, base)
            raise _concurrent(
                root,
                latest,
                "(this writer stalled past its lease and was fenced off)"
                if fenced
                else "while this one copied its files",
            )
        switched = _switch(store, _version_uri(root, version.number), version.to_json())
    if switched is None:
        # Neither confirmed nor refused: the intent stays, so nothing it names is deleted before
        # its lease runs out, and the recovery after that settles it by the version log.
        raise StorageError(
            f"the switch to version {version.number} of {root} got no answer that could be settled "
            "by reading it back: nothing was deleted; the next publication settles it"
        )
    if not switched:
        _undo(store, root, intent_uri, finals, base)
        raise _concurrent(root, version.number, "")
    checkpoint("switched", changes)
    if _latest_number(store, root) != version.number:
        # Our number had been pruned from the log and a later version exists: ours is below the
        # current maximum, so no reader takes it, and it must not count as published.
        _undo(store, root, intent_uri, finals, current_version(root))
        raise _concurrent(root, version.number, "long before this one switched (its version number had been pruned)")
    _plain_basis_follows(store, root, version)  # the current version: checked just above
    cleanup(root, grace)
    checkpoint("cleaned", changes)
    store.delete([intent_uri])
    return version


def _touched_since(
    store: ObjectStore, root: str, read: int, base: Version, changes: dict, removed: set[str], changes_pca: bool
) -> str:
    """What versions published after ``read`` changed among what this publication changes ("" if
    nothing: its changes apply to the newer base as they would have to the one it read)."""
    try:
        before = Version.from_json(root, store.read_bytes(_version_uri(root, read)))
    except (FileNotFoundError, StorageError):
        return f"version {read} is no longer in the log"
    touched = []
    for dataset in DATASETS:
        for fruit_class in sorted(set(changes.get(dataset) or {}) | removed):
            if before.files.get(dataset, {}).get(fruit_class) != base.files.get(dataset, {}).get(fruit_class):
                touched.append(f"{dataset} of {fruit_class}")
    if changes_pca and before.pca != base.pca:
        touched.append("the PCA basis")
    return ", ".join(touched[:5]) + (", ..." if len(touched) > 5 else "")


def _concurrent(root: str, number: int, when: str) -> ConcurrentPublicationError:
    return ConcurrentPublicationError(
        f"another writer published version {number} of {root} {when}".rstrip() + ": nothing of this run was "
        "published; run it again (two Dagster instances writing one data root?)"
    )


def _latest_number(store: ObjectStore, root: str) -> int:
    numbers = _version_numbers(store, root)
    return numbers[-1] if numbers else 0


def _switch(store: ObjectStore, version_uri: str, record: bytes) -> bool | None:
    """Creates the version object: True if it is ours, False if another writer's has that number,
    None if neither could be established. Every ambiguous answer (a conditional PUT that landed
    but whose answer was lost, a 409 while another conditional write of the name was in flight,
    a timeout, a 5xx) is settled by reading the name back, never by deleting anything: the object
    holding exactly our bytes (they name our unique files) means the switch was ours."""
    for _attempt in range(3):
        try:
            if store.write_bytes_if_absent(version_uri, record):
                return True
        except (TransientStorageError, OSError):
            pass  # it may have landed all the same
        try:
            return store.read_bytes(version_uri) == record
        except FileNotFoundError:
            continue  # nothing there after all: the name is still free
        except (TransientStorageError, OSError):
            continue
    return None


def _undo(store: ObjectStore, root: str, intent_uri: str, paths: list[str], base: Version) -> None:
    current = current_version(root).all_paths() | base.all_paths()
    for path in paths:
        if path not in current:
            store.delete([join_uri(root, path)])
            checkpoint("undo")
    store.delete([intent_uri])


@dataclass(frozen=True)
class _Intent:
    uri: str
    base: int
    paths: tuple[str, ...]
    age: float  # seconds since its writer last renewed it, by the storage's clock


def _intents(store: ObjectStore, root: str) -> list[_Intent]:
    pending = join_uri(_log(root), PENDING)
    listed = list(store.list_objects(pending, content_hash=False))
    if not listed:
        return []
    now = store.clock(pending)
    found = []
    for info in listed:
        try:
            record = json.loads(store.read_bytes(info.uri))
        except (FileNotFoundError, StorageError, ValueError):
            continue  # its writer just finished, or it was cut short
        found.append(_Intent(info.uri, int(record.get("base", -1)), tuple(record.get("paths", [])), now - info.mtime))
    return found


def _live_intents(store: ObjectStore, root: str) -> tuple[set[str], list[_Intent]]:
    """(paths named by intents whose lease is live, intents whose lease ran out)."""
    live, dead = set(), []
    lease = lease_seconds()
    for intent in _intents(store, root):
        if intent.age < lease:
            live.update(intent.paths)
        else:
            dead.append(intent)
    return live, dead


def _superseded_within(store: ObjectStore, root: str, entries: dict[int, float], grace: float) -> set[int]:
    """Numbers of the versions (of the log's ``entries``) that were current at some time in the
    last ``grace`` seconds, by the storage's clock: version N stopped being current when N+1 was
    written."""
    if grace <= 0 or not entries:
        return set()
    since = store.clock(_log(root)) - grace
    numbers = sorted(entries)
    return {number for number, successor in zip(numbers, numbers[1:]) if entries[successor] >= since}


def cleanup(root: str, grace: float | None = None) -> None:
    """Deletes every data file that no version current within the last ``grace`` seconds
    (None: grace_seconds()), nor the current one, names and no live writer is about to publish,
    then the version objects past the last KEEP_VERSIONS that no reader within the grace period
    can still be using."""
    root = normalize_uri(root)
    store = open_store(root)
    grace = grace_seconds() if grace is None else grace
    # List first, then learn what is protected: a file a concurrent writer adds after the listing is
    # not in it, and one added before it has its writer's intent (written before any copy) or its
    # writer's finished version in place by the time they are read below.
    listed = [
        info.uri
        for folder in DATASETS.values()
        for info in store.list_objects(join_uri(root, folder), content_hash=False)
    ]
    listed += [
        info.uri
        for info in store.list_objects(join_uri(root, "models", "pca"), recursive=False, content_hash=False)
        if info.uri.endswith(".npz") and info.uri.rsplit("/", 1)[-1] != "pca.npz"
    ]
    entries = _log_entries(store, root)
    numbers = sorted(entries)
    if not numbers:
        return
    protected = current_version(root).all_paths()
    recent = _superseded_within(store, root, entries, grace)
    for number in sorted(recent, reverse=True):
        try:
            protected |= Version.from_json(root, store.read_bytes(_version_uri(root, number))).all_paths()
        except (FileNotFoundError, StorageError):
            continue
    live, _dead = _live_intents(store, root)
    protected |= live
    doomed = [
        uri
        for uri in listed
        if uri[len(root) + 1 :] not in protected and not uri.rsplit("/", 1)[-1].startswith(".tmp-")
    ]
    # One file at a time locally (a crash test stops between any two), S3's batch size there.
    batch = 1 if isinstance(store, LocalObjectStore) else 1000
    for start in range(0, len(doomed), batch):
        store.delete(doomed[start : start + batch])
        checkpoint("delete", ("cleanup",))
    store.delete(_version_uri(root, n) for n in numbers[:-KEEP_VERSIONS] if n not in recent)


def _plain_basis_follows(store: ObjectStore, root: str, version: Version) -> None:
    """Makes models/pca/pca.npz and pca.json copies of the basis of ``version``, the current one, if
    they are not already: called after every switch and by every recovery, so the basis a plain reader opens is
    never one that no published row uses for longer than a publication takes (pca_model fits into
    models/pca/fitted/, which no reader of the table needs). Two objects cannot change at once on
    S3: the basis file is written first, then the record that says which basis it holds; a crash
    between them leaves a record that disagrees with the version, repaired by the next recovery."""
    if not version.pca or not version.pca.get("model"):
        return
    record_uri = join_uri(root, PLAIN_BASIS_RECORD)
    try:
        record = json.loads(store.read_bytes(record_uri))
    except (FileNotFoundError, StorageError, ValueError):
        record = {}
    wanted = {"fingerprint": version.pca["fingerprint"], "k": version.pca.get("k"), "version": version.number}
    if {key: record.get(key) for key in ("fingerprint", "k")} == {key: wanted[key] for key in ("fingerprint", "k")}:
        return
    store.write_bytes(join_uri(root, PLAIN_BASIS), store.read_bytes(join_uri(root, version.pca["model"])))
    store.write_bytes(record_uri, json.dumps(wanted).encode())


def _fence(store: ObjectStore, root: str, intent: _Intent) -> None:
    """Makes sure a writer whose lease ran out can no longer switch: the number it would create
    (its base + 1) is taken. If its base is still the current version, the number is claimed with
    a copy of the current version (readers see the same files); otherwise a newer version holds
    it already (or held it and was pruned, which the writer's own check after its switch catches)."""
    current = current_version(root)
    if current.number == intent.base:
        claim = Version(root, intent.base + 1, current.files, current.pca, current.made_from, time.time())
        # Refused: the writer switched just now; its version is then the current one, and the
        # caller re-reads what is published before deleting anything.
        store.write_bytes_if_absent(_version_uri(root, claim.number), claim.to_json())


def recover(root: str) -> list[str]:
    """After a crash at any step of a publication: fences every writer whose lease ran out, then
    deletes what it left (files no version names, its intent); returns the intents removed. The
    current version's files are untouched, and so are those of writers whose lease is live."""
    root = normalize_uri(root)
    store = open_store(root)
    _live, dead = _live_intents(store, root)
    if _version_numbers(store, root):
        # A writer that died between its switch and these copies.
        _plain_basis_follows(store, root, current_version(root))
    if not dead:
        return []  # nothing left behind: files appear only after their writer's intent
    for intent in dead:
        if intent.base >= 0:
            _fence(store, root, intent)
        # Read after the fence: a writer that switched before it is published, files and all.
        published = current_version(root).all_paths()
        checkpoint("recover")
        store.delete(join_uri(root, p) for p in intent.paths if p not in published)
        store.delete([intent.uri])
    cleanup(root)  # superseded files a writer killed after its switch had not deleted yet
    return [intent.uri for intent in dead]


def tidy(root: str) -> list[str]:
    """What runs on its own, between publications (`fruit-assets recover`, the hourly schedule):
    recovers dead publications and deletes superseded files past the grace period, so neither a
    crash's leftovers nor old files wait for the next publication. Returns the intents removed."""
    dead = recover(root)
    if not dead:  # recover has cleaned up already when it found any
        cleanup(root)
    return dead

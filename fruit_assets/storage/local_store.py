"""The object store over local files (``file://``): writes atomic by rename, conditional creation by
hard link."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from fruit_assets.storage.errors import MissingObjectError, StorageError
from fruit_assets.storage.objects import ObjectInfo, ObjectStore


def _local_path(uri: str) -> str:
    if not uri.startswith("file://"):
        raise StorageError(f"not a file:// URI: {uri!r}")
    return uri[len("file://") :]


def _md5_file(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_content_etag(uri: str) -> str:
    """What a content-hashing listing gives a local file as its ETag (its MD5)."""
    return _md5_file(_local_path(uri))


class LocalObjectStore(ObjectStore):
    def list_objects(self, prefix_uri: str, recursive: bool = True, content_hash: bool = True) -> Iterator[ObjectInfo]:
        root = _local_path(prefix_uri)
        if not os.path.isdir(root):
            return
        if recursive:
            walker = ((d, sorted(f)) for d, _dirs, f in sorted(os.walk(root)))
        else:
            walker = iter([(root, sorted(e.name for e in os.scandir(root) if e.is_file()))])
        for directory, files in walker:
            for name in files:
                path = os.path.join(directory, name)
                try:
                    stat = os.stat(path)
                    etag = _md5_file(path) if content_hash else f"mtime:{stat.st_mtime_ns}"
                except FileNotFoundError:
                    continue  # deleted since the directory was read, as S3 would not list it
                yield ObjectInfo("file://" + path, stat.st_size, etag, stat.st_mtime)

    def list_folders(self, prefix_uri: str) -> list[str]:
        root = _local_path(prefix_uri)
        if not os.path.isdir(root):
            return []
        return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        try:
            with open(_local_path(uri), "rb") as handle:
                return handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except FileNotFoundError as error:
            raise MissingObjectError(f"no file at {uri}: deleted since it was listed, or never written") from error

    @staticmethod
    def _temp_copy(path: str, data: bytes) -> str:
        """``data`` in a new file beside ``path``, under a dot-prefixed name: Spark and
        pyarrow.dataset skip hidden files while it exists."""
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = _local_path(uri)
        tmp = self._temp_copy(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def exists(self, uri: str) -> bool:
        return os.path.exists(_local_path(uri))

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            try:
                os.unlink(_local_path(uri))
            except FileNotFoundError:
                pass

    def delete_prefix(self, prefix_uri: str) -> None:
        shutil.rmtree(_local_path(prefix_uri), ignore_errors=True)

    def copy(self, source_uri: str, destination_uri: str) -> None:
        # A hard link: the same bytes under a new name, nothing read or written. Files are never
        # rewritten in place (write_bytes replaces), so the two names cannot drift apart.
        destination = _local_path(destination_uri)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        os.link(_local_path(source_uri), destination)

    def write_bytes_if_absent(self, uri: str, data: bytes) -> bool:
        path = _local_path(uri)
        tmp = self._temp_copy(path, data)
        try:
            os.link(tmp, path)  # atomic, and refuses an existing name (os.replace would overwrite)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

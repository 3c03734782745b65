"""The storage errors, each with a message a user can act on."""

from __future__ import annotations

from fruit_assets.errors import TransientError, UserFacingError


class StorageError(UserFacingError):
    """A storage problem with a message a user can act on."""


class TransientStorageError(StorageError, TransientError):
    """The server is there but throttled us, failed inside, or dropped the connection, and kept
    doing so through every retry: the same request may well succeed a little later."""


class AccessDeniedError(StorageError):
    """S3 refused the request (403 AccessDenied) to the identity this process runs as. On AWS that
    is also the answer to a GET of a key deleted since it was listed when that identity may not
    s3:ListBucket it, so a 403 is never taken for a missing object: it is a grant to add (infra/iam/)."""


class MissingObjectError(StorageError, FileNotFoundError):
    """No object under that name (deleted since it was listed, or never written). Still a
    FileNotFoundError, as the local backend's reads always raised."""

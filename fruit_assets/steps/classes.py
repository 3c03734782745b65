"""Which classes Training/ holds and what becomes of them: one rule for the sensor, the command
line and pca_model. No Dagster.

Discovery checks each class folder's name (``check_class_names``): a name that cannot become a
partition key, a folder name in every dataset and a key on the storage is reported and skipped,
never registered. Then ``plan_classes`` compares the valid classes on Training/ with the *known*
classes: those registered as partitions in this instance and those with outputs under the data
root. The mass-deletion guard's one denominator is every class in view, known or on Training/ now.
Not the sensor's cursor: a deliberate deletion elsewhere (``fruit-assets materialize
--allow-mass-deletion``, a run with ``storage.allow_mass_deletion``) removes partitions and
outputs but never sees that cursor, and a guard counting it refused the same deletion on every
tick afterwards. The classes on Training/ count because a rename reads as one class gone and one
new (renaming one class and deleting another, of three, is half of four, not two of three), while
an outage or a half-listed prefix, the losses the guard is for, brings no new names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from fruit_assets.errors import UserFacingError
from fruit_assets.layout import DataLayout
from fruit_assets.steps.checks import CheckOutcome, ClassTable
from fruit_assets.storage.class_folders import escape_partition_value


class MassDeletionError(UserFacingError):
    """Training/ lost so many classes at once that deleting their outputs needs a deliberate yes."""


@dataclass(frozen=True)
class InvalidClass:
    name: str  # as listed: the folder's real name
    reason: str

    def __str__(self) -> str:
        return f"{shown(self.name)}: {self.reason}"


def check_class_names(
    names: Iterable[str],
    layout: DataLayout,
    keep: Iterable[str] = (),
    present: Callable[[list[str]], Iterable[str]] | None = None,
) -> tuple[list[str], list[InvalidClass]]:
    """(the valid class names, sorted; the invalid ones with why). ``present`` (optional) keeps,
    of the names that are valid so far, those that are classes (folders holding objects: an
    emptied one lingers as a prefix); it is never asked about an invalid name (an empty one would
    list the whole of Training/). A name that reads as another (the same text in Unicode NFC and
    NFD: two folders S3 keeps apart) is not normalized, since manifests must name the objects'
    real keys: one of the two is kept (of those in ``keep``, classes already known, so that a
    newcomer never displaces one, or else of all: the one in NFC, else the first), the other is
    reported."""
    limit = layout.max_class_name_bytes()
    valid, invalid = [], []
    for name in sorted(set(names)):
        reason = _name_problem(name, limit)
        if reason is None:
            valid.append(name)
        else:
            invalid.append(InvalidClass(name, reason))
    if present is not None:
        holding = set(present(valid))
        valid = [n for n in valid if n in holding]
    keep = set(keep)
    twins: dict[str, list[str]] = {}
    for name in valid:
        twins.setdefault(unicodedata.normalize("NFC", name), []).append(name)
    for normal, group in twins.items():
        if len(group) < 2:
            continue
        candidates = [n for n in group if n in keep] or group
        kept = normal if normal in candidates else candidates[0]
        for name in group:
            if name != kept:
                invalid.append(
                    InvalidClass(
                        name,
                        f"the same name as {shown(kept)} in another Unicode normalization "
                        "(NFC/NFD): two folders that read as one class; rename or merge them",
                    )
                )
    skipped = {i.name for i in invalid}
    return [n for n in valid if n not in skipped], sorted(invalid, key=lambda i: i.name)


def _name_problem(name: str, limit: int) -> str | None:
    if not name:
        return "empty name (a key such as Training//x.jpg)"
    if name in (".", ".."):
        return "a relative path segment, not a folder name"
    if any(unicodedata.category(c) == "Cs" for c in name):
        return "not valid UTF-8"
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"holds the control character U+{ord(control):04X}"
    if "..." in name:
        return "holds '...', Dagster's partition-range separator"
    size = len(escape_partition_value(name).encode())
    if size > limit:
        return (
            f"{size} bytes as a folder name: over the {limit} a class name may take under this root, "
            "where the longest file derived from it must stay within the storage's key limit"
        )
    return None


@dataclass(frozen=True)
class ClassPlan:
    """What to do with the classes, from one comparison of Training/ with the known classes."""

    known: list[str]  # registered or with outputs
    in_view: int  # the guard's denominator: the classes known or on Training/
    to_register: list[str]  # on Training/, not registered yet
    gone: list[str]  # known, no longer on Training/
    refused: str | None = None  # why deleting ``gone`` is refused; None: it may proceed
    registered: list[str] = field(default_factory=list)

    @property
    def to_remove(self) -> list[str]:
        """The classes whose outputs and partitions go now: none while the loss is refused."""
        return [] if self.refused else self.gone

    @property
    def to_deregister(self) -> list[str]:
        registered = set(self.registered)
        return [c for c in self.to_remove if c in registered]

    def raise_if_refused(self) -> None:
        if self.refused:
            raise MassDeletionError(self.refused)


def plan_classes(
    training: Iterable[str], registered: Iterable[str], published: Iterable[str], allow_mass_deletion: bool, where: str
) -> ClassPlan:
    """``training``: the valid classes with objects under Training/ (``where``); ``registered``:
    the instance's partitions; ``published``: classes with outputs under the root (a caller may
    leave out those it passes as registered: the union is what counts). Refused, unless
    ``allow_mass_deletion``: any loss with nothing left on Training/ (a wrong FRUIT_DATA_URI or
    an outage lists nothing), or the loss of more than half of the classes in view (known or on
    Training/) at once; exactly half passes (one class of two renamed)."""
    training = sorted(set(training))
    registered = list(dict.fromkeys(registered))
    known = sorted(set(registered) | set(published))
    on_training = set(training)
    gone = [c for c in known if c not in on_training]
    in_view = len(set(known) | on_training)
    plan = ClassPlan(
        known=known,
        in_view=in_view,
        to_register=[c for c in training if c not in set(registered)],
        gone=gone,
        registered=registered,
    )
    if allow_mass_deletion or not gone:
        return plan
    if not training:
        return replace(
            plan,
            refused=(
                f"no class folders under {where}/ (a wrong FRUIT_DATA_URI or an outage?): refusing to delete the "
                f"outputs of {len(gone)} classes; allow a deliberate mass deletion to proceed"
            ),
        )
    if len(gone) * 2 > in_view:
        return replace(
            plan,
            refused=(
                f"{len(gone)} of {in_view} classes are gone from {where}/ at once ({', '.join(gone[:5])}"
                f"{', ...' if len(gone) > 5 else ''}): refusing to delete their outputs; allow a deliberate mass "
                "deletion to proceed"
            ),
        )
    return plan


def shown(name: str, limit: int = 80) -> str:
    """A folder name as a log line or a Markdown table can show it: escaped (control characters,
    and accents as code points, so NFC and NFD twins tell apart), cut short if long."""
    text = ascii(name).replace("|", "\\|")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(name.encode(errors='surrogatepass'))} bytes)"


def class_names_outcome(invalid: list[InvalidClass], where: str) -> CheckOutcome:
    """The asset check over the class folders' names: a warning, since the valid classes are
    complete without the skipped ones; a person renames or removes the folder."""
    if not invalid:
        return CheckOutcome(
            CLASS_NAMES_CHECK,
            True,
            {"invalid_class_folders": 0},
            description=f"every class folder under {where}/ has a usable name",
            warn_only=True,
        )
    return CheckOutcome(
        CLASS_NAMES_CHECK,
        False,
        {"invalid_class_folders": ClassTable({shown(i.name): {"reason": i.reason} for i in invalid})},
        description=f"{len(invalid)} class folder(s) under {where}/ skipped for their names (never registered nor "
        f"embedded): {'; '.join(shown(i.name, 40) + ': ' + i.reason for i in invalid[:3])}"
        f"{'; ...' if len(invalid) > 3 else ''}",
        warn_only=True,
    )


CLASS_NAMES_CHECK = "class_folder_names_are_valid"

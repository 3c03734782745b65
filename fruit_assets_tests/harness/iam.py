"""A small IAM policy evaluator, enough to check the repository's S3 policies without AWS.

What it implements, the way AWS documents it (IAM User Guide, "Policy evaluation logic"; same
account, no SCPs, permission boundaries or session policies):

- statements with ``Effect`` Allow/Deny, ``Action``/``NotAction`` and ``Resource``/``NotResource``
  (a string or a list), and in resource policies ``Principal`` (``"*"`` or ``{"AWS": ...}``);
- action names match case-insensitively, with ``*`` and ``?`` wildcards; resources match
  case-sensitively with the same wildcards (``*`` spans ``/`` and ``:``);
- conditions: every operator of a statement must hold, every key of an operator must hold, and any
  one of a key's values may match. Operators: StringEquals/StringNotEquals, StringLike/
  StringNotLike, ArnEquals/ArnLike/ArnNotEquals/ArnNotLike (each colon-separated ARN part matched
  on its own), Bool, each optionally ``...IfExists``. A key absent from the request makes a
  positive operator false and a negated one (``...Not...``) true; ``IfExists`` makes it true;
- an explicit Deny in any policy wins, then any Allow (identity policy, or a resource policy whose
  Principal names the caller), else the default (implicit) deny.

Anything else (``NotPrincipal``, policy variables, another operator, ForAnyValue/ForAllValues) raises
``UnsupportedPolicy``: the evaluator never guesses, so a policy it cannot read fails the tests
instead of passing them.

:func:`missing_object_status` adds S3's answer to a GET of a key that does not exist (404 or 403),
which depends on a second authorization, of ``s3:ListBucket``; see there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"
VERSION = "2012-10-17"


class UnsupportedPolicy(ValueError):
    """A policy element this evaluator does not implement (so it cannot vouch for the policy)."""


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # "arn:aws:s3:::BUCKET/fruits/Training/Apple/1.jpg"
    principal: str = ""  # the caller's role ARN (aws:PrincipalArn), for resource policies
    context: dict = field(default_factory=dict)  # condition keys -> value (str, bool or list)

    def value(self, key: str):
        """The context value of ``key`` (condition keys are case-insensitive), None if absent."""
        merged = {"aws:PrincipalArn": self.principal} if self.principal else {}
        merged.update(self.context)
        for name, value in merged.items():
            if name.lower() == key.lower():
                return value
        return None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern:
    if "${" in glob:
        raise UnsupportedPolicy(f"policy variables are not supported: {glob!r}")
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(glob: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's ``*`` (any run of characters, ``/`` and ``:`` included) and ``?`` (one character)."""
    return _pattern(glob, ignore_case).fullmatch(value) is not None


def _arn_match(pattern: str, arn: str, like: bool) -> bool:
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    if not like:
        return pattern_parts == arn_parts
    return all(wildcard_match(p, a) for p, a in zip(pattern_parts, arn_parts))


def _string_value(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "ArnEquals", "ArnNotEquals",
              "ArnLike", "ArnNotLike", "Bool"}


def _operator_holds(operator: str, key: str, expected: list, request: Request) -> bool:
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise UnsupportedPolicy(f"set operators are not supported: {operator}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    if base not in _OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator} is not supported")
    negated = "Not" in base
    actual = request.value(key)
    if actual is None:
        return True if if_exists else negated
    actual_values = [_string_value(v) for v in _as_list(actual)]
    expected = [_string_value(v) for v in expected]

    def one(a: str, e: str) -> bool:
        if base in ("StringEquals", "StringNotEquals"):
            return a == e
        if base in ("StringLike", "StringNotLike"):
            return wildcard_match(e, a)
        if base in ("ArnEquals", "ArnNotEquals"):
            return _arn_match(e, a, like=False)
        if base in ("ArnLike", "ArnNotLike"):
            return _arn_match(e, a, like=True)
        return a.lower() == e.lower()  # Bool

    matched = any(one(a, e) for a in actual_values for e in expected)
    return not matched if negated else matched


def _conditions_hold(condition: dict, request: Request) -> bool:
    for operator, keys in condition.items():
        for key, expected in keys.items():
            if not _operator_holds(operator, key, _as_list(expected), request):
                return False
    return True


def _principal_matches(principal, caller: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict) or set(principal) - {"AWS"}:
        raise UnsupportedPolicy(f"principal {principal!r} is not supported (only \"*\" and AWS ARNs)")
    return any(p == "*" or p == caller for p in _as_list(principal["AWS"]))


def statement_applies(statement: dict, request: Request, resource_policy: bool = False) -> bool:
    """Whether ``statement``'s action, resource, principal (resource policies) and conditions
    all match ``request``; its Effect is the caller's business."""
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal is not supported")
    if ("Action" in statement) == ("NotAction" in statement):
        raise UnsupportedPolicy(f"statement {statement.get('Sid')!r} needs exactly one of Action/NotAction")
    if ("Resource" in statement) == ("NotResource" in statement):
        raise UnsupportedPolicy(f"statement {statement.get('Sid')!r} needs exactly one of Resource/NotResource")
    if resource_policy:
        if "Principal" not in statement:
            raise UnsupportedPolicy(f"resource policy statement {statement.get('Sid')!r} has no Principal")
        if not _principal_matches(statement["Principal"], request.principal):
            return False
    elif "Principal" in statement:
        raise UnsupportedPolicy("an identity policy statement cannot name a Principal")

    if "Action" in statement:
        action_ok = any(wildcard_match(a, request.action, ignore_case=True) for a in _as_list(statement["Action"]))
    else:
        action_ok = not any(wildcard_match(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"]))
    if not action_ok:
        return False
    if "Resource" in statement:
        resource_ok = any(wildcard_match(r, request.resource) for r in _as_list(statement["Resource"]))
    else:
        resource_ok = not any(wildcard_match(r, request.resource) for r in _as_list(statement["NotResource"]))
    if not resource_ok:
        return False
    return _conditions_hold(statement.get("Condition", {}), request)


def _statements(policy: dict) -> list[dict]:
    if policy.get("Version") != VERSION:
        raise UnsupportedPolicy(f"policy Version must be {VERSION!r} (got {policy.get('Version')!r})")
    statements = _as_list(policy["Statement"])
    for statement in statements:
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement {statement.get('Sid')!r}: Effect must be Allow or Deny")
    return statements


def evaluate(request: Request, identity_policies: Iterable[dict], resource_policies: Iterable[dict] = ()) -> str:
    """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for ``request`` under these policies."""
    matched = [(s["Effect"], False) for p in identity_policies for s in _statements(p) if statement_applies(s, request)]
    matched += [(s["Effect"], True) for p in resource_policies for s in _statements(p)
                if statement_applies(s, request, resource_policy=True)]
    if any(effect == "Deny" for effect, _ in matched):
        return EXPLICIT_DENY
    if any(effect == "Allow" for effect, _ in matched):
        return ALLOW
    return IMPLICIT_DENY


# --- S3 conveniences ---------------------------------------------------------------------------

def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def s3_request(action: str, bucket: str, key: str | None = None, prefix: str | None = None,
               principal: str = "", secure: bool = True) -> Request:
    """An S3 request: ``key`` for object actions (resource = the object ARN), otherwise the bucket
    (``prefix``: ListBucket's s3:prefix, absent when None). ``secure``: aws:SecureTransport."""
    context: dict = {"aws:SecureTransport": secure}
    if prefix is not None:
        context["s3:prefix"] = prefix
    resource = object_arn(bucket, key) if key is not None else bucket_arn(bucket)
    return Request(action, resource, principal, context)


# --- S3's answer to a GET of a key that does not exist -----------------------------------------

NOT_FOUND, FORBIDDEN = 404, 403


def missing_object_request(bucket: str, key: str, principal: str = "", secure: bool = True) -> Request:
    """The ListBucket authorization S3 makes when a GET finds no ``key``: on the bucket, with the
    requested key as ``s3:prefix`` and no other ListObjects key (no s3:delimiter, s3:max-keys).

    AWS documents the rule ("If you have the s3:ListBucket permission on the bucket, Amazon S3
    returns an HTTP status code 404 ... If you don't, ... 403", GetObject/HeadObject API reference)
    but not which s3:prefix that check sees: the GET carries none. Ceph RGW, matching AWS, puts the
    object's name there (ceph/ceph#68577, "add the requested object name to the iam environment as
    s3:prefix to match aws behavior"), and kopia's author found the same on AWS (kopia/kopia#3072:
    ListBucket on "bucket/prefix" only, a missing key under it answered 404). So a grant whose
    StringLike s3:prefix pattern matches the key counts; one that needs s3:delimiter, or a
    StringEquals on a folder ("fruits/Training/"), does not."""
    return Request("s3:ListBucket", bucket_arn(bucket), principal, {"aws:SecureTransport": secure, "s3:prefix": key})


def missing_object_status(identity_policies: Iterable[dict], bucket: str, key: str, principal: str = "",
                          resource_policies: Iterable[dict] = (), secure: bool = True) -> int:
    """404 or 403: what a GetObject (or HeadObject) of ``key``, absent from the bucket, answers to
    this caller. A GET S3 refuses is 403 whether the key exists or not; an allowed one finds nothing
    and answers 404 only if the same caller is also allowed ``missing_object_request`` (an explicit
    Deny of it, in any policy, makes it 403 as for any request)."""
    identity_policies, resource_policies = list(identity_policies), list(resource_policies)
    get = s3_request("s3:GetObject", bucket, key, principal=principal, secure=secure)
    if evaluate(get, identity_policies, resource_policies) != ALLOW:
        return FORBIDDEN
    listing = missing_object_request(bucket, key, principal, secure)
    return NOT_FOUND if evaluate(listing, identity_policies, resource_policies) == ALLOW else FORBIDDEN

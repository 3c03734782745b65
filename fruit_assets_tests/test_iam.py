"""AWS IAM: one role per identity (infra/iam/, infra/cluster.yaml) and the bucket's settings
(infra/bucket-*.json), checked with the evaluator in harness/iam.py (no AWS here).

The evaluator is tested first on cases whose answer AWS documents; then every role is put through
a matrix of actions and prefixes, and the invariants (no product role can touch a source image,
nothing works without TLS) are checked on the shipped documents and on planted broken ones. So is
S3's answer to a GET of a deleted object: 404 (the product quarantines the image as vanished) only
for a role that may also list the key, 403 (the run fails) for any other."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.iam import (
    ALLOW,
    EXPLICIT_DENY,
    FORBIDDEN,
    IMPLICIT_DENY,
    NOT_FOUND,
    Request,
    UnsupportedPolicy,
    evaluate,
    missing_object_status,
    s3_request,
    wildcard_match,
)

INFRA = os.path.join(REPO, "infra")
BUCKET = "BUCKET"
NAMESPACE = "dagster"
RUN, EXECUTOR, CODE_SERVER, WEBSERVER, HISTORY = (
    "fruit-assets-run", "fruit-assets-executor", "fruit-assets-code-server", "fruit-assets-webserver",
    "fruit-assets-spark-history",
)
ROLES = (RUN, EXECUTOR, CODE_SERVER, WEBSERVER, HISTORY)
DERIVED = ("manifests", "embeddings", "quarantine", "output", "models", "review", "_staging", "spark-events",
           "_publications")
SENSOR_LOGS = "dagster/compute-logs/storage/__repository__/new_uploads_sensor"
# A key of each place the matrix probes (odd characters included: class names have spaces).
KEYS = {
    "Training": "fruits/Training/Apple Red 1/r_12_100.jpg",
    **{p: f"fruits/{p}/fruit_class=Apple Red 1/part-00000-abc-a0.parquet" for p in DERIVED},
    "publication": "fruits/_publications/v0000000001.json",
    "reduced": "fruits/output/resultats_features_parquet/fruit_class=Banana/part-00001-abc-a0.parquet",
    "run-logs": "dagster/compute-logs/storage/0123abcd/compute_logs/raw_images.err",
    "sensor-logs": f"{SENSOR_LOGS}/42.err",
    "elsewhere": "other/thing.bin",
}
# Every way to change or remove an object version, which AWS names as separate actions.
SOURCE_WRITES = (
    "s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
    "s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:DeleteObject", "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging", "s3:ReplicateObject", "s3:ReplicateDelete",
    "s3:BypassGovernanceRetention",
)
# An identity policy that a later change might add: grants everything. Explicit Denies must still win.
GRANT_ALL = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"}]}


def read_json(*path):
    with open(os.path.join(INFRA, *path)) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def policies() -> dict[str, dict]:
    return {role: read_json("iam", f"{role}.json") for role in ROLES}


@pytest.fixture(scope="module")
def bucket_policy() -> dict:
    return read_json("bucket-policy.json")


def role_arn(role: str) -> str:
    return f"arn:aws:iam::ACCOUNT_ID:role/{role}"


def decide(identity: list[dict], action: str, key: str | None = None, prefix: str | None = None,
           role: str = RUN, secure: bool = True, bucket: list[dict] = ()) -> str:
    return evaluate(s3_request(action, BUCKET, key, prefix, principal=role_arn(role), secure=secure), identity, bucket)


# --- the evaluator, on known cases -------------------------------------------------------------

def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_evaluator_default_deny_allow_and_explicit_deny_wins():
    allow = {"Sid": "A", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    deny = {"Sid": "D", "Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*"}
    get = lambda key: Request("s3:GetObject", f"arn:aws:s3:::b/{key}")  # noqa: E731
    assert evaluate(get("x"), []) == IMPLICIT_DENY
    assert evaluate(get("x"), [policy(allow)]) == ALLOW
    assert evaluate(get("secret/x"), [policy(allow, deny)]) == EXPLICIT_DENY
    # A Deny in another policy wins the same way, whatever the order.
    assert evaluate(get("secret/x"), [policy(deny), policy(allow)]) == EXPLICIT_DENY
    assert evaluate(Request("s3:PutObject", "arn:aws:s3:::b/x"), [policy(allow)]) == IMPLICIT_DENY
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::c/x"), [policy(allow)]) == IMPLICIT_DENY


def test_evaluator_wildcards():
    assert wildcard_match("s3:Get*", "s3:GetObject", ignore_case=True)
    assert wildcard_match("S3:getobject", "s3:GetObject", ignore_case=True)  # actions: any case
    assert not wildcard_match("arn:aws:s3:::b/Fruits/*", "arn:aws:s3:::b/fruits/x")  # resources: exact case
    assert wildcard_match("arn:aws:s3:::b/fruits/*", "arn:aws:s3:::b/fruits/a/b/c d.jpg")  # * spans "/"
    assert wildcard_match("arn:aws:s3:::b/fruits/*", "arn:aws:s3:::b/fruits/")
    assert not wildcard_match("arn:aws:s3:::b/fruits/*", "arn:aws:s3:::b/fruitsX/a")
    assert wildcard_match("arn:aws:s3:::b/part-?.parquet", "arn:aws:s3:::b/part-1.parquet")
    assert not wildcard_match("arn:aws:s3:::b/part-?.parquet", "arn:aws:s3:::b/part-12.parquet")
    assert not wildcard_match("arn:aws:s3:::b/a.c", "arn:aws:s3:::b/abc")  # "." is no wildcard
    assert not wildcard_match("s3:PutObject*", "s3:DeleteObject", ignore_case=True)
    # NotAction: everything but the named actions.
    not_get = policy({"Sid": "N", "Effect": "Allow", "NotAction": "s3:Get*", "Resource": "*"})
    assert evaluate(Request("s3:PutObject", "arn:aws:s3:::b/x"), [not_get]) == ALLOW
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::b/x"), [not_get]) == IMPLICIT_DENY


def test_evaluator_conditions():
    listing = policy({"Sid": "L", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                      "Condition": {"StringLike": {"s3:prefix": ["fruits/Training/*", "logs/*"]}}})
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="fruits/Training/Apple/"), [listing]) == ALLOW
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="logs/"), [listing]) == ALLOW  # any value may match
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="fruits/"), [listing]) == IMPLICIT_DENY
    assert evaluate(s3_request("s3:ListBucket", "b"), [listing]) == IMPLICIT_DENY  # no prefix: key absent

    tls_only = policy({"Sid": "T", "Effect": "Deny", "Action": "*", "Resource": "*",
                       "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
                      {"Sid": "A", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    assert evaluate(s3_request("s3:GetObject", "b", "k", secure=True), [tls_only]) == ALLOW
    assert evaluate(s3_request("s3:GetObject", "b", "k", secure=False), [tls_only]) == EXPLICIT_DENY
    # Key absent: a positive operator is false (no deny), a negated one true, IfExists true.
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::b/k"), [tls_only]) == ALLOW
    negated = policy({"Sid": "N", "Effect": "Allow", "Action": "*", "Resource": "*",
                      "Condition": {"StringNotEquals": {"s3:prefix": "x"}}})
    assert evaluate(Request("s3:ListBucket", "arn:aws:s3:::b"), [negated]) == ALLOW
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="x"), [negated]) == IMPLICIT_DENY
    if_exists = policy({"Sid": "E", "Effect": "Allow", "Action": "*", "Resource": "*",
                        "Condition": {"StringEqualsIfExists": {"s3:prefix": "x"}}})
    assert evaluate(Request("s3:ListBucket", "arn:aws:s3:::b"), [if_exists]) == ALLOW
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="y"), [if_exists]) == IMPLICIT_DENY
    # Two operators: both must hold.
    both = policy({"Sid": "B", "Effect": "Allow", "Action": "*", "Resource": "*",
                   "Condition": {"StringLike": {"s3:prefix": "a*"}, "Bool": {"aws:SecureTransport": "true"}}})
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="ab"), [both]) == ALLOW
    assert evaluate(s3_request("s3:ListBucket", "b", prefix="ab", secure=False), [both]) == IMPLICIT_DENY


def test_evaluator_resource_policies_and_principals():
    run, other = role_arn(RUN), "arn:aws:iam::ACCOUNT_ID:role/uploader"
    deny_run = policy({"Sid": "D", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                       "Resource": "arn:aws:s3:::b/*",
                       "Condition": {"ArnLike": {"aws:PrincipalArn": ["arn:aws:iam::*:role/fruit-assets-run"]}}})
    delete = lambda who: Request("s3:DeleteObject", "arn:aws:s3:::b/k", principal=who)  # noqa: E731
    assert evaluate(delete(run), [GRANT_ALL], [deny_run]) == EXPLICIT_DENY
    assert evaluate(delete(other), [GRANT_ALL], [deny_run]) == ALLOW
    # ArnLike matches each colon-separated part on its own: "*" does not swallow the account.
    assert evaluate(delete("arn:aws:iam::1:role/fruit-assets-run-x"), [GRANT_ALL], [deny_run]) == ALLOW
    grant_by_name = policy({"Sid": "G", "Effect": "Allow", "Principal": {"AWS": [run]}, "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::b/*"})
    get = lambda who: Request("s3:GetObject", "arn:aws:s3:::b/k", principal=who)  # noqa: E731
    assert evaluate(get(run), [], [grant_by_name]) == ALLOW
    assert evaluate(get(other), [], [grant_by_name]) == IMPLICIT_DENY


def test_a_missing_key_answers_404_only_to_a_caller_that_may_list_it():
    """S3's rule on planted policies: GetObject of a key that is not there is 404 with
    s3:ListBucket on the bucket, 403 without; the listing check sees the key as its s3:prefix."""
    key, other = "fruits/Training/Apple/1.jpg", "fruits/manifests/fruit_class=Apple/m.parquet"
    get = {"Sid": "G", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/fruits/*"}
    list_all = {"Sid": "L", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}
    list_training = {**list_all, "Condition": {"StringLike": {"s3:prefix": ["fruits/Training/*"]}}}
    status = lambda key, *identity, bucket=(), secure=True: missing_object_status(  # noqa: E731
        identity, "b", key, principal=role_arn(EXECUTOR), resource_policies=bucket, secure=secure)

    assert status(key, policy(get)) == FORBIDDEN  # GetObject alone: S3 will not say the key is absent
    assert status(key, policy(get, list_all)) == NOT_FOUND
    assert status(key, policy(get), policy(list_all)) == NOT_FOUND  # any of the caller's policies
    assert status(key, policy(get, list_training)) == NOT_FOUND  # the key matches the s3:prefix pattern
    assert status(other, policy(get, list_training)) == FORBIDDEN  # a key outside it does not
    assert status(key, policy(list_all)) == FORBIDDEN  # no GetObject: refused before anything is looked up
    # A Deny of the listing, in the role's policies or the bucket's, wins over the Allow.
    deny_list = {"Sid": "D", "Effect": "Deny", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}
    assert status(key, policy(get, list_all, deny_list)) == FORBIDDEN
    bucket_deny = {**deny_list, "Principal": "*",
                   "Condition": {"ArnLike": {"aws:PrincipalArn": [role_arn(EXECUTOR)]}}}
    assert status(key, policy(get, list_all), bucket=[policy(bucket_deny)]) == FORBIDDEN
    # The bucket policy can grant the listing as well.
    bucket_list = {**list_all, "Principal": {"AWS": [role_arn(EXECUTOR)]}}
    assert status(key, policy(get), bucket=[policy(bucket_list)]) == NOT_FOUND
    # A GET carries no other ListObjects key: a grant that needs one, or that names the folder
    # exactly (StringEquals "fruits/Training/", the console's way), never covers a missing key.
    for condition in ({"StringEquals": {"s3:delimiter": "/"}}, {"StringEquals": {"s3:prefix": "fruits/Training/"}}):
        assert status(key, policy(get, {**list_all, "Condition": condition})) == FORBIDDEN, condition
    # Over plain HTTP the role's TLS Deny refuses the GET itself.
    tls = {"Sid": "T", "Effect": "Deny", "Action": "*", "Resource": "*",
           "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert status(key, policy(get, list_all, tls)) == NOT_FOUND
    assert status(key, policy(get, list_all, tls), secure=False) == FORBIDDEN


@pytest.mark.parametrize("broken", [
    {"Sid": "X", "Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "*", "Resource": "*"},
    {"Sid": "X", "Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}},
    {"Sid": "X", "Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/${aws:username}/*"},
    {"Sid": "X", "Effect": "Allow", "Action": "*", "NotAction": "s3:Get*", "Resource": "*"},
    {"Sid": "X", "Effect": "Allow", "Action": "*"},
    {"Sid": "X", "Effect": "Permit", "Action": "*", "Resource": "*"},
])
def test_evaluator_refuses_what_it_does_not_implement(broken):
    with pytest.raises(UnsupportedPolicy):
        evaluate(Request("s3:GetObject", "arn:aws:s3:::b/u/k", context={"aws:SourceIp": "1.2.3.4"}), [policy(broken)])
    with pytest.raises(UnsupportedPolicy, match="Version"):
        evaluate(Request("s3:GetObject", "arn:aws:s3:::b/k"), [{"Version": "2008-10-17", "Statement": []}])


# --- the roles ---------------------------------------------------------------------------------

def allowed(identity: dict, role: str, bucket: dict | None = None) -> set[tuple[str, str]]:
    """(action, place) pairs the role may do, over KEYS and Get/Put/Delete."""
    return {(action, place) for place, key in KEYS.items() for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
            if decide([identity], action, key, role=role, bucket=[bucket] if bucket else []) == ALLOW}


def pairs(actions: str, places) -> set[tuple[str, str]]:
    return {(f"s3:{a}", p) for a in actions.split() for p in places}


DATA = ("Training", *DERIVED, "publication", "reduced")
EXPECTED = {
    # The driver: reads everything under fruits/, writes and deletes all but Training/, step logs.
    RUN: pairs("GetObject", DATA) | pairs("PutObject DeleteObject", {*DATA} - {"Training"})
    | pairs("PutObject", ["run-logs", "sensor-logs"]),
    # Executors: what their tasks read, and task files under _staging/ (put only: commits, sweeps
    # and deletes all happen on the driver).
    EXECUTOR: pairs("GetObject", ["Training", "manifests", "embeddings", "quarantine", "reduced"])
    | pairs("PutObject", ["_staging"]),
    # Sensors list Training/ and read manifests (first tick); they write only their tick logs.
    CODE_SERVER: pairs("GetObject", ["manifests"]) | pairs("PutObject", ["sensor-logs"]),
    WEBSERVER: pairs("GetObject", ["run-logs", "sensor-logs"]),
    HISTORY: pairs("GetObject", ["spark-events"]),
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_can_do_exactly_its_matrix(policies, bucket_policy, role):
    assert allowed(policies[role], role) == EXPECTED[role]
    # The bucket policy takes nothing away from what the roles need (over TLS).
    assert allowed(policies[role], role, bucket_policy) == EXPECTED[role]


# What each role may list (ListBucket's s3:prefix), as a rule on the prefix asked for.
LISTS = {
    RUN: lambda p: p.startswith("fruits/"),
    # Tasks open the files the driver names and never list; the grant is there so that a GET of an
    # input deleted since the driver listed it answers 404 (vanished), not 403 (a failed run).
    EXECUTOR: lambda p: p.startswith(("fruits/Training/", "fruits/manifests/", "fruits/embeddings/",
                                      "fruits/quarantine/", "fruits/output/resultats_features_parquet/")),
    CODE_SERVER: lambda p: p.startswith(("fruits/Training/", "fruits/manifests/")),
    WEBSERVER: lambda p: p.startswith("dagster/compute-logs/"),
    HISTORY: lambda p: p.startswith("fruits/spark-events/"),
}
PROBES = ["", "fruits", "fruits/", "fruits/Training/", "fruits/Training/Apple Red 1/", "fruits/TrainingX/",
          "fruits/manifests/", "fruits/manifests/fruit_class=Banana/", "fruits/manifestsX/", "fruits/_staging/",
          "fruits/output/resultats_features_parquet/fruit_class=Banana/", "fruits/spark-events/",
          "fruits/spark-events/app-1/", "dagster/", "dagster/compute-logs", "dagster/compute-logs/storage/0123abcd/",
          "other/", "Fruits/"]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_lists_only_its_prefixes(policies, bucket_policy, role):
    can_list = {p for p in PROBES if decide([policies[role]], "s3:ListBucket", prefix=p, role=role, bucket=[bucket_policy]) == ALLOW}
    assert can_list == {p for p in PROBES if LISTS[role](p)}
    assert decide([policies[role]], "s3:ListBucket", role=role) == IMPLICIT_DENY  # the whole bucket: never


def missing_key_violations(identity: list[dict], role: str, bucket: list[dict] = ()) -> list[str]:
    """Each place the role reads (KEYS) where a GET of a key deleted meanwhile would answer 403:
    images removed between listing and reading, embeddings, manifests and outputs replaced by a
    concurrent publication, event logs renamed when an application ends."""
    return [place for place, key in KEYS.items()
            if decide(identity, "s3:GetObject", key, role=role, bucket=bucket) == ALLOW
            and missing_object_status(identity, BUCKET, key, principal=role_arn(role),
                                      resource_policies=bucket) != NOT_FOUND]


def read_places(role: str) -> set[str]:
    return {place for action, place in EXPECTED[role] if action == "s3:GetObject"}


@pytest.mark.parametrize("role", ROLES)
def test_every_role_gets_404_for_a_missing_key_wherever_it_reads(policies, bucket_policy, role):
    assert read_places(role)
    assert missing_key_violations([policies[role]], role) == []
    assert missing_key_violations([policies[role]], role, [bucket_policy]) == []
    for place in read_places(role):
        missing = KEYS[place].rsplit("/", 1)[0] + "/deleted-meanwhile.bin"
        assert missing_object_status([policies[role]], BUCKET, missing, principal=role_arn(role),
                                     resource_policies=[bucket_policy]) == NOT_FOUND, place
    # Nowhere it may not read: there a GET is refused, existing key or not.
    for place in set(KEYS) - read_places(role):
        assert missing_object_status([policies[role]], BUCKET, KEYS[place], principal=role_arn(role)) == FORBIDDEN


def test_a_role_that_loses_its_listing_grant_is_reported(policies):
    without = copy.deepcopy(policies[EXECUTOR])
    without["Statement"] = [s for s in without["Statement"] if s["Sid"] != "ListTaskInputs"]
    assert set(missing_key_violations([without], EXECUTOR)) == read_places(EXECUTOR)
    # One prefix dropped from the condition: the images, and only they, would fail the run.
    narrowed = copy.deepcopy(policies[EXECUTOR])
    for statement in narrowed["Statement"]:
        if statement["Sid"] == "ListTaskInputs":
            statement["Condition"]["StringLike"]["s3:prefix"].remove("fruits/Training/*")
    assert missing_key_violations([narrowed], EXECUTOR) == ["Training"]
    # A folder-exact condition (what a console-made policy often has) covers no key.
    exact = copy.deepcopy(policies[RUN])
    for statement in exact["Statement"]:
        if statement["Sid"] == "ListDataRoot":
            statement["Condition"] = {"StringEquals": {"s3:prefix": ["fruits/"]}}
    assert set(missing_key_violations([exact], RUN)) == read_places(RUN)
    # A Deny of ListBucket added beside the role's policy.
    deny = {"Version": "2012-10-17", "Statement": [
        {"Sid": "NoListing", "Effect": "Deny", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::BUCKET"]}]}
    assert set(missing_key_violations([policies[HISTORY], deny], HISTORY)) == {"spark-events"}


def source_image_violations(identity: list[dict], bucket: list[dict], role: str = RUN) -> list[str]:
    """Every (action, key) under fruits/Training/ that these policies let the role change."""
    keys = [KEYS["Training"], "fruits/Training/x", "fruits/Training/Banana/sub/dir/y.png"]
    return [f"{action} {key}" for action in SOURCE_WRITES for key in keys
            if decide(identity, action, key, role=role, bucket=bucket) == ALLOW]


def insecure_violations(identity: list[dict], bucket: list[dict], role: str) -> list[str]:
    """Every request the role could make over plain HTTP."""
    found = [f"{a} {k}" for k in KEYS.values() for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
             if decide(identity, a, k, role=role, secure=False, bucket=bucket) != EXPLICIT_DENY]
    found += [f"s3:ListBucket {p}" for p in PROBES
              if decide(identity, "s3:ListBucket", prefix=p, role=role, secure=False, bucket=bucket) != EXPLICIT_DENY]
    return found


@pytest.mark.parametrize("role", ROLES)
def test_no_role_can_change_a_source_image_even_with_a_later_allow(policies, bucket_policy, role):
    mine = policies[role]
    for identity, bucket in [([mine], []), ([mine], [bucket_policy]),
                             ([mine, GRANT_ALL], []),  # the role's own Deny beats any Allow added later
                             ([GRANT_ALL], [bucket_policy])]:  # and the bucket policy stands on its own
        assert source_image_violations(identity, bucket, role) == []
    for action in SOURCE_WRITES:
        assert decide([mine, GRANT_ALL], action, KEYS["Training"], role=role) == EXPLICIT_DENY
        assert decide([GRANT_ALL], action, KEYS["Training"], role=role, bucket=[bucket_policy]) == EXPLICIT_DENY
    # Reading a source image is never what the Deny blocks.
    assert decide([mine, GRANT_ALL], "s3:GetObject", KEYS["Training"], role=role) == ALLOW


@pytest.mark.parametrize("role", ROLES)
def test_every_role_is_denied_over_plain_http(policies, bucket_policy, role):
    assert insecure_violations([policies[role], GRANT_ALL], [], role) == []
    assert insecure_violations([GRANT_ALL], [bucket_policy], role) == []
    # What the role may do over TLS, it may not do over HTTP.
    for action, place in sorted(EXPECTED[role]):
        assert decide([policies[role]], action, KEYS[place], role=role, secure=False) == EXPLICIT_DENY


def test_a_policy_missing_its_denies_is_caught(policies, bucket_policy):
    """The checks above fail on broken documents: plant the mistakes a later edit could make."""
    broken = copy.deepcopy(policies[RUN])
    broken["Statement"] = [s for s in broken["Statement"] if s["Sid"] != "DenySourceImageWrites"]
    for statement in broken["Statement"]:
        if statement["Sid"] == "WriteDerived":
            statement["Resource"] = ["arn:aws:s3:::BUCKET/fruits/*"]  # "all of fruits/", Training/ included
    violations = source_image_violations([broken], [])
    assert "s3:PutObject fruits/Training/Apple Red 1/r_12_100.jpg" in violations
    assert "s3:DeleteObject fruits/Training/x" in violations
    # The bucket policy still stops it (defense in depth), unless it lost its Deny too.
    assert source_image_violations([broken], [bucket_policy]) == []
    no_bucket_deny = copy.deepcopy(bucket_policy)
    no_bucket_deny["Statement"] = [s for s in no_bucket_deny["Statement"]
                                   if s["Sid"] != "DenySourceImageWritesByProductRoles"]
    assert "s3:DeleteObject fruits/Training/x" in source_image_violations([broken], [no_bucket_deny])
    # A Deny that names only DeleteObject leaves overwrite (PutObject) and version deletes open.
    narrow = copy.deepcopy(policies[RUN])
    for statement in narrow["Statement"]:
        if statement["Sid"] == "DenySourceImageWrites":
            statement["Action"] = ["s3:DeleteObject"]
    assert set(source_image_violations([narrow, GRANT_ALL], [], RUN)) >= {
        "s3:PutObject fruits/Training/x", "s3:DeleteObjectVersion fruits/Training/x", "s3:PutObjectAcl fruits/Training/x"}

    plain_http = copy.deepcopy(policies[EXECUTOR])
    plain_http["Statement"] = [s for s in plain_http["Statement"] if s["Sid"] != "DenyInsecureTransport"]
    assert "s3:GetObject fruits/Training/Apple Red 1/r_12_100.jpg" in insecure_violations([plain_http], [], EXECUTOR)

    # An executor given delete on outputs: the matrix notices.
    greedy = copy.deepcopy(policies[EXECUTOR])
    greedy["Statement"].insert(0, {"Sid": "Oops", "Effect": "Allow", "Action": ["s3:DeleteObject"],
                                   "Resource": ["arn:aws:s3:::BUCKET/fruits/output/*"]})
    assert allowed(greedy, EXECUTOR) - EXPECTED[EXECUTOR] == {("s3:DeleteObject", "output"), ("s3:DeleteObject", "reduced")}


def test_bucket_policy_guards_versions_and_settings_but_not_uploaders(bucket_policy):
    for role in ROLES:
        for key in (KEYS["Training"], KEYS["output"], KEYS["run-logs"]):
            assert decide([GRANT_ALL], "s3:DeleteObjectVersion", key, role=role, bucket=[bucket_policy]) == EXPLICIT_DENY
        for action in ("s3:PutBucketVersioning", "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"):
            assert decide([GRANT_ALL], action, role=role, bucket=[bucket_policy]) == EXPLICIT_DENY
    # Users upload to Training/ with identities of their own: the bucket policy leaves them alone
    # (over TLS), and grants nothing to anyone.
    uploader = "fruit-uploader"
    assert decide([GRANT_ALL], "s3:PutObject", KEYS["Training"], role=uploader, bucket=[bucket_policy]) == ALLOW
    assert decide([GRANT_ALL], "s3:PutObject", KEYS["Training"], role=uploader, secure=False,
                  bucket=[bucket_policy]) == EXPLICIT_DENY
    assert decide([], "s3:GetObject", KEYS["Training"], role=uploader, bucket=[bucket_policy]) == IMPLICIT_DENY
    assert {s["Effect"] for s in bucket_policy["Statement"]} == {"Deny"}


# --- the documents' shapes ---------------------------------------------------------------------

def assert_policy_shape(document: dict, resource_policy: bool = False):
    assert document["Version"] == "2012-10-17"
    assert set(document) == {"Version", "Statement"}
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids)) and all(sid.isalnum() for sid in sids)  # IAM: Sid is [A-Za-z0-9]
    for statement in document["Statement"]:
        required = {"Sid", "Effect", "Action", "Resource"} | ({"Principal"} if resource_policy else set())
        assert required <= set(statement) <= required | {"Condition"}, statement["Sid"]
        assert statement["Effect"] in ("Allow", "Deny")
        assert isinstance(statement["Action"], list) and isinstance(statement["Resource"], list)
        for resource in statement["Resource"]:
            assert resource == "*" or resource.startswith(f"arn:aws:s3:::{BUCKET}"), resource
        if statement["Effect"] == "Allow":
            # Allows name their actions and resources: no wildcard grants.
            assert not any("*" in action for action in statement["Action"]), statement["Sid"]
            assert "*" not in statement["Resource"], statement["Sid"]


def test_policy_documents_have_the_shape_iam_accepts(policies, bucket_policy):
    assert sorted(os.listdir(os.path.join(INFRA, "iam"))) == sorted([f"{r}.json" for r in ROLES] + ["README.md"])
    for document in policies.values():
        assert_policy_shape(document)
        assert len(json.dumps(document, separators=(",", ":"))) < 10_240  # a role's inline policies, in all
    assert_policy_shape(bucket_policy, resource_policy=True)
    assert len(json.dumps(bucket_policy, separators=(",", ":"))) < 20_480  # bucket policy size limit
    product = {arn for s in bucket_policy["Statement"] for arn in s.get("Condition", {}).get("ArnLike", {}).get("aws:PrincipalArn", [])}
    assert product == {role_arn(r) for r in ROLES}
    # The old shared policy is gone, and no deployment file still names it.
    assert not os.path.exists(os.path.join(INFRA, "iam-policy.json"))
    for folder in ("infra", "helm-values"):
        for directory, _dirs, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                with open(os.path.join(directory, name), errors="replace") as handle:
                    assert "iam-policy.json" not in handle.read(), os.path.join(directory, name)


def _validate_s3_input(operation: str, params: dict):
    """The shape botocore (hence the AWS CLI's file:// argument) sends for ``operation``: unknown
    or missing members and wrong types fail, and enum values are checked too."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("s3").operation_model(operation).input_shape
    report = ParamValidator().validate({"Bucket": BUCKET, **params}, shape)
    assert not report.has_errors(), report.generate_report()

    def enums(value, shape):
        if shape.type_name == "structure":
            for name, member in value.items():
                enums(member, shape.members[name])
        elif shape.type_name == "list":
            for item in value:
                enums(item, shape.member)
        elif shape.type_name == "string" and shape.enum:
            assert value in shape.enum, (value, shape.enum)

    enums(params, shape)


def test_bucket_versioning_and_lifecycle_have_the_shapes_s3api_accepts(bucket_policy):
    versioning = read_json("bucket-versioning.json")
    assert versioning == {"Status": "Enabled"}
    _validate_s3_input("PutBucketVersioning", {"VersioningConfiguration": versioning})
    lifecycle = read_json("bucket-lifecycle.json")
    _validate_s3_input("PutBucketLifecycleConfiguration", {"LifecycleConfiguration": lifecycle})
    _validate_s3_input("PutBucketPolicy", {"Policy": json.dumps(bucket_policy)})
    with pytest.raises(AssertionError):  # the validation bites: a wrong status, an unknown member
        _validate_s3_input("PutBucketVersioning", {"VersioningConfiguration": {"Status": "On"}})
    with pytest.raises(AssertionError):
        _validate_s3_input("PutBucketLifecycleConfiguration",
                           {"LifecycleConfiguration": {"Rules": [{"Prefix": "x", "Status": "Enabled", "Days": 1}]}})


def test_lifecycle_expires_staging_and_old_versions_but_never_a_source_image():
    rules = read_json("bucket-lifecycle.json")["Rules"]
    ids = [r["ID"] for r in rules]
    assert len(ids) == len(set(ids)) and all(len(i) <= 255 for i in ids)
    for rule in rules:
        assert rule["Status"] == "Enabled" and set(rule["Filter"]) == {"Prefix"}
        # S3 refuses ExpiredObjectDeleteMarker beside Days or Date in one Expiration.
        assert not ({"Days", "Date"} & set(rule.get("Expiration", {})) and "ExpiredObjectDeleteMarker" in rule["Expiration"])
    [staging] = [r for r in rules if "Days" in r.get("Expiration", {})]
    assert staging["Filter"]["Prefix"] == "fruits/_staging/"  # exactly: never the whole of fruits/
    assert 1 <= staging["Expiration"]["Days"] <= 30
    assert staging["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    assert staging["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert any(r["Filter"]["Prefix"] == "" and set(r) == {"ID", "Filter", "Status", "AbortIncompleteMultipartUpload"}
               for r in rules)  # every incomplete upload, nothing else
    deleting = [r for r in rules if "Expiration" in r or "NoncurrentVersionExpiration" in r]
    for key in (KEYS["Training"], "fruits/Training/", "fruits/Training/x/y.jpg"):
        assert not [r["ID"] for r in deleting if key.startswith(r["Filter"]["Prefix"])], key
    noncurrent = {r["Filter"]["Prefix"] for r in rules if "NoncurrentVersionExpiration" in r}
    assert noncurrent == {f"fruits/{p}/" for p in DERIVED} | {"dagster/compute-logs/"}


# --- eksctl ------------------------------------------------------------------------------------

def test_cluster_yaml_has_exactly_the_five_roles_with_these_documents(policies):
    with open(os.path.join(INFRA, "cluster.yaml")) as handle:
        cluster = yaml.safe_load(handle)
    assert cluster["iam"]["withOIDC"] is True
    accounts = cluster["iam"]["serviceAccounts"]
    assert [(a["metadata"]["name"], a["metadata"]["namespace"]) for a in accounts] == [(r, NAMESPACE) for r in ROLES]
    for account in accounts:
        name = account["metadata"]["name"]
        assert set(account) == {"metadata", "roleName", "roleOnly", "attachPolicy"}, name
        assert account["roleName"] == name and account["roleOnly"] is True
        # One source of truth: the inline document is infra/iam/<role>.json, exactly.
        assert account["attachPolicy"] == policies[name], f"infra/cluster.yaml's {name} differs from infra/iam/{name}.json"


def test_every_role_annotation_in_the_manifests_names_one_of_the_roles():
    """Service accounts that carry an IRSA annotation (Helm values, infra/ manifests) name roles
    defined here, and the account's name is the role's (eksctl trusts dagster:<role name>)."""
    found = {}
    for folder in ("infra", "helm-values"):
        for name in sorted(os.listdir(os.path.join(REPO, folder))):
            if not name.endswith((".yaml", ".yml")) or name == "cluster.yaml":
                continue
            with open(os.path.join(REPO, folder, name)) as handle:
                text = handle.read()
            for line in text.splitlines():
                if "eks.amazonaws.com/role-arn:" in line and not line.lstrip().startswith("#"):
                    found[f"{folder}/{name}"] = found.get(f"{folder}/{name}", []) + [line.split(":role/")[-1].strip()]
    roles = {r for names in found.values() for r in names}
    assert roles and roles <= set(ROLES), found

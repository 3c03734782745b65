"""infra/admission-policy.yaml: what a run pod (the Spark driver, holding `pods: create`) may create.

The policies' own CEL expressions, read from the file, are evaluated with cel-python
(harness/admission.py says where it differs from Kubernetes' cel-go) against the executor pod that
Spark's own Kubernetes code builds from the product's pod template: that pod is admitted, and each
hostile variant of it is refused by exactly the rule it breaks, with that rule's message. No API
server runs here: defaulting and mutating webhooks that matter to a rule are applied by hand, and
said so where they are."""

from __future__ import annotations

import copy
import os

import pytest

from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.admission import AdmissionPolicy, Request, evaluate
from fruit_assets_tests.harness.deployment import helm_values, k8s_documents, run_job
from fruit_assets_tests.harness.spark_k8s import IMAGE, executor_pod, product_conf, product_settings, scala_object

POLICY_FILE = os.path.join(REPO, "infra", "admission-policy.yaml")
RUN_POD = "system:serviceaccount:dagster:fruit-assets-run"
DAEMON = "system:serviceaccount:dagster:fruit-assets-webserver"  # the chart's account: the daemon creates run Jobs
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"  # creates the run pods of those Jobs
DEPLOYER = "kubernetes-admin"


def documents() -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in k8s_documents(POLICY_FILE)}


def images_configmap(image: str = IMAGE) -> dict:
    """The param ConfigMap as a deploy writes it: the file's, with the digest filled in."""
    configmap = copy.deepcopy(documents()[("ConfigMap", "fruit-assets-images")])
    configmap["data"]["executorImage"] = image
    return configmap


def pods_policy(params: dict | None = None, docs: dict | None = None) -> AdmissionPolicy:
    docs = docs or documents()
    if params is None:
        params = images_configmap()
    return AdmissionPolicy(docs[("ValidatingAdmissionPolicy", "fruit-assets-run-pods")],
                           docs[("ValidatingAdmissionPolicyBinding", "fruit-assets-run-pods")],
                           {("dagster", "fruit-assets-images"): params} if params else {})


def configmaps_policy() -> AdmissionPolicy:
    docs = documents()
    return AdmissionPolicy(docs[("ValidatingAdmissionPolicy", "fruit-assets-run-configmaps")],
                           docs[("ValidatingAdmissionPolicyBinding", "fruit-assets-run-configmaps")])


def rule(message: str) -> str:
    """A validation's name: its message up to the colon ("image: every container ...")."""
    return message.split(":", 1)[0]


def rules_of(policy: str = "fruit-assets-run-pods") -> list[str]:
    return [rule(v["message"]) for v in documents()[("ValidatingAdmissionPolicy", policy)]["spec"]["validations"]]


@pytest.fixture(scope="module")
def executor(spark) -> dict:
    """The executor pod Spark's allocator would send to the API server for the product's settings."""
    return executor_pod(spark.sparkContext, product_conf(product_settings()), "spark-application-1")


def create(pod: dict, username: str = RUN_POD, namespace: str = "dagster") -> Request:
    return Request("CREATE", username, pod, namespace=namespace)


def refused_rules(pod: dict, policy: AdmissionPolicy | None = None) -> set[str]:
    decision = (policy or pods_policy()).decide(create(pod))
    assert decision.applies and decision.errors == [], decision
    return {rule(message) for message in decision.refusals}


# --- the file -------------------------------------------------------------------------------------

def test_the_policies_validate_as_kubernetes_1_33_objects():
    import kubernetes_validate

    docs = documents()
    assert set(docs) == {
        ("ValidatingAdmissionPolicy", "fruit-assets-run-pods"), ("ValidatingAdmissionPolicyBinding", "fruit-assets-run-pods"),
        ("ValidatingAdmissionPolicy", "fruit-assets-run-configmaps"),
        ("ValidatingAdmissionPolicyBinding", "fruit-assets-run-configmaps"), ("ConfigMap", "fruit-assets-images"),
    }
    for document in docs.values():
        kubernetes_validate.validate(document, "1.33.0", strict=True)
    broken = copy.deepcopy(docs[("ValidatingAdmissionPolicyBinding", "fruit-assets-run-pods")])
    broken["spec"]["paramRef"]["parameterNotFound"] = broken["spec"]["paramRef"].pop("parameterNotFoundAction")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33.0", strict=True)


def test_every_rule_has_a_message_of_its_own():
    for policy in ("fruit-assets-run-pods", "fruit-assets-run-configmaps"):
        validations = documents()[("ValidatingAdmissionPolicy", policy)]["spec"]["validations"]
        assert all(v["message"] and ":" in v["message"] for v in validations), policy
        assert len(set(rules_of(policy))) == len(validations), policy


def test_the_param_names_the_image_helm_values_deploy():
    """One `sed` of the runbook's placeholders fills the ConfigMap and the Helm values alike."""
    values = helm_values()
    [deployment] = values["dagster-user-deployments"]["deployments"]
    spark_image = {e["name"]: e.get("value") for e in deployment["env"]}["SPARK_K8S_IMAGE"]
    placeholder = documents()[("ConfigMap", "fruit-assets-images")]["data"]["executorImage"]
    assert placeholder == spark_image == f"{deployment['image']['repository']}@{deployment['image']['digest']}"
    assert placeholder == "ACCOUNT_ID.dkr.ecr.REGION.amazonaws.com/fruit-assets@sha256:IMAGE_DIGEST"


# --- what Spark creates is admitted ---------------------------------------------------------------

def irsa_mutated(pod: dict) -> dict:
    """The pod after EKS' pod identity webhook (a mutating webhook, so before this policy) has given
    it the executor account's IRSA role: its documented env, and a projected token volume."""
    pod = copy.deepcopy(pod)
    [container] = pod["spec"]["containers"]
    container["env"] += [
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"}, {"name": "AWS_REGION", "value": "eu-west-1"},
        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::123456789012:role/fruit-assets-executor"},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
    ]
    container["volumeMounts"].append({"name": "aws-iam-token", "readOnly": True,
                                      "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"})
    pod["spec"]["volumes"].append({"name": "aws-iam-token", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}})
    return pod


def test_sparks_own_executor_pod_is_admitted(executor, spark):
    spec = executor["spec"]
    [container] = spec["containers"]
    # What makes this pod a fair test: the shapes the rules must let through are all there.
    assert container["image"] == IMAGE and spec["serviceAccountName"] == "fruit-assets-executor"
    assert any("fieldRef" in e.get("valueFrom", {}) for e in container["env"])
    assert any(e["name"] == "_SPARK_AUTH_SECRET" and e["value"] for e in container["env"])  # plain value, no Secret
    assert {"configMap", "emptyDir"} <= {key for v in spec["volumes"] for key in v if key != "name"}
    assert {"spark-role", "spark-app-selector", "spark-exec-id"} <= set(executor["metadata"]["labels"])

    decision = pods_policy().decide(create(executor))
    assert decision.applies and decision.admitted, decision
    assert pods_policy().decide(create(irsa_mutated(executor))).admitted
    other = executor_pod(spark.sparkContext, product_conf(product_settings()), "spark-application-2", executor_id="17")
    assert pods_policy().decide(create(other)).admitted


def _container_security(pod):
    return pod["spec"]["containers"][0]["securityContext"]


@pytest.mark.parametrize("change", [
    lambda pod: _container_security(pod)["capabilities"].update(add=["NET_BIND_SERVICE"]),
    lambda pod: _container_security(pod).update(seccompProfile={"type": "Localhost", "localhostProfile": "profiles/executor.json"}),
    # The pod-level values stand when the container sets none.
    lambda pod: [_container_security(pod).pop("runAsNonRoot"), _container_security(pod).pop("seccompProfile")],
], ids=["NET_BIND_SERVICE added", "Localhost seccomp profile", "pod-level runAsNonRoot and seccomp"])
def test_what_restricted_allows_is_admitted(executor, change):
    pod = copy.deepcopy(executor)
    change(pod)
    assert refused_rules(pod) == set()


# --- each hostile variant is refused by the rule it breaks ----------------------------------------

def restricted_container(name: str, image: str = IMAGE, **fields) -> dict:
    return {"name": name, "image": image, "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"}}, **fields}


def add_volume(pod: dict, volume: dict, mount_path: str = "/mnt/x") -> None:
    pod["spec"]["volumes"].append(volume)
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": volume["name"], "mountPath": mount_path})


def with_token(pod):
    # What the ServiceAccount admission plugin adds (mutating, before this policy) once automount is on.
    pod["spec"]["automountServiceAccountToken"] = True
    add_volume(pod, {"name": "kube-api-access-x7k2p", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}, "/var/run/secrets/kubernetes.io/serviceaccount")


def with_host_network(pod):
    pod["spec"]["hostNetwork"] = True
    # The API server's defaulting (before admission) gives every container port a hostPort equal to
    # it on a hostNetwork pod: such a pod also breaks the host-port rule.
    for port in pod["spec"]["containers"][0]["ports"]:
        port["hostPort"] = port["containerPort"]


def with_privileged(pod):
    # The API server's own validation, before admission, refuses privileged with
    # allowPrivilegeEscalation false: a privileged pod it lets through breaks that rule as well.
    _container_security(pod).update(privileged=True, allowPrivilegeEscalation=True)


def add_init_container(pod, container):
    pod["spec"].setdefault("initContainers", []).append(container)


HOSTILE = [
    ("another service account",
     lambda pod: pod["spec"].update(serviceAccountName="fruit-assets-run", serviceAccount="fruit-assets-run"),
     {"service account"}),
    ("the code server's service account",
     lambda pod: pod["spec"].update(serviceAccountName="fruit-assets-code-server", serviceAccount="fruit-assets-code-server"),
     {"service account"}),
    ("an API token mounted", with_token, {"API token"}),
    ("a Secret volume",
     lambda pod: add_volume(pod, {"name": "pg", "secret": {"secretName": "dagster-postgresql-secret"}}),  # pragma: allowlist secret
     {"Secret volumes"}),
    ("a projected Secret",
     lambda pod: add_volume(pod, {"name": "cookie", "projected": {"sources": [
         {"serviceAccountToken": {"path": "token"}}, {"secret": {"name": "oauth2-proxy"}}]}}),
     {"Secret volumes"}),
    ("an env secretKeyRef",
     lambda pod: pod["spec"]["containers"][0]["env"].append({"name": "DAGSTER_PG_PASSWORD", "valueFrom": {
         "secretKeyRef": {"name": "dagster-postgresql-secret", "key": "postgresql-password"}}}),  # pragma: allowlist secret
     {"Secret env"}),
    ("an envFrom secretRef",
     lambda pod: pod["spec"]["containers"][0].update(envFrom=[{"secretRef": {"name": "oauth2-proxy"}}]),
     {"Secret env"}),
    ("an init container reading a Secret",
     lambda pod: add_init_container(pod, restricted_container("init", envFrom=[{"secretRef": {"name": "oauth2-proxy"}}])),
     {"Secret env"}),
    ("a persistent volume claim",
     lambda pod: add_volume(pod, {"name": "data", "persistentVolumeClaim": {"claimName": "someone-elses"}}),
     {"volume types"}),
    ("a CSI volume with a node publish Secret",
     lambda pod: add_volume(pod, {"name": "csi", "csi": {"driver": "secrets-store.csi.k8s.io",
                                                         "nodePublishSecretRef": {"name": "oauth2-proxy"}}}),
     {"volume types"}),
    ("a hostPath volume",
     lambda pod: add_volume(pod, {"name": "root", "hostPath": {"path": "/"}}), {"host path"}),
    ("hostNetwork", with_host_network, {"host namespaces", "host ports"}),
    ("hostPID", lambda pod: pod["spec"].update(hostPID=True), {"host namespaces"}),
    ("hostIPC", lambda pod: pod["spec"].update(hostIPC=True), {"host namespaces"}),
    ("a privileged container", with_privileged, {"privileged", "allowPrivilegeEscalation"}),
    ("a hostPort", lambda pod: pod["spec"]["containers"][0]["ports"][0].update(hostPort=7079), {"host ports"}),
    ("another image by digest",
     lambda pod: pod["spec"]["containers"][0].update(image="docker.io/library/alpine@sha256:" + "1" * 64), {"image"}),
    ("another digest of the same repository",
     lambda pod: pod["spec"]["containers"][0].update(image=IMAGE.split("@")[0] + "@sha256:" + "f" * 64), {"image"}),
    ("a tag instead of the digest",
     lambda pod: pod["spec"]["containers"][0].update(image=IMAGE.split("@")[0] + ":0.1.0"), {"image"}),
    ("an init container of another image",
     lambda pod: add_init_container(pod, restricted_container("tools", "docker.io/library/busybox:1.36")), {"image"}),
    ("the oauth2-proxy label (its Service's traffic)",
     lambda pod: pod["metadata"]["labels"].update({"app.kubernetes.io/name": "oauth2-proxy"}), {"labels"}),
    ("the webserver's component label",
     lambda pod: pod["metadata"]["labels"].update(component="dagster-webserver"), {"labels"}),
    ("the run pods' label (their NetworkPolicies)",
     lambda pod: pod["metadata"]["labels"].update({"app.kubernetes.io/component": "run_worker"}), {"labels"}),
    ("runAsNonRoot missing",
     lambda pod: [pod["spec"]["securityContext"].pop("runAsNonRoot"), _container_security(pod).pop("runAsNonRoot")],
     {"runAsNonRoot"}),
    ("runAsNonRoot false in the container",
     lambda pod: _container_security(pod).update(runAsNonRoot=False), {"runAsNonRoot"}),
    ("allowPrivilegeEscalation true",
     lambda pod: _container_security(pod).update(allowPrivilegeEscalation=True), {"allowPrivilegeEscalation"}),
    ("allowPrivilegeEscalation unset",
     lambda pod: _container_security(pod).pop("allowPrivilegeEscalation"), {"allowPrivilegeEscalation"}),
    ("capabilities not dropped", lambda pod: _container_security(pod).pop("capabilities"), {"capabilities"}),
    ("a capability added",
     lambda pod: _container_security(pod)["capabilities"].update(add=["SYS_ADMIN"]), {"capabilities"}),
    ("seccomp Unconfined",
     lambda pod: _container_security(pod).update(seccompProfile={"type": "Unconfined"}), {"seccomp"}),
    ("no seccomp profile",
     lambda pod: [pod["spec"]["securityContext"].pop("seccompProfile"), _container_security(pod).pop("seccompProfile")],
     {"seccomp"}),
    ("seccomp Unconfined for the pod, unset in the container",
     lambda pod: [pod["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
                  _container_security(pod).pop("seccompProfile")],
     {"seccomp"}),
]


@pytest.mark.parametrize("change, expected", [(c, e) for _, c, e in HOSTILE], ids=[name for name, _, _ in HOSTILE])
def test_a_hostile_pod_is_refused_by_the_rule_it_breaks(executor, change, expected):
    pod = copy.deepcopy(executor)
    change(pod)
    decision = pods_policy().decide(create(pod))
    assert decision.applies and decision.errors == [], decision
    assert {rule(m) for m in decision.refusals} == expected
    messages = {rule(v["message"]): v["message"] for v in
                documents()[("ValidatingAdmissionPolicy", "fruit-assets-run-pods")]["spec"]["validations"]}
    assert decision.refusals == [messages[name] for name in rules_of() if name in expected]


def test_every_rule_is_broken_by_some_hostile_pod():
    assert set(rules_of()) == set().union(*(expected for _, _, expected in HOSTILE))


def test_an_ephemeral_container_added_later_is_held_to_the_same_rules(executor):
    """The ephemeralcontainers subresource (an UPDATE) is matched too; the Role grants it to no one
    today, so this guards a later grant."""
    for container, expected in [
        (restricted_container("debugger", "docker.io/library/busybox:1.36"), {"image"}),
        (restricted_container("debugger", envFrom=[{"secretRef": {"name": "oauth2-proxy"}}]), {"Secret env"}),
        (restricted_container("debugger"), set()),
    ]:
        pod = copy.deepcopy(executor)
        pod["spec"]["ephemeralContainers"] = [container]
        decision = pods_policy().decide(Request("UPDATE", RUN_POD, pod, old_object=executor, sub_resource="ephemeralcontainers"))
        assert decision.applies and decision.errors == []
        assert {rule(m) for m in decision.refusals} == expected


# --- the image param -------------------------------------------------------------------------------

def test_the_image_param_fails_closed(executor):
    # No ConfigMap: every pod from the run pods is refused (parameterNotFoundAction: Deny).
    decision = pods_policy(params={}).decide(create(executor))
    assert decision.applies and not decision.admitted
    # The file's ConfigMap before the deploy fills in the digest, a tag, an empty ConfigMap.
    placeholder = documents()[("ConfigMap", "fruit-assets-images")]
    for params in (placeholder, images_configmap(IMAGE.split("@")[0] + ":0.1.0"),
                   {**placeholder, "data": {}}, {k: v for k, v in placeholder.items() if k != "data"}):
        assert refused_rules(executor, pods_policy(params=params)) == {"image"}, params
    # A pod and a ConfigMap that agree on a tag are refused all the same: only a digest counts.
    tagged = copy.deepcopy(executor)
    tagged["spec"]["containers"][0]["image"] = IMAGE.split("@")[0] + ":0.1.0"
    assert refused_rules(tagged, pods_policy(params=images_configmap(IMAGE.split("@")[0] + ":0.1.0"))) == {"image"}


def test_the_test_reads_the_policy_from_the_file(executor):
    """Dropping a rule from the file's policy lets its hostile pod through: the expressions judged
    here are the file's, not a copy."""
    pod = copy.deepcopy(executor)
    add_volume(pod, {"name": "pg", "secret": {"secretName": "dagster-postgresql-secret"}})  # pragma: allowlist secret
    docs = documents()
    policy = docs[("ValidatingAdmissionPolicy", "fruit-assets-run-pods")]
    policy["spec"]["validations"] = [v for v in policy["spec"]["validations"] if rule(v["message"]) != "Secret volumes"]
    assert refused_rules(pod) == {"Secret volumes"}
    assert refused_rules(pod, pods_policy(docs=docs)) == set()


# --- who is held to it -----------------------------------------------------------------------------

def test_only_the_run_pods_account_in_dagster_is_held_to_the_policy(executor):
    hostile = copy.deepcopy(executor)
    add_volume(hostile, {"name": "pg", "secret": {"secretName": "dagster-postgresql-secret"}})  # pragma: allowlist secret
    policy = pods_policy()
    assert policy.decide(create(hostile)).refusals
    for other in (DAEMON, JOB_CONTROLLER, DEPLOYER, "system:serviceaccount:other:fruit-assets-run"):
        assert policy.decide(create(hostile, username=other)).applies is False, other
    assert policy.decide(create(hostile, namespace="default")).applies is False
    # Deleting is not creating: the run pods remove their executors, whatever those are.
    assert policy.decide(Request("DELETE", RUN_POD, None, old_object=hostile)).applies is False


def test_the_run_pod_itself_is_created_by_the_job_controller_and_would_be_refused_from_a_run_pod():
    """The run pod carries the Postgres password (dagster-k8s injects it with a secretKeyRef) and the
    run pods' own account: the matchCondition is what keeps the policy off the Job controller's
    pods, and the same pod asked for by a run pod is refused."""
    pod = run_job(helm_values())["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", **pod}
    policy = pods_policy()
    assert policy.decide(create(pod, username=JOB_CONTROLLER)).applies is False
    refused = refused_rules(pod, policy)
    assert {"service account", "Secret env", "API token", "labels"} <= refused, refused


def test_the_match_condition_is_the_username_kubernetes_gives_the_run_pods_token():
    docs = documents()
    for policy in ("fruit-assets-run-pods", "fruit-assets-run-configmaps"):
        [condition] = docs[("ValidatingAdmissionPolicy", policy)]["spec"]["matchConditions"]
        assert bool(evaluate(condition["expression"], _request_activation(RUN_POD))) is True
        assert bool(evaluate(condition["expression"], _request_activation(DAEMON))) is False
    # system:serviceaccount:<namespace>:<name>, from infra/service-accounts.yaml and infra/rbac.yaml.
    [binding] = [d for d in k8s_documents(os.path.join(REPO, "infra", "rbac.yaml")) if d["kind"] == "RoleBinding"]
    [subject] = binding["subjects"]
    assert RUN_POD == f"system:serviceaccount:{subject['namespace']}:{subject['name']}"


def _request_activation(username: str) -> dict:
    import celpy

    return {"request": celpy.json_to_cel({"userInfo": {"username": username}})}


# --- config maps -----------------------------------------------------------------------------------

def spark_conf_map_name(spark) -> str:
    """The name Spark's driver gives the conf-map it creates for its executors."""
    return scala_object(spark.sparkContext._jvm, "org.apache.spark.deploy.k8s.submit.KubernetesClientUtils") \
        .configMapNameExecutor()


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "dagster"},
            "data": {"spark.properties": "spark.executor.cores=1\n"}}


def test_the_run_pods_create_and_delete_only_sparks_conf_maps(spark, executor):
    policy = configmaps_policy()
    name = spark_conf_map_name(spark)
    # The executor pod mounts the conf-map of that name.
    assert {"name": "spark-conf-volume-exec", "configMap": {"name": name}} in executor["spec"]["volumes"]
    spark_map = configmap(name)
    assert policy.decide(Request("CREATE", RUN_POD, spark_map, resource="configmaps")).admitted
    # Spark removes its conf-maps by label (deletecollection): each item is admitted as a DELETE with
    # the item as oldObject and no request name.
    assert policy.decide(Request("DELETE", RUN_POD, None, old_object=spark_map, resource="configmaps", name="")).admitted

    for operation, target in [("DELETE", "fruit-assets-images"), ("CREATE", "fruit-assets-images"),
                              ("DELETE", "dagster-instance"), ("CREATE", "dagster-instance"),
                              ("CREATE", "spark-exec-0123abcd-conf-map-x")]:
        request = Request(operation, RUN_POD, None if operation == "DELETE" else configmap(target),
                          old_object=configmap(target) if operation == "DELETE" else None, resource="configmaps")
        decision = policy.decide(request)
        assert decision.applies and decision.errors == [], (operation, target, decision)
        assert [rule(m) for m in decision.refusals] == ["config maps"], (operation, target)
    # The deploy (another user) writes the image param.
    write = Request("CREATE", DEPLOYER, images_configmap(), resource="configmaps")
    assert policy.decide(write).applies is False
    # Pods are not this policy's business, nor config maps elsewhere.
    assert policy.decide(create(executor)).applies is False
    assert policy.decide(Request("CREATE", RUN_POD, configmap("x"), resource="configmaps", namespace="default")).applies is False


# --- the runbook's check on a real cluster ----------------------------------------------------------

RUNBOOK = os.path.join(REPO, "docs", "deploy-eks.md")


def runbook_hostile_pod() -> dict:
    """The hostile-pod.yaml that docs/deploy-eks.md ("What the run pod can create") writes."""
    import re

    import yaml

    with open(RUNBOOK) as handle:
        runbook = handle.read()
    section = runbook[runbook.index("## What the run pod can create"):]
    section = section[:section.index("\n## ", 1)]
    [text] = re.findall(r"cat > hostile-pod\.yaml <<'YAML'\n(.*?)\nYAML\n", section, re.S)
    assert "kubectl create --dry-run=server --as=system:serviceaccount:dagster:fruit-assets-run -f hostile-pod.yaml" in section
    return yaml.safe_load(text.replace("IMAGE_DIGEST", "a" * 64))


def test_the_runbooks_hostile_pod_breaks_the_secret_rule_alone():
    """So that a refusal on the cluster is this policy's, for that rule: the pod is valid, meets
    'restricted' (the namespace's own admission lets it through), and differs from an admitted pod
    only by its Secret volume."""
    import kubernetes_validate

    from fruit_assets_tests.harness.pod_security import violations

    pod = runbook_hostile_pod()
    kubernetes_validate.validate(pod, "1.33.0", strict=True)
    assert violations(pod["spec"]) == []
    # The deploy's sed fills the same digest into the param and into the runbook's file.
    params = images_configmap(documents()[("ConfigMap", "fruit-assets-images")]["data"]["executorImage"]
                              .replace("IMAGE_DIGEST", "a" * 64))
    assert refused_rules(pod, pods_policy(params=params)) == {"Secret volumes"}
    control = copy.deepcopy(pod)
    del control["spec"]["volumes"], control["spec"]["containers"][0]["volumeMounts"]
    assert refused_rules(control, pods_policy(params=params)) == set()

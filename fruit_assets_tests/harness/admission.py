"""A ValidatingAdmissionPolicy and its binding, decided the way the API server's admission plugin
decides them, with the policy's own CEL expressions evaluated by cel-python (``celpy``).

What is modelled: matchConstraints' resource rules and the namespace selector (matchLabels), the
binding's matchResources, matchConditions, ``paramKind``/``paramRef`` with parameterNotFoundAction,
``variables`` (in order), validations with message/messageExpression, failurePolicy Fail (an
evaluation error refuses). The request variables are those Kubernetes binds: ``object``,
``oldObject`` (null on CREATE; ``object`` is null on DELETE), ``request`` (operation, userInfo,
name, namespace, resource, subResource), ``params``, ``namespaceObject``, ``variables``.

Where cel-python and Kubernetes' cel-go differ, and what that means for policies checked here:

- cel-python 0.5 does not parse optional types (``a.?b``, ``orValue``): policies use has() chains.
- Kubernetes evaluates admission policies on the unstructured object (``object`` is ``dyn``), so
  has() on a field is map-key presence, as in cel-python. Kubernetes only type-checks against the
  OpenAPI schema to write warnings into the policy's status; that check is not modelled.
- Kubernetes' CEL libraries beyond the standard ones (strings ext split/join/lowerAscii, lists ext,
  quantity, url, ip, cidr, authorizer) are absent from cel-python: an expression calling them
  errors here when evaluated ("undeclared reference"), and the tests assert that none errors.
- Runtime cost budgets (per expression and per policy) are not modelled.
- Kubernetes evaluates variables lazily; here they are evaluated eagerly (the policies' variables
  are written not to error). Every failing validation is reported, in the policy's order, so that a
  test can say which rules a pod breaks; the API server's error text may carry fewer of them.
- What happens before validating admission is not modelled: the API server's defaulting and object
  validation, and mutating webhooks (IRSA's), are for the caller to apply to the pod it passes in.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import celpy
from celpy.evaluation import CELEvalError

_ENVIRONMENT = celpy.Environment()


@cache
def _program(expression: str):
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(expression))


class CelError(Exception):
    pass


def cel_values(activation: dict) -> dict:
    return {name: celpy.json_to_cel(value) for name, value in activation.items()}


def evaluate(expression: str, activation: dict):
    """The CEL value of ``expression`` over ``activation`` (CEL values: see ``cel_values``)."""
    program = _program(expression)
    try:
        result = program.evaluate(activation)
    except CELEvalError as error:
        raise CelError(f"{expression!r}: {error}") from error
    if isinstance(result, CELEvalError):  # cel-python may return the error as the value
        raise CelError(f"{expression!r}: {result}")
    return result


def _variables(values: dict) -> celpy.celtypes.MapType:
    """``variables`` as a CEL map. cel-python's list `+` answers a plain Python list, not a CEL list:
    wrapped again here, not sent back through json_to_cel, which would turn its booleans into ints."""
    return celpy.celtypes.MapType({
        celpy.celtypes.StringType(name): celpy.celtypes.ListType(value) if type(value) is list else value
        for name, value in values.items()})


@dataclasses.dataclass
class Request:
    operation: str  # CREATE, UPDATE, DELETE
    username: str
    object: dict | None
    old_object: dict | None = None
    resource: str = "pods"
    sub_resource: str = ""
    namespace: str = "dagster"
    # request.name: empty on a CREATE with generateName and on each item of a deletecollection.
    name: str | None = None

    def variable(self) -> dict:
        obj = self.object if self.object is not None else self.old_object
        name = self.name if self.name is not None else obj["metadata"].get("name", "")
        return {
            "operation": self.operation, "name": name, "namespace": self.namespace,
            "userInfo": {"username": self.username},
            "resource": {"group": "", "version": "v1", "resource": self.resource},
            "subResource": self.sub_resource,
        }


@dataclasses.dataclass
class Decision:
    applies: bool  # matched by the policy and its binding, matchConditions true
    refusals: list[str]  # the messages of the failing validations, in the policy's order
    errors: list[str]  # expressions that failed to evaluate (each also refuses: failurePolicy Fail)

    @property
    def admitted(self) -> bool:
        return not self.refusals and not self.errors


def _namespace_labels(namespace: str) -> dict[str, str]:
    # The API server sets this label on every namespace.
    return {"kubernetes.io/metadata.name": namespace}


def _selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"only matchLabels selectors are modelled: {selector}")
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def _rule_matches(rule: dict, request: Request) -> bool:
    resource = request.resource + (f"/{request.sub_resource}" if request.sub_resource else "")
    return ("" in rule["apiGroups"] or "*" in rule["apiGroups"]) \
        and ("v1" in rule["apiVersions"] or "*" in rule["apiVersions"]) \
        and (request.operation in rule["operations"] or "*" in rule["operations"]) \
        and resource in rule["resources"]


class AdmissionPolicy:
    """One policy with one binding; ``params`` holds the objects a paramRef may name, keyed by
    (namespace, name)."""

    def __init__(self, policy: dict, binding: dict, params: dict[tuple[str, str], dict] | None = None):
        assert policy["kind"] == "ValidatingAdmissionPolicy" and binding["kind"] == "ValidatingAdmissionPolicyBinding"
        assert binding["spec"]["policyName"] == policy["metadata"]["name"]
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert policy["spec"].get("failurePolicy", "Fail") == "Fail"
        self.policy, self.binding, self.params = policy["spec"], binding["spec"], params or {}

    def decide(self, request: Request) -> Decision:
        spec = self.policy
        labels = _namespace_labels(request.namespace)
        constraints = spec["matchConstraints"]
        if not any(_rule_matches(rule, request) for rule in constraints["resourceRules"]) \
                or not _selector_matches(constraints.get("namespaceSelector"), labels) \
                or not _selector_matches(self.binding.get("matchResources", {}).get("namespaceSelector"), labels):
            return Decision(False, [], [])
        activation = {
            "object": request.object, "oldObject": request.old_object, "request": request.variable(),
            "namespaceObject": {"metadata": {"name": request.namespace, "labels": labels}}, "params": None,
        }
        if "paramKind" in spec:
            ref = self.binding["paramRef"]
            assert spec["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
            param = self.params.get((ref["namespace"], ref["name"]))
            if param is None:
                assert ref["parameterNotFoundAction"] == "Deny"
                return Decision(True, ["no params found for policy binding with `Deny` parameterNotFoundAction"], [])
            activation["params"] = param
        activation = cel_values(activation)
        errors = []
        for condition in spec.get("matchConditions", []):
            try:
                if not evaluate(condition["expression"], activation):
                    return Decision(False, [], [])
            except CelError as error:
                errors.append(str(error))
        if errors:
            return Decision(True, [], errors)
        variables = {}
        for variable in spec.get("variables", []):
            variables[variable["name"]] = evaluate(variable["expression"], {**activation, "variables": _variables(variables)})
        activation["variables"] = _variables(variables)
        refusals = []
        for validation in spec["validations"]:
            try:
                passed = evaluate(validation["expression"], activation)
            except CelError as error:
                errors.append(str(error))
                continue
            if not isinstance(passed, celpy.celtypes.BoolType):
                errors.append(f"{validation['expression']!r} is not a boolean: {passed!r}")
            elif not passed:
                message = validation.get("message", "")
                if "messageExpression" in validation:
                    try:
                        message = str(evaluate(validation["messageExpression"], activation))
                    except CelError:
                        pass  # Kubernetes falls back to `message`
                refusals.append(message)
        return Decision(True, refusals, errors)

"""The least ClusterRole the operator needs, as data: the chart renders it, a test checks it against real traffic.

``tests/operator/test_rbac.py`` runs the real operator through create, update, policy change, drift and delete
against the emulator, turns every request the operator made into (group, resource, verb) and asserts that
:func:`allows` grants each one, so a new API call without a rule fails CI rather than a production install.

Notes on the rules:

* **Owned kinds** (ConfigMaps, Services, Secrets, Deployments, PDBs, HPAs, routers' NetworkPolicies) need
  ``list``/``watch``: reconciles read
  them from a watch cache (:mod:`llmroute.controller.cache`), not with GETs. The watches carry the label selector
  ``app.kubernetes.io/managed-by=llmroute-operator``, so the API server streams only the operator's own objects;
  RBAC cannot express that restriction, which is why the selector is set server-side and not only filtered in the
  operator. ``get`` stays for the one read that is not cached: an object a create found already there (409).
* **Secrets** need ``get`` cluster-wide: a ProviderPolicy (cluster-scoped) may name a key Secret in any namespace,
  and the operator copies that one key into ``<route>-provider-keys`` next to the router. Those source Secrets are
  read by name (a GET, cached for a few seconds), never watched. ``create``/``patch``/``delete`` are needed for the
  copies only. ``list``/``watch`` on Secrets add no read the cluster-wide ``get`` did not already allow; the
  operator uses them for its own copies only (label selector). A chart that keeps shared keys in one namespace can
  narrow ``get`` to a Role there.
* **ModelPools** own a Deployment, two Services and optionally a PersistentVolumeClaim (the weights cache), handled
  like a route's objects. Their **pods** are only listed (``list``, label-selected, once per pool and scaling
  interval, to find the pods whose vLLM ``/metrics`` to read); never watched, read one by one, or changed.
* ``llmroutes/finalizers`` and ``modelpools/finalizers: update`` let owned objects set ``blockOwnerDeletion`` on
  clusters with the OwnerReferencesPermissionEnforcement admission plugin.
* kopf itself needs: watch/list/patch of the custom resources (finalizers, annotations), ``events: create``,
  ``customresourcedefinitions: list, watch`` and ``namespaces: list, watch``. kopf runs **standalone** (no
  peering), so no ``kopfpeerings`` rules.
* **Service account issuer** (for LLMRoutes with ``spec.access.serviceAccounts``): the operator reads
  ``/.well-known/openid-configuration`` and ``/openid/v1/jwks`` (public keys) and puts them in the router config, so
  routers verify callers offline and need no API access (no TokenReview). Every service account may read these
  through the default ``system:service-account-issuer-discovery`` binding, so the ClusterRole adds nothing for it.
* **Leader election** (:mod:`llmroute.controller.leader`) is not in the ClusterRole: :func:`lease_role` is a Role in
  the operator's own namespace with ``get``/``update`` on the one named Lease and ``create`` on leases (a create
  cannot be restricted by name in RBAC). No ``list``/``watch``/``delete``/``patch``: the replicas read the Lease by
  name and replace it conditionally. The takeover Event on the Lease is covered by the ClusterRole's
  ``events: create``.
"""

from __future__ import annotations

from typing import Any

from llmroute.api.base import GROUP

OWNED = ["get", "list", "watch", "create", "patch", "delete"]

RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (GROUP, ("llmroutes", "providerpolicies", "modelpools"), ("get", "list", "watch", "patch")),
    (GROUP, ("llmroutes/status", "providerpolicies/status", "modelpools/status"), ("get", "patch")),
    (GROUP, ("llmroutes/finalizers", "modelpools/finalizers"), ("update",)),
    ("", ("configmaps", "services", "secrets", "persistentvolumeclaims"), tuple(OWNED)),
    ("", ("pods",), ("list",)),
    ("apps", ("deployments",), tuple(OWNED)),
    ("policy", ("poddisruptionbudgets",), tuple(OWNED)),
    ("autoscaling", ("horizontalpodautoscalers",), tuple(OWNED)),
    ("networking.k8s.io", ("networkpolicies",), tuple(OWNED)),
    ("", ("events",), ("create",)),
    ("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch")),
    ("", ("namespaces",), ("list", "watch")),
)


def cluster_role(name: str = "llmroute-operator") -> dict[str, Any]:
    """The ClusterRole manifest (rbac.authorization.k8s.io/v1)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "llmroute-operator",
                                              "app.kubernetes.io/component": "operator"}},
        "rules": [{"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
                  for group, resources, verbs in RULES],
    }


LEASE_GROUP = "coordination.k8s.io"


def lease_role(lease_name: str, name: str = "llmroute-operator-leader-election",
               namespace: str | None = None) -> dict[str, Any]:
    """The Role (in the Lease's namespace) that leader election needs, and nothing more."""
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "llmroute-operator",
                                                     "app.kubernetes.io/component": "operator"}}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta,
        "rules": [{"apiGroups": [LEASE_GROUP], "resources": ["leases"], "verbs": ["create"]},
                  {"apiGroups": [LEASE_GROUP], "resources": ["leases"], "resourceNames": [lease_name],
                   "verbs": ["get", "update"]}],
    }


def allows(role: dict[str, Any], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    """Whether ``role`` grants ``verb`` on ``resource`` (``plural`` or ``plural/subresource``) in ``group``, for the
    object ``name`` (None: a request without a name, e.g. a create or a list)."""
    return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
               and ("resourceNames" not in rule or name in rule["resourceNames"])
               for rule in role["rules"])

"""Observability as code: the Grafana dashboard (:mod:`.dashboard`), the Prometheus alerting rules (:mod:`.alerts`)
and the generator (:mod:`.generate`, run as ``python -m llmroute.observability``) that writes them, the operator's
ClusterRole rules and the CRDs into the Helm chart (``charts/llmroute/``).

Development-time code: nothing in the operator or the router imports it, and :mod:`.dashboard` needs the
``grafana-foundation-sdk`` test extra. Metric names come from :mod:`llmroute.router.metrics` and
:mod:`llmroute.controller.metrics`.
"""

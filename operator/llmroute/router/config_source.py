"""Where the router's configuration comes from, and how a new one replaces the old without dropping requests.

Owns loading, key lookup and live reload:

* **Cluster mode**: a compiled RouterConfig file (JSON, or YAML with ``kind: RouterConfig``; a folder holding one,
  as a ConfigMap mount is). Keys come from ``$LLMROUTE_KEYS_DIR/<provider>`` if that folder is set and holds the
  file, else from the environment variable named by ``CredentialRef.env`` (a ``secretKeyRef`` in the pod).
* **Local mode**: YAML files/folders with ProviderPolicy, LLMRoute and ``v1/Secret`` documents, compiled in-process
  with :func:`llmroute.core.compile.compile_route` (the operator's code path). Keys come from the Secret documents;
  the Secret's namespace is ``CredentialRef.secret_namespace`` or the route's namespace. So do the bearer tokens of
  ``spec.access`` (the route's namespace; only their SHA-256 digests are kept, in the snapshot).

A load produces a frozen :class:`Snapshot`: the config plus everything the hot path would otherwise recompute per
request (lookups by model and class, pre-built upstream headers, the ``/v1/models`` body, and - only when the config
escalates on what requests contain - the compiled PII detector and the combined route of each set of classes a
request was escalated to, built on first use and kept with the snapshot; only when it redacts, the redaction rules
compiled once, :class:`llmroute.router.redaction.Index`). :class:`ConfigWatcher`
polls the paths about once a second, comparing a content hash (ConfigMap updates swap a symlink, so mtimes lie),
and swaps the snapshot atomically; a change of drills, audit settings or issuer keys alone counts as a change,
though it leaves the config hash as it was. An invalid config, or a RouterConfig whose ``version`` this router does
not know, is logged in one line (no secrets) and the old snapshot keeps serving. Requests hold the snapshot they
started with, so a swap never changes a request in flight.

Used by :mod:`llmroute.router.app` (startup, the watcher task) and read by :mod:`llmroute.router.proxy`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmroute import __version__
from llmroute.core import access, escalation, pii
from llmroute.core.compile import compile_route
from llmroute.core.router_config import (
    CONFIG_VERSION,
    BackendTarget,
    ClassRoute,
    ModelRoute,
    ProviderTarget,
    RouterConfig,
)
from llmroute.documents import Bundle, first_field_error, load
from llmroute.errors import ConfigVersionError, InputError, InvalidManifests, LLMRouteError
from llmroute.manifest_yaml import read_documents
from llmroute.router import redaction

log = logging.getLogger("llmroute.router.config")

KEYS_DIR_ENV = "LLMROUTE_KEYS_DIR"
POLL_INTERVAL_S = 1.0
MAX_ESCALATED_ENTRIES = 4096
"""Combined routes kept per snapshot (models x sets of classes seen); beyond, they are built per request."""
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Endpoint:
    """A provider as the upstream module calls it: the target and its pre-built request headers."""

    provider: ProviderTarget
    headers: Mapping[str, str] | None = field(repr=False)  # None: the key is missing, never call it
    missing_key: str = ""  # why ``headers`` is None


@dataclass(frozen=True)
class RouteEntry:
    """One published model for one data class, ready for the hot path."""

    model: str
    data_class: str
    route: ClassRoute
    usable: tuple[BackendTarget, ...]  # allowed by residency and with a key, in config order
    keyless: tuple[str, ...]  # why allowed backends are unusable (missing keys)
    reasoning_field: str = "reasoning_content"  # the name clients get reasoning text under (llmroute.router.reasoning)
    classes: tuple[str, ...] = ()  # escalated: every class applied, ``data_class`` (the declared one) first

    @property
    def class_header(self) -> str:
        """``x-llmroute-data-class`` of the response: the classes applied, declared first (``public,pii``)."""
        return escalation.header_value(self.classes) if self.classes else self.data_class


@dataclass(frozen=True)
class Snapshot:
    """One loaded configuration; never mutated, replaced whole on reload."""

    config: RouterConfig
    hash: str
    source: str
    endpoints: Mapping[str, Endpoint]
    routes: Mapping[tuple[str, str], RouteEntry]
    models_body: bytes
    published: tuple[str, ...]
    detector: pii.Detector | None = None  # only when the config escalates on what requests contain
    detect_rules: escalation.DetectRules = ()
    redaction: redaction.Index | None = None  # only when the config redacts (llmroute.router.redaction)
    token_digests: Mapping[bytes, str] | None = None
    """The route's bearer tokens (SHA-256 -> ``secret/key``) when they came with the config: YAML files holding the
    Secrets (``llmroute local``, ``llmroute router --config DIR``). None: the router re-reads mounted token files."""
    _escalated: dict[tuple[str, tuple[str, ...]], RouteEntry] = field(default_factory=dict, init=False, repr=False,
                                                                      compare=False)

    @property
    def route_name(self) -> str:
        return f"{self.config.origin.route_namespace}/{self.config.origin.route_name}"

    def escalated(self, entry: RouteEntry, classes: tuple[str, ...]) -> RouteEntry:
        """``entry`` held to every class of ``classes`` (declared first): the combined route, keyed, cached."""
        key = (entry.model, classes)
        found = self._escalated.get(key)
        if found is None:
            model = self.config.model_route(entry.model)
            assert model is not None  # entry came from this snapshot
            found = _entry(model, escalation.combine(model, classes), self.endpoints, classes)
            if len(self._escalated) < MAX_ESCALATED_ENTRIES:
                self._escalated[key] = found
        return found


def load_snapshot(paths: Sequence[str]) -> Snapshot:
    """Load, compile and key a configuration; raises :class:`LLMRouteError` with a one-line message."""
    files = config_files(paths)
    compiled = _compiled_config(files)
    if compiled is not None:
        path, raw = compiled
        config = _validate_router_config(path, raw)
        keys = {p.name: _cluster_key(p) for p in config.providers}
        return build_snapshot(config, keys, "RouterConfig " + str(path))
    bundle = load(paths)
    route = bundle.route(None)
    policy = bundle.policies.get(route.spec.policy_ref.name)
    if policy is None:
        known = ", ".join(sorted(bundle.policies)) or "none"
        raise InputError(f'LLMRoute "{route.metadata.name}": no ProviderPolicy "{route.spec.policy_ref.name}" in '
                         f"the config files (found: {known})")
    config = compile_route(route, policy)
    keys = {p.name: _secret_key(bundle, config, p) for p in config.providers}
    snapshot = build_snapshot(config, keys, f"LLMRoute {config.origin.route_namespace}/{config.origin.route_name}")
    if config.access is None:
        return snapshot
    return dataclasses.replace(snapshot, token_digests=_token_digests(bundle, config))


def build_snapshot(config: RouterConfig, keys: Mapping[str, str | None], source: str) -> Snapshot:
    """A snapshot of ``config`` with provider ``keys`` (None = missing); pure apart from hashing."""
    endpoints = {p.name: _endpoint(p, keys.get(p.name)) for p in config.providers}
    routes = {(model.name, cr.data_class): _entry(model, cr, endpoints) for model in config.models
              for cr in model.classes}
    published = tuple(m.name for m in config.models)
    body = {"object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "llmroute"} for n in published]}
    detection = config.detection
    return Snapshot(config=config, hash=config.content_hash(), source=source, endpoints=endpoints, routes=routes,
                    models_body=json.dumps(body).encode(), published=published,
                    detector=None if detection is None else _detector(config),
                    detect_rules=() if detection is None else detection.by_class(),
                    redaction=None if config.redaction is None else _redaction(config))


def _redaction(config: RouterConfig) -> redaction.Index:
    """The config's redaction rules and detector, compiled once; one it cannot honour refuses the config."""
    assert config.redaction is not None
    try:
        return redaction.Index(config.redaction)
    except ValueError as exc:
        raise InputError(f"RouterConfig redaction: {exc}") from None


def _entry(model: ModelRoute, cr: ClassRoute, endpoints: Mapping[str, Endpoint],
           classes: tuple[str, ...] = ()) -> RouteEntry:
    """The hot-path entry of one class route (``classes``: the classes applied when it is a combined one)."""
    usable = tuple(b for b in cr.allowed if endpoints[b.provider].headers is not None)
    keyless = tuple(f"{b.provider}/{b.model}: {endpoints[b.provider].missing_key}"
                    for b in cr.allowed if endpoints[b.provider].headers is None)
    return RouteEntry(model.name, classes[0] if classes else cr.data_class, cr, usable, keyless,
                      model.reasoning_field or "reasoning_content", classes)


def _detector(config: RouterConfig) -> pii.Detector:
    """The config's detector, compiled once; a pattern or type it cannot honour refuses the config (fail closed)."""
    assert config.detection is not None
    try:
        detector = pii.Detector(tuple(pii.CustomDetector(d.name, d.pattern, d.confidence)
                                      for d in config.detection.detectors))
    except ValueError as exc:
        raise InputError(f"RouterConfig detection: {exc}") from None
    unknown = sorted({t for c in config.detection.classes for t in c.types} - detector.types)
    if unknown:
        raise InputError(f"RouterConfig detection: unknown detector types {', '.join(unknown)}")
    classes = set(config.data_classes)
    strange = [c.data_class for c in config.detection.classes if c.data_class not in classes]
    if strange:
        raise InputError(f"RouterConfig detection: unknown data classes {', '.join(strange)}")
    return detector


def _endpoint(p: ProviderTarget, key: str | None) -> Endpoint:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity",
               "User-Agent": f"llmroute/{__version__}"}
    if p.credential is None:
        return Endpoint(p, headers)
    if not key:
        return Endpoint(p, None, f"no API key ({_key_hint(p)})")
    headers["Authorization"] = f"Bearer {key}"
    return Endpoint(p, headers)


def _key_hint(p: ProviderTarget) -> str:
    assert p.credential is not None
    c = p.credential
    return f"Secret {c.secret_name} key {c.secret_key}, env {c.env}"


def _token_digests(bundle: Bundle, config: RouterConfig) -> dict[bytes, str]:
    """The digests of the bearer tokens ``spec.access`` names, from the Secret documents beside the route (in the
    route's namespace, as in a cluster); a token whose Secret or key is missing is warned about (by name) and accepts
    nobody: fail closed."""
    assert config.access is not None
    digests: dict[bytes, str] = {}
    for t in config.access.bearer_tokens:
        token = (bundle.secret(config.origin.route_namespace, t.secret_name, t.secret_key) or "").strip()
        if token:
            digests[access.token_digest(token)] = f"{t.secret_name}/{t.secret_key}"
        else:
            log.warning('spec.access.bearerTokens: no Secret "%s" with key "%s" in namespace "%s" in the config files; '
                        "that token is not accepted", t.secret_name, t.secret_key, config.origin.route_namespace)
    return digests


def _secret_key(bundle: Bundle, config: RouterConfig, p: ProviderTarget) -> str | None:
    if p.credential is None:
        return None
    c = p.credential
    namespace = c.secret_namespace or config.origin.route_namespace
    return bundle.secret(namespace, c.secret_name, c.secret_key)


def _cluster_key(p: ProviderTarget) -> str | None:
    if p.credential is None:
        return None
    keys_dir = os.environ.get(KEYS_DIR_ENV)
    if keys_dir:
        path = Path(keys_dir) / p.name
        if path.is_file():
            return path.read_text(encoding="utf-8").strip() or None
    return os.environ.get(p.credential.env) or None


def config_files(paths: Sequence[str]) -> list[Path]:
    """The files a config is read from: named files, and folders' ``*.json``/``*.yaml``/``*.yml`` (sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in _CONFIG_SUFFIXES and f.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{raw}: no such file or directory")
    return out


def _compiled_config(files: Sequence[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The one RouterConfig document among ``files``, or None when they are local-mode manifests."""
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        for doc in _documents(path):
            if isinstance(doc, dict) and doc.get("kind") == "RouterConfig":
                found.append((path, doc))
    if len(found) > 1:
        raise InputError(f"more than one RouterConfig: {', '.join(str(p) for p, _ in found)}")
    return found[0] if found else None


def _documents(path: Path) -> list[Any]:
    if path.suffix != ".json":  # YAML read with bounds and strictness, as llmroute validate reads it
        docs, errors = read_documents(path)
        if errors:
            raise InvalidManifests(errors)
        return [d.value for d in docs]
    try:
        return [json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from None


def _validate_router_config(path: Path, raw: dict[str, Any]) -> RouterConfig:
    version = raw.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigVersionError(f"{path}: RouterConfig version {version!r} is not supported "
                                 f"(this router implements version {CONFIG_VERSION})")
    try:
        return RouterConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: {first_field_error(exc)}") from None


def fingerprint(paths: Sequence[str]) -> str:
    """A hash of everything a load reads (config files and key files); cheap enough to take every second."""
    digest = hashlib.sha256()
    try:
        files = config_files(paths)
    except InputError as exc:
        return "missing:" + str(exc)
    keys_dir = os.environ.get(KEYS_DIR_ENV)
    if keys_dir and Path(keys_dir).is_dir():
        files += sorted(f for f in Path(keys_dir).iterdir() if f.is_file())
    for f in files:
        digest.update(str(f).encode() + b"\0")
        try:
            digest.update(f.read_bytes())
        except OSError as exc:
            digest.update(f"unreadable:{exc.errno}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


class ConfigWatcher:
    """Holds the current snapshot and replaces it when the files change and the new config is valid."""

    def __init__(self, paths: Sequence[str], on_result: Callable[[Snapshot | None, str], None],
                 interval_s: float = POLL_INTERVAL_S) -> None:
        self.paths = list(paths)
        self.current: Snapshot | None = None
        self._on_result = on_result  # (new snapshot or None, result label) after each load attempt
        self._interval_s = interval_s
        self._seen = ""

    def load_now(self) -> Snapshot | None:
        """Load synchronously (at startup); a failure is logged and leaves ``current`` as it was."""
        seen = fingerprint(self.paths)
        self._apply(seen, self._attempt())
        return self.current

    async def run(self) -> None:
        """Poll forever (cancel to stop); loads run in a thread so the event loop keeps serving."""
        while True:
            await asyncio.sleep(self._interval_s)
            seen = fingerprint(self.paths)
            if seen == self._seen:
                continue
            result = await asyncio.to_thread(self._attempt)
            self._apply(seen, result)

    def _attempt(self) -> Snapshot | LLMRouteError:
        try:
            return load_snapshot(self.paths)
        except LLMRouteError as exc:
            return exc
        except (OSError, UnicodeDecodeError) as exc:
            return InputError(f"cannot read the config: {exc}")
        except Exception as exc:  # a bug must not stop the watcher: the old config keeps serving
            log.exception("unexpected error while loading the config")
            return InputError(f"unexpected error while loading the config: {type(exc).__name__}")

    def _apply(self, seen: str, result: Snapshot | LLMRouteError) -> None:
        self._seen = seen
        old = self.current
        if isinstance(result, LLMRouteError):
            label = "unsupported_version" if isinstance(result, ConfigVersionError) else "invalid"
            keeping = f"keeping config {old.hash}" if old else "no config loaded yet"
            log.error("config rejected (%s): %s", keeping, " ".join(str(result).split()))
            self._on_result(None, label)
            return
        # the whole config, not only its hash: drills, audit settings and issuer keys are left out of the hash (they
        # must not roll pods) and still have to reach this router by reload; so must bearer tokens in YAML Secrets
        if (old is not None and old.hash == result.hash and old.endpoints == result.endpoints
                and old.config == result.config and old.token_digests == result.token_digests):
            self._on_result(None, "unchanged")
            return
        self.current = result
        log.info("config loaded: %s hash %s (%d models, %d providers, %d drills)", result.source, result.hash,
                 len(result.config.models), len(result.config.providers), len(result.config.drills))
        self._on_result(result, "ok")

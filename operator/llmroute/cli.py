"""The ``llmroute`` command: argument parsing and output only; the work is done by the modules it calls.

Subcommands: ``crds`` (generate CRDs), ``validate`` (check manifests), ``explain`` (why each backend is allowed or
denied, and what-if), ``scan`` (personal data in JSON lines of prompts, :mod:`llmroute.scan`), ``local`` (the
outage drill on emulators), ``operator`` (the kopf operator), ``router`` (the data plane). Errors the user can fix
are one line on stderr and exit code 2; nothing here prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from llmroute import __version__
from llmroute.api.llm_route import LLMRoute
from llmroute.core import pool_checks
from llmroute.core.compile import compile_route
from llmroute.core.explain import BackendExplanation, RouteExplanation, check_providers, explain_route
from llmroute.documents import Bundle, load, load_all
from llmroute.errors import CompileError, FieldError, InputError, LoadError

EXIT_OK, EXIT_INPUT = 0, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        for line in str(exc).splitlines() or [""]:  # InvalidManifests: one line per problem
            print(f"llmroute: error: {line}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llmroute explain ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmroute", description="Residency-aware, failover-safe LLM routing.")
    p.add_argument("--version", action="version", version=f"llmroute {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--output-dir", default="crds", help="folder to write into (default: crds)")
    crds.add_argument("--check", action="store_true", help="do not write; exit 1 if the folder is out of date")
    crds.set_defaults(func=_cmd_crds)

    val = sub.add_parser("validate", help="validate ProviderPolicy/LLMRoute/Secret manifests and compile routes")
    val.add_argument("paths", nargs="+", metavar="FILE", help="YAML files or folders")
    val.set_defaults(func=_cmd_validate)

    exp = sub.add_parser("explain", help="show, per published model, which backends a data class may use and why",
                         usage="%(prog)s [options] FILE [FILE ...]\n       %(prog)s --cluster [-n NS] [options] ROUTE",
                         description=EXPLAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("paths", nargs="+", metavar="FILE|ROUTE", help="YAML files or folders with the route and its "
                     "policy; with --cluster, the name of one LLMRoute in the cluster")
    exp.add_argument("--route", help="LLMRoute name (needed when the files hold several)")
    exp.add_argument("--class", dest="data_class", help="data class (default: the route's default)")
    exp.add_argument("--model", help="only this published model (as a sample request names it)")
    exp.add_argument("--text", help="sample prompt text, checked for personal data (never printed back)")
    exp.add_argument("--down", action="append", default=[], metavar="PROVIDER",
                     help="what-if: assume this provider is down (repeatable)")
    exp.add_argument("--output", choices=("table", "json"), default="table")
    live = exp.add_argument_group("against the cluster (read-only)")
    live.add_argument("--cluster", action="store_true", help="explain the LLMRoute ROUTE as it runs in the cluster")
    live.add_argument("--kubeconfig", metavar="FILE", help="default: KUBECONFIG or ~/.kube/config; in a pod "
                      "without one, its service account")
    live.add_argument("--context", help="kubeconfig context (default: the current one)")
    live.add_argument("-n", "--namespace", help="the route's namespace (default: the context's, else default)")
    live.add_argument("--up", action="append", default=[], metavar="PROVIDER",
                      help="what-if: assume this provider is up though the status has it down (repeatable)")
    live.add_argument("--ignore-health", action="store_true",
                      help="do not let the status' health shape the answer (only --down providers are down)")
    exp.set_defaults(func=_cmd_explain)

    scan = sub.add_parser("scan", help="find personal data in JSON lines of prompts or request bodies (types and "
                          "offsets only, never the data)")
    scan.add_argument("input", metavar="FILE|-", help="JSON lines, each {id, text} or {id, ...OpenAI request body}; "
                      "- reads stdin")
    scan.add_argument("--policy", metavar="FILE", help="ProviderPolicy YAML (file or folder): its custom detectors, "
                      "and per line the classes the router would escalate to")
    scan.add_argument("--max-line-bytes", type=int, default=None, metavar="N",
                      help="longer lines are skipped and reported as errors (default 16 MiB)")
    scan.add_argument("--quiet", action="store_true", help="no summary line on stderr")
    scan.set_defaults(func=_cmd_scan)

    loc = sub.add_parser("local", help="the DeepSeek outage drill on this machine: emulated providers, real router")
    loc.add_argument("example", nargs="?", type=Path, default=None, metavar="EXAMPLE_DIR",
                     help="example folder (default: examples/deepseek-residency)")
    loc.add_argument("--duration", type=float, default=90.0, help="seconds to run (default 90; split over the phases)")
    loc.add_argument("--no-tui", dest="tui", action="store_false", help="no live view; print the summary only")
    loc.add_argument("--no-drill", dest="drill", action="store_false", help="steady traffic, no injected faults")
    loc.add_argument("--port", type=int, default=None, help="router port on 127.0.0.1 (default: a free port)")
    loc.add_argument("--concurrency", type=int, default=4, help="concurrent client requests (default 4)")
    loc.add_argument("--time-scale", type=float, default=10.0,
                     help="run circuit-breaker and probe timings this many times faster (default 10; 1 = as written)")
    loc.add_argument("--summary-json", type=Path, default=None, help="also write the summary as JSON here")
    loc.set_defaults(func=_cmd_local)

    op = sub.add_parser("operator", help="run the kopf operator (same as: kopf run -m llmroute.controller)")
    op.add_argument("--namespace", dest="namespaces", action="append", default=None, metavar="NS",
                    help="watch only this namespace (repeatable; default: LLMROUTE_NAMESPACES or the whole cluster)")
    op.add_argument("--router-image", default=None, help="router image for routes that name none "
                    "(default: LLMROUTE_ROUTER_IMAGE or the operator's own version)")
    op.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                    type=str.upper, help="default: LLMROUTE_LOG_LEVEL or INFO")
    op.add_argument("--demand-port", type=int, default=None, metavar="PORT",
                    help="port of POST /v1/demand, where routers report requests held for ModelPools; 0: off "
                    "(default: LLMROUTE_DEMAND_PORT or 8082)")
    op.add_argument("--demand-url", default=None, metavar="URL",
                    help="that endpoint's URL as routers reach it, given to every router "
                    "(default: LLMROUTE_DEMAND_URL; the Helm chart sets it)")
    op.set_defaults(func=_cmd_operator)

    rt = sub.add_parser("router", help="run the OpenAI-compatible router")
    rt.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on (default 127.0.0.1:8080)")
    rt.add_argument("--config", nargs="+", required=True, metavar="PATH",
                    help="a compiled RouterConfig file, or YAML files/folders with ProviderPolicy, LLMRoute, Secret")
    rt.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    _router_limit_flags(rt)
    rt.set_defaults(func=_cmd_router)
    return p


def _cmd_crds(args: argparse.Namespace) -> int:
    from llmroute.api.crdgen import render_crds, write_crds

    out = Path(args.output_dir)
    if args.check:
        stale = [n for n, text in render_crds().items()
                 if not (out / n).is_file() or (out / n).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"llmroute: {out / name} is out of date; run: llmroute crds --output-dir {out}", file=sys.stderr)
        return 1 if stale else EXIT_OK
    for path in write_crds(out):
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    """Every problem of every document, one line each (file, document, field), grouped by file and document.

    Exit codes as ``kubectl apply``: 0 valid, 1 invalid (2 stays for bad usage).
    """
    bundle, errors = load_all(args.paths)
    errors.extend(_compile_errors(bundle))
    errors.extend(_pool_errors(bundle))
    errors.sort(key=lambda e: (e.source, -1 if e.index is None else e.index))
    for err in errors:
        print(f"llmroute: error: {err}", file=sys.stderr)
    if errors:
        files = len({e.source for e in errors})
        print(f"llmroute: {len(errors)} problem{'s'[:len(errors) != 1]} in {files} file{'s'[:files != 1]}",
              file=sys.stderr)
        return 1
    pools = f", {len(bundle.pools)} ModelPool" if bundle.pools else ""
    print(f"ok: {len(bundle.policies)} ProviderPolicy, {len(bundle.routes)} LLMRoute{pools}, "
          f"{len(bundle.secrets)} Secret")
    for (ns, name), route in sorted(bundle.routes.items()):
        if route.spec.policy_ref.name not in bundle.policies:
            print(f'note: LLMRoute {ns}/{name}: ProviderPolicy "{route.spec.policy_ref.name}" is not among the '
                  "files, so the route was not compiled")
    for note in pool_checks.notes(bundle.policies, bundle.pools):
        print(f"note: {note}")
    return EXIT_OK


def _pool_errors(bundle: Bundle) -> list[LoadError]:
    return [_located(bundle, problem.subject, problem.error)
            for problem in pool_checks.problems(bundle.policies, bundle.routes, bundle.pools)]


def _compile_errors(bundle: Bundle) -> list[LoadError]:
    out: list[LoadError] = []
    for route in bundle.routes.values():
        policy = bundle.policies.get(route.spec.policy_ref.name)
        if policy is None:
            continue
        try:
            compile_route(route, policy)
        except CompileError as exc:
            out.extend(_located(bundle, route, e) for e in exc.errors)
    return out


def _located(bundle: Bundle, subject: object, error: FieldError) -> LoadError:
    src = bundle.source_of(subject)
    return src.error(error) if src else LoadError("input", None, error)


EXPLAIN_DESCRIPTION = """\
Explain, per published model and data class, which backends residency allows, why, and where the first attempt goes.

From files:        llmroute explain --class pii examples/deepseek-residency/
From the cluster:  llmroute explain --cluster -n apps deepseek --class pii

With --cluster, llmroute reads (GET only) the LLMRoute, its ProviderPolicy, the ModelPools its backends run on and
the router Deployment, with your kubeconfig; it reads no Secret. The table adds the router's ready/desired replicas,
the route's conditions, provider health from the ProviderPolicy status and each pool's replicas and scaling reason.
The status' health shapes the answer: a provider the status has Down or Misconfigured is treated as down (as the
operator's active backends treat it) and the table says "status Down"; Healthy, Degraded, Cold and Unknown count as
up. A ModelPool's readiness comes from its own status, as in file mode: with no ready replica it is skipped while
another allowed backend is available. --down PROVIDER adds a provider to the down ones, --up PROVIDER takes one out
(what-if), --ignore-health answers from the policy alone. Reading needs RBAC get on llmroutes (the route's
namespace), providerpolicies (cluster-scoped) and, optionally, modelpools and deployments (shown as unknown if not).
Exit codes: 0 ok, 1 the cluster could not be read (one line says what is missing), 2 bad input.
"""
EXIT_CLUSTER = 1


def _cmd_explain(args: argparse.Namespace) -> int:
    if args.cluster:
        return _cmd_explain_cluster(args)
    live_only = [flag for flag, on in (("--kubeconfig", args.kubeconfig), ("--context", args.context),
                                       ("--namespace", args.namespace), ("--up", args.up),
                                       ("--ignore-health", args.ignore_health)) if on]
    if live_only:
        raise InputError(f"{live_only[0]} needs --cluster (llmroute explain --cluster -n NAMESPACE ROUTE)")
    bundle = load(args.paths)
    route = bundle.route(args.route)
    policy = bundle.policies.get(route.spec.policy_ref.name)
    if policy is None:
        raise LoadError(_where(bundle, route), None, FieldError(
            "spec.policyRef.name", f'ProviderPolicy "{route.spec.policy_ref.name}" is not among the files'))
    check_providers(policy, "--down", args.down)
    explained = explain_route(route, policy, args.data_class, frozenset(args.down), model=args.model, text=args.text,
                              pools=bundle.pools)
    if args.output == "json":
        print(json.dumps(explained.to_dict(), indent=2))
    else:
        print(render_explanation(explained))
    return EXIT_OK


def _cmd_explain_cluster(args: argparse.Namespace) -> int:
    from llmroute import live_explain
    from llmroute.core.explain_live import render_live

    if len(args.paths) != 1 or args.route:
        raise InputError("--cluster explains one LLMRoute: llmroute explain --cluster -n NAMESPACE ROUTE")
    try:
        conn = live_explain.connect(args.kubeconfig, args.context, args.namespace)
        found = live_explain.read(conn, args.paths[0])
    except live_explain.ClusterError as exc:
        print(f"llmroute: error: {exc}", file=sys.stderr)
        return EXIT_CLUSTER
    result = live_explain.explain_found(found, args.data_class, args.down, args.up, ignore_health=args.ignore_health,
                                        model=args.model, text=args.text)
    if args.output == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_explanation(result.explanation, render_live(result.live)))
    return EXIT_OK


def _where(bundle: Bundle, route: LLMRoute) -> str:
    src = bundle.source_of(route)
    return str(src) if src else "input"


def render_explanation(e: RouteExplanation, live: Sequence[str] = ()) -> str:
    """The human table for ``llmroute explain``; ``live``: the cluster's lines, after the heading (``--cluster``)."""
    down = f"  assumed down: {', '.join(e.down)}" if e.down else ""
    down += f"  down per status: {', '.join(e.status_down)}" if e.status_down else ""
    lines = [f"LLMRoute {e.route}  ProviderPolicy {e.policy}  data class {e.data_class}{down}", "", *live]
    if e.text_findings is not None:
        reach = ", ".join(e.reachable_jurisdictions) or "nowhere"
        found = e.text_findings
        looks = "no personal data found" if found == "none" else f"looks like personal data: {found}"
        held = f"{e.escalation}, so as {','.join(e.classes)}" if e.classes else f"as {e.data_class}"
        lines += [f"sample text: {looks}; {held} it may go to: {reach}", ""]
    for m in e.models:
        lines.append(f"{m.name}: {m.allowed_count} of {len(m.backends)} backends allowed; {m.outcome}")
        health = any(b.health is not None for b in m.backends)  # --cluster: a HEALTH column after WHERE
        rows = [("TRY", "PROVIDER", "UPSTREAM MODEL", "WHERE", *(("HEALTH",) if health else ()), "VERDICT", "FIRST",
                 "WHY")]
        rows += [(str(b.order) if b.order else "-", b.provider, b.model, b.jurisdiction,
                  *((b.health or "-",) if health else ()), _verdict(b),
                  f"{b.first_share:.0%}" if b.first_share else "-", "; ".join(b.reasons)) for b in m.backends]
        n = len(rows[0]) - 1
        widths = [max(len(r[i]) for r in rows) for i in range(n)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:n], widths, strict=True)) + "  " + r[n] for r in rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _verdict(b: BackendExplanation) -> str:
    if not b.allowed:
        return "DENIED"
    return "down" if b.down else "allowed"


def _cmd_scan(args: argparse.Namespace) -> int:
    from llmroute import scan

    limit = scan.DEFAULT_MAX_LINE_BYTES if args.max_line_bytes is None else args.max_line_bytes
    if limit <= 0:
        raise InputError("--max-line-bytes must be positive")
    scanner = scan.Scanner.for_policy(None if args.policy is None else scan.load_policy(args.policy))
    source = scan.open_input(args.input, sys.stdin.buffer)
    try:
        scan.run(scanner, source, sys.stdout.buffer, limit)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    if not args.quiet:
        print(scanner.summary(), file=sys.stderr)
    return EXIT_OK


def _cmd_local(args: argparse.Namespace) -> int:
    from llmroute.local.run import run_local

    example = args.example or default_example()
    if not example.is_dir():
        raise InputError(f"{example}: no such example folder")
    if args.duration <= 0 or args.time_scale <= 0:
        raise InputError("--duration and --time-scale must be positive")
    return run_local(example, duration=args.duration, tui=args.tui and sys.stdout.isatty(), drill=args.drill,
                     port=args.port, summary_json=args.summary_json, concurrency=args.concurrency,
                     time_scale=args.time_scale)


def default_example() -> Path:
    """The bundled DeepSeek residency example (next to the source tree), or ./examples/... from the cwd."""
    bundled = Path(__file__).resolve().parents[2] / "examples" / "deepseek-residency"
    return bundled if bundled.is_dir() else Path("examples/deepseek-residency")


def _cmd_operator(args: argparse.Namespace) -> int:
    from llmroute.controller.run import run_operator

    return run_operator(args.namespaces, router_image=args.router_image, log_level=args.log_level,
                        demand_port=args.demand_port, demand_url=args.demand_url)


_LIMIT_HELP = {
    "head_timeout_s": ("SECONDS", float, "a request head must arrive within this"),
    "body_timeout_s": ("SECONDS", float, "a request body must arrive within this of its head (else 408)"),
    "idle_timeout_s": ("SECONDS", float, "an idle keep-alive connection is closed after this"),
    "max_connections": ("N", int, "open client connections; at the cap the one waiting longest for a request is "
                        "closed to admit a new one (503 only when every one is busy)"),
    "max_head_bytes": ("BYTES", int, "request line and headers together (else 431)"),
    "max_headers": ("N", int, "header fields per request (else 431)"),
    "max_url_bytes": ("BYTES", int, "request URL (else 414)"),
}


def _router_limit_flags(rt: argparse.ArgumentParser) -> None:
    from llmroute.router.limits import ENV, Limits, flag

    defaults = Limits()
    for name, (metavar, kind, text) in _LIMIT_HELP.items():
        rt.add_argument(f"--{flag(name)}", dest=name, type=kind, default=None, metavar=metavar,
                        help=f"{text} (default: {ENV[name]} or {getattr(defaults, name):g})")


def _cmd_router(args: argparse.Namespace) -> int:
    from llmroute.router.limits import Limits
    from llmroute.router.server import serve

    try:
        limits = Limits.from_env().replace({name: getattr(args, name) for name in _LIMIT_HELP})
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return serve(listen=args.listen, config_paths=list(args.config), log_level=args.log_level, limits=limits)


if __name__ == "__main__":
    raise SystemExit(main())

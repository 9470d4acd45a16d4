"""``bigbird serve``: run the HTTP service on a local or existing Ray cluster until Ctrl-C or SIGTERM.

Example::

    bigbird serve --model ./my-bigbird-imdb --task text-classification --port 8000
    python -m serve.cli --model google/bigbird-roberta-base --task fill-mask --num-gpus 1
    python -m serve.cli --config serve/config.yaml --address auto

Stopping: SIGINT (Ctrl-C, also ``kill -INT`` from a script, whose background jobs start with SIGINT ignored)
or SIGTERM removes the application (``serve.delete`` on a joined cluster, ``serve.shutdown`` and the end of the
Ray instance it started otherwise) and exits 130 or 143 (128 + the signal). A second signal, or a shutdown
taking more than ``SHUTDOWN_TIMEOUT_S``, exits at once (the Ray processes it started die with it: Ray binds them
to their parent).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

# Exit status after a stop signal: 128 + the signal (bigbird/commands.py: 130 = interrupted).
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}
SHUTDOWN_TIMEOUT_S = 60.0

EPILOG = """\
examples:
  bigbird serve --model ./bigbird-imdb --task text-classification
  bigbird serve --model google/bigbird-roberta-base --task fill-mask --num-gpus 1 --replicas 2
  bigbird serve --config serve/config.yaml --address auto      # join a running Ray cluster
  curl -s localhost:8000/v1/text-classification -H 'content-type: application/json' \\
       -d '{"inputs": "a long review ..."}'

--config takes a flat YAML of settings (see serve/settings.py) or a Serve config file such as
serve/config.yaml; flags override it. Docs of the running service: http://HOST:PORT/docs
Ctrl-C or SIGTERM stops it (exit status 130 or 143), removing what it started.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bigbird serve", description="Serve a BigBird model over HTTP with Ray "
                                "Serve (dynamic batching, one task per model).", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or hub id (org/name)")
    p.add_argument("--task", help="fill-mask, question-answering, text-classification or token-classification "
                                  "(default: from the checkpoint's architectures)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--replicas", type=int, help="model replicas (default 1)")
    p.add_argument("--num-gpus", type=float, dest="num_gpus",
                   help="GPUs per model replica (default 1 if CUDA is available, else 0)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="weight dtype (default: the checkpoint's; float16 needs --num-gpus > 0)")
    p.add_argument("--quantize", choices=("int8",), help="int8: dynamic int8 linear layers (CPU replicas)")
    p.add_argument("--num-cpus", type=float, dest="num_cpus",
                   help="CPUs per model replica; it runs that many torch threads (at most the CPUs its process may "
                        "use). Default: one CPU replica gets all the CPUs of the largest node (this machine's "
                        "when it starts its own Ray); several replicas, autoscaling or a GPU replica get 1 each")
    p.add_argument("--api-key-file", dest="api_keys_file",
                   help="file of API keys, one a line, re-read when it changes (at most once a second): every "
                        "route but /healthz then requires 'Authorization: Bearer <key>'; BIGBIRD_API_KEY in the "
                        "environment adds one key. A key itself never goes on the command line")
    p.add_argument("--config", help="YAML settings file or Serve config file")
    p.add_argument("--address", help="Ray cluster to join (e.g. auto or ray://host:10001); default: RAY_ADDRESS "
                                     "if set, else start one")
    p.add_argument("--metrics-port", type=int, dest="metrics_port",
                   help="port of the Prometheus metrics of the Ray instance it starts (default: a free one, "
                        "printed at start); a joined cluster keeps its own")
    p.add_argument("--dashboard", action="store_true",
                   help="also start Ray's dashboard (port 8265) with the Ray instance it starts (off: it costs "
                        "seconds of startup and memory, and serving needs none of it)")
    return p


def settings_from(args: argparse.Namespace) -> Any:
    """Defaults < --config YAML < flags."""
    from serve.settings import make_settings, read_yaml

    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    for key in ("model", "task", "host", "port", "replicas", "num_gpus", "num_cpus", "api_keys_file", "dtype",
                "quantize"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if "model" not in values:
        raise ValueError("--model is required (or set model in --config)")
    return make_settings(values)


def serving_at() -> tuple[str, int]:
    """Host and port of the cluster's running Serve proxies."""
    from ray.serve.context import _get_global_client  # no public getter for the HTTP options in use

    http = _get_global_client().http_config
    return http.host, http.port


class Stop(BaseException):
    """A stop signal received by the main thread (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signum)


def catch_stop_signals() -> None:
    """SIGINT and SIGTERM raise :class:`Stop` in the main thread, whatever the parent left (a script's
    background job starts with SIGINT ignored) and whatever ``ray.init`` installed (its own SIGTERM handler)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stop)


def main(argv: list[str] | None = None) -> int:
    """Run ``bigbird serve``; returns the exit status (130 after SIGINT, 143 after SIGTERM, 2 on bad input,
    1 on failure)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, or argparse's own usage error (already printed)
        return int(e.code or 0)
    try:
        from serve.app import resolve_model

        settings, _ = resolve_model(settings_from(args))  # fails fast (missing model, no task) before Ray starts
    except ValueError as e:
        print(f"bigbird serve: error: {e}", file=sys.stderr)
        return 2
    address = args.address or os.environ.get("RAY_ADDRESS") or "local"  # "local": a new Ray instance, ours
    state = {"joined": address != "local", "deployed": False}
    catch_stop_signals()
    try:
        status = serve_until_stopped(settings, address, state, metrics_port=args.metrics_port,
                                     dashboard=args.dashboard)
    except Stop as stop:
        status = STOP_SIGNALS[stop.signum]
        print("stopping", flush=True)
        shutdown(settings.app_name, state, status)
        name = "interrupted" if stop.signum == signal.SIGINT else "terminated (SIGTERM)"
        print(f"bigbird serve: {name}", file=sys.stderr, flush=True)
        return status
    shutdown(settings.app_name, state, status)
    return status


def serve_until_stopped(settings: Any, address: str, state: dict[str, bool], *, metrics_port: int | None = None,
                        dashboard: bool = False) -> int:
    """Start Ray (or join it), deploy, print where, and wait for :class:`Stop`; returns 1 or 2 on failure."""
    import ray
    from ray import serve

    from serve.app import build_application
    from serve.metrics import metrics_urls

    try:
        own: dict[str, Any] = {"include_dashboard": dashboard}  # options of a Ray instance it starts
        if metrics_port is not None:
            own["_metrics_export_port"] = metrics_port
        ray.init(address=address, configure_logging=False, **({} if state["joined"] else own))
        catch_stop_signals()  # ray.init replaced the SIGTERM handler
        serve.start(http_options={"host": settings.host, "port": settings.port})
        running = serving_at()
        if running != (settings.host, settings.port):  # Serve keeps the options it was first started with
            print(f"bigbird serve: error: Serve already runs on this cluster at {running[0]}:{running[1]}; "
                  f"pass --host {running[0]} --port {running[1]}", file=sys.stderr)
            return 2
        state["deployed"] = True
        serve.run(build_application(settings), name=settings.app_name, route_prefix=settings.route_prefix)
    except Exception as e:  # a cluster or deployment failure: one line, non-zero
        state["deployed"] = False  # leave a failed application to be inspected, as before
        cause = getattr(e, "cause", None) or e  # a RayTaskError wraps the controller's exception
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        print(f"bigbird serve: error: {type(cause).__name__}: {lines[-1] if lines else ''}", file=sys.stderr)
        return 1
    from serve.auth import env_keys

    keys = "API keys required" if env_keys() or settings.api_keys_file else "open: no API keys"
    prefix = "" if settings.route_prefix == "/" else settings.route_prefix
    url = f"http://{settings.host}:{settings.port}{prefix}"
    print(f"serving {settings.model} ({settings.task}) at {url}/v1/{settings.task}  docs: {url}/docs  "
          f"metrics: {' '.join(metrics_urls(local_only=True)) or '(none exported)'}  ({keys}; Ctrl-C to stop)",
          flush=True)
    while True:
        time.sleep(3600)  # a stop signal raises Stop here


def shutdown(app_name: str, state: dict[str, bool], status: int) -> None:
    """Remove what this command started: its application on a joined cluster, else Serve and the Ray instance.
    Bounded: a second signal, or more than ``SHUTDOWN_TIMEOUT_S``, exits at once with ``status``."""
    def force(signum: int | None = None, frame: FrameType | None = None) -> None:
        os._exit(status)

    for signum in STOP_SIGNALS:
        signal.signal(signum, force)
    watchdog = threading.Timer(SHUTDOWN_TIMEOUT_S, force)
    watchdog.daemon = True
    watchdog.start()
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            try:
                if not state["joined"]:
                    serve.shutdown()
                elif state["deployed"]:  # leave the cluster's other applications running
                    serve.delete(app_name)
            finally:
                ray.shutdown()
    except Exception as e:
        print(f"bigbird serve: warning: shutdown: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        watchdog.cancel()


if __name__ == "__main__":
    sys.exit(main())

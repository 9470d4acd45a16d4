"""``bigbird serve``: run the HTTP service on a local or existing Ray cluster until Ctrl-C.

Example::

    bigbird serve --model ./my-bigbird-imdb --task text-classification --port 8000
    python -m serve.cli --model google/bigbird-roberta-base --task fill-mask --num-gpus 1
    python -m serve.cli --config serve/config.yaml --address auto
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

EPILOG = """\
examples:
  bigbird serve --model ./bigbird-imdb --task text-classification
  bigbird serve --model google/bigbird-roberta-base --task fill-mask --num-gpus 1 --replicas 2
  bigbird serve --config serve/config.yaml --address auto      # join a running Ray cluster
  curl -s localhost:8000/v1/text-classification -H 'content-type: application/json' \\
       -d '{"inputs": "a long review ..."}'

--config takes a flat YAML of settings (see serve/settings.py) or a Serve config file such as
serve/config.yaml; flags override it. Docs of the running service: http://HOST:PORT/docs
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
    p.add_argument("--config", help="YAML settings file or Serve config file")
    p.add_argument("--address", help="Ray cluster to join (e.g. auto or ray://host:10001); default: start one")
    return p


def settings_from(args: argparse.Namespace) -> Any:
    """Defaults < --config YAML < flags."""
    from serve.settings import make_settings, read_yaml

    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    for key in ("model", "task", "host", "port", "replicas", "num_gpus"):
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


def main(argv: list[str] | None = None) -> int:
    """Run ``bigbird serve``; returns the exit status (0 after Ctrl-C, 2 on bad input, 1 on failure)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, or argparse's own usage error (already printed)
        return int(e.code or 0)
    try:
        from serve.app import build_application, resolve_model

        settings, _ = resolve_model(settings_from(args))  # fails fast (missing model, no task) before Ray starts
    except ValueError as e:
        print(f"bigbird serve: error: {e}", file=sys.stderr)
        return 2

    import ray
    from ray import serve

    joined = args.address is not None or bool(os.environ.get("RAY_ADDRESS"))
    try:
        ray.init(address=args.address, configure_logging=False)
        serve.start(http_options={"host": settings.host, "port": settings.port})
        running = serving_at()
        if running != (settings.host, settings.port):  # Serve keeps the options it was first started with
            print(f"bigbird serve: error: Serve already runs on this cluster at {running[0]}:{running[1]}; "
                  f"pass --host {running[0]} --port {running[1]}", file=sys.stderr)
            return 2
        serve.run(build_application(settings), name=settings.app_name, route_prefix=settings.route_prefix)
    except Exception as e:  # a cluster or deployment failure: one line, non-zero
        cause = getattr(e, "cause", None) or e  # a RayTaskError wraps the controller's exception
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        print(f"bigbird serve: error: {type(cause).__name__}: {lines[-1] if lines else ''}", file=sys.stderr)
        return 1
    prefix = "" if settings.route_prefix == "/" else settings.route_prefix
    url = f"http://{settings.host}:{settings.port}{prefix}"
    print(f"serving {settings.model} ({settings.task}) at {url}/v1/{settings.task}  docs: {url}/docs  "
          "(Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("stopping", flush=True)
    if joined:  # leave the cluster's other applications running
        serve.delete(settings.app_name)
    else:
        serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

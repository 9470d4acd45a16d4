"""The simplest text-classification service a user would write, the baseline of ``bench_serve.py``: FastAPI and
transformers' own BigBird in one uvicorn process, one request per forward pass, no Ray.

    python benchmarks/serve_plain.py --model FOLDER --port 8001 [--threads 2]

``POST /v1/text-classification`` with ``{"inputs": "text"}`` answers ``[[{"label", "score"}]]`` (the top label,
the shape the real service gives). The endpoint is a plain ``def``: FastAPI runs it in its thread pool, as a
user copying the FastAPI tutorial would get.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def create_app(folder: str, threads: int) -> Any:
    import torch
    import transformers
    from fastapi import FastAPI

    torch.set_num_threads(threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BigBirdForSequenceClassification.from_pretrained(folder).eval()
    limit = model.config.max_position_embeddings
    app = FastAPI(title="plain transformers BigBird")

    @app.post("/v1/text-classification")
    def classify(body: dict[str, Any]) -> list[list[dict[str, Any]]]:
        encoded = tokenizer(body["inputs"], truncation=True, max_length=limit, return_tensors="pt")
        with torch.inference_mode():
            probs = model(**encoded).logits.softmax(-1)[0]
        best = int(probs.argmax())
        return [[{"label": model.config.id2label[best], "score": float(probs[best])}]]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder (bigbird's save_pretrained)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(args.model, args.threads), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())

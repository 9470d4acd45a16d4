#!/usr/bin/env bash
# The main job, from nothing: a virtual environment with CPU PyTorch and the project, the real 16S rRNA
# corpus (5,181 genes, fetched from Debian's microbiomeutil-data), a batch job on a local Ray cluster
# scoring every gene's phylum with the committed BigBird classifier, and a report against the true labels.
#
#   bash scripts/main_job.sh                 # everything: 2-12 minutes on 2 cores (under 2 min with cached
#                                            # wheels on a quiet machine; more when pip downloads torch or
#                                            # the machine is busy: Ray workers run at low priority)
#   MAIN_JOB_LIMIT=300 bash scripts/main_job.sh   # a shorter run (CI)
#   VENV=.ci-venv bash scripts/main_job.sh   # reuse another environment
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
MODEL=${MODEL:-models/rrna16s-phylum}
OUTPUT=${OUTPUT:-outputs/rrna16s-phylum}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}

quiet_pip() { "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
if [ ! -x "$VENV/bin/bigbird" ]; then
  echo "== setting up $VENV (CPU PyTorch, the project)"
  python3 -m venv "$VENV"
  quiet_pip torch==2.13.0          # the CPU build; an unpinned torch would pull GBs of CUDA wheels
  quiet_pip -e .
fi

echo "== corpus: 16S rRNA genes -> data/rrna16s"
"$VENV/bin/python" -m corpora fetch rrna16s --dest data

echo "== batch job: $MODEL over data/rrna16s -> $OUTPUT"
rm -rf "$OUTPUT"
limit=()
[ -n "${MAIN_JOB_LIMIT:-}" ] && limit=(--limit "$MAIN_JOB_LIMIT")
"$VENV/bin/bigbird" batch --task text-classification --model "$MODEL" --input data/rrna16s \
  --output "$OUTPUT" --keep-columns label=label_true --batch-size 8 "${limit[@]}"

echo "== report"
"$VENV/bin/python" -m corpora.report "$OUTPUT" --label-column label_true --holdout-fraction 0.1 --split-seed 0
echo "== results: $OUTPUT/*.parquet (one row per gene: id, label, score, scores, label_true, ...)"

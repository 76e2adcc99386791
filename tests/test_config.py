"""Study-file validation: every error kind names the file, the key and the line; exit code 2;
nothing is created on disk."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from automl_pt import ConfigError, Study
from automl_pt.cli import main
from automl_pt.spec.config import config_from_dict, load_config, parse_duration
from tests.conftest import study_toml


def _error(path, host=None) -> str:
    with pytest.raises(ConfigError) as info:
        Study.from_config(path, host=host).prepare()
    return str(info.value)


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path, needle):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


@pytest.fixture
def study(tmp_path, tiny_bert, topic_data):
    return study_toml(tmp_path, tiny_bert)


def test_valid_study_loads(study, text_host):
    cfg = load_config(study)
    assert cfg.study.trials == 3 and cfg.search.sampler == "tpe"
    assert cfg.run_dir == (study.parent / "run").resolve()
    Study.from_config(study, host=text_host).prepare()
    assert not (study.parent / "run").exists()


def test_unknown_key_suggests_the_right_one(study, text_host):
    _edit(study, "trials = 3", "trails = 3")
    msg = _error(study, text_host)
    assert f"{study}:{_line_of(study, 'trails')}" in msg
    assert "trails" in msg and "did you mean 'trials'" in msg


def test_unknown_section(study, text_host):
    study.write_text(study.read_text() + "\n[serach]\nx = 1\n")
    assert "did you mean 'search'" in _error(study, text_host)


@pytest.mark.parametrize("old,new,key,expected", [
    ("trials = 3", 'trials = "three"', "trials", "expected int"),
    ("seed = 0", "seed = 1.5", "seed", "expected int"),
    ('devices = "cpu"', 'devices = "gpu"', "devices", "not auto, cpu, cuda"),
    ('sampler = "tpe"', 'sampler = "tpee"', "sampler", "did you mean 'tpe'"),
    ('pruner = "none"', 'pruner = "hyperbnd"', "pruner", "did you mean 'hyperband'"),
    ("trials = 3", "trials = 0", "trials", "at least 1"),
    ("max_length = 32", "max_length = -4", "max_length", "at least 1"),
    ('name = "tiny"', 'name = "tiny study!"', "name", "letters, digits"),
])
def test_wrong_types_and_values(study, text_host, old, new, key, expected):
    _edit(study, old, new)
    msg = _error(study, text_host)
    assert key in msg and expected in msg
    assert f"{study}:{_line_of(study, new)}" in msg


def test_impossible_ranges(study, text_host):
    _edit(study, "low = 1e-4, high = 3e-3", "low = 1e-2, high = 3e-3")
    msg = _error(study, text_host)
    assert "learning_rate" in msg and "impossible range" in msg
    _edit(study, "low = 1e-2, high = 3e-3", "low = 0, high = 3e-3")
    assert "log range needs low > 0" in _error(study, text_host)


def test_missing_data_file(study, text_host):
    _edit(study, 'test = "data/test.csv"', 'test = "data/nope.csv"')
    msg = _error(study, text_host)
    assert "[data] test" in msg and "nope.csv" in msg and "not found" in msg


def test_unknown_task_backbone_and_hyperparameter(study, text_host):
    _edit(study, 'type = "text-classification"', 'type = "text-clasification"')
    assert "did you mean 'text-classification'" in _error(study, text_host)
    _edit(study, 'type = "text-clasification"', 'type = "text-classification"')

    text = study.read_text()
    study.write_text(re.sub(r'backbones = \[.*\]', 'backbones = ["minilm-l7"]', text))
    msg = _error(study, text_host)
    assert "unknown text backbone 'minilm-l7'" in msg and "did you mean 'minilm-l6'" in msg

    study.write_text(text.replace("batch_size = [8]", "batch_sise = [8]"))
    msg = _error(study, text_host)
    assert "[search.space] batch_sise" in msg and "did you mean 'batch_size'" in msg


def test_grid_sampler_needs_lists(study, text_host):
    _edit(study, 'sampler = "tpe"', 'sampler = "grid"')
    assert "grid sampler needs a finite list" in _error(study, text_host)


def test_invalid_toml_and_missing_required(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('[study]\nname = "x"\n[task]\ntype = "text-classification"\n')
    with pytest.raises(ConfigError, match=r"\[data\] train: missing required key"):
        load_config(bad)


def test_dict_config_accepts_data_objects():
    cfg = config_from_dict({"study": {"name": "api"}, "task": {"type": "text-classification"},
                            "data": {"train": [{"text": "a", "label": "x"}]},
                            "search": {"backbones": "minilm-l6"}})
    assert cfg.search.backbones == ["minilm-l6"] and cfg.source is None
    with pytest.raises(ConfigError, match="config: \\[study\\] trials"):
        config_from_dict({"study": {"name": "api", "trials": -1}, "task": {"type": "t"},
                          "data": {"train": []}, "search": {"backbones": ["b"]}})


def test_durations():
    assert parse_duration("30m") == 1800 and parse_duration(90) == 90 and parse_duration("2h") == 7200
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_cli_exits_2_and_creates_nothing(study, capsys):
    _edit(study, "trials = 3", "trails = 3")
    assert main(["run", str(study)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'trials'" in err and "Traceback" not in err
    assert not (study.parent / "run").exists()


def test_cli_bad_data_exits_2_without_run_dir(study, topic_data):
    topic_data["validation"].write_text("text,label\nhello,space\nbye,astrology\n")
    proc = subprocess.run([sys.executable, "-m", "automl_pt.cli", "run", str(study)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "never seen in train" in proc.stderr and "'astrology'" in proc.stderr
    assert not (study.parent / "run").exists()


# -- [search.space] values are checked against each parameter's domain, before anything runs --
@pytest.mark.parametrize("entry,expected", [
    ('epochs = "two"', "'two' is not an integer >= 1"),
    ("epochs = 0", "0 is not an integer >= 1"),
    ("epochs = 2.5", "2.5 is not an integer >= 1"),
    ("batch_size = [0]", "0 is not an integer >= 1"),
    ("dropout = 5.0", "5.0 is not a number in [0, 1)"),
    ("label_smoothing = -1", "-1 is not a number in [0, 1)"),
    ('learning_rate = "abc"', "'abc' is not a number > 0"),
    ("learning_rate = { low = -1, high = 1 }", "low -1 is not a number > 0"),
    ("weight_decay = [0.01, -0.1]", "-0.1 is not a number >= 0"),
    ('schedule = "cosin"', "'cosin' is not one of 'cosine', 'linear' (did you mean 'cosine'?)"),
    ("strategy = [1]", "1 is not one of 'linear_probe'"),
])
def test_search_space_values_are_checked_against_their_domain(tmp_path, tiny_bert, topic_data,
                                                             text_host, entry, expected):
    key = entry.split()[0]
    path = study_toml(tmp_path, tiny_bert, space=entry if key == "learning_rate" else
                      f"{entry}\nbatch_size = [8]" if key != "batch_size" else entry)
    if key == "learning_rate":  # replace the fixture's own learning_rate range
        text = path.read_text().replace("learning_rate = { low = 1e-4, high = 3e-3, log = true }\n", "")
        path.write_text(text)
    msg = _error(path, text_host)
    assert f"{path}:{_line_of(path, entry)}: [search.space] {key}: {expected}" in msg, msg


def test_cli_rejects_a_late_failing_space_value_before_writing(study):
    _edit(study, "batch_size = [8]", "batch_size = [0]")
    proc = subprocess.run([sys.executable, "-m", "automl_pt.cli", "run", str(study)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"{study}:{_line_of(study, 'batch_size = [0]')}: [search.space] batch_size" in proc.stderr
    assert "Traceback" not in proc.stderr and "ZeroDivisionError" not in proc.stderr
    assert not (study.parent / "run").exists()


def test_a_range_keeps_the_default_scale(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert)
    text = path.read_text().replace("learning_rate = { low = 1e-4, high = 3e-3, log = true }",
                                    "learning_rate = { low = 1e-4, high = 3e-3 }\n"
                                    "dropout = { low = 0.0, high = 0.2 }")
    path.write_text(text)
    space = Study.from_config(path, host=text_host).prepare().space
    assert space["learning_rate"].log and not space["dropout"].log
    path.write_text(text.replace("high = 3e-3 }", "high = 3e-3, log = false }"))
    assert not Study.from_config(path, host=text_host).prepare().space["learning_rate"].log


def test_every_problem_of_a_study_file_is_reported_at_once(study, text_host, capsys):
    _edit(study, "trials = 3", "trails = 3")                          # structure: unknown key
    _edit(study, "max_length = 32", "max_length = -4")                # structure: a value
    _edit(study, 'pruner = "none"', 'pruner = "hyperbnd"')            # structure: a name
    _edit(study, "batch_size = [8]", "batch_size = [8]\ndropout = 5.0")  # the plugins': a domain
    _edit(study, "seed = 0", 'seed = 0\nmetric = "acuracy"')          # the plugins': a metric
    with pytest.raises(ConfigError) as info:
        Study.from_config(study, host=text_host)
    expected = [(_line_of(study, needle), key) for needle, key in (
        ("trails", "[study] trails"), ("acuracy", "[study] metric"),
        ("max_length", "[data] max_length"), ("hyperbnd", "[search] pruner"),
        ("dropout = 5.0", "[search.space] dropout"))]
    assert [p.split(": ", 1)[0] for p in info.value.problems] == [f"{study}:{n}" for n, _ in expected]
    for problem, (_, key) in zip(info.value.problems, expected):
        assert f": {key}: " in problem
    assert main(["run", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 5 and "5 errors" in err and "Traceback" not in err
    assert not (study.parent / "run").exists()


def test_backbones_default_to_the_tasks(study, text_host):
    text = study.read_text()
    study.write_text(re.sub(r'backbones = \[.*\]\n', "", text))
    study_ = Study.from_config(study, host=text_host)
    assert study_.config.search.backbones == []
    prepared = study_.prepare()
    assert study_.config.search.backbones == ["minilm-l6"]
    assert prepared.space["backbone"].choices == ("minilm-l6",)
    study.write_text(text.replace(f'backbones = ["{text.split("backbones = [")[1].split("]")[0][1:-1]}"]',
                                  "backbones = []"))
    assert "must be a non-empty list" in _error(study, text_host)


def test_an_unimportable_study_plugin_is_a_study_file_error(study, capsys):
    _edit(study, "seed = 0", 'seed = 0\nplugins = ["no_such_plugin_module"]')
    assert main(["run", str(study)]) == 2
    err = capsys.readouterr().err
    assert f"{study}:{_line_of(study, 'plugins =')}: [study] plugins" in err
    assert "no_such_plugin_module" in err and not (study.parent / "run").exists()


PLUGIN_MODULE = '''
from automl_pt import hookimpl
from automl_pt.registry import Metric


@hookimpl
def automl_pt_register_metrics(register):
    register.metric(Metric(name="{name}", fn=lambda labels, preds, probs: 0.5))
'''


def test_study_plugins_resolve_relative_to_the_study_file(study, tmp_path, monkeypatch):
    """``[study] plugins`` names modules kept next to the study file (a module name, found
    there before ``sys.path``) or ``.py`` files relative to it, whatever the current
    directory; the study may then optimise what they register."""
    (study.parent / "study_metric_plugin.py").write_text(PLUGIN_MODULE.format(name="half_a"))
    (study.parent / "extra").mkdir()
    (study.parent / "extra" / "half_b_plugin.py").write_text(PLUGIN_MODULE.format(name="half_b"))
    _edit(study, "seed = 0", 'seed = 0\nmetric = "half_b"\n'
          'plugins = ["study_metric_plugin", "extra/half_b_plugin.py"]')
    elsewhere = tmp_path.parent / f"{tmp_path.name}-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delitem(sys.modules, "study_metric_plugin", raising=False)
    config = load_config(study)
    assert config.base_dir == study.parent.resolve()
    prepared = Study.from_config(study).prepare()
    assert {"half_a", "half_b"} <= set(prepared.host.registry.metrics)
    assert prepared.metric == "half_b"
    assert "study_metric_plugin" in {p.name for p in prepared.host.plugins}
    # a dict config resolves against the base_dir it is given
    assert config_from_dict({"study": {"name": "d"}, "task": {"type": "t"}, "data": {"train": []}},
                            base_dir=study.parent).base_dir == study.parent.resolve()


def test_a_missing_study_plugin_file_names_the_resolved_path(study, capsys):
    _edit(study, "seed = 0", 'seed = 0\nplugins = ["extra/nothing_here.py"]')
    assert main(["run", str(study)]) == 2
    err = capsys.readouterr().err
    assert f"{study}:{_line_of(study, 'plugins =')}: [study] plugins" in err
    assert str(study.parent / "extra" / "nothing_here.py") in err

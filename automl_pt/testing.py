"""Test helpers and reusable conformance tests for plugins (like Optuna's ``StorageTestCase``).

Two contracts, each a class a plugin's test suite subclasses (pytest then runs every check):

* :class:`PluginContract`: plugin-level checks (hooks have specs, tasks are consistent, foreign
  requests get ``None``, search-space fragments are valid, catalog entries are well formed).
  Set ``plugin``.
* :class:`BackboneContract`: per-backbone checks (features of the declared width, per-position
  features and their mask, export and reload through the plugin, adapter strategies, the
  ``partial`` split), run for every catalog
  backbone the plugin registers and for its ``tiny_backbone``. A backbone-only plugin (one that
  adds backbones to another plugin's task) uses it alone::

    class TestTextPlugin(PluginContract):
        plugin = automl_pt_text


    class TestTextBackbones(BackboneContract):
        plugin = automl_pt_text

        def tiny_backbone(self, tmp_path):
            return str(make_tiny_bert(tmp_path / "bert"))   # a name the plugin resolves

        def sample_inputs(self, tmp_path):
            return ["a first text", "another one", "a third"]

Helpers for a plugin's own end-to-end tests: :func:`write_study` writes a study file,
:data:`TINY_SPACE` is a search space of one quick configuration, :func:`require` skips a test
on a machine without an optional install (and fails in CI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .plugins import create_plugin_host

#: every transfer-learning hyperparameter fixed to one quick value: ``trials = 1`` trains once
TINY_SPACE = {"strategy": ["full"], "learning_rate": [0.002], "head_lr_multiplier": [10.0],
              "layer_decay": [1.0], "weight_decay": [0.0], "warmup_ratio": [0.0], "epochs": [1],
              "batch_size": [8], "dropout": [0.0], "label_smoothing": [0.0],
              "schedule": ["cosine"]}


def require(condition: bool, what: str) -> None:
    """In a test: skip on a developer machine that lacks an optional install (a weights
    package, the Debian data set); fail in CI (``CI`` set), where a skip would hide a broken
    install."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed (CI must install it)")
    pytest.skip(f"{what} is not installed")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to a study file")


def write_study(directory: str | Path, task: str, backbones: list[str] | str | Path, data: dict[str, Any],
                space: dict[str, Any] | str | None = None, *, name: str = "tiny", trials: int = 1,
                filename: str = "study.toml", **sections: dict[str, Any]) -> Path:
    """Write ``directory/study.toml`` for a small CPU study and return its path: ``task``,
    ``backbones`` (one or several names), ``[data]`` entries (paths relative to the file or
    absolute), ``[search.space]`` (a dict of values, lists and ranges, or TOML text; default
    :data:`TINY_SPACE`). Defaults: sampler ``random``, pruner ``none``, devices ``cpu``, run
    directory ``run``; other keys go in ``sections`` by section name, e.g.
    ``study={"seed": 1}``, ``search={"sampler": "grid"}``, ``resources={"workers": "inline"}``
    (``search_space`` is not a section: use ``space``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    values: dict[str, dict[str, Any]] = {
        "study": {"name": name, "trials": trials, "seed": 0},
        "task": {"type": task},
        "data": dict(data),
        "search": {"backbones": [str(b) for b in ([backbones] if isinstance(backbones, (str, Path))
                                                  else backbones)],
                   "sampler": "random", "pruner": "none"},
        "resources": {"devices": "cpu"},
        "storage": {"dir": "run"},
    }
    for section, entries in sections.items():
        values.setdefault(section, {}).update(entries)
    space = TINY_SPACE if space is None else space
    lines = []
    for section, entries in values.items():
        lines += [f"[{section}]", *(f"{k} = {_toml(v)}" for k, v in entries.items()), ""]
        if section == "search":
            lines += ["[search.space]", *(space.strip().splitlines() if isinstance(space, str) else
                                          (f"{k} = {_toml(v)}" for k, v in space.items())), ""]
    path = directory / filename
    path.write_text("\n".join(lines))
    return path


def _own_name(host: Any, plugin: Any) -> str:
    return host.pm.get_name(plugin) or ""


class PluginContract:
    """Plugin-level checks; set ``plugin`` (the module or object with the hook implementations)
    and, when the plugin builds on another plugin's tasks, ``requires`` (those plugins)."""

    plugin: Any = None
    requires: tuple[Any, ...] = ()

    def host(self):
        return create_plugin_host(entry_points=False, extra=[*self.requires, self.plugin])

    # -- the contract -----------------------------------------------------------------------
    def test_hooks_have_specs(self):
        host = self.host()  # check_pending() inside raises for an unknown automl_pt_ hook
        record = [p for p in host.plugins if p.name == host.pm.get_name(self.plugin)][0]
        assert record.hooks, "the plugin implements no hook"
        assert all(h.startswith("automl_pt_") for h in record.hooks)

    def test_tasks_are_consistent(self):
        import torch

        host = self.host()
        registry = host.registry
        for task in registry.tasks.values():
            assert task.default_metric in task.metrics
            for metric in task.metrics:
                assert metric in registry.metrics, f"task {task.name} uses unknown metric {metric}"
            impl = task.create()
            names = ["a", "b", "c"]
            targets = {"regression": np.array([0.5, 1.0, 2.0, 3.5], dtype=np.float32),
                       "multilabel": np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]],
                                              dtype=np.float32),
                       }.get(task.kind, np.array([0, 1, 2, 0]))
            positions = getattr(impl, "features", "pooled") == "positions"
            if positions:  # a target per position (-100: no position), e.g. a tag per word
                targets = np.array([[0, 1, 2], [1, 0, -100], [2, -100, -100], [0, 0, 1]])
            impl.fit(targets, names)
            if getattr(impl, "targets_in_batch", False) or \
                    getattr(impl, "features", "pooled") in ("backbone", "levels"):
                # a model that reads its targets, drives its backbone or reads its feature
                # levels is built for a backbone (make_head): the plugin's own tests train it;
                # here its state must round-trip
                state = json.loads(json.dumps(impl.state()))
                impl.load_state(state, task.name)
                assert impl.state() == state, task.name
                continue
            outputs = impl.num_outputs(names)
            head = impl.build_head(8, outputs, {"dropout": 0.0})
            if positions:
                mask = torch.as_tensor(targets != -100)
                logits = head(torch.randn(4, 3, 8), mask)
                assert logits.shape == (4, 3, outputs), task.name
            else:
                logits = head(torch.randn(4, 8))
                assert logits.shape == (4, outputs), task.name
            loss = impl.loss(logits, impl.target_tensor(targets), {"label_smoothing": 0.1})
            assert loss.ndim == 0 and torch.isfinite(loss), task.name
            preds, _ = impl.predict(logits)
            assert len(preds) == 4 and len(impl.decode(preds, _, names)) == 4, task.name

    def test_foreign_requests_return_none(self):
        host = self.host()
        assert host.hook.automl_pt_resolve_backbone(name="no-such-scheme:xyz",
                                                    modality="no-such-modality") is None

    def test_search_space_fragment_is_valid(self):
        from .spec.config import config_from_dict

        host = self.host()
        for task in host.registry.tasks.values():
            if task.plugin != host.pm.get_name(self.plugin):
                continue
            cfg = config_from_dict({"study": {"name": "contract"}, "task": {"type": task.name},
                                    "data": {"train": [{"x": 1}]}, "search": {"backbones": ["b"]}})
            for fragment in host.hook.automl_pt_search_space(task=task, config=cfg):
                for name, p in (fragment or {}).items():
                    assert p.name == name
                    if p.kind == "categorical":
                        assert len(p.choices) >= 1
                    else:
                        assert p.low is not None and p.high is not None and p.low <= p.high
                        assert not p.log or p.low > 0

    def test_catalog_entries_are_well_formed(self):
        """Every catalog backbone of the plugin names a modality some task reads, a loader, a
        source and (when known) its parameter count; nothing is loaded."""
        host = self.host()
        mine = [b for b in host.registry.backbones.values() if b.plugin == _own_name(host, self.plugin)]
        modalities = {t.modality for t in host.registry.tasks.values()}
        for info in mine:
            assert info.modality in modalities, f"{info.name}: no task reads {info.modality!r} inputs"
            assert callable(info.load) and info.source, info.name
            assert info.parameters is None or info.parameters > 0, info.name
            assert host.registry.find_backbone(info.name) is info
            for alias in info.aliases:
                assert host.registry.find_backbone(alias) is info, alias


class BackboneContract:
    """Per-backbone checks, run for every catalog backbone the plugin registers (its weights
    must be installed: else skipped, a failure in CI) and for :meth:`tiny_backbone`.

    Set ``plugin``; ``requires``: plugins it builds on (the task of its modality); implement
    :meth:`sample_inputs` and :meth:`tiny_backbone` (return ``None`` to check the catalog only);
    ``modality`` names the modality of ``tiny_backbone`` when the plugin has no catalog entry
    to take it from. ``adapters = False``: the backbones offer no LoRA / (IA)^3 targets, and
    the check is that strategies ``lora`` / ``ia3`` refuse them with an error naming them.
    """

    plugin: Any = None
    requires: tuple[Any, ...] = ()
    modality: str = ""
    adapters: bool = True
    #: checks that also run on the catalog backbones (the others run on the tiny backbone only:
    #: they train, and real weights add nothing to what they check)
    catalog_checks: tuple[str, ...] = ("test_backbone_encode_export_reload",
                                       "test_encode_positions_shapes_mask_and_pooling")
    #: the backbones have per-position features (``False``: ``encode_positions`` must refuse
    #: with a :class:`~automl_pt.errors.BackboneError` naming the backbone; ``None``: whether
    #: the backbone class overrides ``Backbone.encode_positions``)
    positions: bool | None = None

    # -- to implement ---------------------------------------------------------------------
    def tiny_backbone(self, tmp_path: Path) -> str | None:
        """A backbone name (catalog name, hub name or local path) the plugin resolves and loads
        quickly, with random weights if need be."""
        raise NotImplementedError

    def sample_inputs(self, tmp_path: Path) -> list[Any]:
        """A few raw inputs of the backbones' modality (texts, image paths, audio paths)."""
        raise NotImplementedError

    # -- parametrization over the catalog ---------------------------------------------------
    def host(self):
        return create_plugin_host(entry_points=False, extra=[*self.requires, self.plugin])

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "backbone_name" not in metafunc.fixturenames:
            return
        names: list[str] = ["tiny"]
        if metafunc.function.__name__ in self.catalog_checks:
            host = self.host()
            names += sorted(b.name for b in host.registry.backbones.values()
                            if b.plugin == _own_name(host, self.plugin))
        metafunc.parametrize("backbone_name", names)

    def resolve(self, host: Any, backbone_name: str, tmp_path: Path) -> tuple[Any, str]:
        """``(BackboneInfo, modality)`` of ``backbone_name`` (``"tiny"``: :meth:`tiny_backbone`)."""
        if backbone_name != "tiny":
            info = host.registry.find_backbone(backbone_name)
            return info, info.modality
        name = self.tiny_backbone(tmp_path)
        if name is None:
            pytest.skip("the plugin checks its catalog backbones only")
        modality = self.modality or next(
            (b.modality for b in host.registry.backbones.values()
             if b.plugin == _own_name(host, self.plugin)), "")
        assert modality, "set BackboneContract.modality: the plugin registers no catalog backbone"
        info = host.registry.find_backbone(name) or host.hook.automl_pt_resolve_backbone(
            name=name, modality=modality)
        assert info is not None, f"plugin cannot resolve its own tiny backbone {name!r}"
        return info, modality

    def load(self, info: Any, options: dict) -> Any:
        """``info.load(options)``; a catalog backbone whose weights are not installed is skipped
        (a failure in CI)."""
        from .errors import BackboneError

        try:
            return info.load(options)
        except BackboneError as exc:
            if "pip install" not in str(exc):
                raise
            require(False, f"{info.name!r} weights ({exc})")

    def input_lengths(self, batch: dict[str, Any], preprocessor: Any) -> Any:
        """Each example's input length in a collated batch of :meth:`sample_inputs` (tokens,
        samples), or ``None`` for fixed-size inputs: where lengths differ, the shorter examples
        must have fewer real positions. Default: ``preprocessor.lengths``; a plugin whose
        preprocessor pads without reporting lengths (Whisper's window) overrides it."""
        return preprocessor.lengths(batch)

    # -- the contract -----------------------------------------------------------------------
    def test_encode_positions_shapes_mask_and_pooling(self, tmp_path, backbone_name):
        """``encode_positions`` gives ``(batch, positions, position_dim)`` float features and a
        ``(batch, positions)`` bool mask with at least one real position per example; an
        example's real positions and their features are the same alone as in the batch (so
        padding added for the other examples is masked); where inputs differ in length, a
        shorter input has no more real positions than a longer one and the shortest has
        padding marked false; where the backbone says it pools by mean, ``encode`` is the
        masked mean of the positions."""
        import torch

        from .errors import BackboneError

        host = self.host()
        info, _ = self.resolve(host, backbone_name, tmp_path)
        backbone = self.load(info, {}).eval()
        prep = backbone.preprocessor({})
        inputs = self.sample_inputs(tmp_path)
        prep.fit(inputs)
        enc = prep.encode(inputs)
        batch = prep.collate(enc)
        from .model import Backbone

        positions = self.positions
        if positions is None:   # a backbone that keeps the default refuses, naming itself
            positions = type(backbone).encode_positions is not Backbone.encode_positions
        if not positions:
            with pytest.raises(BackboneError, match=repr(backbone.name)):
                backbone.encode_positions(batch)
            return
        with torch.no_grad():
            feats, mask = backbone.encode_positions(batch)
            pooled = backbone.encode(batch)
        n = len(inputs)
        assert feats.ndim == 3 and feats.shape[0] == n and feats.shape[1] >= 1, tuple(feats.shape)
        assert feats.shape[2] == backbone.position_dim > 0, (tuple(feats.shape), backbone.position_dim)
        assert feats.is_floating_point() and mask.dtype == torch.bool
        assert mask.shape == feats.shape[:2], (tuple(mask.shape), tuple(feats.shape))
        counts = mask.sum(dim=1)
        assert bool((counts >= 1).all()), f"an example without real positions: {counts.tolist()}"
        assert torch.isfinite(feats[mask]).all()
        for i in range(n):
            alone = prep.collate({k: v[i:i + 1] for k, v in enc.items()})
            with torch.no_grad():
                one, one_mask = backbone.encode_positions(alone)
            assert int(one_mask.sum()) == int(counts[i]), (
                f"example {i}: {int(one_mask.sum())} real positions alone, {int(counts[i])} in the batch")
            torch.testing.assert_close(feats[i][mask[i]], one[0][one_mask[0]], rtol=1e-4, atol=1e-4)
        lengths = self.input_lengths(batch, prep)
        if lengths is not None and len(set(lengths.tolist())) > 1:
            order = torch.argsort(torch.as_tensor(lengths), stable=True)
            ordered = counts[order]
            assert bool((ordered[1:] >= ordered[:-1]).all()), (
                f"real positions {counts.tolist()} do not follow input lengths {lengths.tolist()}")
            assert int(counts.min()) < feats.shape[1], (
                f"inputs of lengths {lengths.tolist()}: no position is marked as padding")
        assert backbone.position_pooling in ("mean", None), backbone.position_pooling
        if backbone.position_pooling == "mean":
            assert backbone.position_dim == backbone.feature_dim
            m = mask.unsqueeze(-1).to(feats.dtype)
            mean = (feats * m).sum(dim=1) / m.sum(dim=1)
            torch.testing.assert_close(mean, pooled, rtol=1e-4, atol=1e-4)

    def test_backbone_encode_export_reload(self, tmp_path, backbone_name):
        """Features have the declared width, and an exported backbone reloads through the
        plugin as a local folder and gives the same features."""
        import torch

        host = self.host()
        info, modality = self.resolve(host, backbone_name, tmp_path)
        backbone = self.load(info, {}).eval()
        assert backbone.modality == modality and backbone.feature_dim > 0
        prep = backbone.preprocessor({})
        inputs = self.sample_inputs(tmp_path)
        prep.fit(inputs)
        enc = prep.encode(inputs)
        assert all(len(v) == len(inputs) for v in enc.values())
        with torch.no_grad():
            feats = backbone.encode(prep.collate(enc))
        assert feats.shape == (len(inputs), backbone.feature_dim)
        out = tmp_path / "exported"
        out.mkdir()
        backbone.export(out)
        prep.save(out)
        again = host.hook.automl_pt_resolve_backbone(name=str(out), modality=modality)
        assert again is not None, "the exported folder does not resolve as a local backbone"
        reloaded = again.load({}).eval()
        # an exported model records its backbone class and refuses to load as another one
        assert type(reloaded) is type(backbone), (
            f"the exported folder reloads as {type(reloaded).__qualname__}, not {type(backbone).__qualname__}")
        prep2 = reloaded.preprocessor({})
        enc2 = prep2.encode(inputs)
        with torch.no_grad():
            feats2 = reloaded.encode(prep2.collate(enc2))
        torch.testing.assert_close(feats2, feats, rtol=1e-4, atol=1e-4)

    def test_adapter_strategies_train_merge_and_reload(self, tmp_path, backbone_name):
        """``lora``, ``ia3`` and ``bitfit`` on the plugin's tiny backbone: the backbone offers
        adapter targets, each strategy trains only its own parameters and the head, a few steps
        lower the loss, and the merged backbone has no adapter keys and, exported and reloaded
        through the plugin, predicts what the adapted model predicted."""
        import torch

        from .train.adapters import apply_strategy
        from .errors import BackboneError
        from .model import ClassificationTask, TrialModel

        host = self.host()
        info, modality = self.resolve(host, backbone_name, tmp_path)
        inputs = self.sample_inputs(tmp_path)
        labels = torch.arange(len(inputs)) % 2
        if not self.adapters:
            backbone = self.load(info, {})
            for strategy in ("lora", "ia3"):
                with pytest.raises(BackboneError, match=repr(backbone.name)):
                    apply_strategy(backbone, {"strategy": strategy})
        for strategy in ("lora", "ia3", "bitfit") if self.adapters else ("bitfit",):
            torch.manual_seed(0)
            backbone = self.load(info, {"params": {"strategy": strategy}})
            targets = backbone.peft_targets()
            assert not self.adapters or (targets.get("default") and targets.get("all")
                                         and targets.get("ia3")), (
                f"{type(backbone).__name__} offers no adapter targets: {targets}")
            prep = backbone.preprocessor({})
            prep.fit(inputs)
            batch = prep.collate(prep.encode(inputs))
            head = ClassificationTask().build_head(backbone.feature_dim, 2, {"dropout": 0.0})
            model = TrialModel(backbone, head)
            adapters = apply_strategy(backbone, {"strategy": strategy, "lora_dropout": 0.0})
            trained = {n for n, p in model.named_parameters() if p.requires_grad}
            extra = tuple(f"backbone.{p}" for p in getattr(backbone, "trial_modules", ()))
            marks = {"lora": (".lora_A.", ".lora_B."), "ia3": (".ia3_l.",)}.get(strategy)
            shapes = dict(model.named_parameters())
            for n in trained - {f"head.{h}" for h, _ in head.named_parameters()}:
                # bitfit: biases and norm scales, all vectors
                ok = any(m in n for m in marks) if marks else shapes[n].ndim == 1
                assert ok or (extra and n.startswith(extra)), f"{strategy} trains {n}"
            assert {f"head.{h}" for h, _ in head.named_parameters()} <= trained
            optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
            losses = []
            model.train()
            for _ in range(8):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(batch), labels)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            assert losses[-1] < losses[0], f"{strategy}: loss did not decrease: {losses}"
            model.eval()
            with torch.no_grad():
                adapted = model(batch)
            if adapters is not None:
                adapters.merge()
            keys = [k for k in model.state_dict() if any(m in k for m in ("lora_", "ia3_", "base_layer"))]
            assert not keys, f"{strategy}: adapter keys left after merging: {keys[:3]}"
            out = tmp_path / f"exported-{strategy}"
            out.mkdir()
            backbone.export(out)
            prep.save(out)
            reloaded = host.hook.automl_pt_resolve_backbone(name=str(out), modality=modality).load({})
            model2 = TrialModel(reloaded, head).eval()
            with torch.no_grad():
                again = model2(prep.collate(reloaded.preprocessor({}).encode(inputs)))
            torch.testing.assert_close(again, adapted, rtol=1e-4, atol=1e-4)

    def test_partial_split_matches_encode_and_trains_only_the_top(self, tmp_path, backbone_name):
        """Strategy ``partial``: for every k, ``encode_top(encode_bottom(batch, k), k)`` is
        ``encode(batch)`` in eval mode, directly and through the activation cache's path
        (batches of two, zero-padded, fp16); after ``freeze_bottom`` only the top k blocks'
        parameters and the head's get gradients. A backbone without the split refuses with a
        :class:`~automl_pt.errors.BackboneError` naming it."""
        import torch

        from .train import partial
        from .errors import BackboneError
        from .model import ClassificationTask

        host = self.host()
        info, modality = self.resolve(host, backbone_name, tmp_path)
        backbone = self.load(info, {}).eval()
        try:
            blocks = backbone.num_blocks()
        except BackboneError as exc:
            assert repr(backbone.name) in str(exc) and "partial" in str(exc)
            return
        assert blocks >= 1
        prep = backbone.preprocessor({})
        inputs = self.sample_inputs(tmp_path)
        prep.fit(inputs)
        enc = prep.encode(inputs)
        batch = prep.collate(enc)
        cpu = torch.device("cpu")
        with torch.no_grad():
            full = backbone.encode(batch)
        for k in range(1, blocks + 1):
            with torch.no_grad():
                split = backbone.encode_top(backbone.encode_bottom(batch, k), k)
            torch.testing.assert_close(split, full, rtol=1e-4, atol=1e-5)
            cached = partial.compute_activations(backbone, enc, k, cpu, 2, prep.collate)
            assert all(len(v) == len(inputs) for v in cached.values())
            assert all(v.dtype == torch.float16 for v in cached.values() if v.is_floating_point())
            with torch.no_grad():
                via_cache = backbone.encode_top(partial.collate_for(backbone)(cached), k)
            torch.testing.assert_close(via_cache, full, rtol=2e-2, atol=2e-2)

        task = ClassificationTask()
        head = task.build_head(backbone.feature_dim, 2, {"dropout": 0.0})
        cached = partial.compute_activations(backbone, enc, 1, cpu, 2, prep.collate)
        trainable = partial.freeze_bottom(backbone, 1)
        top = {id(p) for m in backbone.top_modules(1) for p in m.parameters()}
        assert 0 < trainable == sum(p.numel() for p in backbone.parameters() if id(p) in top)
        model = partial.PartialTrialModel(backbone, head, 1).train()
        logits = model(partial.collate_for(backbone)(cached))
        task.loss(logits, torch.arange(len(inputs)) % 2, {}).backward()
        with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
        expected = {f"head.{n}" for n, _ in head.named_parameters()} | {
            f"backbone.{n}" for n, p in backbone.named_parameters() if id(p) in top}
        assert with_grad == expected
        if blocks > 1:  # the lower blocks are frozen
            assert any(not p.requires_grad for p in backbone.parameters())
        assert set(model.state_dict()) == {f"backbone.{n}" for n in backbone.state_dict()} | {
            f"head.{n}" for n in head.state_dict()}

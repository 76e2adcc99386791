"""Reusable conformance tests for plugins (like Optuna's ``StorageTestCase``).

A plugin's test suite subclasses :class:`PluginContract`, sets ``plugin`` (the module with the
hook implementations) and implements ``tiny_backbone`` and ``sample_inputs``; pytest then runs
every contract test against that plugin::

    class TestTextContract(PluginContract):
        plugin = automl_pt_text

        def tiny_backbone(self, tmp_path):
            return str(make_tiny_bert(tmp_path / "bert"))   # a name the plugin resolves

        def sample_inputs(self, tmp_path):
            return ["a first text", "another one", "a third"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plugins import create_plugin_host


class PluginContract:
    plugin: Any = None

    # -- to implement ---------------------------------------------------------------------
    def tiny_backbone(self, tmp_path: Path) -> str:
        """A backbone name (catalog name, hub name or local path) the plugin resolves and loads
        quickly, with random weights if need be."""
        raise NotImplementedError

    def sample_inputs(self, tmp_path: Path) -> list[Any]:
        """A few raw inputs of the plugin's modality (texts, image paths, audio paths)."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------
    def host(self):
        return create_plugin_host(entry_points=False, extra=[self.plugin])

    def modality(self, host) -> str:
        mine = [t for t in host.registry.tasks.values() if t.plugin == host.pm.get_name(self.plugin)]
        assert mine, "the plugin registers no task"
        return mine[0].modality

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
            head = impl.build_head(8, 3, {"dropout": 0.0})
            logits = head(torch.randn(4, 8))
            assert logits.shape == (4, 3)
            loss = impl.loss(logits, torch.tensor([0, 1, 2, 0]), {"label_smoothing": 0.1})
            assert loss.ndim == 0 and torch.isfinite(loss)
            preds, probs = impl.predict(logits)
            assert preds.shape == (4,) and probs.shape == (4, 3)

    def test_foreign_requests_return_none(self):
        host = self.host()
        assert host.hook.automl_pt_resolve_backbone(name="no-such-scheme:xyz",
                                                    modality="no-such-modality") is None

    def test_search_space_fragment_is_valid(self):
        from .config import config_from_dict

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

    def test_backbone_encode_export_reload(self, tmp_path):
        """Features have the declared width, and an exported backbone reloads through the
        plugin as a local folder and gives the same features."""
        import torch

        host = self.host()
        modality = self.modality(host)
        name = self.tiny_backbone(tmp_path)
        info = host.registry.find_backbone(name) or host.hook.automl_pt_resolve_backbone(
            name=name, modality=modality)
        assert info is not None, f"plugin cannot resolve its own tiny backbone {name!r}"
        backbone = info.load({}).eval()
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

    def test_adapter_strategies_train_merge_and_reload(self, tmp_path):
        """``lora``, ``ia3`` and ``bitfit`` on the plugin's tiny backbone: the backbone offers
        adapter targets, each strategy trains only its own parameters and the head, a few steps
        lower the loss, and the merged backbone has no adapter keys and, exported and reloaded
        through the plugin, predicts what the adapted model predicted."""
        import torch

        from .adapters import apply_strategy
        from .model import ClassificationTask, TrialModel

        host = self.host()
        modality = self.modality(host)
        name = self.tiny_backbone(tmp_path)
        info = host.registry.find_backbone(name) or host.hook.automl_pt_resolve_backbone(
            name=name, modality=modality)
        inputs = self.sample_inputs(tmp_path)
        labels = torch.arange(len(inputs)) % 2
        for strategy in ("lora", "ia3", "bitfit"):
            torch.manual_seed(0)
            backbone = info.load({"params": {"strategy": strategy}})
            targets = backbone.peft_targets()
            assert targets.get("default") and targets.get("all") and targets.get("ia3"), (
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

    def test_partial_split_matches_encode_and_trains_only_the_top(self, tmp_path):
        """Strategy ``partial``: for every k, ``encode_top(encode_bottom(batch, k), k)`` is
        ``encode(batch)`` in eval mode, directly and through the activation cache's path
        (batches of two, zero-padded, fp16); after ``freeze_bottom`` only the top k blocks'
        parameters and the head's get gradients. A backbone without the split refuses with a
        :class:`~automl_pt.errors.BackboneError` naming it."""
        import torch

        from . import partial
        from .errors import BackboneError
        from .model import ClassificationTask

        host = self.host()
        modality = self.modality(host)
        name = self.tiny_backbone(tmp_path)
        info = host.registry.find_backbone(name) or host.hook.automl_pt_resolve_backbone(
            name=name, modality=modality)
        backbone = info.load({}).eval()
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

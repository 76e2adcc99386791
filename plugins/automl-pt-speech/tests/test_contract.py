"""The shared plugin contract, the backbone contract once per audio-encoder family (tiny random weights), and
backbone resolution (hub names, local folders, catalog, name options) without any network."""

from __future__ import annotations

import pytest

import automl_pt_speech
from automl_pt.errors import BackboneError
from automl_pt.testing import BackboneContract, PluginContract
from automl_pt_speech.testing import make_tone_tree


class TestSpeechContract(PluginContract):
    plugin = automl_pt_speech


class _SpeechBackboneContract(BackboneContract):
    plugin = automl_pt_speech
    family = ""
    catalog_checks = ()     # the catalog's Whisper is checked once, with the whisper family

    def tiny_backbone(self, tmp_path):
        from automl_pt_speech import testing

        maker = {"wav2vec2": testing.make_tiny_wav2vec2, "whisper": testing.make_tiny_whisper,
                 "ast": testing.make_tiny_ast}[self.family]
        return str(maker(tmp_path / f"tiny-{self.family}"))

    def sample_inputs(self, tmp_path):
        root = make_tone_tree(tmp_path / "clips", n_per_class=2, seed=0)
        return sorted(str(p) for p in root.rglob("*.*"))

    def input_lengths(self, batch, preprocessor):
        return batch["length"]   # clips of 0.3-1.05 s, padded to the longest


class TestWav2Vec2Contract(_SpeechBackboneContract):
    family = "wav2vec2"


class TestWhisperContract(_SpeechBackboneContract):
    family = "whisper"
    catalog_checks = BackboneContract.catalog_checks


class TestASTContract(_SpeechBackboneContract):
    family = "ast"


@pytest.mark.parametrize("hub_id", ["facebook/wav2vec2-base", "openai/whisper-tiny",
                                    "facebook/hubert-base-ls960", "microsoft/wavlm-base-plus",
                                    "MIT/ast-finetuned-audioset-10-10-0.4593"])
def test_hub_names_resolve_without_downloading(speech_host, hub_id, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("resolution must not download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    info = speech_host.hook.automl_pt_resolve_backbone(name=f"hf:{hub_id}", modality="audio")
    assert info.source == f"Hugging Face hub {hub_id}" and info.modality == "audio"
    assert speech_host.hook.automl_pt_resolve_backbone(name=f"hf:{hub_id}", modality="text") is None


def test_hub_loading_goes_through_transformers(speech_host, monkeypatch):
    """Loading a hub name hands the hub id to transformers (stubbed: no network in tests) and
    turns its failure into a clear BackboneError."""
    import transformers

    calls = []

    def offline(source, **kwargs):
        calls.append((source, kwargs.get("trust_remote_code")))
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    info = speech_host.hook.automl_pt_resolve_backbone(name="hf:facebook/wav2vec2-base",
                                                       modality="audio")
    with pytest.raises(BackboneError, match="cannot load Hugging Face hub id 'facebook/wav2vec2-base'"):
        info.load({})
    assert calls == [("facebook/wav2vec2-base", False)]     # trust_remote_code stays off


def test_local_folders_catalog_and_name_options(speech_host, tiny_models, tmp_path):
    for family, folder in tiny_models.items():
        info = speech_host.hook.automl_pt_resolve_backbone(name=str(folder), modality="audio")
        assert info.source.startswith("local "), family
    not_audio = tmp_path / "bert"
    not_audio.mkdir()
    (not_audio / "config.json").write_text('{"model_type": "bert"}')
    assert speech_host.hook.automl_pt_resolve_backbone(name=str(not_audio), modality="audio") is None
    assert speech_host.registry.find_backbone("whisper-tiny-en").parameters == 8_208_384
    assert speech_host.registry.find_backbone("whisper-tiny.en").name == "whisper-tiny-en"
    info = speech_host.hook.automl_pt_resolve_backbone(name="whisper-tiny-en?window=30",
                                                       modality="audio")
    assert info.source.endswith("?window=30")
    windowed = speech_host.hook.automl_pt_resolve_backbone(
        name=f"{tiny_models['whisper']}?window=2.5", modality="audio").load({})
    assert windowed.window == 2.5
    with pytest.raises(BackboneError, match="unknown option 'windw'"):
        speech_host.hook.automl_pt_resolve_backbone(name="whisper-tiny-en?windw=3", modality="audio")
    with pytest.raises(BackboneError, match="unknown option"):
        speech_host.hook.automl_pt_resolve_backbone(
            name=f"{tiny_models['wav2vec2']}?window=3", modality="audio").load({})
    with pytest.raises(BackboneError, match="outside"):
        speech_host.hook.automl_pt_resolve_backbone(
            name=f"{tiny_models['whisper']}?window=31", modality="audio").load({})


def test_catalog_whisper_loads_the_shipped_weights(speech_host, whisper_ct2):
    import torch

    backbone = speech_host.registry.find_backbone("whisper-tiny-en").load(
        {"params": {"pooling": "attention"}})
    assert backbone.feature_dim == 384 and backbone.window is None
    assert backbone.pool.kind == "attention"
    assert sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("pool.")) \
        == 8_208_384
    # pretrained, not random: the first conv is the converted one
    from automl_pt_speech.ct2 import read_ct2_model

    conv = read_ct2_model(whisper_ct2).variables["encoder/conv1/weight"]
    torch.testing.assert_close(backbone.encoder.conv1.weight, torch.from_numpy(conv.astype("float32")))


def test_whisper_encoder_keeps_its_dropout_free_setting(speech_host, tiny_models):
    """The trial's dropout must not reach inside the Whisper encoder (it stops pretrained Whisper
    from learning); a wav2vec2's own nn.Dropout modules do take it."""
    import torch

    whisper = speech_host.hook.automl_pt_resolve_backbone(
        name=str(tiny_models["whisper"]), modality="audio").load({})
    whisper.set_dropout(0.5)
    whisper.train()
    batch = {"audio": (torch.randn(2, 8000) * 3000).to(torch.int16), "length": torch.tensor([8000, 6000])}
    torch.testing.assert_close(whisper.encode(batch), whisper.encode(batch))
    w2v = speech_host.hook.automl_pt_resolve_backbone(
        name=str(tiny_models["wav2vec2"]), modality="audio").load({})
    w2v.set_dropout(0.5)
    assert {m.p for m in w2v.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}

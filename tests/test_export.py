"""`export_model` against the libraries its folders are written for (random weights, float32, CPU).

* format='hf': `transformers.CLIPModel.from_pretrained(folder)` loads every tensor (nothing missing or
  unexpected) and its `get_image_features` / `get_text_features` equal our `encode_image` / `encode_text`
  within 1e-5, on the same pixels and the same tokens from our `tokenize` (no attention mask), and on the
  tokens of its own `CLIPProcessor` read from the folder; QuickGELU and GELU; MiniCLIP and a small ViT.
* format='open_clip': `open_clip.create_model_and_transforms('local-dir:' + folder)` builds a model whose
  `encode_image` / `encode_text` equal ours within 1e-5 (ViT and ResNet, both activations); its tokenizer
  and its eval transform give our tokens and our pixels.
* `load(folder)` reads both formats back to identical embeddings and the same activation.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clip_annotated.model import CONFIGS, BaselineCLIP, CLIPConfig, convert_weights, create_model, uses_quick_gelu
from clip_annotated.pretrained import export_model, image_transform, load
from clip_annotated.tokenizer import tokenize

SMALL_VIT = CLIPConfig(embed_dim=64, image_resolution=32, vision_layers=3, vision_width=192, vision_patch_size=16,
                       context_length=20, vocab_size=49408, transformer_width=64, transformer_heads=1,
                       transformer_layers=2)
CONFIGS_VIT = {'MiniCLIP': CONFIGS['MiniCLIP'], 'small-vit': SMALL_VIT}
CAPTIONS = ['a photo of a cat.', 'a smiling face with sunglasses', "It's 2021: CLIP's 400M pairs!!", '',
            'Ünïcödé, 東京 🐈', 'two dogs playing in the snow']
TOL = 1e-5


def _model(cfg, quick_gelu: bool, seed: int = 0):
    "A CLIP of configuration `cfg` whose every parameter and BatchNorm statistic is moved off its initialisation."
    torch.manual_seed(seed)
    m = create_model(cfg, quick_gelu=quick_gelu)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.05 * torch.randn(p.shape, generator=g))
        for name, b in m.named_buffers():
            if name.endswith('running_mean'): b.add_(0.1 * torch.randn(b.shape, generator=g))
            if name.endswith('running_var'): b.mul_(torch.empty(b.shape).uniform_(0.5, 1.5, generator=g))
    return m.eval()


def _inputs(model, n_images: int = 3):
    res = model.visual.input_resolution
    images = torch.randn(n_images, 3, res, res, generator=torch.Generator().manual_seed(1))
    return images, tokenize(CAPTIONS, context_length=model.context_length, truncate=True)


def _features(out):
    "transformers 5 returns a model output from get_*_features, 4.x a tensor."
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _assert_close(ours, theirs, what):
    assert ours.shape == theirs.shape, f"{what}: shapes {tuple(ours.shape)} and {tuple(theirs.shape)}"
    err = (ours - theirs).abs().max().item()
    assert err < TOL, f"{what}: max abs difference {err:.2e} exceeds {TOL} (feature scale {theirs.abs().max():.2f})"


# ------------------------------------------------------------------ Hugging Face

@pytest.mark.parametrize('quick_gelu', [True, False])
@pytest.mark.parametrize('name', list(CONFIGS_VIT))
def test_hf_export_matches_transformers(tmp_path, name, quick_gelu):
    transformers = pytest.importorskip('transformers')
    model = _model(CONFIGS_VIT[name], quick_gelu)
    folder = export_model(model, tmp_path / 'hf', format='hf')
    hf, info = transformers.CLIPModel.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in ('missing_keys', 'unexpected_keys', 'mismatched_keys')), info
    hf.eval()
    assert hf.config.text_config.hidden_act == ('quick_gelu' if quick_gelu else 'gelu')
    assert hf.config.vision_config.hidden_act == hf.config.text_config.hidden_act
    images, texts = _inputs(model)
    with torch.no_grad():
        img, txt = model.encode_image(images), model.encode_text(texts)
        _assert_close(img, _features(hf.get_image_features(pixel_values=images)), f'{name} image')
        _assert_close(txt, _features(hf.get_text_features(input_ids=texts)), f'{name} text')
        mask = (torch.arange(texts.shape[1]) <= texts.argmax(-1, keepdim=True)).long()   # with an attention mask too
        _assert_close(txt, _features(hf.get_text_features(input_ids=texts, attention_mask=mask)), f'{name} text, masked')
        logits = hf(input_ids=texts, pixel_values=images).logits_per_image
        _assert_close(model(images, texts)[0] / model.logit_scale.exp(), logits / hf.logit_scale.exp(), f'{name} logits')
    # load() reads the folder back: the same activation, identical embeddings
    back, preprocess = load(folder, device='cpu')
    assert uses_quick_gelu(back) is quick_gelu and preprocess.n_px == model.visual.input_resolution
    with torch.no_grad():
        assert torch.equal(back.encode_image(images), img) and torch.equal(back.encode_text(texts), txt)


def test_hf_processor_from_the_folder(tmp_path):
    "CLIPProcessor.from_pretrained(folder): its tokens give our text features; its pixels are close to ours."
    transformers = pytest.importorskip('transformers')
    model = _model(CONFIGS['MiniCLIP'], True)
    folder = export_model(model, tmp_path / 'hf')
    hf = transformers.CLIPModel.from_pretrained(folder).eval()
    processor = transformers.CLIPProcessor.from_pretrained(folder)
    batch = processor(text=CAPTIONS, padding='max_length', max_length=model.context_length, return_tensors='pt')
    ours = tokenize(CAPTIONS, context_length=model.context_length)
    eot = ours.argmax(-1)
    for row, (a, b) in enumerate(zip(batch.input_ids, ours)):              # same ids up to [EOS]; HF pads with [EOS]
        assert a[:eot[row] + 1].tolist() == b[:eot[row] + 1].tolist(), CAPTIONS[row]
    with torch.no_grad():
        _assert_close(model.encode_text(ours), _features(hf.get_text_features(**batch)), 'text, HF tokens')
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (61, 90, 3), dtype=np.uint8))
    pixels = processor(images=picture, return_tensors='pt').pixel_values[0]
    assert pixels.shape == (3, 48, 48)
    assert (pixels - image_transform(48)(picture)).abs().mean() < 0.05     # HF's own resize: close, not identical


def test_hf_export_of_a_float16_model(tmp_path):
    "OpenAI's float16 layout exports as stored; transformers upcasts it to the same float32 weights."
    transformers = pytest.importorskip('transformers')
    model = convert_weights(_model(CONFIGS['MiniCLIP'], True))
    folder = export_model(model, tmp_path / 'hf')
    hf = transformers.CLIPModel.from_pretrained(folder)
    assert torch.equal(hf.visual_projection.weight, model.visual.proj.float().t())
    assert load(folder, device='cpu')[0].dtype == torch.float32           # on a CPU, load gives float32


def test_hf_export_refusals(tmp_path):
    rn = _model(CONFIGS['MiniCLIP-RN'], True)
    with pytest.raises(ValueError, match="'MiniCLIP-RN' is a ResNet CLIP.*format='open_clip'"):
        export_model(rn, tmp_path / 'rn', format='hf')
    with pytest.raises(ValueError, match="format must be 'hf' or 'open_clip'"):
        export_model(rn, tmp_path / 'rn', format='onnx')
    with pytest.raises(TypeError, match='BaselineCLIP'):
        export_model(BaselineCLIP(), tmp_path / 'base')
    with pytest.raises(FileNotFoundError, match='neither a released model'):
        export_model(tmp_path / 'nothing-here', tmp_path / 'out')


# ------------------------------------------------------------------ open_clip

@pytest.mark.parametrize('quick_gelu', [True, False])
@pytest.mark.parametrize('name', ['MiniCLIP', 'small-vit', 'MiniCLIP-RN'])
def test_open_clip_export_matches_open_clip(tmp_path, name, quick_gelu):
    open_clip = pytest.importorskip('open_clip')
    model = _model({**CONFIGS_VIT, 'MiniCLIP-RN': CONFIGS['MiniCLIP-RN']}[name], quick_gelu)
    folder = export_model(model, tmp_path / 'oc', format='open_clip')
    assert json.loads((folder / 'open_clip_config.json').read_text())['model_cfg']['quick_gelu'] is quick_gelu
    oc, _, oc_preprocess = open_clip.create_model_and_transforms('local-dir:' + str(folder))
    oc.eval()
    assert type(oc.transformer.resblocks[0].mlp.gelu).__name__ == ('QuickGELU' if quick_gelu else 'GELU')
    images, texts = _inputs(model)
    with torch.no_grad():
        img, txt = model.encode_image(images), model.encode_text(texts)
        _assert_close(img, oc.encode_image(images), f'{name} image')
        _assert_close(txt, oc.encode_text(texts), f'{name} text')
        _assert_close(model.encode_text(texts, normalize=True), oc.encode_text(texts, normalize=True), f'{name} text, normalised')
    assert torch.equal(open_clip.get_tokenizer('local-dir:' + str(folder))(CAPTIONS[:4]),
                       tokenize(CAPTIONS[:4], context_length=model.context_length))
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (61, 90, 3), dtype=np.uint8))
    n = model.visual.input_resolution
    assert torch.equal(oc_preprocess(picture), image_transform(n)(picture))
    back, preprocess = load(folder, device='cpu')
    assert uses_quick_gelu(back) is quick_gelu and preprocess.n_px == n
    with torch.no_grad():
        assert torch.equal(back.encode_image(images), img) and torch.equal(back.encode_text(texts), txt)


def test_export_from_a_source_and_both_formats_in_one_folder(tmp_path):
    "A checkpoint path exports like the model; one folder can hold both formats, each library reads its own."
    transformers = pytest.importorskip('transformers')
    open_clip = pytest.importorskip('open_clip')
    model = _model(CONFIGS['MiniCLIP'], False)
    torch.save({'model': model.state_dict(), 'quick_gelu': False}, tmp_path / 'checkpoint.pt')
    folder = tmp_path / 'both'
    export_model(tmp_path / 'checkpoint.pt', folder, format='hf')
    export_model(tmp_path / 'checkpoint.pt', folder, format='open_clip')
    images, texts = _inputs(model)
    hf = transformers.CLIPModel.from_pretrained(folder).eval()
    oc = open_clip.create_model('local-dir:' + str(folder)).eval()
    back, _ = load(folder, device='cpu')                                   # config.json first: Hugging Face's
    with torch.no_grad():
        want = model.encode_text(texts)
        _assert_close(want, _features(hf.get_text_features(input_ids=texts)), 'HF text')
        _assert_close(want, oc.encode_text(texts), 'open_clip text')
        assert torch.equal(back.encode_text(texts), want) and not uses_quick_gelu(back)

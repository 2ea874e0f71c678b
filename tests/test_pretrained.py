"""`clip_annotated.pretrained` and the checkpoint readers under it (`clip_annotated.checkpoints`) against the reference implementations, and its safety promises.

* Hugging Face: a random `transformers.CLIPModel` saved with `save_pretrained` loads through `load(dir)`
  and gives HF's image and text features (QuickGELU and GELU configs); bad configs are refused.
* open_clip: state dicts of its CLIP (ViT and ResNet), plain and as training checkpoints, load and match.
* TorchScript: an archive of our model is read without `torch.jit.load`; `jit=True` goes through it.
* open_clip's names (`ViT-B-32`, `-quickgelu`): exactly open_clip's list of OpenAI's models, open_clip's parameter
  shapes and preprocessing settings, and `pretrained='openai'` reading the released file in either spelling.
* download: real HTTP on the loopback interface (good file, cache, wrong hash, cut transfer, refused port).
* safety: a pickled payload is refused, and never runs, through every reader a user can reach.
* preprocessing equals open_clip's OpenAI transform pixel for pixel.
* the API around `load`: dtype=torch.bfloat16, the activation a checkpoint or an open_clip folder records,
  `get_tokenizer`, `encode_text` on rows longer than the context, `create_model_and_transforms`, and
  `TrainTransform`'s separate random streams in DataLoader workers.
"""
from __future__ import annotations

import builtins, hashlib, http.server, json, os, pickle, shutil, socket, threading, warnings, zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clip_annotated import pretrained
from clip_annotated.pretrained import (MODEL_URLS, available_models, create_model_and_transforms, get_tokenizer,
                                       image_transform, load, released_name)
from clip_annotated.checkpoints import (CheckpointError, DownloadError, UnsafeCheckpointError, download, hf_to_openai,
                                        read_hf_directory, read_safetensors, sha_from_url)
from clip_annotated.torchscript import checkpoint_format, read_checkpoint, read_torchscript_weights, save_traced
from clip_annotated.model import (CONFIGS, OPEN_CLIP_NAMES, BaselineCLIP, build_model, config_from_state_dict, config_name,
                                  convert_weights, create_model, uses_quick_gelu)
from clip_annotated.tokenizer import tokenize

pytestmark = [pytest.mark.filterwarnings('ignore:`torch.jit.load` is deprecated:FutureWarning'),
              pytest.mark.filterwarnings('ignore:`torch.jit.script` is deprecated:FutureWarning')]

CAPTIONS = ['a photo of a temple', 'a diagram', 'two dogs playing in the snow on a sunny winter morning', 'x']


def _assert_same(ours, theirs, what, tol=1e-5):
    "Features scaled by the oracle's norm must agree to `tol`, and so must the normalised features."
    err = ((ours - theirs) / theirs.norm(dim=-1, keepdim=True)).abs().max().item()
    assert err < tol, f"{what}: max difference {err:.2e} (unit scale) exceeds {tol}"
    err_n = (F.normalize(ours, dim=-1) - F.normalize(theirs, dim=-1)).abs().max().item()
    assert err_n < tol, f"{what}: normalised features differ by {err_n:.2e}"


def _perturb(model, seed=0, scale=0.05):
    "Move every parameter (and BatchNorm statistic) away from its initialisation."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(scale * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'): b.add_(0.1 * torch.randn(b.shape, generator=g))
            if name.endswith('running_var'): b.mul_(torch.empty(b.shape).uniform_(0.5, 1.5, generator=g))
    return model.eval()


# ------------------------------------------------------------------ released models

def test_model_urls_are_open_clips():
    open_clip = pytest.importorskip('open_clip')
    oc_names = {'ViT-B/32': 'ViT-B-32', 'ViT-B/16': 'ViT-B-16', 'ViT-L/14': 'ViT-L-14', 'ViT-L/14@336px': 'ViT-L-14-336'}
    assert available_models() == ['RN50', 'RN101', 'RN50x4', 'RN50x16', 'RN50x64',
                                  'ViT-B/32', 'ViT-B/16', 'ViT-L/14', 'ViT-L/14@336px']
    for name, url in MODEL_URLS.items():
        assert url == open_clip.pretrained.get_pretrained_url(oc_names.get(name, name), 'openai'), name
        assert name in CONFIGS
        assert sha_from_url(url) == url.split('/')[-2]


# ------------------------------------------------------------------ open_clip's names of the released models

RELEASED = [n for n in CONFIGS if not n.startswith('MiniCLIP')]


def test_open_clip_names_are_open_clips_openai_models():
    "OPEN_CLIP_NAMES holds exactly open_clip's names of OpenAI's weights (each also with -quickgelu), one per released model."
    open_clip = pytest.importorskip('open_clip')
    theirs = {name for name, tag in open_clip.list_pretrained() if tag == 'openai'}
    assert theirs == set(OPEN_CLIP_NAMES) | {f'{n}-quickgelu' for n in OPEN_CLIP_NAMES}
    assert sorted(OPEN_CLIP_NAMES.values()) == sorted(RELEASED)
    for oc_name, ours in OPEN_CLIP_NAMES.items():
        assert open_clip.pretrained.get_pretrained_url(oc_name, 'openai') == MODEL_URLS[ours], oc_name
        assert config_name(oc_name) == config_name(f'{oc_name}-quickgelu') == ours and released_name(oc_name) == ours


@pytest.mark.parametrize('oc_name', list(OPEN_CLIP_NAMES))
def test_open_clip_names_build_open_clips_architecture(oc_name):
    "create_model(open_clip's name): CONFIGS of our name, and the parameter names and shapes of open_clip.create_model."
    open_clip = pytest.importorskip('open_clip')
    with torch.device('meta'):                                           # shapes only, no memory
        ours = create_model(oc_name)
        theirs = open_clip.create_model(oc_name, pretrained=None, device='meta')
    assert config_from_state_dict(ours.state_dict()) == CONFIGS[OPEN_CLIP_NAMES[oc_name]]
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize('oc_name', list(OPEN_CLIP_NAMES))
def test_open_clip_openai_preprocessing_is_ours(oc_name):
    "open_clip's preprocessing for the openai tag is OpenAI's transform (ours) at the resolution our transforms use."
    open_clip = pytest.importorskip('open_clip')
    cfg = open_clip.get_pretrained_cfg(oc_name, 'openai')
    assert (cfg['mean'], cfg['std'], cfg['interpolation'], cfg['resize_mode']) == \
        (pretrained.OPENAI_MEAN, pretrained.OPENAI_STD, 'bicubic', 'shortest') and cfg['quick_gelu']
    n_px = open_clip.get_model_config(oc_name)['vision_cfg']['image_size']
    with torch.device('meta'): model, train_tf, eval_tf = create_model_and_transforms(oc_name, device='meta')
    assert train_tf.n_px == eval_tf.n_px == n_px == CONFIGS[OPEN_CLIP_NAMES[oc_name]].image_resolution


def _stand_in(tmp_path, name='ViT-B/32'):
    "A small checkpoint in a cache folder under `name`'s file name, and MODEL_URLS patched to carry its SHA256."
    model = _perturb(create_model('MiniCLIP'), scale=0.02)
    cache = tmp_path / 'cache'; cache.mkdir()
    file = MODEL_URLS[name].rsplit('/', 1)[-1]
    torch.save(model.state_dict(), cache / file)
    url = f"https://example.invalid/clip/models/{hashlib.sha256((cache / file).read_bytes()).hexdigest()}/{file}"
    return model, cache, mock.patch.dict(pretrained.MODEL_URLS, {name: url})


def test_open_clip_names_and_openai_tag_read_the_released_file(tmp_path, monkeypatch):
    "Either spelling, with pretrained='openai' or through load, reads the one released file (from the cache, no request)."
    model, cache, urls = _stand_in(tmp_path)
    monkeypatch.setenv('CLIP_ANNOTATED_CACHE', str(cache))
    with urls, mock.patch('urllib.request.urlopen', side_effect=AssertionError('no request expected')):
        for name in ('ViT-B/32', 'ViT-B-32', 'ViT-B-32-quickgelu'):
            with pytest.warns(UserWarning, match=f'is not a {name}: .*the model follows the checkpoint'):
                loaded, train_tf, eval_tf = create_model_and_transforms(name, pretrained='openai', device='cpu')
            assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items()), name
            assert uses_quick_gelu(loaded) and not loaded.training and train_tf.n_px == eval_tf.n_px == 48
        loaded, preprocess = load('ViT-B-32', device='cpu')
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items()) and preprocess.n_px == 48
        again, _ = load('ViT-B-32', device='cpu', download_root=cache)
        assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_open_clip_name_with_a_local_pretrained_file(tmp_path):
    "pretrained= a local file, with open_clip's name: the file's weights; the names agree on the architecture they check."
    mini = _perturb(create_model('MiniCLIP'), scale=0.02)
    torch.save(mini.state_dict(), tmp_path / 'mini.pt')
    with pytest.warns(UserWarning, match='is not a RN50x4: it has embed_dim 128 \\(not 640\\)'):
        model, _, eval_tf = create_model_and_transforms('RN50x4', pretrained=tmp_path / 'mini.pt', device='cpu')
    assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items()) and eval_tf.n_px == 48
    with torch.device('meta'): b32 = create_model('ViT-B/32')            # shapes only: what a ViT-B/32 file gives
    with mock.patch.object(pretrained, 'load', side_effect=lambda source, **kw: (b32, None)) as fake, \
         warnings.catch_warnings():
        warnings.simplefilter('error')                                    # no "is not a ..." warning for either spelling
        for name in ('ViT-B-32', 'ViT-B/32', 'ViT-B-32-quickgelu'):
            _, _, eval_tf = create_model_and_transforms(name, pretrained=tmp_path / 'b32.pt', device='cpu')
            assert eval_tf.n_px == 224 and fake.call_args[0][0] == tmp_path / 'b32.pt'


def test_openai_tag_needs_a_released_name(tmp_path):
    with pytest.raises(ValueError, match=r"pretrained='openai' needs one of OpenAI's models.*ViT-B-32.*not 'MiniCLIP'"):
        create_model_and_transforms('MiniCLIP', pretrained='openai')
    with pytest.raises(ValueError, match=r"pretrained='openai' needs .*not None"):
        create_model_and_transforms(None, pretrained='openai')
    with pytest.raises(KeyError, match="unknown configuration 'ViT-B-31'"):      # refused before any download
        with mock.patch('urllib.request.urlopen', side_effect=AssertionError('no request expected')):
            create_model_and_transforms('ViT-B-31', pretrained='openai')


def test_unknown_names_list_both_spellings(tmp_path):
    for call in (lambda: create_model('ViT-B-31'), lambda: load('ViT-B-31'), lambda: get_tokenizer('ViT-B-31'),
                 lambda: create_model_and_transforms('ViT-B-31')):
        with pytest.raises((KeyError, FileNotFoundError)) as e: call()
        msg = str(e.value)
        assert 'ViT-B-31' in msg and 'ViT-L/14@336px' in msg and 'ViT-L-14-336' in msg and "open_clip's spelling" in msg, msg
        assert '\n' not in msg


# ------------------------------------------------------------------ Hugging Face

def _hf_model(hidden_act='quick_gelu', seed=0):
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(seed)
    tower = dict(hidden_size=128, intermediate_size=512, num_attention_heads=2, num_hidden_layers=2, hidden_act=hidden_act)
    cfg = transformers.CLIPConfig(text_config=dict(tower, max_position_embeddings=77, vocab_size=49408),
                                  vision_config=dict(tower, patch_size=8, image_size=32), projection_dim=64)
    return _perturb(transformers.CLIPModel(cfg), seed)


def _features(out):
    "transformers 5 returns a model output from get_*_features, 4.x a tensor."
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.mark.parametrize('hidden_act', ['quick_gelu', 'gelu'])
def test_huggingface_directory_matches_transformers(tmp_path, hidden_act):
    hf = _hf_model(hidden_act)
    hf.save_pretrained(tmp_path / 'hf')
    assert (tmp_path / 'hf' / 'model.safetensors').is_file()
    model, preprocess = load(tmp_path / 'hf', device='cpu')
    assert preprocess.n_px == 32
    blocks = [b.mlp.gelu for b in model.transformer.resblocks] + [b.mlp.gelu for b in model.visual.transformer.resblocks]
    assert all(type(g).__name__ == ('QuickGELU' if hidden_act == 'quick_gelu' else 'GELU') for g in blocks)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    texts = tokenize(CAPTIONS)
    with torch.no_grad():
        _assert_same(model.encode_image(images), _features(hf.get_image_features(pixel_values=images)), 'image')
        _assert_same(model.encode_text(texts), _features(hf.get_text_features(input_ids=texts)), 'text')
        ours = model(images, texts)[0]
        theirs = hf(input_ids=texts, pixel_values=images).logits_per_image
    assert (ours - theirs).abs().max().item() / hf.logit_scale.exp().item() < 1e-5
    # the activation can be overruled, and then the features differ
    other, _ = load(tmp_path / 'hf', device='cpu', quick_gelu=hidden_act != 'quick_gelu')
    with torch.no_grad(): assert not torch.allclose(other.encode_text(texts), model.encode_text(texts), atol=1e-6)


def test_huggingface_bin_weights_and_mapping(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / 'hf')
    sd_st, quick = read_hf_directory(tmp_path / 'hf')
    assert quick is True
    # the same weights as pytorch_model.bin (older transformers), read with weights_only=True
    (tmp_path / 'bin').mkdir()
    shutil.copy(tmp_path / 'hf' / 'config.json', tmp_path / 'bin' / 'config.json')
    torch.save(hf.state_dict(), tmp_path / 'bin' / 'pytorch_model.bin')
    sd_bin, _ = read_hf_directory(tmp_path / 'bin')
    assert sorted(sd_bin) == sorted(sd_st) and all(torch.equal(sd_bin[k], sd_st[k]) for k in sd_st)
    assert sorted(sd_st) == sorted(create_model(config_from_state_dict(sd_st)).state_dict())
    with pytest.raises(CheckpointError, match='unknown keys'):
        hf_to_openai({'vision_model.something_else.weight': torch.zeros(1)})


def _with_config(tmp_path, src, change):
    dst = tmp_path / 'changed'
    shutil.copytree(src, dst)
    cfg = json.loads((dst / 'config.json').read_text())
    change(cfg)
    (dst / 'config.json').write_text(json.dumps(cfg))
    return dst


def test_huggingface_refusals(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / 'hf')
    bad = _with_config(tmp_path, tmp_path / 'hf', lambda c: c['vision_config'].update(num_attention_heads=4))
    with pytest.raises(CheckpointError, match='heads of size 32'): load(bad, device='cpu')
    shutil.rmtree(bad)
    bad = _with_config(tmp_path, tmp_path / 'hf', lambda c: c.update(model_type='siglip'))
    with pytest.raises(CheckpointError, match="model_type 'siglip'"): load(bad, device='cpu')
    shutil.rmtree(bad)
    bad = _with_config(tmp_path, tmp_path / 'hf', lambda c: c['text_config'].update(hidden_act='gelu_new'))
    with pytest.raises(CheckpointError, match='gelu_new'): load(bad, device='cpu')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CheckpointError, match='without config.json'): load(tmp_path / 'empty', device='cpu')


# ------------------------------------------------------------------ open_clip

TEXT = dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2)
OPEN_CLIP = {
    'vit': dict(embed_dim=64, vision_cfg=dict(image_size=32, layers=2, width=128, patch_size=8), text_cfg=TEXT),
    'resnet': dict(embed_dim=64, vision_cfg=dict(image_size=64, layers=(1, 2, 1, 1), width=32), text_cfg=TEXT),
}


def _open_clip_model(kind, quick_gelu=True):
    open_clip = pytest.importorskip('open_clip')
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    c = OPEN_CLIP[kind]
    torch.manual_seed(0)
    m = open_clip.model.CLIP(c['embed_dim'], vision_cfg=CLIPVisionCfg(**c['vision_cfg']),
                             text_cfg=CLIPTextCfg(**c['text_cfg']), quick_gelu=quick_gelu)
    return _perturb(m)


@pytest.mark.parametrize('kind', ['vit', 'resnet'])
def test_open_clip_state_dict_matches(tmp_path, kind):
    oc = _open_clip_model(kind)
    res = OPEN_CLIP[kind]['vision_cfg']['image_size']
    images, texts = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(3)), tokenize(CAPTIONS)
    with torch.no_grad(): img_oc, txt_oc = oc.encode_image(images), oc.encode_text(texts)
    torch.save(oc.state_dict(), tmp_path / 'plain.pt')
    torch.save({'epoch': 7, 'name': 'run', 'state_dict': {f'module.{k}': v for k, v in oc.state_dict().items()},
                'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-3, 'params': [0, 1]}]}}, tmp_path / 'train.pt')
    for f in ('plain.pt', 'train.pt'):
        model, preprocess = load(tmp_path / f, device='cpu')
        assert preprocess.n_px == res
        with torch.no_grad():
            _assert_same(model.encode_image(images), img_oc, f'{kind} {f} image')
            _assert_same(model.encode_text(texts), txt_oc, f'{kind} {f} text')


def test_open_clip_gelu_needs_quick_gelu_false(tmp_path):
    oc = _open_clip_model('vit', quick_gelu=False)
    torch.save(oc.state_dict(), tmp_path / 'gelu.pt')
    texts = tokenize(CAPTIONS)
    with torch.no_grad(): txt_oc = oc.encode_text(texts)
    right, _ = load(tmp_path / 'gelu.pt', device='cpu', quick_gelu=False)
    wrong, _ = load(tmp_path / 'gelu.pt', device='cpu')                  # a plain state dict defaults to QuickGELU
    with torch.no_grad():
        _assert_same(right.encode_text(texts), txt_oc, 'GELU model loaded with quick_gelu=False')
        assert not torch.allclose(wrong.encode_text(texts), txt_oc, atol=1e-5)


def test_not_a_standard_clip_is_refused(tmp_path):
    torch.save({'text.transformer.weight': torch.zeros(2), 'visual.proj': torch.zeros(2, 2)}, tmp_path / 'custom.pt')
    with pytest.raises(CheckpointError, match='CustomTextCLIP'): load(tmp_path / 'custom.pt', device='cpu')
    torch.save({'fc.weight': torch.zeros(2, 2)}, tmp_path / 'other.pt')
    with pytest.raises(CheckpointError, match='other.pt'): load(tmp_path / 'other.pt', device='cpu')
    torch.save([1, 2, 3], tmp_path / 'list.pt')
    with pytest.raises(CheckpointError, match='list.pt'): load(tmp_path / 'list.pt', device='cpu')
    with pytest.raises(FileNotFoundError, match='neither a released model'): load(tmp_path / 'missing.pt')


# ------------------------------------------------------------------ TorchScript archives

def _traced_archive(path, name='MiniCLIP', half=False):
    "Trace our model as OpenAI traced theirs (forward, encode_image, encode_text) and save the archive."
    model = _perturb(create_model(name), scale=0.02)
    res, ctx = CONFIGS[name].image_resolution, CONFIGS[name].context_length
    images, texts = torch.randn(2, 3, res, res), tokenize(CAPTIONS[:2], context_length=ctx)
    save_traced(model, path, images, texts, half=half)
    return model, images, texts


@pytest.mark.parametrize('name', ['MiniCLIP', 'MiniCLIP-RN'])
def test_torchscript_archive_read_without_running_it(tmp_path, name):
    model, images, texts = _traced_archive(tmp_path / 'a.pt', name)
    assert checkpoint_format(tmp_path / 'a.pt') == 'torchscript'
    with mock.patch('torch.jit.load', side_effect=AssertionError('torch.jit.load must not be called')):
        sd = read_torchscript_weights(tmp_path / 'a.pt')
        loaded, preprocess = load(tmp_path / 'a.pt', device='cpu')
    reference = torch.jit.load(str(tmp_path / 'a.pt')).state_dict()    # what clip.load(jit=False) would build from
    assert list(sd) == list(reference)
    assert all(torch.equal(sd[k], reference[k]) and sd[k].dtype == reference[k].dtype for k in reference)
    assert preprocess.n_px == CONFIGS[name].image_resolution
    with torch.no_grad():
        _assert_same(loaded.encode_image(images), model.encode_image(images), 'image', tol=1e-6)
        _assert_same(loaded.encode_text(texts), model.encode_text(texts), 'text', tol=1e-6)


class _Scripted(torch.nn.Module):
    "A scripted module with typed list and dict attributes, which TorchScript pickles with torch.jit._pickle helpers."
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer('scale', torch.tensor([2.0]))
        self.sizes, self.ratios, self.names = [1, 2], [0.5], {'a': 1}   # types inferred from the values

    def forward(self, x):
        return self.lin(x) * self.scale * self.sizes[0] * self.ratios[0] * self.names['a']


def test_scripted_archive_with_typed_attributes(tmp_path):
    m = torch.jit.script(_Scripted())
    m.save(str(tmp_path / 's.pt'))
    with zipfile.ZipFile(tmp_path / 's.pt') as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith('/data.pkl')))
    assert b'build_intlist' in data                                        # the helpers really are there
    sd = read_torchscript_weights(tmp_path / 's.pt')
    assert list(sd) == list(m.state_dict()) and all(torch.equal(sd[k], v) for k, v in m.state_dict().items())


def test_torchscript_fp16_archive_and_jit_true(tmp_path):
    model, images, texts = _traced_archive(tmp_path / 'half.pt', half=True)
    sd = read_torchscript_weights(tmp_path / 'half.pt')
    assert sd['visual.conv1.weight'].dtype == torch.float16
    loaded, _ = load(tmp_path / 'half.pt', device='cpu')                # CPU: float32, like clip.load
    assert loaded.dtype == torch.float32 and loaded.visual.conv1.weight.dtype == torch.float32
    half, _ = load(tmp_path / 'half.pt', device='cpu', dtype=torch.float16)
    assert half.visual.conv1.weight.dtype == torch.float16 and half.ln_final.weight.dtype == torch.float32
    assert load(tmp_path / 'half.pt', device='cpu', dtype=torch.bfloat16)[0].ln_final.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match='bfloat16'): load(tmp_path / 'half.pt', device='cpu', dtype=torch.float64)
    expected = build_model({k: v.float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        expected.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})   # fp16-rounded
        _assert_same(loaded.encode_image(images), expected.encode_image(images), 'fp16 archive', tol=1e-6)
    # jit=True: the one path that runs TorchScript, through torch.jit.load
    _traced_archive(tmp_path / 'full.pt')
    real_load = torch.jit.load
    with mock.patch('torch.jit.load', side_effect=real_load) as spy:
        jitted, preprocess = load(tmp_path / 'full.pt', device='cpu', jit=True)
    assert spy.call_count == 1 and isinstance(jitted, torch.jit.ScriptModule) and preprocess.n_px == 48
    # jit=True on a plain state dict falls back to the safe path, with a warning (as clip.load does)
    torch.save(model.state_dict(), tmp_path / 'plain.pt')
    with pytest.warns(UserWarning, match='not a TorchScript archive'):
        plain, _ = load(tmp_path / 'plain.pt', device='cpu', jit=True)
    assert not isinstance(plain, torch.jit.ScriptModule)


# ------------------------------------------------------------------ download over loopback HTTP

class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    requests: list

    def do_GET(self):
        self.requests.append(self.path)
        name = self.path.rsplit('/', 1)[-1]
        if name == 'short.pt':                       # promises more bytes than it sends, then hangs up
            body = (self.root / 'good.pt').read_bytes()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body) + 4096))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
            return
        f = self.root / name
        if not f.is_file():
            self.send_error(404); return
        body = f.read_bytes()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args): pass


@pytest.fixture
def server(tmp_path, request):
    files = tmp_path / 'served'
    files.mkdir()
    handler = type('Handler', (_Handler,), {'root': files, 'requests': []})
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown(); httpd.server_close(); thread.join(timeout=5)
    request.addfinalizer(stop)
    return f'http://127.0.0.1:{httpd.server_address[1]}', files, handler.requests


def _nothing_left(root: Path):
    assert not root.exists() or list(root.iterdir()) == [], f"left behind: {list(root.iterdir())}"


def test_download_good_file_then_cache(server, tmp_path):
    base, files, requests = server
    body = os.urandom(300_000)
    (files / 'good.pt').write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    root = tmp_path / 'cache'
    path = download(f'{base}/{sha}/good.pt', root, progress=False)
    assert Path(path) == root / 'good.pt' and Path(path).read_bytes() == body
    assert len(requests) == 1
    assert download(f'{base}/{sha}/good.pt', root, progress=False) == path
    assert len(requests) == 1, 'a good cached file must be reused without a request'
    assert sorted(p.name for p in root.iterdir()) == ['good.pt']             # no temporary files
    # a corrupted cached file is replaced by a fresh download
    Path(path).write_bytes(b'corrupt')
    with pytest.warns(UserWarning, match='does not have SHA256'):
        download(f'{base}/{sha}/good.pt', root, progress=False)
    assert Path(path).read_bytes() == body and len(requests) == 2
    # sha256= overrides the URL layout
    (files / 'plain.bin').write_bytes(body)
    assert Path(download(f'{base}/files/plain.bin', root, sha256=sha, progress=False)).read_bytes() == body
    with pytest.raises(ValueError, match='no SHA256'): download(f'{base}/files/plain.bin', root)


def test_download_wrong_hash(server, tmp_path):
    base, files, _ = server
    (files / 'good.pt').write_bytes(b'x' * 1000)
    url = f'{base}/{"ab" * 32}/good.pt'
    with pytest.raises(DownloadError) as e: download(url, tmp_path / 'cache', progress=False)
    assert url in str(e.value) and 'SHA256' in str(e.value)
    _nothing_left(tmp_path / 'cache')


def test_download_truncated(server, tmp_path):
    base, files, _ = server
    body = b'y' * 100_000
    (files / 'good.pt').write_bytes(body)
    url = f'{base}/{hashlib.sha256(body).hexdigest()}/short.pt'
    with pytest.raises(DownloadError) as e: download(url, tmp_path / 'cache', progress=False)
    assert url in str(e.value)
    _nothing_left(tmp_path / 'cache')


def test_download_not_found_and_refused(server, tmp_path):
    base, _, _ = server
    sha = 'cd' * 32
    url = f'{base}/{sha}/missing.pt'
    with pytest.raises(DownloadError, match='404') as e: download(url, tmp_path / 'cache', progress=False)
    assert url in str(e.value)
    _nothing_left(tmp_path / 'cache')
    with socket.socket() as s:                                            # a port nobody listens on
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}/{sha}/RN50.pt'
    with pytest.raises(DownloadError) as e: download(url, tmp_path / 'cache', progress=False)
    msg = str(e.value)
    assert url in msg and str(tmp_path / 'cache' / 'RN50.pt') in msg and sha in msg and 'place it at' in msg
    _nothing_left(tmp_path / 'cache')


def test_load_released_name_uses_the_cache_offline(tmp_path):
    "A released name whose file is already in download_root loads without a request (the hash is checked)."
    model = _perturb(create_model('MiniCLIP'))
    torch.save(model.state_dict(), tmp_path / 'ckpt.pt')
    sha = hashlib.sha256((tmp_path / 'ckpt.pt').read_bytes()).hexdigest()
    root = tmp_path / 'root'; root.mkdir()
    shutil.copy(tmp_path / 'ckpt.pt', root / 'Mini.pt')
    with mock.patch.dict(pretrained.MODEL_URLS, {'Mini': f'https://example.invalid/clip/{sha}/Mini.pt'}), \
         mock.patch('urllib.request.urlopen', side_effect=AssertionError('no request expected')):
        loaded, _ = load('Mini', device='cpu', download_root=root)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------ safety: payloads never run

class Payload:
    "Unpickling this calls open(marker, 'w'), which creates the marker file: harmless, and visible."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (builtins.open, (self.marker, 'w'))


def _torchscript_looking(path, data_pkl: bytes, constants=True):
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', data_pkl)
        if constants: zf.writestr('archive/constants.pkl', pickle.dumps((), protocol=2))
        zf.writestr('archive/code/__torch__/model.py', 'class CLIP(Module):\n  __parameters__ = []\n  __buffers__ = []\n')
        zf.writestr('archive/version', '3\n')


def test_payload_is_live(tmp_path):
    "The payload really does run when unpickled the unsafe way (so the refusals below mean something)."
    marker = tmp_path / 'ran'
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


def test_payloads_are_refused_everywhere(tmp_path):
    marker = tmp_path / 'ran'
    sd = {'visual.proj': torch.zeros(2, 2), 'evil': Payload(marker)}
    files = {}
    torch.save(sd, tmp_path / 'zip.pt'); files['zip'] = tmp_path / 'zip.pt'
    torch.save(sd, tmp_path / 'legacy.pt', _use_new_zipfile_serialization=False); files['legacy'] = tmp_path / 'legacy.pt'
    (tmp_path / 'raw.pt').write_bytes(pickle.dumps(sd, protocol=2)); files['raw'] = tmp_path / 'raw.pt'
    torch.save({'state_dict': sd}, tmp_path / 'wrapped.pt'); files['wrapped'] = tmp_path / 'wrapped.pt'
    _torchscript_looking(tmp_path / 'ts.pt', pickle.dumps(Payload(marker), protocol=2)); files['ts'] = tmp_path / 'ts.pt'
    _torchscript_looking(tmp_path / 'ts_nested.pt', pickle.dumps({'a': [1, {'b': Payload(marker)}]}, protocol=2))
    files['ts_nested'] = tmp_path / 'ts_nested.pt'
    _torchscript_looking(tmp_path / 'zip_only.pt', pickle.dumps(Payload(marker), protocol=2), constants=False)
    files['zip_only'] = tmp_path / 'zip_only.pt'
    hf = tmp_path / 'hf'; hf.mkdir()
    (hf / 'config.json').write_text(json.dumps({'model_type': 'clip', 'text_config': {'hidden_size': 128,
        'num_attention_heads': 2, 'intermediate_size': 512}, 'vision_config': {'hidden_size': 128,
        'num_attention_heads': 2, 'intermediate_size': 512}}))
    torch.save(sd, hf / 'pytorch_model.bin')

    no_jit = mock.patch('torch.jit.load', side_effect=AssertionError('torch.jit.load must not be reached'))
    for kind, f in files.items():
        readers = [lambda: load(f, device='cpu'), lambda: load(f, device='cpu', jit=True), lambda: read_checkpoint(f)]
        if kind.startswith('ts'): readers.append(lambda: read_torchscript_weights(f))
        for read in readers:
            with no_jit, pytest.raises(UnsafeCheckpointError) as e: read()
            assert f.name in str(e.value), f"{kind}: the error must name the file: {e.value}"
            assert not marker.exists(), f"{kind}: the payload ran"
    for read in (lambda: load(hf, device='cpu'), lambda: read_hf_directory(hf)):
        with no_jit, pytest.raises(UnsafeCheckpointError, match='pytorch_model.bin'): read()
        assert not marker.exists()


def test_malformed_files_are_refused_clearly(tmp_path):
    (tmp_path / 'junk.pt').write_bytes(b'\x00' * 100)
    with pytest.raises(CheckpointError, match='junk.pt'): read_checkpoint(tmp_path / 'junk.pt')
    (tmp_path / 'bad.safetensors').write_bytes((20).to_bytes(8, 'little') + b'{"a": not json here}')
    with pytest.raises(CheckpointError, match='bad.safetensors'): read_checkpoint(tmp_path / 'bad.safetensors')
    with zipfile.ZipFile(tmp_path / 'other.zip', 'w') as zf: zf.writestr('readme.txt', 'hello')
    with pytest.raises(CheckpointError, match='other.zip'): read_checkpoint(tmp_path / 'other.zip')
    # a storage view reaching past its storage is refused, not read out of bounds
    model, _, _ = _traced_archive(tmp_path / 'a.pt')
    with zipfile.ZipFile(tmp_path / 'a.pt') as src, zipfile.ZipFile(tmp_path / 'cut.pt', 'w') as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:8] if item.filename.endswith('/data/0') else data)
    with pytest.raises((CheckpointError, RuntimeError)): read_torchscript_weights(tmp_path / 'cut.pt')


def test_safetensors_reader_matches_library(tmp_path):
    st = pytest.importorskip('safetensors.torch')
    tensors = {'f32': torch.randn(3, 5), 'f16': torch.randn(4).half(), 'bf16': torch.randn(2, 2).bfloat16(),
               'i64': torch.arange(7), 'u8': torch.randint(0, 255, (3,), dtype=torch.uint8),
               'b': torch.tensor([True, False]), 'scalar': torch.tensor(2.5), 'empty': torch.zeros(0, 4)}
    st.save_file(tensors, tmp_path / 't.safetensors', metadata={'format': 'pt'})
    ours, theirs = read_safetensors(tmp_path / 't.safetensors'), st.load_file(tmp_path / 't.safetensors')
    assert sorted(ours) == sorted(theirs)
    for k in theirs: assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k
    assert checkpoint_format(tmp_path / 't.safetensors') == 'safetensors'


# ------------------------------------------------------------------ preprocessing

SIZES = [(1, 1), (3, 1000), (1000, 3), (225, 223), (640, 480)]
MODES = ['1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA', 'RGBa', 'RGBX', 'CMYK', 'YCbCr', 'LAB', 'HSV',
         'I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N']


def _image(size, mode, seed=0):
    "A random picture of `size` in `mode`; 16-bit modes use their full range, as real 16-bit pictures do."
    w, h = size
    rng = np.random.default_rng(seed)
    if mode.startswith('I;16'):
        a = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        dtype = {'I;16B': '>u2', 'I;16N': '=u2'}.get(mode, '<u2')
        return Image.frombytes(mode, (w, h), a.astype(dtype).tobytes())
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


@pytest.fixture(scope='module')
def open_clip_transform():
    open_clip = pytest.importorskip('open_clip')
    return lambda n: open_clip.image_transform(n, is_train=False)   # OpenAI's inference transform in open_clip 3.x


@pytest.mark.parametrize('size', SIZES)
def test_preprocess_equals_open_clip_rgb_224(open_clip_transform, size):
    img = _image(size, 'RGB', seed=sum(size))
    ours, theirs = image_transform(224)(img), open_clip_transform(224)(img)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    assert torch.equal(ours, theirs), f"{size}: max difference {(ours - theirs).abs().max().item()}"


@pytest.mark.parametrize('mode', MODES)
def test_preprocess_equals_open_clip_every_mode(open_clip_transform, mode):
    ours_t, theirs_t = image_transform(64), open_clip_transform(64)
    for size in SIZES:
        img = _image(size, mode, seed=size[0])
        ours = ours_t(img)
        assert ours.shape == (3, 64, 64) and ours.dtype == torch.float32 and ours.isfinite().all(), (mode, size)
        if mode == 'La':
            # open_clip fails on premultiplied grey+alpha (PIL has no La -> RGB route); ours un-premultiplies first
            with pytest.raises(ValueError): open_clip_transform(64)(img)
            assert torch.equal(ours, theirs_t(img.convert('LA')))
        elif mode.startswith('I;16'):
            # open_clip accepts 16-bit grey but PIL clips it at 255 (nearly all white); ours maps 0…65535 onto
            # 0…255 first, so it equals open_clip on that 8-bit picture
            eight = Image.fromarray(((np.asarray(img).astype(np.uint32) + 128) // 257).astype(np.uint8))
            assert torch.equal(ours, theirs_t(eight)), (mode, size)
            if size == (640, 480): assert (theirs_t(img) - ours).abs().max() > 1
        else:
            theirs = theirs_t(img)
            assert torch.equal(ours, theirs), f"{mode} {size}: max difference {(ours - theirs).abs().max().item()}"


def test_preprocess_extreme_strip_uses_the_window(monkeypatch):
    "Past MAX_RESIZED_PIXELS only the kept window is resized: close to the full resize, in bounded memory."
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(size=(40, 3000, 3)), axis=1)
    smooth = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    img = Image.fromarray(smooth)
    exact = image_transform(224)(img)
    monkeypatch.setattr(pretrained, 'MAX_RESIZED_PIXELS', 1000)
    windowed = image_transform(224)(img)
    assert windowed.shape == exact.shape
    assert (windowed - exact).abs().mean() < 0.01 and (windowed - exact).abs().max() < 0.1
    monkeypatch.undo()
    out = image_transform(224)(Image.new('RGB', (100_000, 2), (10, 200, 30)))   # would be 11 G pixels resized
    assert out.shape == (3, 224, 224)


def test_preprocess_rejects_non_images():
    with pytest.raises(TypeError, match='PIL image'): image_transform(32)(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='empty'): image_transform(32)(Image.new('RGB', (0, 5)))


# ------------------------------------------------------------------ bfloat16, stored activation, open_clip folders

@pytest.mark.parametrize('name', ['MiniCLIP', 'MiniCLIP-RN'])
def test_load_bfloat16_casts_everything_and_runs_on_cpu(tmp_path, name):
    model = _perturb(create_model(name), scale=0.02)
    torch.save(model.state_dict(), tmp_path / 'm.pt')
    bf, preprocess = load(tmp_path / 'm.pt', device='cpu', dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for k, t in bf.state_dict().items() if t.is_floating_point())
    res = preprocess.n_px
    images, texts = torch.randn(2, 3, res, res), tokenize(CAPTIONS, context_length=32, truncate=True)
    with torch.no_grad():
        img, txt = bf.encode_image(images), bf.encode_text(texts)
        assert img.dtype == txt.dtype == torch.bfloat16
        assert F.cosine_similarity(img.float(), model.encode_image(images)).min() > 0.99
        assert F.cosine_similarity(txt.float(), model.encode_text(texts)).min() > 0.99
    with pytest.raises(ValueError, match='torch.bfloat16'): load(tmp_path / 'm.pt', device='cpu', dtype=torch.float64)


def test_checkpoint_records_its_activation(tmp_path):
    model = create_model('MiniCLIP', quick_gelu=False)
    torch.save({'model': model.state_dict(), 'quick_gelu': False, 'step': 3}, tmp_path / 'wrapped.pt')
    torch.save({**model.state_dict(), 'quick_gelu': False}, tmp_path / 'flat.pt')
    for f in ('wrapped.pt', 'flat.pt'):
        assert not uses_quick_gelu(load(tmp_path / f, device='cpu')[0]), f
        assert uses_quick_gelu(load(tmp_path / f, device='cpu', quick_gelu=True)[0]), f     # the caller decides
    (tmp_path / 'run').mkdir()
    torch.save({'model': model.state_dict(), 'quick_gelu': False}, tmp_path / 'run' / 'checkpoint.pt')
    assert not uses_quick_gelu(load(tmp_path / 'run', device='cpu')[0])


def _open_clip_folder(path, change=lambda cfg: None, weights='open_clip_model.safetensors'):
    from safetensors.torch import save_file
    model = create_model('MiniCLIP')
    cfg = {'embed_dim': 128, 'vision_cfg': {'image_size': 48, 'layers': 4, 'width': 128, 'patch_size': 8},
           'text_cfg': {'context_length': 32, 'vocab_size': 49408, 'width': 128, 'heads': 2, 'layers': 4}}
    change(cfg)
    path.mkdir()
    (path / 'open_clip_config.json').write_text(json.dumps({'model_cfg': cfg}))
    if weights: save_file(model.state_dict(), path / weights)
    return path


def test_open_clip_folder_activation_and_refusals(tmp_path):
    model, _ = load(_open_clip_folder(tmp_path / 'plain'), device='cpu')
    assert not uses_quick_gelu(model)                                   # open_clip's default: the exact GELU
    model, _ = load(_open_clip_folder(tmp_path / 'quick', lambda c: c.update(quick_gelu=True),
                                      weights='open_clip_pytorch_model.bin'), device='cpu')
    assert uses_quick_gelu(model)
    refusals = {
        'vision_cfg.ls_init_value': lambda c: c['vision_cfg'].update(ls_init_value=0.1),
        'text_cfg.pool_type': lambda c: c['text_cfg'].update(pool_type='eos'),
        'text_cfg.hf_model_name': lambda c: c['text_cfg'].update(hf_model_name='roberta-base'),
        'heads of size 64': lambda c: c['text_cfg'].update(heads=4),
        'not open_clip\'s standard CLIP': lambda c: c.update(custom_text=True),
        'says image_resolution 64': lambda c: c['vision_cfg'].update(image_size=64),
    }
    for i, (message, change) in enumerate(refusals.items()):
        with pytest.raises(CheckpointError, match=message): load(_open_clip_folder(tmp_path / f'bad{i}', change), device='cpu')
    with pytest.raises(CheckpointError, match='none of open_clip_model.safetensors'):
        load(_open_clip_folder(tmp_path / 'empty', weights=None), device='cpu')
    (tmp_path / 'broken').mkdir(); (tmp_path / 'broken' / 'open_clip_config.json').write_text('{"model": 1}')
    with pytest.raises(CheckpointError, match="no readable open_clip_config.json"): load(tmp_path / 'broken', device='cpu')


# ------------------------------------------------------------------ tokens of the right length, transforms

def test_get_tokenizer_context_lengths(tmp_path):
    mini = create_model('MiniCLIP')
    torch.save(mini.state_dict(), tmp_path / 'mini.pt')
    cases = {'MiniCLIP': 32, 'ViT-B/32': 77, 'RN50x64': 77, CONFIGS['MiniCLIP-RN']: 32, tmp_path / 'mini.pt': 32,
             str(tmp_path / 'mini.pt'): 32, _open_clip_folder(tmp_path / 'oc'): 32}
    for source, n in cases.items():
        tok = get_tokenizer(source)
        assert tok.context_length == n and tok(['a cat', 'a dog']).shape == (2, n), source
    assert get_tokenizer(mini).context_length == 32 and get_tokenizer(BaselineCLIP(context_length=20)).context_length == 20
    tok = get_tokenizer(mini)
    assert torch.equal(tok(CAPTIONS), tokenize(CAPTIONS, context_length=32))
    long = 'a smiling face with heart-shaped eyes and rosy cheeks, ' * 4
    with pytest.raises(ValueError, match=r'is 50 tokens with \[SOS\] and \[EOS\], more than context_length=32.*truncate=True'):
        tok(long)
    assert tok(long, truncate=True)[0, -1] == 49407
    assert get_tokenizer('ViT-B-32').context_length == get_tokenizer('ViT-L-14-336-quickgelu').context_length == 77
    with pytest.raises(KeyError, match=r"neither a configuration \(.*ViT-B/32.*open_clip's spelling.*ViT-B-32"):
        get_tokenizer('ViT-B-31')
    with pytest.raises(TypeError, match='context_length'): get_tokenizer(torch.nn.Linear(2, 2))


def test_encode_text_beyond_the_context():
    "Padding past the context is ignored; a caption past it is a clear error; normalize gives unit vectors."
    model = _perturb(create_model('MiniCLIP'), scale=0.02)
    short = tokenize(CAPTIONS, context_length=32)
    with torch.no_grad():
        ref = model.encode_text(short)
        assert torch.allclose(model.encode_text(tokenize(CAPTIONS)), ref, atol=1e-6)        # [n, 77], all [EOS] < 32
        long = tokenize([CAPTIONS[0], 'a smiling face with heart-shaped eyes and rosy cheeks, ' * 4])
        with pytest.raises(ValueError, match=r"tokens have 77 positions but this model's context length is 32: row 1 "
                                             r"ends \(\[EOS\]\) at position 49.*context_length=32.*get_tokenizer\(model\)"):
            model.encode_text(long)
        assert torch.allclose(model.encode_text(short, normalize=True), F.normalize(ref, dim=-1))
        images = torch.randn(2, 3, 48, 48)
        assert torch.allclose(model.encode_image(images, normalize=True).norm(dim=-1), torch.ones(2))
        base = BaselineCLIP().eval()
        assert torch.allclose(base.encode_text(short, normalize=True).norm(dim=-1), torch.ones(len(CAPTIONS)))


def test_create_model_and_transforms(tmp_path):
    model, train_tf, eval_tf = create_model_and_transforms('MiniCLIP-RN', device='cpu', quick_gelu=False)
    assert config_from_state_dict(model.state_dict()) == CONFIGS['MiniCLIP-RN'] and not uses_quick_gelu(model)
    assert train_tf.n_px == eval_tf.n_px == 64 and model.training
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8))
    assert train_tf(picture).shape == eval_tf(picture).shape == (3, 64, 64)
    mini = _perturb(create_model('MiniCLIP'), scale=0.02)
    torch.save({'model': mini.state_dict()}, tmp_path / 'ckpt.pt')
    model, train_tf, eval_tf = create_model_and_transforms('MiniCLIP', pretrained=tmp_path / 'ckpt.pt', device='cpu')
    assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items()) and eval_tf.n_px == 48
    model, *_ = create_model_and_transforms(None, pretrained=tmp_path / 'ckpt.pt', device='cpu')
    with pytest.warns(UserWarning, match='the model follows the checkpoint'):
        model, *_ = create_model_and_transforms('ViT-B/32', pretrained=tmp_path / 'ckpt.pt', device='cpu')
    assert model.visual.input_resolution == 48
    with torch.device('meta'): b32 = create_model('ViT-B/32')            # shapes only
    with mock.patch.object(pretrained, 'load', side_effect=lambda source, **kw: (b32, None)) as fake:
        create_model_and_transforms('ViT-B/32', pretrained='openai', device='cpu')   # open_clip's tag for OpenAI's weights
    assert fake.call_args[0][0] == 'ViT-B/32'
    with pytest.raises(KeyError, match=r"unknown configuration 'ViT-B-31'.*ViT-B/32.*open_clip's spelling.*ViT-B-32"):
        create_model_and_transforms('ViT-B-31')
    with pytest.raises(ValueError, match='configuration name'): create_model_and_transforms(None)


class _SamePicture(torch.utils.data.Dataset):
    def __init__(self, transform, picture): self.transform, self.picture = transform, picture
    def __len__(self): return 6
    def __getitem__(self, i): return self.transform(self.picture)


def test_train_transform_gives_each_worker_its_own_crops():
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    transform = pretrained.TrainTransform(32, seed=0)

    def crops():
        torch.manual_seed(0)                                             # DataLoader draws the workers' seeds from torch
        return torch.cat(list(torch.utils.data.DataLoader(_SamePicture(transform, picture), batch_size=1, num_workers=2, timeout=120)))
    first, again = crops(), crops()
    assert not torch.equal(first[0], first[1])                           # item 0 from worker 0, item 1 from worker 1
    assert torch.equal(first, again)                                     # and reproducible from torch's seed
    assert len({tuple(c.flatten()[:50].tolist()) for c in first}) == 6
    with pytest.raises(ValueError, match='zoom'): pretrained.TrainTransform(32, zoom=(1.2, 1.0))
    with pytest.raises(TypeError, match='PIL image'): transform(np.zeros((4, 4, 3)))

"""Faithfulness of `clip_annotated.model` against open_clip as an oracle.

open_clip's CLIP, built with QuickGELU (as OpenAI's released models), stores its weights under OpenAI's
names. We give it random weights moved away from their initialisation, build our model from its state
dict with `build_model`, and require the same image features, text features and logits (float32, CPU).
"""
import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip('open_clip')
from open_clip.model import CLIP as OpenCLIP, CLIPTextCfg, CLIPVisionCfg  # noqa: E402

from clip_annotated.model import CONFIGS, build_model, config_from_state_dict, create_model  # noqa: E402

TEXT = dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2)
SMALL = {
    'vit': dict(embed_dim=64, vision_cfg=dict(image_size=32, layers=2, width=128, patch_size=8), text_cfg=TEXT),
    'resnet': dict(embed_dim=64, vision_cfg=dict(image_size=64, layers=(2, 1, 2, 1), width=32), text_cfg=TEXT),
}
OPEN_CLIP_NAME = {'ViT-B/32': 'ViT-B-32', 'ViT-B/16': 'ViT-B-16', 'ViT-L/14': 'ViT-L-14',
                  'ViT-L/14@336px': 'ViT-L-14-336'}


def _open_clip_model(embed_dim, vision_cfg, text_cfg, seed=0):
    "An open_clip CLIP with QuickGELU whose every parameter and BatchNorm statistic is perturbed."
    torch.manual_seed(seed)
    m = OpenCLIP(embed_dim, vision_cfg=CLIPVisionCfg(**vision_cfg), text_cfg=CLIPTextCfg(**text_cfg), quick_gelu=True)
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.05 * torch.randn_like(p))
        for name, b in m.named_buffers():
            if name.endswith('running_mean'): b.add_(0.1 * torch.randn_like(b))
            if name.endswith('running_var'): b.mul_(torch.empty_like(b).uniform_(0.5, 1.5))
    return m.eval()


def _texts(n, context_length=77, seed=1):
    "Random token rows shaped like `tokenize` output: [SOS] ids [EOS] 0…, one row filling the context."
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(n, context_length, dtype=torch.long)
    for i in range(n):
        length = context_length if i == 0 else int(torch.randint(3, context_length, (1,), generator=g))
        t[i, 0] = 49406
        t[i, 1:length - 1] = torch.randint(1, 49405, (length - 2,), generator=g)
        t[i, length - 1] = 49407
    return t


def _assert_same(ours, theirs, what):
    "Unit-scale comparison: features normalised by the oracle's norm must agree to 1e-5."
    scale = theirs.norm(dim=-1, keepdim=True)
    err = ((ours - theirs) / scale).abs().max().item()
    assert err < 1e-5, f"{what}: max abs difference {err:.2e} (unit-scale) exceeds 1e-5"
    err_n = (F.normalize(ours, dim=-1) - F.normalize(theirs, dim=-1)).abs().max().item()
    assert err_n < 1e-5, f"{what}: normalised features differ by {err_n:.2e}"


@pytest.mark.parametrize('kind', ['vit', 'resnet'])
def test_outputs_match_open_clip(kind):
    oc = _open_clip_model(**SMALL[kind])
    ours = build_model(oc.state_dict())
    res = SMALL[kind]['vision_cfg']['image_size']
    images = torch.randn(4, 3, res, res, generator=torch.Generator().manual_seed(2))
    texts = _texts(5)
    with torch.no_grad():
        img_oc, txt_oc, scale_oc = oc(images, texts)          # open_clip returns normalised features
        _assert_same(ours.encode_image(images), oc.encode_image(images), f'{kind} encode_image')
        _assert_same(ours.encode_text(texts), oc.encode_text(texts), f'{kind} encode_text')
        logits_per_image, logits_per_text = ours(images, texts)
    expected = scale_oc * img_oc @ txt_oc.t()
    err = (logits_per_image - expected).abs().max().item() / scale_oc.item()
    assert err < 1e-5, f'{kind} logits differ by {err:.2e} (in units of the logit scale)'
    assert torch.equal(logits_per_text, logits_per_image.t())


def test_full_size_vit_b32_matches_open_clip():
    "The real ViT-B/32 architecture (random weights): same features as open_clip's ViT-B-32-quickgelu."
    cfg = open_clip.get_model_config('ViT-B-32-quickgelu')
    oc = _open_clip_model(cfg['embed_dim'], cfg['vision_cfg'], cfg['text_cfg'])
    ours = build_model(oc.state_dict())
    assert config_from_state_dict(oc.state_dict()) == CONFIGS['ViT-B/32']
    images, texts = torch.randn(2, 3, 224, 224), _texts(2)
    with torch.no_grad():
        _assert_same(ours.encode_image(images), oc.encode_image(images), 'ViT-B/32 encode_image')
        _assert_same(ours.encode_text(texts), oc.encode_text(texts), 'ViT-B/32 encode_text')


@pytest.mark.parametrize('name', [n for n in CONFIGS if not n.startswith('MiniCLIP')])
def test_released_configs_match_open_clip(name):
    "Each of the nine released configurations: same parameter names, shapes and count as open_clip's."
    oc_name = OPEN_CLIP_NAME.get(name, name) + '-quickgelu'
    cfg = open_clip.get_model_config(oc_name)
    assert cfg is not None, f'open_clip has no {oc_name}'
    with torch.device('meta'):
        oc = OpenCLIP(cfg['embed_dim'], vision_cfg=CLIPVisionCfg(**cfg['vision_cfg']),
                      text_cfg=CLIPTextCfg(**cfg['text_cfg']), quick_gelu=True)
        ours = create_model(name)
    theirs_shapes = {k: tuple(v.shape) for k, v in oc.state_dict().items()}
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert ours_shapes == theirs_shapes
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, oc))
    assert n_ours == n_theirs, f'{name}: {n_ours:,} parameters, open_clip {oc_name}: {n_theirs:,}'
    assert config_from_state_dict(oc.state_dict()) == CONFIGS[name]

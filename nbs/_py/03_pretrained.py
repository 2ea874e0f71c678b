# %% [markdown]
# # Pretrained weights
#
# > `load`, the drop-in for OpenAI's `clip.load`: the nine released models, the preprocessing they expect, the activation a state dict does not record, and the way back out to Hugging Face and open_clip.

# %%
#| default_exp pretrained

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import json, os, warnings
from dataclasses import asdict, replace
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from clip_annotated.core import atomic_write, get_device
from clip_annotated.model import (HEAD_WIDTH, CONFIGS, OPEN_CLIP_NAMES, CLIP, CLIPConfig, build_model, config_from_state_dict,
                                  config_name, convert_weights, create_model, uses_quick_gelu)
from clip_annotated.tokenizer import EOT, SOT, decode, default_tokenizer, tokenize
from clip_annotated.checkpoints import (CheckpointError, checked_config, download, openai_to_hf, read_hf_directory,
                                        read_open_clip_directory)
from clip_annotated.torchscript import checkpoint_format, read_file

# %%
#| hide
import time, builtins, copy, pickle, shutil, tempfile, zipfile
import torch.nn.functional as F
from unittest import mock
from fastcore.test import test_eq, test_close, test_fail
from safetensors.torch import save_file   # the reference writer (a development dependency)
from sklearn.datasets import load_sample_image
import matplotlib.pyplot as plt
from clip_annotated.core import seed_everything, footer, remove_scratch, scratch_dir
from clip_annotated.model import create_model, count_parameters
from clip_annotated.tokenizer import tokenize
from clip_annotated.checkpoints import DownloadError, sha256sum
from clip_annotated.torchscript import save_traced
seed_everything(0)
_t0 = time.perf_counter()
scratch = scratch_dir('clip_annotated_03_')   # every file this chapter writes goes here
def show(e): print(str(e).replace(str(scratch), '<scratch>'))   # error messages, with short paths


# %% [markdown]
# At the end of this chapter you can write `model, preprocess = load("ViT-B/32")` as with OpenAI's
# `clip` package: `model` is the `CLIP` of the model chapter with OpenAI's weights in it, and
# `preprocess` turns a PIL picture into the tensor that model expects. The same call takes a
# checkpoint file (OpenAI's TorchScript archives, a state dict saved with `torch.save`, an open_clip
# training checkpoint), a training run of this book, or a Hugging Face `transformers` or an open_clip
# CLIP folder. At the very end the road runs the other way: `export_model` writes any of these models
# as a folder that `transformers` or open_clip load with their own code, and `get_tokenizer` and
# `create_model_and_transforms` hand out what open_clip's functions of the same names do.
#
# ## The released models
#
# > "They are denoted as RN50x4, RN50x16, and RN50x64 respectively. For the Vision Transformers we
# > train a ViT-B/32, a ViT-B/16, and a ViT-L/14." (Radford et al. 2021, §2.5)
#
# > "For the ViT-L/14 we also pre-train at a higher 336 pixel resolution for one additional epoch to
# > boost performance similar to FixRes (Touvron et al., 2019). We denote this model as ViT-L/14@336px."
# > (Radford et al. 2021, §2.5)
#
# OpenAI published all nine as files under one URL each, and the URL carries its own checksum: the
# second-to-last path segment is the SHA256 of the file. The addresses below are facts from OpenAI's
# release (source: `_MODELS` in `clip/clip.py` of github.com/openai/CLIP; the same addresses appear in
# open_clip's `pretrained.py`, and `tests/test_pretrained.py` checks that they agree).

# %%
#| exports
_OPENAI_BASE = 'https://openaipublic.azureedge.net/clip/models'
MODEL_URLS: dict[str, str] = {name: f'{_OPENAI_BASE}/{sha}/{file}' for name, sha, file in [
    ('RN50', 'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762', 'RN50.pt'),
    ('RN101', '8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599', 'RN101.pt'),
    ('RN50x4', '7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd', 'RN50x4.pt'),
    ('RN50x16', '52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa', 'RN50x16.pt'),
    ('RN50x64', 'be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c', 'RN50x64.pt'),
    ('ViT-B/32', '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af', 'ViT-B-32.pt'),
    ('ViT-B/16', '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f', 'ViT-B-16.pt'),
    ('ViT-L/14', 'b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836', 'ViT-L-14.pt'),
    ('ViT-L/14@336px', '3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02', 'ViT-L-14-336px.pt'),
]}

def available_models() -> list[str]:
    "Names of the nine models OpenAI released, as `load` accepts them (open_clip's spellings too: `OPEN_CLIP_NAMES`)."
    return list(MODEL_URLS)

def released_name(name) -> str | None:
    "The key of `MODEL_URLS` for a released model named in OpenAI's spelling ('ViT-B/32') or open_clip's ('ViT-B-32'); else None."
    name = str(name)
    if name in MODEL_URLS: return name
    try: name = config_name(name)
    except KeyError: return None
    return name if name in MODEL_URLS else None

def released_names() -> str:
    "The released names in both spellings, for error messages."
    return f"{', '.join(MODEL_URLS)}, or in open_clip's spelling {', '.join(OPEN_CLIP_NAMES)}"


# %% [markdown]
# Every released name has its configuration in `CONFIGS`, so the variant table, with the input
# resolution each model expects, comes from the model chapter rather than from a list typed twice.
# The parameter counts use the `meta` device: shapes without memory.

# %%
test_eq(available_models(), [n for n in CONFIGS if not n.startswith('MiniCLIP')])
rows = [f"{'model':16}{'image encoder':>15}{'res':>5}{'tokens':>8}{'embed':>7}{'params':>9}  sha256[:12]"]
for name, url in MODEL_URLS.items():
    cfg = CONFIGS[name]
    vit = cfg.vision_patch_size is not None
    grid = cfg.image_resolution // (cfg.vision_patch_size if vit else 32)   # ViT patches or ResNet stride 32
    enc = f"ViT /{cfg.vision_patch_size}" if vit else f"ResNet w{cfg.vision_width}"
    rows.append(f"{name:16}{enc:>15}{cfg.image_resolution:>5}{grid * grid:>8}{cfg.embed_dim:>7}"
                f"{count_parameters(cfg) / 1e6:>8.0f}M  {url.split('/')[-2][:12]}")
print('\n'.join(rows))

# %% [markdown]
# The resolution is the one thing `preprocess` needs to know: 224 pixels for most, 288, 384 and 448 for
# the scaled ResNets, and 336 for the fine-tuned ViT-L/14. "tokens" is the length of the sequence the
# image encoder works on (patches for a ViT, positions of the final feature map for a ResNet).
#
# ### What `load` gives you
#
# `load` returns a pair, as `clip.load` does. The model is a `CLIP` in evaluation mode, on the device
# you name (float32 on a CPU, OpenAI's half-precision layout on a GPU). `preprocess` is OpenAI's
# inference transform at the model's resolution, `model.visual.input_resolution`: a PIL picture in, a
# normalised `[3, n_px, n_px]` tensor out. Together with the tokenizer chapter's `tokenize`, that is all
# zero-shot classification needs:
#
# ```python
# model, preprocess = load("ViT-B/32", device="cpu")              # downloaded once, checked, then read
# image = preprocess(Image.open("cat.jpg"))[None]                # [1, 3, 224, 224]
# text = tokenize(["a photo of a cat", "a photo of a dog"])       # [2, 77]
# logits_per_image, logits_per_text = model(image, text)          # [1, 2], [2, 1]
# probs = logits_per_image.softmax(dim=-1)
# ```
#
# The rest of the chapter takes the pieces in turn: where the weights come from, the one thing they do
# not say (the activation), `preprocess`, `load` itself, and what open_clip users expect around it.
#
# ## Where the weights come from
#
# Between a name and a model sits machinery a reader of the paper can skip; the
# [Appendix: checkpoints](02b_checkpoints.ipynb) and [Appendix: TorchScript archives](02c_torchscript.ipynb)
# hold it, and `load` calls it. `download` fetches a
# released file once into the cache (`$CLIP_ANNOTATED_CACHE`, else `~/.cache/clip_annotated`),
# checks it against the SHA256 in its URL, and never leaves a half-written file behind; offline, its
# `DownloadError` says where to put the file by hand. The readers take tensors out of a file **without
# running any code stored in it**: OpenAI's TorchScript archives through a restricted unpickler,
# `torch.save` files through `torch.load(weights_only=True)`, `.safetensors` files through a reader of
# a few dozen lines; Hugging Face and open_clip folders have their configurations checked and their
# keys renamed to OpenAI's. A file that cannot be read that way is refused with a `CheckpointError`
# (or `UnsafeCheckpointError`) that names it. Whatever the source, what reaches this chapter is a state
# dict in OpenAI's layout, its shapes checked (`checked_config`), for the model chapter's `build_model`.
#
# ```{mermaid}
# flowchart LR
#   N["released name<br/>'ViT-B/32'"] --> D["download<br/>SHA256-checked cache"] --> F
#   F["checkpoint file<br/>or folder"] --> R["safe readers<br/>(Appendix: checkpoints)"] --> S
#   S["OpenAI-layout<br/>state dict"] --> B["build_model(sd, quick_gelu)"] --> M["(model, preprocess)"]
# ```
#
# What a state dict does not say is how the model computes between its weights: **the activation is
# part of the model, not of the weights**, so `load` has to be told, or to know from the source.

# %% [markdown]
# ## The trap: QuickGELU or GELU?
#
# The model chapter noted that OpenAI's models compute $x\,\sigma(1.702x)$, not the exact GELU. A state
# dict cannot tell the two apart: the activation has no parameters. open_clip's own LAION models were
# mostly trained with the exact GELU, OpenAI's with QuickGELU, and the two checkpoints look
# identical to a loader. Evaluated with the wrong activation, a model still runs and still gives
# plausible numbers, only worse ones. How different are the features? Here are the same (random)
# ViT-B/32 weights with both activations:

# %%
quick = create_model('ViT-B/32', quick_gelu=True).eval()              # random weights
exact = copy.deepcopy(quick)                                           # the same weights ...
for block in [*exact.visual.transformer.resblocks, *exact.transformer.resblocks]:
    block.mlp.gelu = torch.nn.GELU()                                   # ... with the exact GELU
x = torch.randn(2, 3, 224, 224)
t = tokenize(['a photo of a temple', 'a photo of a flower', 'a diagram', 'a dog'])
pre_act = []                                       # what the activation sees: the outputs of every c_fc
hooks = [b.mlp.c_fc.register_forward_hook(lambda m, i, o: pre_act.append(o.std().item()))
         for b in [*quick.visual.transformer.resblocks, *quick.transformer.resblocks]]
with torch.no_grad():
    cos_img = F.cosine_similarity(quick.encode_image(x), exact.encode_image(x)).min().item()
    cos_txt = F.cosine_similarity(quick.encode_text(t), exact.encode_text(t)).min().item()
    p_q, p_e = (m(x, t)[0].softmax(-1) for m in (quick, exact))
for h in hooks: h.remove()
gap = (p_q - p_e).abs().max().item()
z = torch.linspace(-6, 6, 1001)
act_gap = (z * torch.sigmoid(1.702 * z) - F.gelu(z)).abs().max().item()
print(f"same weights, QuickGELU vs GELU: cosine of image features >= {cos_img:.5f}, "
      f"of text features >= {cos_txt:.5f}; zero-shot probabilities move by up to {gap:.4f}")
print(f"the activations' inputs have a standard deviation of {min(pre_act):.2f} to {max(pre_act):.2f}; "
      f"the two functions differ by at most {act_gap:.3f}")
del exact

# %% [markdown]
# With random weights the inputs of the activation stay small (standard deviations printed above), in
# the range where the two functions nearly agree, so these numbers understate the trap: trained
# weights produce larger pre-activations through 12 to 24 layers, and the differences compound. The `#| slow` cell at the end
# of the chapter repeats the measurement with OpenAI's weights when they are available. `load`
# therefore decides the activation from what is known about the source, and lets the caller overrule:
#
# | source | `quick_gelu` when not given |
# |---|---|
# | a released name, a TorchScript archive | `True` (OpenAI's models) |
# | a Hugging Face directory | from `hidden_act` in `config.json` |
# | an open_clip directory | from `quick_gelu` in `open_clip_config.json` (absent: `False`, open_clip's default) |
# | a checkpoint with a top-level `'quick_gelu'` (the training chapter's) | that value |
# | a plain state dict (`torch.save`, `.safetensors`, open_clip) | `True`, unless told: pass `quick_gelu=False` for open_clip models trained with GELU (those without `-quickgelu` in their name) |

# %% [markdown]
# ## Preprocessing
#
# > "A random square crop from resized images is the only data augmentation used during training."
# > (Radford et al. 2021, §2.3)
#
# That is training; at inference time the crop is the centre one. OpenAI's transform, which every number reported for the
# released models went through, is: resize the **short side** to `n_px` with **bicubic** interpolation
# (the long side scaled in proportion and rounded down), crop the centre `n_px × n_px` square (offsets
# rounded half to even, as Python's `round` does), convert to RGB, scale to [0, 1], and normalise each
# channel with the mean and standard deviation of OpenAI's training images. To give the released
# models the inputs they were measured on, we reproduce it pixel for pixel, with PIL directly. The last
# step is `normalize` (`unnormalize` undoes it, to show a picture). Later chapters take these two,
# `OPENAI_MEAN` and `OPENAI_STD`, and the mode fixes below (`fix_mode`, `to_rgb`) from here.
#
# Two refinements, neither of which changes an ordinary picture:
#
# - **Image modes.** Resizing happens in the picture's own mode, then the conversion to RGB, in that
#   order (as in OpenAI's code), so palette images are resized by nearest neighbour and transparent
#   pixels lose their alpha. PIL clips 16-bit grey images (`I;16…`) at 255, which turns almost every
#   real 16-bit picture white; we first map their 0…65535 range onto 0…255. PIL cannot convert
#   premultiplied `La` to RGB at all; we un-premultiply it to `LA` first.
# - **Extreme shapes.** A $10000 \times 3$ strip, resized so that its short side is 224, becomes 746,666
#   pixels wide. Above 2²⁶ resized pixels we resize only the window that survives the crop (PIL's `box`
#   argument), which is close to the full resize but not bit-identical.
#
# <!-- fixed: 746,666 -->

# %%
#| exports
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)   # per-channel statistics of OpenAI's training images
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)   # (source: clip/clip.py, _transform)
MAX_RESIZED_PIXELS = 1 << 26

def _resized_size(w: int, h: int, n: int) -> tuple[int, int]:
    "Short side to n, long side scaled and rounded down: (width, height)."
    return (n, int(n * h / w)) if w <= h else (int(n * w / h), n)

def fix_mode(image: Image.Image) -> Image.Image:
    "16-bit grey mapped onto 8 bits ('L'); premultiplied 'La' un-premultiplied to 'LA'; other modes unchanged."
    if image.mode.startswith('I;16'):
        a = np.asarray(image).astype(np.uint32)
        return Image.fromarray(((a + 128) // 257).astype(np.uint8))      # 0…65535 -> 0…255, rounded
    if image.mode == 'La': return image.convert('LA')
    return image

def to_rgb(image: Image.Image) -> Image.Image:
    "The picture in RGB, through RGBA for the modes PIL cannot convert to RGB directly."
    try: return image.convert('RGB')
    except ValueError: return image.convert('RGBA').convert('RGB')     # modes without a direct route to RGB

def _per_channel(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(3, 1, 1)

def normalize(x: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    "Pictures [3, H, W] (or [B, 3, H, W]), floats in [0, 1], normalised per channel (default: OpenAI's mean and std)."
    return (x - _per_channel(mean, x)) / _per_channel(std, x)

def unnormalize(x: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    "The inverse of `normalize`: normalised pictures back to floats in [0, 1] (clamped)."
    return (x * _per_channel(std, x) + _per_channel(mean, x)).clamp(0, 1)


# %%
#| exports
class ImageTransform:
    "OpenAI's inference transform: bicubic resize of the short side to n_px, centre crop, RGB, normalise."
    def __init__(self, n_px: int, mean=OPENAI_MEAN, std=OPENAI_STD):
        self.n_px, self.mean, self.std = n_px, tuple(mean), tuple(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:                # PIL image -> [3, n_px, n_px]
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image (Image.open(path) or Image.fromarray(array)), got {type(image).__name__}")
        (w, h), n = image.size, self.n_px
        if w == 0 or h == 0: raise ValueError(f"cannot preprocess an empty image of size {w}×{h}")
        image = fix_mode(image)
        nw, nh = _resized_size(w, h, n)
        left, top = int(round((nw - n) / 2.0)), int(round((nh - n) / 2.0))
        if nw * nh <= MAX_RESIZED_PIXELS:
            if (nw, nh) != (w, h): image = image.resize((nw, nh), Image.Resampling.BICUBIC)
            image = image.crop((left, top, left + n, top + n))
        else:                                                               # resize only the window we keep
            sx, sy = w / nw, h / nh
            image = image.resize((n, n), Image.Resampling.BICUBIC,
                                 box=(left * sx, top * sy, (left + n) * sx, (top + n) * sy))
        x = torch.from_numpy(np.array(to_rgb(image), dtype=np.uint8))     # [n, n, 3]
        x = x.permute(2, 0, 1).float().div(255)                            # [3, n, n] in [0, 1]
        return normalize(x, self.mean, self.std)

    def __repr__(self): return f"ImageTransform(n_px={self.n_px}: bicubic short side, centre crop, RGB, normalise)"

def image_transform(n_px: int) -> ImageTransform:
    "The preprocessing for a model of input resolution `n_px` (what `load` returns as `preprocess`)."
    return ImageTransform(n_px)


# %% [markdown]
# Checks of the idea. A one-pixel image is a constant colour, and bicubic resizing of a constant is
# the same constant, so every output pixel is that colour, normalised. Any size and any mode gives a
# `[3, n, n]` float tensor. A 16-bit ramp gives the same as its 8-bit version, where PIL's own conversion
# makes it white.

# %%
pre = image_transform(224)
out = pre(Image.new('RGB', (1, 1), (200, 100, 50)))
expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
test_close(out, expected.view(3, 1, 1).expand(3, 224, 224), eps=1e-6)

rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
small = image_transform(64)
for size in [(1, 1), (1000, 3), (3, 1000), (225, 223), (640, 480)]:
    for mode in ['1', 'L', 'LA', 'La', 'P', 'PA', 'RGBA', 'CMYK', 'YCbCr', 'HSV', 'I', 'I;16', 'F']:
        y = small(rgb.resize(size).convert(mode))
        assert y.shape == (3, 64, 64) and y.dtype == torch.float32 and y.isfinite().all(), (size, mode)

ramp8 = np.tile(np.arange(256, dtype=np.uint8), (64, 1))                  # [64, 256] grey ramp
ramp16 = Image.fromarray(ramp8.astype(np.uint16) * 257)                   # the same ramp, 16 bits ('I;16')
test_eq(ramp16.mode, 'I;16')
assert torch.equal(pre(ramp16), pre(Image.fromarray(ramp8)))
print(f"PIL's own 16-bit conversion: {np.asarray(ramp16.convert('L')).mean():.0f} mean grey level "
      f"(white); ours: {np.asarray(fix_mode(ramp16)).mean():.1f}, the ramp's {ramp8.mean():.1f}")

# %% [markdown]
# Faithfulness is checked in `tests/test_pretrained.py`: on random pictures of sizes 1×1, 3×1000,
# 1000×3, 225×223 and 640×480, in every PIL mode, our tensor is *equal* (maximum difference 0) to
# open_clip's OpenAI transform wherever open_clip accepts the mode and PIL's conversion is not the
# 16-bit clipping above.

# %% [markdown]
# ## `load`
#
# Precision follows OpenAI's `clip.load`: on a CPU the model is float32; on a GPU it keeps the
# checkpoint's precision, which for the released models is OpenAI's float16 layout (convolutions,
# linear layers and projections in float16, norms and embeddings in float32). `dtype=` chooses
# explicitly: `torch.float32`, `torch.float16` (OpenAI's layout) or `torch.bfloat16`, which casts every
# tensor (bfloat16 has float32's range, so the norms need no protection; they still compute in
# float32).
#
# `load` reads a released name, a checkpoint file, a training run's folder (its `checkpoint.pt`), a
# Hugging Face folder (`config.json`) and an open_clip folder (`open_clip_config.json`); a folder with
# both configurations, as some Hub repositories have, is read as Hugging Face's.
#
# `jit=True` is the one explicit opt-in to TorchScript: it returns `torch.jit.load` of the archive, so
# the archive's code runs. That code is TorchScript, not arbitrary Python, but it is still code from
# the file, and a traced graph has its input-dependent decisions frozen in (our `encode_text` stops at
# the last [EOS] of the batch it was traced on; OpenAI's graphs hold the device they were traced on,
# which `clip.load` rewrites and we do not). Use it only for archives you trust, for a deployment that
# needs TorchScript. Even then `load` first reads the archive with the safe reader, to learn the
# image resolution, so a payload is refused before TorchScript sees the file.

# %%
#| exports
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

def _place(model: CLIP, device: torch.device, dtype: torch.dtype | None) -> CLIP:
    "Move to `device` in `dtype`: float32, float16 in OpenAI's layout, or bfloat16 throughout; default float32 on CPU, as stored on GPU."
    if dtype is None: dtype = torch.float32 if device.type == 'cpu' else model.dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32, torch.float16 (OpenAI's layout) or torch.bfloat16, not {dtype}")
    model.float()
    if dtype == torch.float16: convert_weights(model)
    if dtype == torch.bfloat16: model.bfloat16()
    return model.to(device)

def _resolve(name_or_path: str | os.PathLike, download_root=None) -> Path:
    "The file or folder behind a released name (downloaded once), a path, or a training run's folder."
    source = str(name_or_path)
    if (name := released_name(source)) is not None: return Path(download(MODEL_URLS[name], download_root))
    if not (os.path.isdir(source) or os.path.isfile(source)):
        raise FileNotFoundError(f"{source!r} is neither a released model ({released_names()}) "
                                f"nor an existing file or directory")
    path = Path(source)
    if path.is_dir() and not any((path / f).is_file() for f in ('config.json', 'open_clip_config.json')):
        if not (path / 'checkpoint.pt').is_file():
            raise CheckpointError(f"{path} is a directory without config.json (Hugging Face), open_clip_config.json "
                                  f"(open_clip) or checkpoint.pt (a training run of this book)")
        path = path / 'checkpoint.pt'                                    # a run folder written by the training chapter
    return path

def _read_source(path: Path) -> tuple[dict[str, torch.Tensor], bool, str]:
    "(OpenAI-layout state dict, QuickGELU unless told otherwise, format) of a resolved file or folder, its shapes checked."
    if path.is_dir() and (path / 'config.json').is_file(): (sd, quick), fmt = read_hf_directory(path), 'huggingface'
    elif path.is_dir(): (sd, quick), fmt = read_open_clip_directory(path), 'open_clip'
    else:
        (sd, stored), fmt = read_file(path), checkpoint_format(path)
        quick = True if stored is None else stored
    checked_config(sd, path)
    return sd, quick, fmt

def load(name_or_path: str | os.PathLike, device: str | torch.device | None = None, jit: bool = False,
         download_root: str | os.PathLike | None = None, quick_gelu: bool | None = None,
         dtype: torch.dtype | None = None):
    "(model, preprocess) for a released model name, a checkpoint file, a training run's folder, or a Hugging Face or open_clip CLIP folder."
    device, path = get_device(device), _resolve(name_or_path, download_root)
    if dtype is not None and dtype not in _DTYPES:                       # refuse before reading any weights
        raise ValueError(f"dtype must be torch.float32, torch.float16 (OpenAI's layout) or torch.bfloat16, not {dtype}")
    sd, default_quick, fmt = _read_source(path)
    if jit and fmt != 'torchscript':
        warnings.warn(f"{path} is not a TorchScript archive ({fmt}); loading it as a state dict instead"); jit = False
    if jit:
        n_px = config_from_state_dict(sd).image_resolution               # checked by _read_source
        model = torch.jit.load(str(path), map_location=device).eval()     # runs the archive's TorchScript code
        if device.type == 'cpu' or dtype == torch.float32: model.float()
        return model, image_transform(n_px)
    try: model = build_model(sd, quick_gelu=default_quick if quick_gelu is None else quick_gelu)
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"{path} is not a CLIP checkpoint in OpenAI's layout: {e}") from None
    model = _place(model, device, dtype)
    return model, image_transform(model.visual.input_resolution)


# %% [markdown]
# To check `load` we need a file of every kind it reads, made from a MiniCLIP nudged off its
# initialisation (the appendices make the same files and take each one apart): a TorchScript archive
# traced the way OpenAI's were, with `encode_image` and `encode_text` as extra methods; a training
# checkpoint of the kind `DistributedDataParallel` leaves (`{'state_dict': {'module.' + name: ...}}`);
# a training run's folder; and two "checkpoints" whose loading would create a marker file, a plain
# pickle and an archive whose `data.pkl` is that pickle.

# %%
mini = create_model('MiniCLIP').eval()
with torch.no_grad():
    for p in mini.parameters(): p.add_(0.02 * torch.randn_like(p))       # away from the initialisation
images = torch.randn(2, 3, 48, 48)
texts = tokenize(['a red circle', 'a smiling face with sunglasses'], context_length=32)
save_traced(mini, scratch / 'MiniCLIP.pt', images, texts)          # as OpenAI's archives were made (appendix 2c)
torch.save({'epoch': 3, 'state_dict': {f'module.{k}': v for k, v in mini.state_dict().items()}}, scratch / 'train.pt')
(scratch / 'run').mkdir()                             # a run folder of the training chapter: {'model': ..., 'optimizer': ...}
torch.save({'model': mini.state_dict(), 'optimizer': {'state': {}}, 'data': {'step': 3}}, scratch / 'run' / 'checkpoint.pt')

marker = scratch / 'payload-ran'
class Payload:
    "Pickles as a call to open(marker, 'w'): unpickling it creates the marker file."
    def __reduce__(self): return (builtins.open, (str(marker), 'w'))
torch.save({'visual.proj': torch.zeros(2, 2), 'extra': Payload()}, scratch / 'payload.pt')
with zipfile.ZipFile(scratch / 'payload-archive.pt', 'w') as zf:
    zf.writestr('archive/data.pkl', pickle.dumps(Payload(), protocol=2))
    zf.writestr('archive/constants.pkl', pickle.dumps((), protocol=2))
    zf.writestr('archive/version', '3\n')
print(sorted(p.name for p in scratch.iterdir()))

# %% [markdown]
# `load` on our MiniCLIP files (the TorchScript archive, the DDP training checkpoint, the
# state dict in HF-free safetensors form, and a training run's folder) gives the same model each time, without TorchScript being
# loaded; with `jit=True` it hands back the archive's own TorchScript module, which agrees too.

# %%
save_file(mini.state_dict(), scratch / 'mini.safetensors')
with torch.no_grad(): ref_img, ref_txt = mini.encode_image(images), mini.encode_text(texts)
with mock.patch('torch.jit.load', side_effect=AssertionError('TorchScript must not be loaded')):
    for f in ('MiniCLIP.pt', 'train.pt', 'mini.safetensors', 'run'):     # 'run': the folder, its checkpoint.pt
        model, preprocess = load(scratch / f, device='cpu')
        with torch.no_grad():
            test_close(model.encode_image(images), ref_img, eps=1e-6)
            test_close(model.encode_text(texts), ref_txt, eps=1e-6)
with warnings.catch_warnings():
    warnings.simplefilter('ignore', FutureWarning)                       # torch.jit's deprecation notice
    jitted, preprocess = load(scratch / 'MiniCLIP.pt', device='cpu', jit=True)
assert isinstance(jitted, torch.jit.ScriptModule)
with torch.no_grad(): test_close(jitted.encode_image(images), ref_img, eps=1e-5)
test_eq(preprocess.n_px, 48)
print(type(jitted).__name__, preprocess)

# %% [markdown]
# What `load` refuses, it refuses by name: the payload files, a name that is neither released nor on
# disk, and a state dict that is not a CLIP.

# %%
test_fail(lambda: load(scratch / 'payload.pt', device='cpu'), contains='payload.pt')
test_fail(lambda: load(scratch / 'payload-archive.pt', device='cpu', jit=True), contains='asks for io.open')
test_fail(lambda: load('ViT-B/31', device='cpu'), contains='neither a released model')
torch.save({'fc.weight': torch.zeros(2, 2)}, scratch / 'not-clip.pt')
test_fail(lambda: load(scratch / 'not-clip.pt', device='cpu'), contains='not a CLIP checkpoint')
test_fail(lambda: load(scratch / 'mini.safetensors', device='cpu', dtype=torch.int8), contains='torch.bfloat16')
assert not marker.exists()

# %% [markdown]
# `dtype=torch.bfloat16` casts every tensor, and both encoders run in it on a CPU, close to the float32
# features; and a checkpoint that records `'quick_gelu': False` comes back with the exact GELU unless
# the caller says otherwise.

# %%
bf, _ = load(scratch / 'mini.safetensors', device='cpu', dtype=torch.bfloat16)
assert all(t.dtype == torch.bfloat16 for t in bf.state_dict().values())
with torch.no_grad(): img_bf, txt_bf = bf.encode_image(images), bf.encode_text(texts)
test_eq((img_bf.dtype, txt_bf.dtype), (torch.bfloat16, torch.bfloat16))
cos_bf = min(F.cosine_similarity(img_bf.float(), ref_img).min(), F.cosine_similarity(txt_bf.float(), ref_txt).min()).item()
assert cos_bf > 0.99
print(f"bfloat16 against float32 features: cosine >= {cos_bf:.4f}")
torch.save({'model': mini.state_dict(), 'quick_gelu': False}, scratch / 'gelu.pt')
test_eq(uses_quick_gelu(load(scratch / 'gelu.pt', device='cpu')[0]), False)
test_eq(uses_quick_gelu(load(scratch / 'gelu.pt', device='cpu', quick_gelu=True)[0]), True)   # the caller decides

# %% [markdown]
# ## Which caption fits this picture?
#
# Zero-shot classification, the subject of [its own chapter](07_zeroshot.ipynb), writes every class as
# a caption and picks the caption the model finds most probable for the picture (§3.1.2).
#
# Everything is in place for an example in the spirit of OpenAI's README: two pictures shipped with scikit-learn (a
# Chinese temple and a flower), four captions, and the probabilities over captions for each picture.
# First with **random weights**: the machinery runs, shapes and all, but the probabilities mean
# nothing, because nothing was learned.

# %%
#| fig-cap: "The two scikit-learn sample pictures as stored and as the model sees them after the resize and centre crop to 224×224."
#| fig-alt: "Four photos in a row: a many-tiered Chinese temple by a lake at 640 by 427 pixels, the same temple cut to a square, an orange flower on a dark green background at 640 by 427, and the same flower cut to a square; the square crops lose the left and right edges."
pictures = {name: Image.fromarray(load_sample_image(f'{name}.jpg')) for name in ('china', 'flower')}
captions = ['a photo of a temple', 'a photo of a flower', 'a photo of a dog', 'a diagram']
pre = image_transform(CONFIGS['ViT-B/32'].image_resolution)
batch = torch.stack([pre(im) for im in pictures.values()])               # [2, 3, 224, 224]

fig, axes = plt.subplots(1, 4, figsize=(8, 2.1), dpi=72)
for i, (name, im) in enumerate(pictures.items()):
    axes[2 * i].imshow(im); axes[2 * i].set_title(f'{name}.jpg {im.size[0]}×{im.size[1]}', fontsize=9)
    shown = unnormalize(batch[i])
    axes[2 * i + 1].imshow(shown.permute(1, 2, 0)); axes[2 * i + 1].set_title('what the model sees, 224²', fontsize=9)
for ax in axes: ax.axis('off')
plt.tight_layout(); plt.show()


# %%
def caption_probabilities(model, batch, captions):
    "Softmax over captions of the scaled cosine similarities: [pictures, captions]."
    with torch.no_grad():
        logits_per_image, _ = model(batch, tokenize(captions))
    return logits_per_image.softmax(dim=-1)

probs = caption_probabilities(quick, batch, captions)                   # the random ViT-B/32 from above
test_close(probs.sum(-1), torch.ones(2))
print('random weights (meaningless):')
for name, row in zip(pictures, probs): print(f"  {name:7}", '  '.join(f"{c!r}: {p:.2f}" for c, p in zip(captions, row)))
del quick

# %% [markdown]
# With OpenAI's weights, the temple should go to "a photo of a temple" and the flower to "a photo of a
# flower". The cell below downloads ViT-B/32 (a few hundred megabytes) when it can; where the machine is offline, as
# the one that ran this page may be, it says so and how to get the file. It also repeats the QuickGELU
# measurement on the real weights.

# %%
#| slow
try:
    model, preprocess = load('ViT-B/32', device='cpu')
except DownloadError:                         # offline: say so plainly (the error itself names this machine's paths)
    print("OpenAI's ViT-B/32 weights are not on this machine and could not be downloaded (offline?), so there are no "
          "real probabilities here. Online, this cell downloads them once; offline, copy the file from "
          f"{MODEL_URLS['ViT-B/32']} into the folder $CLIP_ANNOTATED_CACHE names (default ~/.cache/clip_annotated).")
else:
    batch = torch.stack([preprocess(im) for im in pictures.values()])
    probs = caption_probabilities(model, batch, captions)
    for name, row in zip(pictures, probs): print(f"  {name:7}", '  '.join(f"{c!r}: {p:.3f}" for c, p in zip(captions, row)))
    exact, _ = load('ViT-B/32', device='cpu', quick_gelu=False)
    with torch.no_grad():
        cos = F.cosine_similarity(model.encode_image(batch), exact.encode_image(batch)).min().item()
    gap = (probs - caption_probabilities(exact, batch, captions)).abs().max().item()
    print(f"real weights, QuickGELU vs GELU: image-feature cosine >= {cos:.4f}; probabilities move by up to {gap:.3f}")


# %% [markdown]
# ## Tokens of the right length: `get_tokenizer`
#
# > "For computational efficiency, the max sequence length was capped at 76." (Radford et al. 2021, §2.4)
#
# Every released model reads 77 positions, so `tokenize` pads to 77 unless told otherwise. Our
# MiniCLIP reads 32. A caption of 50 tokens then fits `tokenize`'s default and still cannot be encoded
# by MiniCLIP; `encode_text` says so (the model chapter) instead of failing deep inside. The simpler
# habit is to ask the model for its tokenizer: `get_tokenizer` binds `tokenize` to a model's context
# length, whether it is given a model, a configuration name, a released name, or anything `load` reads
# (the length is then the number of rows of `positional_embedding`). open_clip has a function of the
# same name and use.

# %%
#| exports
class Tokenizer:
    "`tokenize` bound to one context length: tok(texts, truncate=False) -> [n, context_length] token ids."
    def __init__(self, context_length: int = 77):
        if context_length < 2: raise ValueError(f"context_length must hold [SOS] and [EOS], got {context_length}")
        self.context_length = context_length

    def __call__(self, texts: str | list[str], truncate: bool = False) -> torch.LongTensor:
        return tokenize(texts, context_length=self.context_length, truncate=truncate)

    def decode(self, tokens) -> str | list[str]:
        "Text of token ids (one row or a batch), as `decode` of the tokenizer chapter."
        return decode(tokens)

    def __repr__(self): return f"Tokenizer(context_length={self.context_length})"

def get_tokenizer(model_or_name) -> Tokenizer:
    "The tokenizer of a model: `tokenize` at its context length (a CLIP, a CONFIGS or released name, or a path `load` reads)."
    if isinstance(model_or_name, torch.nn.Module):
        n = getattr(model_or_name, 'context_length', None)
        if not isinstance(n, int): raise TypeError(f"{type(model_or_name).__name__} has no integer context_length")
        return Tokenizer(n)
    if isinstance(model_or_name, CLIPConfig): return Tokenizer(model_or_name.context_length)
    name = str(model_or_name)
    try: return Tokenizer(CONFIGS[config_name(name)].context_length)           # OpenAI's or open_clip's spelling
    except KeyError: pass
    if os.path.exists(name): return Tokenizer(_read_source(_resolve(name))[0]['positional_embedding'].shape[0])
    raise KeyError(f"{name!r} is neither a configuration ({', '.join(CONFIGS)}, or in open_clip's spelling "
                   f"{', '.join(OPEN_CLIP_NAMES)}) nor an existing file or directory")


# %%
tok32 = get_tokenizer(mini)
print(tok32, tok32(['a red circle']).shape)
test_eq(tok32(['a red circle']), tokenize(['a red circle'], context_length=32))
test_eq([get_tokenizer(n).context_length for n in ('MiniCLIP', 'ViT-B/32')], [32, 77])
test_eq(get_tokenizer(scratch / 'run').context_length, 32)                   # read off the checkpoint
caption = 'a smiling face with heart-shaped eyes and rosy cheeks, ' * 4
n_tokens = int(tokenize(caption).argmax()) + 1
for bad in (lambda: tok32(caption), lambda: mini.encode_text(tokenize(caption))):
    try: bad()
    except ValueError as e: show(e)
test_fail(lambda: tok32(caption), contains=f'is {n_tokens} tokens')
test_fail(lambda: mini.encode_text(tokenize(caption)), contains="use get_tokenizer(model)")
test_eq(tok32(caption, truncate=True)[0, -1], 49407)
test_eq(tok32.decode(tok32('A red circle')), ['a red circle'])


# %% [markdown]
# ## A model and its two transforms: `create_model_and_transforms`
#
# open_clip hands out a model with two transforms: one for training, with the paper's augmentation
# (the random square crop of resized images quoted under Preprocessing above),
# and the deterministic one for evaluation (`image_transform` above). The paper does not say how much
# it resizes. For a square crop of side `n_px` we resize the short side to `n_px · z`, with a zoom `z`
# drawn uniformly from `TRAIN_ZOOM` each time, and crop an `n_px` square at a random place: at
# $z = 1$ a square picture is kept whole, and at the top of the range (printed below the next cell)
# a slice of its width and of its height falls outside. In area that is about as much as open_clip's
# default crop leaves out (it keeps 90% to 100% of the area, and $1/\sqrt{0.9} \approx 1.054$), though
# open_clip's crop also varies the aspect ratio and ours stays square. The book first used
# `(1.0, 1.2)`; trained side by side on shards, the narrower range gave a higher held-out R@1 with
# an interval clear of zero ([chapter 16](16_experiments.ipynb) shows that comparison), and the paper
# fixes only the kind of crop. `random_square_crop` does this on a PIL image (real pictures, bicubic) and on a float
# tensor (pictures already in memory, antialiased bilinear: both resize a square up by at most 5%,
# where the difference is invisible). It draws `z`, then the row, then the column, from the generator
# it is given. On a PIL image only the window that is kept is resized (PIL's `box`), which costs a
# fraction of resizing the whole picture, and a picture one pixel high costs no more than a square.
#
# `TrainTransform` is that crop followed by the normalisation, and it is the one augmentation of this
# book: the training loop's data sets call the same object with a generator of their own, derived
# from (seed, epoch, index), so that a killed run resumes with the same crops. Called without one, it
# uses its own stream, and there is a trap in that. A transform that owns a NumPy generator is copied
# into every `DataLoader` worker process with the generator's state, so all workers would draw *the
# same* crops. `TrainTransform` therefore starts a fresh stream in each worker, from the worker's seed
# (which PyTorch draws when it starts the workers: every epoch, or once with `persistent_workers`)
# together with `seed`, if one was given.
# <!-- fixed: 5% 90% 100% -->

# %%
#| exports
def to_tensor(image: Image.Image) -> torch.Tensor:
    "A PIL image as float32 [3, H, W] in [0, 1] (RGB)."
    return torch.from_numpy(np.array(image.convert('RGB'), dtype=np.uint8)).permute(2, 0, 1).float().div(255)

TRAIN_ZOOM = (1.0, 1.05)    # the range of the crop's zoom z: the short side is resized to n_px · z

def random_square_crop(x, size: int, rng: np.random.Generator, zoom: tuple[float, float] = TRAIN_ZOOM):
    "Resize the short side to size·z, z ~ U(zoom), then crop size×size at random: PIL image or float tensor [3, H, W]."
    z = rng.uniform(*zoom)
    w, h = x.size if isinstance(x, Image.Image) else (x.shape[-1], x.shape[-2])
    s = size * z / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))          # the resized picture, never below size
    top, left = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
    if isinstance(x, Image.Image):                                       # resize only the window that is kept
        sx, sy = w / nw, h / nh
        return x.resize((size, size), Image.Resampling.BICUBIC, box=(left * sx, top * sy, (left + size) * sx, (top + size) * sy))
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], (nh, nw), mode='bilinear', antialias=True, align_corners=False)[0].clamp(0, 1)
    return x[..., top:top + size, left:left + size]


# %%
#| exports
class TrainTransform:
    "The paper's training augmentation, the one the training loop uses: `random_square_crop` to n_px, RGB, normalise."
    def __init__(self, n_px: int, zoom: tuple[float, float] = TRAIN_ZOOM, seed: int | None = None,
                 mean=OPENAI_MEAN, std=OPENAI_STD):
        if not 0 < zoom[0] <= zoom[1]: raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.n_px, self.zoom, self.seed, self.mean, self.std = n_px, tuple(zoom), seed, tuple(mean), tuple(std)
        self._rng, self._worker_seed = None, None

    def _generator(self) -> np.random.Generator:
        "This process's generator: one stream in the main process, a fresh one per DataLoader worker and epoch."
        info = torch.utils.data.get_worker_info()
        worker_seed = None if info is None else info.seed
        if self._rng is None or worker_seed != self._worker_seed:
            entropy = [s for s in (self.seed, worker_seed) if s is not None]
            self._rng, self._worker_seed = np.random.default_rng(entropy or None), worker_seed
        return self._rng

    def __call__(self, image, rng: np.random.Generator | None = None) -> torch.Tensor:   # -> [3, n_px, n_px]
        "The augmented picture: a PIL image, or a float tensor [3, H, W] in [0, 1]; crops drawn from `rng` (default: this process's stream)."
        if isinstance(image, Image.Image):
            if 0 in image.size: raise ValueError(f"cannot transform an empty image of size {image.size[0]}×{image.size[1]}")
            image = to_rgb(fix_mode(image))
        elif not (isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3 and image.is_floating_point()):
            raise TypeError(f"expected a PIL image (Image.open(path) or Image.fromarray(array)) or a float tensor [3, H, W], "
                            f"got {type(image).__name__}")
        x = random_square_crop(image, self.n_px, self._generator() if rng is None else rng, self.zoom)
        return normalize(to_tensor(x) if isinstance(x, Image.Image) else x, self.mean, self.std)

    def __repr__(self): return f"TrainTransform(n_px={self.n_px}, zoom={self.zoom}: random square crop, RGB, normalise)"


# %% [markdown]
# Checks: the output has the eval transform's shape; two calls crop differently; the same seed gives
# the same crops; and with no zoom, a picture that is already `n_px` square is kept whole, which is
# exactly what the eval transform makes of it.

# %%
china = pictures['china']                                                # 640 × 427, from the example above
aug = TrainTransform(224, seed=0)
a, b = aug(china), aug(china)
test_eq(a.shape, (3, 224, 224)); assert not torch.equal(a, b)
test_eq(TrainTransform(224, seed=0)(china), a)
square = china.resize((48, 48))
test_close(TrainTransform(48, zoom=(1, 1))(square), image_transform(48)(square), eps=1e-6)
x = torch.rand(3, 48, 48)
test_eq(random_square_crop(x, 48, np.random.default_rng(0), zoom=(1.0, 1.0)), x)     # z = 1 on a square: the identity
test_eq(random_square_crop(china, 48, np.random.default_rng(0)).size, (48, 48))
test_eq(random_square_crop(Image.new('RGB', (100_000, 1)), 48, np.random.default_rng(0)).size, (48, 48))  # 1 px high: no 230M-pixel resize
test_eq(TrainTransform(48)(x, np.random.default_rng(5)), TrainTransform(48)(x, np.random.default_rng(5)))  # the caller's draws
print(aug)
print(f"at z = {TRAIN_ZOOM[1]}, {1 - 1 / TRAIN_ZOOM[1]:.1%} of the width and of the height falls outside the crop "
      f"({1 - 1 / TRAIN_ZOOM[1] ** 2:.1%} of the area); open_clip's crop leaves out up to 10% of the area")


# %%
#| exports
def create_model_and_transforms(name: str | None, pretrained: str | os.PathLike | None = None, device=None,
                                quick_gelu: bool | None = None) -> tuple[CLIP, TrainTransform, ImageTransform]:
    "(model, train_transform, eval_transform) as in open_clip: configuration `name` (either spelling) at random, or `pretrained` loaded ('openai': OpenAI's weights)."
    if pretrained is None:
        if name is None: raise ValueError("give a configuration name, pretrained weights, or both")
        model = create_model(name, quick_gelu=True if quick_gelu is None else quick_gelu).to(get_device(device))
    else:
        key = None if name is None else config_name(name)                 # an unknown name is refused before any download
        if str(pretrained) == 'openai':                                   # open_clip's tag for OpenAI's weights
            if key not in MODEL_URLS:
                raise ValueError(f"pretrained='openai' needs one of OpenAI's models as the name ({released_names()}), "
                                 f"not {name!r}; for other weights pass their path as pretrained")
            pretrained = key
        model, _ = load(pretrained, device=device, quick_gelu=quick_gelu)
        if key is not None:
            got, want = asdict(config_from_state_dict(model.state_dict())), asdict(CONFIGS[key])
            if diff := [f"{k} {got[k]} (not {want[k]})" for k in want if got[k] != want[k]]:
                warnings.warn(f"{pretrained} is not a {name}: it has {', '.join(diff)}; the model follows the checkpoint")
    n_px = model.visual.input_resolution
    return model, TrainTransform(n_px), image_transform(n_px)


# %% [markdown]
# A name alone gives a random model, ready to train (in training mode); with `pretrained`, the weights
# and the architecture come from the checkpoint (in evaluation mode, as from `load`), and a name that
# disagrees with them is reported:

# %%
model, train_tf, eval_tf = create_model_and_transforms('MiniCLIP', device='cpu')
test_eq((type(model).__name__, model.training, train_tf.n_px, eval_tf.n_px), ('CLIP', True, 48, 48))
model, train_tf, eval_tf = create_model_and_transforms('MiniCLIP', pretrained=scratch / 'run', device='cpu')
assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items()) and not model.training
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    create_model_and_transforms('MiniCLIP-RN', pretrained=scratch / 'run', device='cpu')
assert 'the model follows the checkpoint' in str(caught[0].message)

# %% [markdown]
# ### open_clip's names
#
# An open_clip user writes `create_model_and_transforms('ViT-B-32', pretrained='openai')`; the same
# call works here and gives OpenAI's ViT-B/32 with the transforms at its resolution. Every function
# of this chapter that takes a model name (`load`, `get_tokenizer`, `create_model_and_transforms`)
# takes open_clip's spelling too, with or without `-quickgelu` (`OPEN_CLIP_NAMES`, from the model
# chapter), and `pretrained='openai'` goes with either spelling. One difference is deliberate: here
# OpenAI's weights always come with QuickGELU, the activation they were trained with, where open_clip
# (3.3.0, the version tested here) builds its plain names with the exact GELU, warns of the mismatch
# with the `openai` tag, and gives QuickGELU only to the `-quickgelu` names.
#
# Without a network, the check below uses a stand-in: the MiniCLIP checkpoint placed in the cache
# under ViT-B/32's file name, with the address table pointing at its SHA256, so that every spelling
# reads that one file without a request (and warns that it is not a ViT-B/32).

# %%
cache = scratch / 'cache'; cache.mkdir()
shutil.copy(scratch / 'train.pt', cache / 'ViT-B-32.pt')                     # the stand-in for OpenAI's file
stand_in = f"https://example.invalid/clip/models/{sha256sum(cache / 'ViT-B-32.pt')}/ViT-B-32.pt"
with mock.patch.dict(MODEL_URLS, {'ViT-B/32': stand_in}), mock.patch.dict(os.environ, {'CLIP_ANNOTATED_CACHE': str(cache)}), \
     mock.patch('urllib.request.urlopen', side_effect=AssertionError('no request expected')), warnings.catch_warnings():
    warnings.simplefilter('ignore')                                          # "not a ViT-B-32": it is the stand-in
    for name in ('ViT-B/32', 'ViT-B-32', 'ViT-B-32-quickgelu'):
        model, train_tf, eval_tf = create_model_and_transforms(name, pretrained='openai', device='cpu')
        assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items()) and uses_quick_gelu(model)
        test_eq((eval_tf.n_px, model.training), (48, False))
    test_eq(load('ViT-B-32', device='cpu')[1].n_px, 48)
test_eq([get_tokenizer(n).context_length for n in ('ViT-B-32', 'RN50x4', 'ViT-L-14-336-quickgelu')], [77, 77, 77])
test_fail(lambda: create_model_and_transforms('MiniCLIP', pretrained='openai'), contains="pretrained='openai' needs")
test_fail(lambda: load('ViT-B-31'), contains='ViT-B-32, ViT-B-16')


# %% [markdown]
# ## Export to the ecosystem: `export_model`
#
# The reverse of everything above: a model trained here, or any source `load` reads, written as a
# folder that Hugging Face `transformers` or open_clip load with their own code.
#
# - **`format='hf'`** writes `config.json` (a `CLIPConfig`: sizes, heads, layers, the MLP at 4× the width,
#   `max_position_embeddings` = the context length, `hidden_act` `'quick_gelu'` or `'gelu'` as the
#   model computes), `model.safetensors` (the names through the appendix's `openai_to_hf`), and the tokenizer and image
#   preprocessing files, so that `transformers.CLIPModel.from_pretrained(folder)` and
#   `transformers.CLIPProcessor.from_pretrained(folder)` work. One setting needs care: HF's text
#   tower pools at the first occurrence of `eos_token_id`, and at `argmax(input_ids)` only for the old
#   value 2. With `eos_token_id` = 49407, the largest id, the first [EOS] *is* the argmax of any row of
#   our `tokenize`, so both rules pick the same position. (HF's tokenizer pads with [EOS] rather than
#   zeros; the first [EOS] is still the one that counts. Built from our vocabulary and merges, it gives
#   our ids on ordinary text, but it does not run ftfy, so mojibake and HTML entities can come out
#   differently.) `transformers` has no ResNet CLIP, so a ResNet is refused with `format='hf'`.
# - **`format='open_clip'`** writes `open_clip_config.json` (a `model_cfg` with `embed_dim`,
#   `quick_gelu`, `vision_cfg` and `text_cfg`, and OpenAI's preprocessing) and
#   `open_clip_model.safetensors` with the state dict as it is: open_clip's `CLIP` uses OpenAI's names.
#   ViT and ResNet models both export. open_clip reads the folder with
#   `open_clip.create_model_and_transforms('local-dir:' + str(folder))`, and
#   `open_clip.get_tokenizer('local-dir:' + str(folder))` gives its tokenizer at the right context length.
#
# Weights keep the dtype the model holds; a source is loaded on the CPU in float32 first. The
# activation travels with the folder, so `load(folder)` gives back the same model. Each folder gets a
# `README.md` saying what model it holds, where it came from and how to load it (`how_to_load`), and
# its files get the permissions of any new file. A training run's folder is refused as a destination:
# `load` reads a folder's `config.json` before its `checkpoint.pt`, so the run would from then on load
# as the export.
# <!-- fixed: 4× -->

# %%
#| exports
def _heads(transformer: torch.nn.Module, width: int) -> int:
    "The number of attention heads of a Transformer (width // HEAD_WIDTH when it has no layers)."
    return transformer.resblocks[0].attn.heads if len(transformer.resblocks) else max(1, width // HEAD_WIDTH)

def _as_clip(model_or_source) -> tuple[CLIP, str]:
    "The CLIP to export (unwrapped from DistributedDataParallel or torch.compile, or loaded) and its name for messages."
    if not isinstance(model_or_source, torch.nn.Module): return load(model_or_source, device='cpu')[0], repr(str(model_or_source))
    model = model_or_source
    while (inner := next((getattr(model, a) for a in ('module', '_orig_mod')
                          if isinstance(getattr(model, a, None), torch.nn.Module)), None)) is not None: model = inner
    if not isinstance(model, CLIP): raise TypeError(f"export_model needs a CLIP or a source load() reads, got a {type(model).__name__}")
    cfg = config_from_state_dict(model.state_dict())
    return model, next((repr(n) for n, c in CONFIGS.items() if c == cfg), f"this CLIP ({cfg})")

def _hf_files(model: CLIP, cfg: CLIPConfig, quick_gelu: bool) -> dict[str, dict]:
    "config.json (a transformers CLIPConfig), preprocessor_config.json and, for OpenAI's vocabulary, tokenizer_config.json."
    act, openai_vocab = 'quick_gelu' if quick_gelu else 'gelu', cfg.vocab_size == default_tokenizer().vocab_size
    ids = dict(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407) if openai_vocab else dict(eos_token_id=2)  # 2: HF's argmax pooling
    text = dict(model_type='clip_text_model', vocab_size=cfg.vocab_size, hidden_size=cfg.transformer_width,
                intermediate_size=4 * cfg.transformer_width, num_attention_heads=cfg.transformer_heads,
                num_hidden_layers=cfg.transformer_layers, max_position_embeddings=cfg.context_length,
                projection_dim=cfg.embed_dim, hidden_act=act, layer_norm_eps=1e-5, **ids)
    vision = dict(model_type='clip_vision_model', hidden_size=cfg.vision_width, intermediate_size=4 * cfg.vision_width,
                  num_attention_heads=_heads(model.visual.transformer, cfg.vision_width), num_hidden_layers=cfg.vision_layers,
                  image_size=cfg.image_resolution, patch_size=cfg.vision_patch_size, num_channels=3,
                  projection_dim=cfg.embed_dim, hidden_act=act, layer_norm_eps=1e-5)
    n = cfg.image_resolution
    files = {'config.json': dict(architectures=['CLIPModel'], model_type='clip', projection_dim=cfg.embed_dim,
                                 logit_scale_init_value=float(model.logit_scale.detach()), text_config=text, vision_config=vision),
             'preprocessor_config.json': dict(image_processor_type='CLIPImageProcessor', do_convert_rgb=True, do_resize=True,
                                              size={'shortest_edge': n}, resample=3, do_center_crop=True,   # 3: bicubic
                                              crop_size={'height': n, 'width': n}, do_rescale=True, rescale_factor=1 / 255,
                                              do_normalize=True, image_mean=list(OPENAI_MEAN), image_std=list(OPENAI_STD))}
    if openai_vocab:
        files['tokenizer_config.json'] = dict(tokenizer_class='CLIPTokenizer', model_max_length=cfg.context_length,
                                              bos_token=SOT, eos_token=EOT, unk_token=EOT, pad_token=EOT)
    return files

def _open_clip_files(model: CLIP, cfg: CLIPConfig, quick_gelu: bool) -> dict[str, dict]:
    "open_clip_config.json: open_clip's model_cfg for this architecture and activation, and OpenAI's preprocessing."
    vit = isinstance(cfg.vision_layers, int)
    vision = dict(image_size=cfg.image_resolution, layers=cfg.vision_layers if vit else list(cfg.vision_layers),
                  width=cfg.vision_width, patch_size=cfg.vision_patch_size,
                  head_width=cfg.vision_width // _heads(model.visual.transformer, cfg.vision_width) if vit else 64)
    text = dict(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.transformer_width,
                heads=cfg.transformer_heads, layers=cfg.transformer_layers)
    return {'open_clip_config.json': dict(
        model_cfg=dict(embed_dim=cfg.embed_dim, quick_gelu=quick_gelu, vision_cfg=vision, text_cfg=text),
        preprocess_cfg=dict(mean=list(OPENAI_MEAN), std=list(OPENAI_STD), interpolation='bicubic', resize_mode='shortest'))}


# %%
#| exports
def export_model(model_or_source, out: str | os.PathLike, format: str = 'hf') -> Path:
    """Write a CLIP (or anything `load` reads) as a folder for Hugging Face (format='hf') or open_clip; returns the folder.

    format='hf' (ViT only):  transformers.CLIPModel.from_pretrained(out); transformers.CLIPProcessor.from_pretrained(out)
    format='open_clip':      open_clip.create_model_and_transforms('local-dir:' + str(out)); open_clip.get_tokenizer('local-dir:' + str(out))
    Both:                    clip_annotated.load(out)
    """
    if format not in ('hf', 'open_clip'): raise ValueError(f"format must be 'hf' or 'open_clip', got {format!r}")
    model, name = _as_clip(model_or_source)
    quick_gelu = uses_quick_gelu(model)
    cfg = config_from_state_dict(model.state_dict())
    cfg = replace(cfg, transformer_heads=_heads(model.transformer, cfg.transformer_width))
    if format == 'hf' and not isinstance(cfg.vision_layers, int):
        raise ValueError(f"{name} is a ResNet CLIP (vision_layers={cfg.vision_layers}); transformers has no ResNet CLIP "
                         f"class, so it cannot be exported with format='hf'. Use format='open_clip'.")
    out = Path(out)
    if run := [f for f in ('checkpoint.pt', 'metrics.jsonl') if (out / f).exists()]:
        raise ValueError(f"{out} is a training run's folder (it holds {' and '.join(run)}): load({str(out)!r}) would read the "
                         f"export instead of the run's checkpoint from then on; export into another folder, e.g. {out}-{format}")
    try: from safetensors.torch import save as safetensors_bytes
    except ImportError: raise ImportError("export_model writes .safetensors files with the safetensors package: "
                                          "pip install safetensors") from None
    def write_safetensors(tensors, path, metadata=None):            # whole or not at all, with the mode of any new file
        atomic_write(path, lambda f: f.write(safetensors_bytes(tensors, metadata=metadata)))
    sd = {k: v.detach().to('cpu', copy=True) for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    if format == 'hf':
        write_safetensors({k: v.contiguous().clone() for k, v in openai_to_hf(sd).items()}, out / 'model.safetensors',
                          metadata={'format': 'pt'})                      # transformers checks this field
        files = _hf_files(model, cfg, quick_gelu)
        if 'tokenizer_config.json' in files:                             # the BPE files of the tokenizer chapter
            tok = default_tokenizer()
            (out / 'vocab.json').write_text(json.dumps(tok.encoder, ensure_ascii=False), encoding='utf-8')
            merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
            (out / 'merges.txt').write_text('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges), encoding='utf-8')
    else:
        write_safetensors({k: v.contiguous() for k, v in sd.items()}, out / 'open_clip_model.safetensors')
        files = _open_clip_files(model, cfg, quick_gelu)
    for file, content in files.items():
        (out / file).write_text(json.dumps(content, indent=2) + '\n', encoding='utf-8')
    kind = f"ViT-{cfg.vision_patch_size}" if isinstance(cfg.vision_layers, int) else "ResNet"
    source = model_or_source if not isinstance(model_or_source, torch.nn.Module) else None
    (out / 'README.md').write_text(
        f"# {name.strip(chr(39)) if len(name) < 80 else 'A CLIP'}, exported by clip_annotated\n\n"
        f"- model: a CLIP with a {kind} image tower, {cfg.image_resolution}-pixel pictures, a {cfg.transformer_layers}-layer "
        f"text tower of context {cfg.context_length}, {cfg.embed_dim}-dimensional embeddings, "
        f"{'QuickGELU' if quick_gelu else 'GELU'}\n"
        f"- from: {Path(source).resolve() if source is not None and Path(source).exists() else source or 'a model in memory'}"
        f"{' (a training run of this book: its checkpoint.pt)' if source is not None and Path(source, 'checkpoint.pt').is_file() else ''}\n"
        f"- files: {', '.join(sorted(f.name for f in out.iterdir() if f.name != 'README.md'))}\n\n"
        f"## Loading it (from the folder that holds `{out.name}`)\n\n```python\n{how_to_load(out, shown=out.name)}```\n",
        encoding='utf-8')
    return out

def how_to_load(folder: str | os.PathLike, shown: str | None = None) -> str:
    "Python that loads an exported folder with transformers, open_clip (for the formats it holds) and this package; the path written as `shown`."
    folder = Path(folder); d = str(folder) if shown is None else shown
    ways = []
    if (folder / 'config.json').is_file():
        ways.append(f"# transformers\nfrom transformers import CLIPModel, CLIPProcessor\nmodel = CLIPModel.from_pretrained({d!r})\n"
                    + (f"processor = CLIPProcessor.from_pretrained({d!r})\n" if (folder / 'preprocessor_config.json').is_file() else ''))
    if (folder / 'open_clip_config.json').is_file():
        ways.append(f"# open_clip\nimport open_clip\nmodel, preprocess = open_clip.create_model_from_pretrained('local-dir:{d}')\n"
                    f"tokenizer = open_clip.get_tokenizer('local-dir:{d}')\n")
    return '\n'.join([*ways, f"# this package\nimport clip_annotated\nmodel, preprocess = clip_annotated.load({d!r})\n"])


# %% [markdown]
# The round trip through `load`: MiniCLIP with each activation, written in both formats and read back,
# gives the same features and the same activation; the ResNet MiniCLIP goes to open_clip and is refused,
# by name, for Hugging Face. `tests/test_export.py` proves the other half of the claim: that
# `transformers.CLIPModel.from_pretrained` and open_clip's `create_model('local-dir:…')` read these
# folders and compute our `encode_image` and `encode_text` within 1e-5 (random weights, both
# activations, MiniCLIP and another small ViT, and a ResNet for open_clip).

# %%
for quick_gelu in (True, False):
    src = copy.deepcopy(mini)
    if not quick_gelu:
        for blk in [*src.visual.transformer.resblocks, *src.transformer.resblocks]: blk.mlp.gelu = torch.nn.GELU()
    with torch.no_grad(): want_img, want_txt = src.encode_image(images), src.encode_text(texts)
    for fmt in ('hf', 'open_clip'):
        folder = export_model(src, scratch / f'export-{fmt}-{quick_gelu}', format=fmt)
        back, pre = load(folder, device='cpu')
        test_eq((uses_quick_gelu(back), pre.n_px), (quick_gelu, 48))
        with torch.no_grad():
            test_close(back.encode_image(images), want_img, eps=1e-6)
            test_close(back.encode_text(texts), want_txt, eps=1e-6)
print(sorted(p.name for p in (scratch / 'export-hf-True').iterdir()))
print(sorted(p.name for p in (scratch / 'export-open_clip-True').iterdir()))
umask = os.umask(0); os.umask(umask)
assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in (scratch / 'export-hf-True').iterdir())   # as any new file
print((scratch / 'export-open_clip-True' / 'README.md').read_text())
test_fail(lambda: export_model(mini, scratch / 'run'), contains="run's folder (it holds checkpoint.pt)")   # load would read the export
test_eq(sorted(p.name for p in (scratch / 'run').iterdir()), ['checkpoint.pt'])
rn = create_model('MiniCLIP-RN').eval()
back, _ = load(export_model(rn, scratch / 'export-rn', format='open_clip'), device='cpu')
assert all(torch.equal(back.state_dict()[k], v) for k, v in rn.state_dict().items())
try: export_model(rn, scratch / 'export-rn-hf', format='hf')
except ValueError as e: show(e)
test_fail(lambda: export_model(rn, scratch / 'export-rn-hf'), contains="'MiniCLIP-RN' is a ResNet CLIP")

# %% [markdown]
# ## Checked against the reference implementations
#
# `tests/test_pretrained.py` holds the oracle checks that need heavy dependencies:
#
# - a `transformers.CLIPModel` (random weights moved off their initialisation, QuickGELU and GELU
#   variants) saved with `save_pretrained` loads through `load(dir)` and gives HF's image and text
#   features within 1e-5; a config with other head sizes, or another model type, is refused;
# - open_clip state dicts (ViT and ResNet, plain and wrapped as `{'state_dict': {'module.'+k: v}}`)
#   load and match open_clip's outputs within 1e-5;
# - a TorchScript archive of our model loads with `jit=False` without `torch.jit.load`, and with
#   `jit=True` through `torch.jit.load`; a released name whose file is in the cache loads without a
#   request;
# - `preprocess` equals open_clip's OpenAI transform pixel for pixel;
# - our nine URLs are open_clip's `openai` URLs; open_clip's names of OpenAI's models are
#   `OPEN_CLIP_NAMES` (with and without `-quickgelu`), each name builds the parameter shapes of
#   open_clip's `create_model` and reads the same file as our spelling, and open_clip's preprocessing
#   settings for the `openai` tag are ours;
# - `dtype=torch.bfloat16` (ViT and ResNet), the activation recorded by a checkpoint or an open_clip
#   folder, the refusals of open_clip options our `CLIP` lacks, `get_tokenizer`, `encode_text` on rows
#   longer than the context, `create_model_and_transforms`, and `TrainTransform` drawing different crops
#   in different `DataLoader` workers, reproducibly.
#
# `tests/test_export.py` checks `export_model` against the libraries it writes for: `transformers`
# and open_clip load the folders with nothing missing or left over and compute our features within
# 1e-5 (MiniCLIP and another small ViT with both activations, MiniCLIP-RN for open_clip), on our tokens
# and on their own tokenizers' tokens; open_clip's transform from the folder equals ours pixel for pixel.
#
# The tests of the machinery under `load` (`download` over real HTTP, payloads refused by every reader,
# hostile and damaged files) are listed in the [Appendix: checkpoints](02b_checkpoints.ipynb).
#
# ## What we measured
#
# The numbers of this run, printed by the cells above: the variant table (input resolutions from
# `CONFIGS`), the QuickGELU-versus-GELU gap on random ViT-B/32 weights, the agreement of bfloat16 with
# float32, and the refusals of the payload files. The real-weights cell needs OpenAI's files, which a
# machine without internet does not have.

# %%
print(f"released models: {len(available_models())}, input resolutions "
      f"{sorted({CONFIGS[n].image_resolution for n in available_models()})}")
print(f"QuickGELU vs GELU, random ViT-B/32 weights: feature cosine >= {min(cos_img, cos_txt):.5f}, "
      f"probabilities move by <= {gap:.4f}")
print(f"bfloat16 against float32, MiniCLIP features on a CPU: cosine >= {cos_bf:.4f}")
print(f"payload marker file present after all refusals: {marker.exists()}")
_ = remove_scratch()
_ = footer(_t0)

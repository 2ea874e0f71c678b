# %% [markdown]
# # The model
#
# > CLIP's two encoders, layer by layer, with OpenAI's parameter names, so that the released checkpoints load into this code unchanged.

# %%
#| default_exp model

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import math
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, asdict
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from clip_annotated.tokenizer import VOCAB_SIZE

HEAD_WIDTH = 64   # channels per attention head in every OpenAI CLIP (heads = width // 64)

# %%
#| hide
import time
from dataclasses import replace
from unittest import mock
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import seed_everything, footer, hardware

# %%
_ = seed_everything(0)


# %% [markdown]
# At the end of this chapter you will have every module of CLIP: a text Transformer, two kinds of
# image encoder (a Vision Transformer and a modified ResNet), the joint embedding space that ties them
# together, the nine configurations OpenAI released, and `build_model`, which reads any of their
# checkpoints and builds the matching network.
#
# ```{mermaid}
# flowchart LR
#   I[image 3×H×W] --> V["image encoder<br/>ViT or ResNet"] --> Wi["W_i (visual.proj)"] --> zI[z_I]
#   T[text tokens 77] --> X["text Transformer<br/>causal, [EOS] pooling"] --> Wt["W_t (text_projection)"] --> zT[z_T]
#   zI --> S["S = z_I · z_Tᵀ / τ"]
#   zT --> S
# ```
#
# > "We consider two different architectures for the image encoder. For the first, we use ResNet-50 …
# > For the second architecture, we experiment with the recently introduced Vision Transformer (ViT)."
# > (Radford et al. 2021, §2.4)
#
# Both encoders end in a vector; a linear map per modality ($W_i$, $W_t$) takes each into one shared
# space of `embed_dim` dimensions. Everything else in this chapter is the inside of those two boxes.
#
# ## Building blocks
#
# ### QuickGELU
#
# The paper does not name its activation, but the released weights were trained with a cheap sigmoid
# approximation of GELU, $x \cdot \sigma(1.702\,x)$. It matters: a checkpoint evaluated with the exact
# GELU instead gives slightly different features (the pretrained-weights chapter returns to this trap,
# because most open_clip checkpoints were trained with the exact GELU).

# %%
#| exports
class QuickGELU(nn.Module):
    "GELU approximated as x·σ(1.702x), the activation of OpenAI's released CLIP models."
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# %%
x = torch.linspace(-6, 6, 1001)
gap = (QuickGELU()(x) - F.gelu(x)).abs().max().item()
assert 0 < gap < 0.03
print(f"largest gap between QuickGELU and GELU on [-6, 6]: {gap:.4f}")


# %% [markdown]
# ### LayerNorm that survives float16
#
# OpenAI ships its weights in float16. Layer normalisation sums squares over hundreds of channels,
# which overflows or loses precision in half precision, so the released code normalises in float32 and
# casts back. In OpenAI's layout the parameters stay float32 (see `convert_weights` below); a model cast
# wholesale to bfloat16 (`model.bfloat16()`) has bfloat16 norm parameters, so they are read as float32
# too (a no-op when they already are).

# %%
#| exports
class LayerNorm(nn.LayerNorm):
    "LayerNorm computed in float32 whatever the input and parameter dtypes, returned in the input dtype."
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type(x.dtype)


# %%
ln = LayerNorm(8)
h = torch.randn(2, 8) * 300
test_eq(ln(h.half()).dtype, torch.float16)
test_close(ln(h.half()).float(), ln(h), eps=2e-2)
test_close(ln.bfloat16()(h.bfloat16()).float(), ln.float()(h), eps=5e-2)   # bfloat16 parameters too


# %% [markdown]
# ### Multi-head attention with OpenAI's parameter layout
#
# OpenAI's checkpoints were written by `nn.MultiheadAttention`: one packed input projection
# `in_proj_weight` of shape `[3·width, width]` (queries, keys and values stacked) with its
# `in_proj_bias`, and an output projection `out_proj`. We keep exactly those names and shapes, so a
# checkpoint loads with `strict=True`, but compute attention with `F.scaled_dot_product_attention`,
# which picks the fastest kernel the hardware has (flash or memory-efficient attention on GPUs).
#
# Later chapters look *inside* attention (the visualisation chapter draws ViT attention maps), and the
# fused kernels never materialise the attention probabilities. So the module has an opt-in:
# with `record = True` it takes the explicit route, softmax and all, and keeps the probabilities in
# `attn_weights`; with `record = False` (the default) the fast path is untouched.

# %%
#| exports
class Attention(nn.Module):
    "Multi-head self-attention with `nn.MultiheadAttention`'s parameter names, computed by SDPA."
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads: raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's own initialisation
        nn.init.zeros_(self.out_proj.bias)
        self.record, self.attn_weights = False, None

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape                                               # [batch, tokens, width]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)       # [b, n, 3·d]
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 × [b, h, n, d/h]
        if self.record: out = self._explicit(q, k, v, is_causal)
        else: out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))

    def _explicit(self, q, k, v, is_causal):
        "Attention spelled out, keeping the probabilities in `self.attn_weights` [b, h, n, n]."
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if is_causal:
            n = q.shape[-2]
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float('-inf'))
        self.attn_weights = scores.softmax(dim=-1)
        return self.attn_weights @ v


# %% [markdown]
# PyTorch's own `nn.MultiheadAttention` is an independent implementation of the same arithmetic, so it
# makes a good first oracle: load one attention layer's weights into both, and they must agree. The
# explicit (recording) path must agree with the fast path too, and its probabilities must sum to one.

# %%
attn, mha = Attention(64, 4), nn.MultiheadAttention(64, 4, batch_first=True)
mha.load_state_dict(attn.state_dict())                    # same names, same shapes
x = torch.randn(2, 10, 64)
causal = torch.ones(10, 10, dtype=torch.bool).triu(1)     # True = may not attend
with torch.no_grad():
    test_close(attn(x), mha(x, x, x, need_weights=False)[0], eps=1e-5)
    test_close(attn(x, is_causal=True), mha(x, x, x, attn_mask=causal, need_weights=False)[0], eps=1e-5)
    fast = attn(x, is_causal=True)
    attn.record = True; slow = attn(x, is_causal=True); attn.record = False
test_close(fast, slow, eps=1e-5)
test_close(attn.attn_weights.sum(-1), torch.ones(2, 4, 10))
assert attn.attn_weights[..., causal].abs().max() == 0     # nothing attends to the future
print("Attention == nn.MultiheadAttention (plain and causal); recording path == fast path")


# %% [markdown]
# ### The residual attention block and the Transformer
#
# Both the text encoder and the ViT use the same pre-norm block: `x + attn(ln_1(x))`, then
# `x + mlp(ln_2(x))`, with a 4× wide MLP whose layers are called `c_fc` and `c_proj` in the checkpoints
# (names inherited from GPT-2). Activations flow batch-first, `[batch, tokens, width]`; the released
# code permuted to sequence-first for `nn.MultiheadAttention`, which changes nothing in the weights.
# <!-- fixed: 4× -->

# %%
#| exports
class ResidualAttentionBlock(nn.Module):
    "Pre-norm Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."
    def __init__(self, width: int, heads: int, is_causal: bool = False, quick_gelu: bool = True):
        super().__init__()
        self.is_causal = is_causal
        self.attn = Attention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU() if quick_gelu else nn.GELU(),
            c_proj=nn.Linear(4 * width, width)))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), is_causal=self.is_causal)
        return x + self.mlp(self.ln_2(x))


# %%
#| exports
class Transformer(nn.Module):
    "A stack of `layers` residual attention blocks (`resblocks.{i}` in the checkpoints)."
    def __init__(self, width: int, layers: int, heads: int, is_causal: bool = False, quick_gelu: bool = True):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, is_causal, quick_gelu)
                                         for _ in range(layers)])
        self.grad_checkpointing = False  # recompute activations in the backward pass (`CLIP.set_grad_checkpointing`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, n, width] -> [b, n, width]
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else: x = block(x)
        return x


# %% [markdown]
# A causal stack must not let a token see the ones after it. Changing the last token of a sequence
# therefore changes only the last output:

# %%
tf = Transformer(64, 2, 4, is_causal=True).eval()
a = torch.randn(1, 6, 64); b = a.clone(); b[:, -1] += 1
with torch.no_grad(): ya, yb = tf(a), tf(b)
test_close(ya[:, :-1], yb[:, :-1], eps=1e-6)
assert (ya[:, -1] - yb[:, -1]).abs().max() > 1e-3


# %% [markdown]
# ## The image encoder, take one: the Vision Transformer
#
# > "We closely follow their implementation with only the minor modification of adding an additional
# > layer normalization to the combined patch and position embeddings before the transformer and use a
# > slightly different initialization scheme." (Radford et al. 2021, §2.4)
#
# The picture is cut into `patch_size`² patches by a strided convolution (`conv1`, no bias), a learned
# `class_embedding` token is put in front, a learned `positional_embedding` is added, and the extra
# LayerNorm the paper mentions (`ln_pre`) normalises the sum before the Transformer. The output of the
# class token, normalised by `ln_post`, is projected by `proj` (the paper's $W_i$) into the joint space.

# %%
#| exports
class VisionTransformer(nn.Module):
    "ViT image encoder: patches -> [class] + positions -> ln_pre -> Transformer -> ln_post([class]) @ proj."
    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int, quick_gelu: bool = True):
        super().__init__()
        if input_resolution % patch_size:
            raise ValueError(f"input_resolution {input_resolution} is not a multiple of patch_size {patch_size}")
        self.input_resolution, self.output_dim = input_resolution, output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, quick_gelu=quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)                                      # [b, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)                       # [b, grid², width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [b, grid²+1, width]
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj               # [b, output_dim]


# %%
vit = VisionTransformer(input_resolution=32, patch_size=8, width=64, layers=2, heads=1, output_dim=16)
test_eq(vit(torch.randn(2, 3, 32, 32)).shape, (2, 16))
test_eq(vit.positional_embedding.shape, ((32 // 8) ** 2 + 1, 64))   # 16 patches + the class token


# %% [markdown]
# ## The image encoder, take two: the modified ResNet
#
# > "We make several modifications to the original version using the ResNet-D improvements from He et
# > al. (2019) and the antialiased rect-2 blur pooling from Zhang (2019). We also replace the global
# > average pooling layer with an attention pooling mechanism." (Radford et al. 2021, §2.4)
#
# Three changes to the textbook ResNet-50, each visible in the code below:
#
# 1. **Stem**: three 3×3 convolutions (the ResNet-D stem) instead of one 7×7, then a 2×2 average pool
#    instead of a max pool.
# 2. **Anti-aliased strides**: a strided block never convolves with stride 2. It convolves at full
#    resolution and then averages 2×2 neighbourhoods (`avgpool`), the simplest blur pool. The shortcut
#    does the same (`downsample.-1` is an average pool, then a 1×1 convolution).
# 3. **Attention pooling** at the end, described after the block.

# %%
#| exports
class Bottleneck(nn.Module):
    "ResNet bottleneck (1×1, 3×3, 1×1 convs, expansion 4) whose stride is an average pool after the 3×3 conv."
    expansion = 4
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False); self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False); self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False); self.bn3 = nn.BatchNorm2d(out)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != out:  # the shortcut: blur-pool, then a 1×1 conv to the new width
            self.downsample = nn.Sequential(OrderedDict([
                ('-1', nn.AvgPool2d(stride)),
                ('0', nn.Conv2d(inplanes, out, 1, bias=False)),
                ('1', nn.BatchNorm2d(out))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        return self.relu3(y + identity)


# %%
blk = Bottleneck(64, 32, stride=2).eval()
test_eq(blk(torch.randn(1, 64, 8, 8)).shape, (1, 128, 4, 4))
assert not any(m.stride != (1, 1) for m in blk.modules() if isinstance(m, nn.Conv2d))  # no strided conv anywhere


# %% [markdown]
# > "The attention pooling is implemented as a single layer of "transformer-style" multi-head QKV
# > attention where the query is conditioned on the global average-pooled representation of the image."
# > (Radford et al. 2021, §2.4)
#
# The final feature map is flattened to a sequence of `spacial_dim²` positions, its mean is put in
# front as an extra token, positional embeddings are added, and one attention layer runs with **only
# the mean token as the query**. Its output, projected by `c_proj`, is the image embedding: the
# projection $W_i$ lives inside the pool for ResNets.

# %%
#| exports
class AttentionPool2d(nn.Module):
    "Pools a feature map by one multi-head attention whose only query is the spatial mean."
    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)                                  # [b, hw, c]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)            # [b, hw+1, c]
        x = x + self.positional_embedding.to(x.dtype)
        split = lambda t: t.view(b, t.shape[1], self.num_heads, -1).transpose(1, 2)  # [b, h, n, c/h]
        q, k, v = split(self.q_proj(x[:, :1])), split(self.k_proj(x)), split(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v)                     # [b, h, 1, c/h]
        return self.c_proj(out.transpose(1, 2).reshape(b, c))             # [b, output_dim]


# %% [markdown]
# A check of the idea rather than the code: if every position holds the same vector (and positions
# carry no information), every key is the same, so the attention is uniform and the pool returns the
# projected value of that vector, whatever the weights.

# %%
pool = AttentionPool2d(spacial_dim=3, embed_dim=32, num_heads=4, output_dim=8)
with torch.no_grad():
    pool.positional_embedding.zero_()
    feat = torch.randn(2, 32, 1, 1).expand(2, 32, 3, 3)
    test_close(pool(feat), pool.c_proj(pool.v_proj(feat[:, :, 0, 0])), eps=1e-5)


# %%
#| exports
class ModifiedResNet(nn.Module):
    "CLIP's ResNet: 3-conv stem, anti-aliased strided Bottlenecks, attention pooling."
    def __init__(self, layers: tuple[int, int, int, int], output_dim: int, heads: int,
                 input_resolution: int = 224, width: int = 64):
        super().__init__()
        if input_resolution % 32:
            raise ValueError(f"input_resolution {input_resolution} is not a multiple of 32 (the ResNet's total stride)")
        self.output_dim, self.input_resolution = output_dim, input_resolution
        # stem: three 3×3 convs (the first with stride 2), then a 2×2 average pool
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False); self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False); self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False); self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        embed_dim = width * 32  # the ResNet feature width (width · 8 · expansion 4)
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.type(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu3(self.bn3(self.conv3(x))))        # [b, width, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))   # [b, width·32, H/32, W/32]
        return self.attnpool(x)                                      # [b, output_dim]


# %%
rn = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, input_resolution=64, width=16).eval()
test_eq(rn(torch.randn(2, 3, 64, 64)).shape, (2, 16))


# %% [markdown]
# ## The text encoder and the joint space
#
# > "The text encoder is a Transformer … As a base size we use a 63M-parameter 12-layer 512-wide model
# > with 8 attention heads. … [the feature representation of the text] is layer normalized and then
# > linearly projected into the multi-modal embedding space. Masked self-attention was used in the text
# > encoder …" (Radford et al. 2021, §2.4; the sentence on [SOS] and [EOS], left out here, is quoted in
# > [the tokenizer chapter](01_tokenizer.ipynb))
#
# The text side has no module of its own in OpenAI's checkpoints: its parts (`token_embedding`,
# `positional_embedding`, `transformer`, `ln_final`, `text_projection`) sit directly on the `CLIP`
# module, and so they do here. Pooling takes the output at the [EOS] token. Since [EOS] has the largest
# id in the vocabulary (49407), `text.argmax(-1)` finds its position in every row.
#
# The model also holds the learnable temperature of §2.5, as the log of its inverse (`logit_scale`),
# initialised to the equivalent of 0.07; [the loss chapter](04_loss.ipynb) quotes the paper on it and
# explains it.
#
# `CLIP` takes OpenAI's constructor arguments, in OpenAI's order. `vision_layers` decides the image
# encoder: a tuple of four block counts builds the ResNet, an integer builds the ViT. The image
# encoder's head count is not an argument: OpenAI fixes it at one head per 64 channels of
# `vision_width`. The text encoder's is (`transformer_heads`), but every released model uses the same
# rule, and a checkpoint does not record it, so `load` reads it back that way and training refuses
# any other count.
# Our one addition is the keyword `quick_gelu` (default `True`, as in OpenAI's models).
#
# One liberty with the arithmetic, and no change to the result: because the text attention is causal,
# nothing after a sequence's [EOS] can reach the [EOS] output. `encode_text` therefore runs the
# Transformer only up to the last [EOS] in the batch instead of over all 77 positions. Typical captions
# are 10 to 20 tokens long, so this is several times less work; the check below the class compares it
# with the full 77-position computation.
#
# The same fact decides what a token tensor longer than the model's context means. Positions after
# [EOS] are padding that is never read, so a `[n, 77]` batch from `tokenize` works on a model with a
# context of 32 as long as every [EOS] falls within the first 32 positions; a caption that ends later
# cannot be encoded, and `encode_text` says so, naming the row and the two lengths, instead of failing
# deep inside with a tensor-size mismatch. Both encoders take `normalize=True`, as open_clip's do, to
# return unit vectors.

# %%
#| exports
def _beyond_context(text: torch.Tensor, eot: torch.Tensor, context_length: int) -> str:
    "The error for token rows whose [EOS] lies beyond the model's context."
    row = int((eot >= context_length).nonzero()[0, 0])
    return (f"tokens have {text.shape[-1]} positions but this model's context length is {context_length}: "
            f"row {row} ends ([EOS]) at position {int(eot[row])}; tokenize with context_length={context_length} "
            f"(truncate=True to cut long texts) or use get_tokenizer(model)")

class CLIP(nn.Module):
    "Contrastive Language-Image Pre-training: an image encoder and a text encoder meeting in one space."
    def __init__(self, embed_dim: int, image_resolution: int, vision_layers: int | tuple[int, int, int, int],
                 vision_width: int, vision_patch_size: int | None, context_length: int, vocab_size: int,
                 transformer_width: int, transformer_heads: int, transformer_layers: int,
                 *, quick_gelu: bool = True):
        super().__init__()
        self.context_length, self.vocab_size = context_length, vocab_size
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(tuple(vision_layers), embed_dim, heads=vision_width * 32 // HEAD_WIDTH,
                                         input_resolution=image_resolution, width=vision_width)
        else:
            self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                            heads=vision_width // HEAD_WIDTH, output_dim=embed_dim, quick_gelu=quick_gelu)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads,
                                       is_causal=True, quick_gelu=quick_gelu)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.initialize_parameters()

    @property
    def dtype(self) -> torch.dtype:
        "The dtype of the weights (float16 after `convert_weights`)."
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        "Images [b, 3, H, W] -> image embeddings [b, embed_dim], L2-normalised if `normalize`."
        x = self.visual(image.type(self.dtype))
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        "Token ids [b, n] (from `tokenize`, [EOS] within the context) -> text embeddings [b, embed_dim], L2-normalised if `normalize`."
        eot = text.argmax(dim=-1)                                           # [b] position of [EOS]
        n = text.shape[1]
        if text.device.type == 'cpu' or n > self.context_length:          # reading eot back would make a GPU wait
            n = int(eot.max()) + 1    # attention is causal: tokens after the last [EOS] cannot change the result
            if n > self.context_length: raise ValueError(_beyond_context(text, eot, self.context_length))
        x = self.token_embedding(text[:, :n]).type(self.dtype) + self.positional_embedding[:n].type(self.dtype)
        x = self.ln_final(self.transformer(x)).type(self.dtype)             # [b, n, width]
        x = x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection  # [b, embed_dim]
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        "(logits_per_image [n_img, n_txt], logits_per_text [n_txt, n_img]): scaled cosine similarities."
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()

    def set_grad_checkpointing(self, enable: bool = True) -> CLIP:
        "Recompute the activations of every Transformer block in the backward pass (both towers; a ResNet's convolutions keep theirs)."
        for m in self.modules():
            if isinstance(m, Transformer): m.grad_checkpointing = enable
        return self


# %% [markdown]
# ### Initialisation
#
# The paper trains from scratch ("we train CLIP from scratch without initializing the image encoder with
# ImageNet weights or the text encoder with pre-trained weights", §2.3), so the initialisation is part of
# the method. The released code uses: normal(0.02) token embeddings, normal(0.01) positions, the
# GPT-2-style scaled normals in the text Transformer (the output projections of every residual branch
# shrink with depth, $\propto (2L)^{-1/2}$, so the residual stream does not grow with $L$), a
# width$^{-1/2}$ normal for the projections, and for ResNets a zero `bn3` scale in every Bottleneck,
# so each block starts as the identity.

# %%
#| exports
@torch.no_grad()
def _init_clip(self: CLIP):
    nn.init.normal_(self.token_embedding.weight, std=0.02)
    nn.init.normal_(self.positional_embedding, std=0.01)
    if isinstance(self.visual, ModifiedResNet):
        pool = self.visual.attnpool
        std = pool.c_proj.in_features ** -0.5
        for lin in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj): nn.init.normal_(lin.weight, std=std)
        for layer in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
            for block in layer: nn.init.zeros_(block.bn3.weight)
    width, layers = self.transformer.width, self.transformer.layers
    proj_std, attn_std, fc_std = width ** -0.5 * (2 * layers) ** -0.5, width ** -0.5, (2 * width) ** -0.5
    for block in self.transformer.resblocks:
        nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
    nn.init.normal_(self.text_projection, std=width ** -0.5)

CLIP.initialize_parameters = _init_clip
CLIP.initialize_parameters.__doc__ = "Re-initialise the text tower, projections and ResNet pool as OpenAI's code does."

# %% [markdown]
# Now a whole (tiny) CLIP. Four checks of the definitions above: the two logit matrices are transposes
# of each other, the scale starts at $1/0.07$, every logit is a cosine similarity times that scale, and
# the text feature really is taken at the [EOS] position (changing tokens *after* [EOS], the padding,
# changes nothing, because attention is causal).

# %%
tiny = CLIP(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
            context_length=16, vocab_size=100, transformer_width=64, transformer_heads=1, transformer_layers=2).eval()
images = torch.randn(3, 3, 32, 32)
texts = torch.zeros(3, 16, dtype=torch.long)
texts[:, 0] = 98; texts[:, 1:4] = torch.randint(1, 90, (3, 3)); texts[:, 4] = 99   # [SOS] a b c [EOS] 0 0 …
with torch.no_grad():
    lpi, lpt = tiny(images, texts)
    test_eq(lpi.shape, (3, 3)); test_eq(lpt, lpi.t())
    test_close(tiny.logit_scale.exp(), 1 / 0.07, eps=1e-4)
    assert lpi.abs().max() <= tiny.logit_scale.exp() + 1e-4
    padded = texts.clone(); padded[:, 6:] = 7                                          # junk after [EOS]
    test_close(tiny.encode_text(padded), tiny.encode_text(texts), eps=1e-6)
print(lpi)


# %%
def encode_text_full(model, text):
    "The text tower over all `context_length` positions, as the released code computes it."
    x = model.token_embedding(text) + model.positional_embedding
    x = model.ln_final(model.transformer(x))
    return x[torch.arange(len(text)), text.argmax(-1)] @ model.text_projection

with torch.no_grad(): test_close(tiny.encode_text(texts), encode_text_full(tiny, texts), eps=1e-5)

# %% [markdown]
# Longer token rows than the context: padding beyond it is ignored, a caption beyond it is an error
# that says what to do; and `normalize=True` gives unit vectors in the same directions.

# %%
with torch.no_grad():
    longer = torch.cat([texts, torch.zeros(3, 61, dtype=torch.long)], dim=1)        # [3, 77]: padding past 16
    test_close(tiny.encode_text(longer), tiny.encode_text(texts), eps=1e-6)
    late = longer.clone(); late[1, 4], late[1, 20] = 50, 99                          # row 1's [EOS] at 20 > 16
    test_fail(lambda: tiny.encode_text(late), contains="row 1 ends ([EOS]) at position 20")
    try: tiny.encode_text(late)
    except ValueError as e: print(e)
    test_close(tiny.encode_text(texts, normalize=True), F.normalize(tiny.encode_text(texts), dim=-1))
    test_close(tiny.encode_image(images, normalize=True).norm(dim=-1), torch.ones(3))


# %% [markdown]
# ### Trading time for memory: gradient checkpointing
#
# Training keeps every block's activations for the backward pass, and for a large batch they, not the
# weights, fill the GPU. `set_grad_checkpointing()` (open_clip's name for it; `--grad-checkpointing` in
# training) makes each Transformer block keep only its input and recompute the rest when the gradients
# need it, with `torch.utils.checkpoint`: about one more forward pass of time for much less memory, and
# exactly the same gradients. It acts on the Transformers of both towers; a ResNet image tower keeps its
# activations, as in open_clip. The check: the same loss and gradients with and without, and one
# checkpointed call per block (`tests/test_model.py` also measures the memory on a GPU).

# %%
def grads(model):
    model.zero_grad()
    logits, _ = model(images, texts)
    F.cross_entropy(logits, torch.arange(3)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

tiny.train()
plain = grads(tiny.set_grad_checkpointing(False))
with mock.patch('torch.utils.checkpoint.checkpoint', wraps=torch.utils.checkpoint.checkpoint) as ckpt:
    checkpointed = grads(tiny.set_grad_checkpointing())
test_eq(ckpt.call_count, tiny.visual.transformer.layers + tiny.transformer.layers)   # every block, once
test_eq(plain.keys(), checkpointed.keys())
for n in plain: test_close(checkpointed[n], plain[n], eps=1e-6)
_ = tiny.set_grad_checkpointing(False).eval()


# %% [markdown]
# ## The released configurations
#
# > "We train a series of 5 ResNets and 3 Vision Transformers. For the ResNets we train a ResNet-50, a
# > ResNet-101, and then 3 more which follow EfficientNet-style model scaling and use approximately 4x,
# > 16x, and 64x the compute of a ResNet-50." (Radford et al. 2021, §2.5)
#
# OpenAI released nine models: those eight and ViT-L/14 fine-tuned one more epoch at 336 pixels. Their
# hyper-parameters below are read off the released checkpoints (source: OpenAI's `clip` repository,
# model card and checkpoints); the parity tests in `tests/` check that each one has exactly the
# parameter count of open_clip's matching `-quickgelu` model. The configuration is a plain dataclass
# whose fields are `CLIP`'s arguments.
#
# The `MiniCLIP` configurations are ours: small enough to train on a laptop CPU in minutes on the
# emoji pictures of the data chapter (48×48 pixels), with OpenAI's full vocabulary so that the same
# tokenizer serves every model.

# %%
#| exports
@dataclass(frozen=True)
class CLIPConfig:
    "The arguments of `CLIP`, as a named, printable configuration."
    embed_dim: int
    image_resolution: int
    vision_layers: int | tuple[int, int, int, int]
    vision_width: int
    vision_patch_size: int | None
    context_length: int = 77
    vocab_size: int = VOCAB_SIZE
    transformer_width: int = 512
    transformer_heads: int = 8
    transformer_layers: int = 12

def _released(transformer_width: int, **vision) -> CLIPConfig:
    "A released model: `vision` and OpenAI's text tower (context 77, full vocabulary, 12 layers, one head per 64 channels)."
    return CLIPConfig(**vision, context_length=77, vocab_size=VOCAB_SIZE, transformer_width=transformer_width,
                      transformer_heads=transformer_width // HEAD_WIDTH, transformer_layers=12)

CONFIGS: dict[str, CLIPConfig] = {
    'RN50':           _released(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                                vision_patch_size=None, transformer_width=512),
    'RN101':          _released(embed_dim=512, image_resolution=224, vision_layers=(3, 4, 23, 3), vision_width=64,
                                vision_patch_size=None, transformer_width=512),
    'RN50x4':         _released(embed_dim=640, image_resolution=288, vision_layers=(4, 6, 10, 6), vision_width=80,
                                vision_patch_size=None, transformer_width=640),
    'RN50x16':        _released(embed_dim=768, image_resolution=384, vision_layers=(6, 8, 18, 8), vision_width=96,
                                vision_patch_size=None, transformer_width=768),
    'RN50x64':        _released(embed_dim=1024, image_resolution=448, vision_layers=(3, 15, 36, 10), vision_width=128,
                                vision_patch_size=None, transformer_width=1024),
    'ViT-B/32':       _released(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                                vision_patch_size=32, transformer_width=512),
    'ViT-B/16':       _released(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                                vision_patch_size=16, transformer_width=512),
    'ViT-L/14':       _released(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
                                vision_patch_size=14, transformer_width=768),
    'ViT-L/14@336px': _released(embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
                                vision_patch_size=14, transformer_width=768),
    # ours, for CPU training on 48×48 emoji (context 32 is plenty for emoji captions)
    'MiniCLIP':       CLIPConfig(embed_dim=128, image_resolution=48, vision_layers=4, vision_width=128, vision_patch_size=8,
                                 context_length=32, vocab_size=VOCAB_SIZE, transformer_width=128, transformer_heads=2,
                                 transformer_layers=4),
    'MiniCLIP-RN':    CLIPConfig(embed_dim=128, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=32,
                                 vision_patch_size=None, context_length=32, vocab_size=VOCAB_SIZE, transformer_width=128,
                                 transformer_heads=2, transformer_layers=4),
}

# open_clip's names of the nine released models -> ours (source: open_clip's pretrained tags, `openai`)
OPEN_CLIP_NAMES: dict[str, str] = {
    'RN50': 'RN50', 'RN101': 'RN101', 'RN50x4': 'RN50x4', 'RN50x16': 'RN50x16', 'RN50x64': 'RN50x64',
    'ViT-B-32': 'ViT-B/32', 'ViT-B-16': 'ViT-B/16', 'ViT-L-14': 'ViT-L/14', 'ViT-L-14-336': 'ViT-L/14@336px'}

def config_name(name: str) -> str:
    "The key of `CONFIGS` for a name in OpenAI's spelling ('ViT-B/32') or open_clip's ('ViT-B-32', 'ViT-B-32-quickgelu')."
    if name in CONFIGS: return name
    if (plain := name.removesuffix('-quickgelu')) in OPEN_CLIP_NAMES: return OPEN_CLIP_NAMES[plain]
    raise KeyError(f"unknown configuration {name!r}; choose one of {', '.join(CONFIGS)}, or in open_clip's spelling "
                   f"{', '.join(OPEN_CLIP_NAMES)} (each also with -quickgelu)")

def create_model(name: str | CLIPConfig, quick_gelu: bool = True) -> CLIP:
    "A randomly initialised `CLIP` for a configuration name (OpenAI's or open_clip's spelling, see `config_name`) or a `CLIPConfig`."
    if isinstance(name, str): name = CONFIGS[config_name(name)]
    return CLIP(**asdict(name), quick_gelu=quick_gelu)


# %% [markdown]
# open_clip spells the same nine models with hyphens (`ViT-B-32`, `ViT-L-14-336`; the ResNets alike)
# and adds `-quickgelu` to ask for the activation OpenAI trained with. `config_name` accepts either
# spelling, and so does every function that takes a model name: `create_model` here, and `load`,
# `get_tokenizer` and `create_model_and_transforms` in the
# [pretrained-weights chapter](03_pretrained.ipynb). The activation stays what `quick_gelu` says
# (QuickGELU unless told otherwise), whichever the spelling: open_clip builds a plain `ViT-B-32` with
# the exact GELU, so `create_model('ViT-B-32', quick_gelu=False)` is open_clip's
# `create_model('ViT-B-32')`, and the default here is its `ViT-B-32-quickgelu`.
# `tests/test_pretrained.py` checks the names against open_clip's list of OpenAI's models, and the
# parameter shapes against open_clip's `create_model` for each.

# %%
test_eq([config_name(n) for n in ('ViT-B/32', 'ViT-B-32', 'ViT-L-14-336-quickgelu', 'RN50x4', 'MiniCLIP')],
        ['ViT-B/32', 'ViT-B/32', 'ViT-L/14@336px', 'RN50x4', 'MiniCLIP'])
test_eq(sorted(set(OPEN_CLIP_NAMES.values())), sorted(n for n in CONFIGS if not n.startswith('MiniCLIP')))
with torch.device('meta'): ours, theirs = create_model('ViT-L/14@336px'), create_model('ViT-L-14-336')   # shapes only
test_eq({k: v.shape for k, v in theirs.state_dict().items()}, {k: v.shape for k, v in ours.state_dict().items()})
test_fail(lambda: create_model('ViT-B-31'), contains="ViT-B/32, ViT-B/16")
test_fail(lambda: create_model('ViT-B-31'), contains="ViT-B-32, ViT-B-16")


# %% [markdown]
# Which activation does a model use? Its state dict cannot say (QuickGELU and GELU have no
# parameters), so code that saves a model and wants it rebuilt the same way has to ask the modules and
# store the answer beside the weights. `uses_quick_gelu` asks them.

# %%
#| exports
def uses_quick_gelu(model: nn.Module) -> bool:
    "True if the model's Transformer blocks use QuickGELU, False if they use the exact GELU (or it has none)."
    acts = {type(b.mlp.gelu) for b in model.modules() if isinstance(b, ResidualAttentionBlock)}
    if not acts <= {QuickGELU, nn.GELU} or len(acts) > 1:
        raise ValueError(f"{type(model).__name__} uses the activations {sorted(a.__name__ for a in acts)} in its "
                         f"Transformer blocks; expected QuickGELU or GELU throughout")
    return acts == {QuickGELU}


# %%
test_eq(uses_quick_gelu(create_model('MiniCLIP')), True)
test_eq(uses_quick_gelu(create_model('MiniCLIP-RN', quick_gelu=False)), False)  # the text tower decides
mixed = create_model('MiniCLIP'); mixed.transformer.resblocks[0].mlp.gelu = nn.GELU()
test_fail(lambda: uses_quick_gelu(mixed), contains="['GELU', 'QuickGELU']")


# %% [markdown]
# Counting parameters does not need the memory of the big models: built on PyTorch's `meta` device, a
# model has shapes but no storage, so the whole table takes a moment even for RN50x64.

# %%
#| exports
def count_parameters(model_or_name: nn.Module | str | CLIPConfig) -> int:
    "Number of parameters of a model, or of a configuration (built on the meta device, no memory used)."
    if isinstance(model_or_name, nn.Module): return sum(p.numel() for p in model_or_name.parameters())
    with torch.device('meta'): return count_parameters(create_model(model_or_name))


# %%
rows = []
for name, cfg in CONFIGS.items():
    with torch.device('meta'): m = create_model(cfg)
    rows.append((name, cfg.image_resolution, count_parameters(m.visual), count_parameters(m) - count_parameters(m.visual),
                 count_parameters(m)))
print(f"{'model':16}{'res':>5}{'image enc.':>14}{'text enc.':>13}{'total':>14}")
for name, res, vis, txt, tot in rows: print(f"{name:16}{res:>5}{vis:>14,}{txt:>13,}{tot:>14,}")
test_eq(dict((r[0], r[4]) for r in rows)['ViT-B/32'], count_parameters('ViT-B/32'))

# %% [markdown]
# The text tower is the same 12-layer Transformer for the smaller models (about 63M parameters at width
# 512 including the token embedding table, as the paper says); the image tower is what scales.

# %%
text_b32 = [r for r in rows if r[0] == 'ViT-B/32'][0][3]
assert 60e6 < text_b32 < 66e6
print(f"ViT-B/32 text encoder: {text_b32 / 1e6:.1f}M parameters")


# %% [markdown]
# ## Reading a checkpoint: `build_model`
#
# A released checkpoint is a state dict and nothing else: no configuration file travels with it.
# `build_model` therefore reads the architecture off the tensors, as OpenAI's loader does:
#
# - **ViT or ResNet?** Only the ViT has `visual.proj`.
# - **ViT**: width and patch size from `visual.conv1.weight` `[width, 3, patch, patch]`; the number of
#   layers by counting `visual.transformer.resblocks.{i}`; the resolution from the number of positions,
#   $(\text{res}/\text{patch})^2 + 1$.
# - **ResNet**: the block counts by counting `visual.layer{k}.{i}`; the width from
#   `visual.layer1.0.conv1.weight`; the resolution from the attention pool's positions,
#   $(\text{res}/32)^2 + 1$.
# - **Text**: `embed_dim` from `text_projection`, context length from `positional_embedding`,
#   vocabulary from `token_embedding`, width from `ln_final`, layers by counting `transformer.resblocks`.
#
# The weights keep the dtype they were stored in: a float16 checkpoint gives a float16 model, as with
# OpenAI's `build_model` (which always converts to float16), a float32 one stays float32.

# %%
#| exports
def _count_blocks(state_dict: dict, prefix: str) -> int:
    "How many distinct `{prefix}{i}.` blocks the state dict holds."
    return len({k[len(prefix):].split('.')[0] for k in state_dict if k.startswith(prefix)})

def config_from_state_dict(state_dict: dict) -> CLIPConfig:
    "Read the architecture of an OpenAI-layout CLIP checkpoint off its tensor names and shapes."
    sd = state_dict
    missing = [k for k in ('text_projection', 'positional_embedding', 'token_embedding.weight', 'ln_final.weight') if k not in sd]
    if missing: raise KeyError(f"not an OpenAI-layout CLIP state dict: missing {missing} (keys start with {sorted(sd)[:5]})")
    if 'visual.proj' in sd:  # Vision Transformer
        width, _, patch, _ = sd['visual.conv1.weight'].shape
        layers: int | tuple = _count_blocks(sd, 'visual.transformer.resblocks.')
        res = patch * round((sd['visual.positional_embedding'].shape[0] - 1) ** 0.5)
    else:                    # ModifiedResNet
        layers = tuple(_count_blocks(sd, f'visual.layer{k}.') for k in (1, 2, 3, 4))
        width, patch = sd['visual.layer1.0.conv1.weight'].shape[0], None
        grid = round((sd['visual.attnpool.positional_embedding'].shape[0] - 1) ** 0.5)
        if grid ** 2 + 1 != sd['visual.attnpool.positional_embedding'].shape[0]:
            raise ValueError("visual.attnpool.positional_embedding does not hold a square grid plus one token")
        res = grid * 32
    tw = sd['ln_final.weight'].shape[0]
    return CLIPConfig(embed_dim=sd['text_projection'].shape[1], image_resolution=res, vision_layers=layers,
                      vision_width=width, vision_patch_size=patch,
                      context_length=sd['positional_embedding'].shape[0],
                      vocab_size=sd['token_embedding.weight'].shape[0], transformer_width=tw,
                      transformer_heads=tw // HEAD_WIDTH, transformer_layers=_count_blocks(sd, 'transformer.resblocks.'))


# %%
#| exports
def convert_weights(model: nn.Module) -> nn.Module:
    "Cast the weights OpenAI stores in float16 (convs, linears, attention, projections) to float16, in place."
    def _half(m):
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.weight.data = m.weight.data.half()
            if m.bias is not None: m.bias.data = m.bias.data.half()
        if isinstance(m, Attention):
            m.in_proj_weight.data, m.in_proj_bias.data = m.in_proj_weight.data.half(), m.in_proj_bias.data.half()
        for name in ('text_projection', 'proj'):
            p = getattr(m, name, None)
            if isinstance(p, nn.Parameter): p.data = p.data.half()
    return model.apply(_half)

def build_model(state_dict: dict, quick_gelu: bool = True) -> CLIP:
    "Build the `CLIP` an OpenAI-layout state dict describes, load it strictly, and return it in eval mode."
    sd = {k: v for k, v in state_dict.items() if k not in ('input_resolution', 'context_length', 'vocab_size')}
    model = CLIP(**asdict(config_from_state_dict(sd)), quick_gelu=quick_gelu)
    if sd['text_projection'].dtype == torch.float16: convert_weights(model)
    model.load_state_dict(sd, strict=True)
    return model.eval()


# %% [markdown]
# The round trip must be exact: a model's own state dict builds the same architecture, and the rebuilt
# model computes the same outputs. We check both encoder kinds, with weights moved away from their
# initialisation so that nothing passes by accident (e.g. the zero-initialised `bn3` scales).

# %%
for cfg in (CONFIGS['MiniCLIP'], CONFIGS['MiniCLIP-RN']):
    m = create_model(cfg).eval()
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.02 * torch.randn_like(p))
    m2 = build_model(m.state_dict())
    test_eq(config_from_state_dict(m.state_dict()), cfg)
    img = torch.randn(2, 3, cfg.image_resolution, cfg.image_resolution)
    txt = torch.randint(1, 49000, (2, cfg.context_length)); txt[:, 5] = 49407
    with torch.no_grad():
        test_close(m2.encode_image(img), m.encode_image(img), eps=1e-6)
        test_close(m2.encode_text(txt), m.encode_text(txt), eps=1e-6)
print("build_model(state_dict) rebuilds MiniCLIP (ViT) and MiniCLIP-RN exactly")

# %% [markdown]
# `build_model` infers the architecture from the tensors alone, so it also works on configurations it
# has never seen, and refuses, naming the problem, a dictionary that is not a CLIP checkpoint:

# %%
for name, cfg in CONFIGS.items():                          # every configuration reads back as itself
    with torch.device('meta'): m = create_model(cfg)        # shapes only, no memory
    test_eq(config_from_state_dict(m.state_dict()), cfg)
test_eq(CONFIGS['ViT-L/14@336px'], replace(CONFIGS['ViT-L/14'], image_resolution=336))
test_eq((CONFIGS['RN50'].vision_layers, CONFIGS['ViT-B/32'].vision_patch_size, CONFIGS['MiniCLIP'].context_length), ((3, 4, 6, 3), 32, 32))
test_fail(lambda: build_model({'fc.weight': torch.zeros(2, 2)}), contains='not an OpenAI-layout CLIP state dict')

# %% [markdown]
# After `convert_weights`, the model holds OpenAI's mix of float16 weights and float32 norms and
# embeddings; on a GPU it runs as OpenAI's fp16 models do. (CPU kernels for float16 convolutions are
# incomplete, so on a CPU we check only the dtypes.)

# %%
half = convert_weights(create_model('MiniCLIP'))
test_eq(half.dtype, torch.float16)
test_eq(half.visual.transformer.resblocks[0].attn.in_proj_weight.dtype, torch.float16)
test_eq(half.ln_final.weight.dtype, torch.float32)           # norms stay float32
test_eq(half.token_embedding.weight.dtype, torch.float32)    # so do embeddings, cast on use
test_eq(build_model(half.state_dict()).dtype, torch.float16)


# %% [markdown]
# ## Looking inside: capturing attention
#
# `capture_attention` switches the recording path on for the attention layers of a module, runs the
# code in its `with` block, and hands back the probabilities layer by layer, `[batch, heads, n, n]`
# each. The visualisation chapter draws them over the picture.

# %%
#| exports
@contextmanager
def capture_attention(module: nn.Module):
    "Record attention probabilities of every `Attention` in `module`; yields a list filled, in order, on exit."
    layers = [m for m in module.modules() if isinstance(m, Attention)]
    maps: list[torch.Tensor] = []
    for m in layers: m.record, m.attn_weights = True, None
    try: yield maps
    finally:
        for m in layers:
            if m.attn_weights is not None: maps.append(m.attn_weights)
            m.record, m.attn_weights = False, None


# %%
m = create_model('MiniCLIP').eval()
img = torch.randn(1, 3, 48, 48)
with torch.no_grad():
    plain = m.encode_image(img)
    with capture_attention(m.visual) as maps: recorded = m.encode_image(img)
test_close(recorded, plain, eps=1e-5)                          # recording does not change the result
test_eq(len(maps), m.visual.transformer.layers)
test_eq(maps[0].shape, (1, 2, (48 // 8) ** 2 + 1, (48 // 8) ** 2 + 1))
assert all(not a.record for a in m.modules() if isinstance(a, Attention))   # fast path restored
print(f"{len(maps)} attention maps of shape {tuple(maps[0].shape)}")


# %% [markdown]
# ## A simpler baseline for ablations
#
# The paper's choices (a Transformer text encoder pooled at [EOS], a ViT or an attention-pooled ResNet)
# are worth testing against something plainer. `BaselineCLIP` is the simplest dual encoder we could
# write behind the same interface: a four-block CNN with global average pooling for images, and for
# text, the mean of the token embeddings of the non-padding tokens followed by an MLP. There is no
# word order and no attention, so the gap between the two, measured in
# [Experiments](16_experiments.ipynb) on the same data, steps and seeds, is what those ingredients buy
# at that scale, whichever way it goes.

# %%
#| exports
class BaselineCLIP(nn.Module):
    "A small CNN image encoder and a mean-of-embeddings text encoder, with `CLIP`'s interface."
    def __init__(self, embed_dim: int = 128, image_resolution: int = 48, width: int = 32,
                 vocab_size: int = VOCAB_SIZE, text_width: int = 128, context_length: int = 32):
        super().__init__()
        self.context_length, self.vocab_size = context_length, vocab_size
        chans = [3, width, width * 2, width * 4, width * 8]
        self.visual = nn.Sequential(*[nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                                                    nn.ReLU(inplace=True), nn.MaxPool2d(2))
                                      for i, o in zip(chans, chans[1:])],
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(chans[-1], embed_dim))
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.text_mlp = nn.Sequential(nn.Linear(text_width, text_width), nn.GELU(), nn.Linear(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def dtype(self) -> torch.dtype: return self.visual[-1].weight.dtype

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.visual(image.type(self.dtype))
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        keep = (text != 0).unsqueeze(-1).type(self.dtype)                  # [b, n, 1]: 1 for real tokens
        x = self.text_mlp((self.token_embedding(text) * keep).sum(1) / keep.sum(1).clamp(min=1))
        return F.normalize(x, dim=-1) if normalize else x

    forward = CLIP.forward


# %%
base = BaselineCLIP().eval()
with torch.no_grad():
    lpi, lpt = base(torch.randn(3, 3, 48, 48), torch.randint(1, 100, (3, 32)))
test_eq(lpi.shape, (3, 3)); test_eq(lpt, lpi.t())
test_eq(uses_quick_gelu(base), False)                      # no Transformer blocks, so no QuickGELU
print(f"BaselineCLIP: {count_parameters(base):,} parameters against MiniCLIP's {count_parameters('MiniCLIP'):,}")

# %% [markdown]
# ## Checked against the reference implementations
#
# The checks above test the ideas; `tests/test_model_parity.py` tests faithfulness. With open_clip as
# the oracle (its CLIP built with QuickGELU, random weights perturbed away from their initialisation,
# ViT and ResNet configurations, float32 on CPU), `build_model` of its state dict gives `encode_image`,
# `encode_text` and logits equal to open_clip's within 1e-5, and each of the nine configurations above
# has exactly the parameter count of open_clip's `-quickgelu` model of the same name.
#
# Speed, measured by `python -m clip_annotated.bench`, which times our encoders and open_clip's in the
# same process on ViT-B/32, float32, CPU, batch 8: <!-- the cell is skipped under nbdev_test -->

# %%
#| bench
from clip_annotated.bench import bench_encoders   # needs open_clip

# %%
#| bench
enc = bench_encoders()

# %%
_ = footer()

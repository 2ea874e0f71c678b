# %% [markdown]
# # Retrieval
#
# > Did it learn anything? Recall at k of held-out pictures and captions, image → text and text → image, each beside its chance level, and the held-out loss: what the training loop measures while it trains, and what the report says at the end.

# %%
#| default_exp retrieval

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import itertools, math
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset
from clip_annotated.core import get_device
from clip_annotated.model import CLIP
from clip_annotated.tokenizer import tokenize
from clip_annotated.loss import clip_loss
from clip_annotated.data import collate

# %%
#| hide
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, seed_everything
from clip_annotated.data import EmojiDataset
from clip_annotated.model import create_model
_ = seed_everything(0)
small = create_model('MiniCLIP')           # untrained


# %% [markdown]
# The training loss says how well the model tells apart the pairs of a batch it was trained on. The
# question that matters is whether it matches pictures and captions it has never seen. For the emoji
# set the answer is a retrieval test on the held-out test split: every test picture is compared with
# the names of *all* test emoji at once (image → text), and every name with all pictures
# (text → image). Recall at $k$ (R@$k$) is the fraction of queries whose right answer is among the
# $k$ best-scoring candidates. With $N$ candidates and one right answer, guessing gives $k/N$; we
# report that chance level next to every number. Ties count against the model (a model that scores
# everything alike gets chance, not a perfect score). [The training chapter](06_train.ipynb) runs this
# test while it trains and at the end, and the run's report shows it.
#
# When several pictures share one caption (a scene set with repeated captions), pass
# `image_to_text`: text → image then counts a hit when *any* of the text's pictures is among the top
# $k$, and its chance level is $1 - \binom{N-m}{k} / \binom{N}{k}$ for a text with $m$ pictures. The
# zero-shot chapter re-uses this function.

# %%
#| exports
def retrieval_metrics(image_features: torch.Tensor, text_features: torch.Tensor, ks=(1, 5, 10),
                      image_to_text: torch.Tensor | None = None) -> dict:
    "Image→text and text→image recall@k (fractions) of paired features, with their chance levels."
    for name, f in (('image', image_features), ('text', text_features)):
        if not torch.isfinite(f).all():                              # NaN compares false: it would rank first
            raise ValueError(f"the {name} features hold NaN or infinite values (a diverged model?): recall cannot be measured")
    S = F.normalize(image_features.float(), dim=-1) @ F.normalize(text_features.float(), dim=-1).T  # [n_img, n_txt]
    n_img, n_txt = S.shape
    if image_to_text is None:
        if n_img != n_txt: raise ValueError(f"{n_img} images and {n_txt} texts: pass image_to_text to pair them")
        image_to_text = torch.arange(n_img)
    image_to_text = image_to_text.to(S.device)
    rows = torch.arange(n_img, device=S.device)
    right = S[rows, image_to_text]                                           # [n_img] score of the right text
    rank_i2t = (S >= right[:, None]).sum(1) - 1                              # others scoring at least as high
    is_pair = torch.zeros(n_txt, n_img, dtype=torch.bool, device=S.device)
    is_pair[image_to_text, rows] = True                                      # [n_txt, n_img]
    best_right = S.T.masked_fill(~is_pair, -math.inf).max(1).values          # [n_txt] best right picture
    rank_t2i = ((S.T >= best_right[:, None]) & ~is_pair).sum(1)              # wrong pictures at least as high
    has = is_pair.any(1)
    m = is_pair.sum(1)[has].tolist()
    out = dict(n_images=n_img, n_texts=n_txt)
    for k in ks:
        out[f'i2t_R@{k}'] = (rank_i2t < k).float().mean().item()
        out[f't2i_R@{k}'] = (rank_t2i[has] < k).float().mean().item()
        out[f'i2t_chance@{k}'] = min(k, n_txt) / n_txt
        kk = min(k, n_img)
        out[f't2i_chance@{k}'] = sum(1 - math.comb(n_img - mi, kk) / math.comb(n_img, kk) for mi in m) / len(m)
    return out


# %% [markdown]
# Hand-made features, where the answers can be read off the printed similarity matrix: four pictures
# and four captions in two dimensions, arranged so that every picture finds its caption first but
# caption 1 finds picture 0 before its own picture.

# %%
img = torch.tensor([[1., 0.], [0., 1.], [-1., 0.1], [-1., -0.1]])    # [4, 2] pictures
txt = torch.tensor([[1., 0.], [0.8, 0.6], [-1., 0.2], [-1., -0.3]])    # [4, 2] captions, text i belongs to picture i
print((F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T).round(decimals=3))   # cosine similarities
r = retrieval_metrics(img, txt, ks=(1, 2))
test_eq(r['i2t_R@1'], 1.0)       # each row's largest entry is on the diagonal
test_eq(r['t2i_R@1'], 0.75)      # column 1: picture 0 (0.8) beats picture 1 (0.6), the right one
test_eq(r['t2i_R@2'], 1.0)       # ... but picture 1 is second
test_eq(r['i2t_chance@1'], 0.25); test_eq(r['t2i_chance@2'], 0.5)
# ties count against: identical features for everything give R@1 = 0, not 1
test_eq(retrieval_metrics(torch.ones(5, 3), torch.ones(5, 3))['i2t_R@1'], 0.0)
# a diverged model's NaN features are an error, not R@1 = 100%
test_fail(lambda: retrieval_metrics(torch.full((5, 3), math.nan), torch.ones(5, 3)), contains='NaN')
# random features sit near chance; a caption shared by two pictures doubles text→image chance
g = torch.Generator().manual_seed(0)
rr = retrieval_metrics(torch.randn(2000, 64, generator=g), torch.randn(2000, 64, generator=g))
assert abs(rr['i2t_R@10'] - 10 / 2000) < 0.006
shared = retrieval_metrics(torch.randn(4, 8), torch.randn(2, 8), ks=(1,), image_to_text=torch.tensor([0, 0, 1, 1]))
test_close(shared['t2i_chance@1'], 0.5)
print({k: round(v, 4) for k, v in r.items()})


# %% [markdown]
# `evaluate_retrieval` produces those features for a data set: it encodes every picture and every distinct
# caption once (batches, no gradients, the model in eval mode) and pairs each picture with its caption.
# Given `loss_batch`, it also reports the held-out loss: `clip_loss` over consecutive groups of that many
# pairs (the training batch, so that each picture has as many wrong captions to rule out as in training;
# a last, smaller group is left out, as training leaves out a last, smaller batch), averaged. Set beside
# the training loss, it shows when the model starts to learn its training pairs rather than pictures and
# captions in general.

# %%
#| exports
@torch.no_grad()
def evaluate_retrieval(model: CLIP, dataset, batch_size: int = 256, device=None, ks=(1, 5, 10),
                       loss_batch: int | None = None) -> dict:
    "Retrieval metrics of `model` on `dataset` ((image, caption) items, map-style or iterable): all pictures against all distinct captions; with `loss_batch`, the held-out loss too."
    device = get_device(device)
    was_training = model.training; model.eval()
    ctx = model.context_length
    captions, images = [], []
    items = iter(dataset) if isinstance(dataset, IterableDataset) else (dataset[i] for i in range(len(dataset)))
    while raw := list(itertools.islice(items, batch_size)):
        if not (chunk := [it for it in raw if it is not None]): continue                   # bad samples are None
        x, _ = collate(chunk, context_length=ctx)
        images.append(model.encode_image(x.to(device)).float().cpu())
        captions += [c for _, c in chunk]
    if not captions: raise ValueError(f"the held-out set ({type(dataset).__name__}) has no usable (image, caption) pair")
    texts = list(dict.fromkeys(captions))                                 # distinct, in order of appearance
    index = {c: j for j, c in enumerate(texts)}
    tokens = tokenize(texts, context_length=ctx, truncate=True)
    T_f = torch.cat([model.encode_text(tokens[s:s + batch_size].to(device)).float().cpu()
                     for s in range(0, len(texts), batch_size)])
    model.train(was_training)
    I_f, pairs = torch.cat(images), torch.tensor([index[c] for c in captions])
    metrics = retrieval_metrics(I_f, T_f, ks, pairs)
    if loss_batch:
        g = min(loss_batch, len(I_f))                                         # at least one group
        metrics['loss'] = float(np.mean([clip_loss(I_f[s:s + g], T_f[pairs[s:s + g]], model.logit_scale.float().cpu(),
                                                   gather=False).item()   # rank 0 alone evaluates
                                         for s in range(0, len(I_f) - g + 1, g)]))
    return metrics


# %%
held = [EmojiDataset('test', train=False)[i] for i in range(24)]
m_eval = evaluate_retrieval(small, held, loss_batch=8)
x_h, t_h = collate(held, context_length=small.context_length)
with torch.no_grad(): f_i, f_t = small.encode_image(x_h), small.encode_text(t_h)
test_close(m_eval['loss'], np.mean([clip_loss(f_i[s:s + 8], f_t[s:s + 8], small.logit_scale).item() for s in (0, 8, 16)]), eps=1e-5)
assert 'loss' not in evaluate_retrieval(small, held)          # only when asked for
print(f"held-out loss in groups of 8, untrained: {m_eval['loss']:.3f} (ln 8 = {math.log(8):.3f})")

# %%
_ = footer()

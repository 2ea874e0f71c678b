# %% [markdown]
# # Looking inside
#
# > Where the book MiniCLIP puts pictures and captions (apart, in the two cones of a "modality gap", or mixed), what it retrieves and confuses on the held-out emoji, and where its ViT's [CLS] token looks.

# %%
#| default_exp viz

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import textwrap, warnings
import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torch.utils.data import Dataset
from clip_annotated.tasks import Labelled
from clip_annotated.zeroshot import encode_images, encode_texts, percentile_interval

# %%
#| hide
import time
from collections import Counter
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close
from clip_annotated.core import footer, in_test, markdown_table, pick, seed_everything
from clip_annotated.data import EmojiDataset
from clip_annotated.model import capture_attention, create_model
from clip_annotated.tokenizer import tokenize
from clip_annotated.run import book_model
from clip_annotated.retrieval import retrieval_metrics
from clip_annotated.tasks import CATEGORY_NAMES, confusion, emoji_task
from clip_annotated.zeroshot import paired_bootstrap, wilson_interval
from clip_annotated.limits import wilson_difference

# %%
_ = seed_everything(0)
t_start = time.perf_counter()

# %% [markdown]
# The earlier chapters measured the book MiniCLIP with single numbers: recall@k, zero-shot accuracy,
# robustness. This chapter looks at what sits behind them, on the held-out emoji of the data chapter.
# At the end you can measure whether pictures and captions sit apart in the shared embedding space
# (the "modality gap" that Liang et al. found in CLIP) or mix, at random initialisation and after
# training, and draw that space in two dimensions; show a similarity matrix with the pictures along
# its axis; list what the model retrieves and where it fails; and draw the ViT's attention over a
# picture. The readings below are printed from the measurements, so they say what this model does.
#
# > "CLIP learns a multi-modal embedding space by jointly training an image encoder and text encoder to
# > maximize the cosine similarity of the image and text embeddings of the N real pairs in the batch
# > while minimizing the cosine similarity of the embeddings of the N² − N incorrect pairings."
# > (Radford et al. 2021, §2.3)

# %%
model, cfg = book_model()
test_ds = EmojiDataset('test', train=False)
n_show = pick(gpu=len(test_ds), cpu=len(test_ds), test=60)
keep = list(range(0, len(test_ds), max(1, len(test_ds) // n_show)))[:n_show]
print(f"{cfg.model} {cfg.clip_config().vision_patch_size}-pixel patches, {len(keep)} of {len(test_ds)} held-out emoji")


# %% [markdown]
# ## Image and text embeddings, paired
#
# Every held-out emoji gives a pair: its picture and its name as the caption (`train=False`: the name
# alone, no template, no crop). `embed_pairs` returns both sets of unit embeddings, row $i$ of one
# paired with row $i$ of the other.

# %%
#| exports
def embed_pairs(model, dataset: Dataset, indices=None, device=None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    "(unit image embeddings [N, d], unit caption embeddings [N, d], captions) of `dataset`'s (image, caption) items."
    indices = range(len(dataset)) if indices is None else indices
    img, _ = encode_images(model, Labelled(dataset, indices), device=device)
    captions = [dataset[i][1] for i in indices]
    return img, encode_texts(model, captions, device=device), captions


# %%
I_e, T_e, captions = embed_pairs(model, test_ds, keep)
images = test_ds.images[keep]                                       # uint8 [N, 3, 48, 48], for display
cats = [test_ds.records[i].category for i in keep]
test_eq(I_e.shape, T_e.shape); test_close(I_e.norm(dim=-1), torch.ones(len(keep)), eps=1e-4)
S = I_e @ T_e.T                                                     # [N pictures, N captions] cosines
print(I_e.shape, f"mean cosine of a picture with its own caption {S.diagonal().mean():.3f}")


# %% [markdown]
# ## The modality gap
#
# Liang et al. (2022, "Mind the Gap") report that in CLIP's shared space the image embeddings and the
# text embeddings sit in two separate narrow cones, and that the gap between them survives training.
# That is the question here, for the book's model: apart or mixed? Their account, in our words: each
# encoder already maps its inputs into a narrow cone at random initialisation, because every nonlinear
# layer (they analyse ReLU layers) narrows the angles between its outputs, so depth narrows them
# further; the two towers, initialised separately, start in different cones; and the contrastive loss
# with a small temperature ($1/\exp(t)$, 1/100 in CLIP) only compares *relative* similarities inside
# each row and column of the logit matrix. Moving every text embedding by the same vector barely changes
# which caption wins a row, so the loss has little to say about where the cones sit as wholes; with a
# low temperature it even prefers to keep them apart (they showed the loss rises when the gap is closed
# by hand). So a matched pair's cosine is far below 1 even when retrieval is right: what counts is that
# it beats the wrong pairs.
#
# Three numbers measure it: the distance between the two centroids, the mean cosine *within* a
# modality (how narrow each cone is), and the mean cosine *between* modalities. A fourth, further
# down, asks the question directly: how many of a point's nearest neighbours are of its own modality.

# %%
#| exports
def _mean_offdiag(S: torch.Tensor) -> float:
    n = S.shape[0]
    return ((S.sum() - S.diagonal().sum()) / (n * (n - 1))).item()

def modality_gap(img: torch.Tensor, txt: torch.Tensor) -> dict:
    "Centroid distance, mean cosine within images, within texts, between them (all pairs); for paired rows, also of the pairs and of the unmatched pairs."
    img, txt = F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)   # [N, d], [M, d]
    out = dict(centroid_distance=(img.mean(0) - txt.mean(0)).norm().item(),
               cos_within_image=_mean_offdiag(img @ img.T), cos_within_text=_mean_offdiag(txt @ txt.T),
               cos_between=(img @ txt.T).mean().item())
    if img.shape == txt.shape:
        out['cos_paired'] = (img * txt).sum(-1).mean().item()
        out['cos_unpaired'] = _mean_offdiag(img @ txt.T)         # a picture and a caption that are not each other's pair
    return out


# %% [markdown]
# A toy first: two tight cones around orthogonal axes have unit-length centroids $\sqrt 2$ apart, cosine
# 1 within and 0 between; the same cloud on both sides has no gap at all.

# %%
e = torch.eye(4)
toy = modality_gap(e[[0, 0, 0]], e[[1, 1, 1]])
test_close(toy['centroid_distance'], 2 ** 0.5); test_close(toy['cos_within_image'], 1.0)
test_close(toy['cos_between'], 0.0); test_close(toy['cos_paired'], 0.0); test_close(toy['cos_unpaired'], 0.0)
x = torch.randn(50, 8)
test_close(modality_gap(x, x)['centroid_distance'], 0.0, eps=1e-6)

# %% [markdown]
# Read the numbers this way: if pictures and captions shared one cloud, the between-modality cosine
# would be about as high as the within-modality ones. When the within-image and within-text cosines
# are clearly above the between cosine, each modality is its own cone, and the centroid distance says
# how far apart the cones' centres are (2 would be opposite, 0 coincident). We measure the book model
# and, for the cone effect at the start, the same architecture with fresh random weights; the learned
# temperature is printed with them.

# %%
_ = seed_everything(cfg.seed)                                       # the training run seeds the same way, then
init_model = create_model(cfg.clip_config()).eval()                 # calls create_model: the book model's starting weights
I_0, T_0, _ = embed_pairs(init_model, test_ds, keep)
gap, gap0 = modality_gap(I_e, T_e), modality_gap(I_0, T_0)
GAP_LABELS = {'cos_between': 'cos between, all pairs', 'cos_paired': 'cos of each picture with its own caption',
              'cos_unpaired': 'cos between, unmatched pairs'}
scale0, scale = init_model.logit_scale.exp().item(), model.logit_scale.exp().item()
display(Markdown(markdown_table(['', 'random initialisation', 'trained'],
                                [(GAP_LABELS.get(k, k.replace('_', ' ')), f"{gap0[k]:.3f}", f"{gap[k]:.3f}") for k in gap]
                                + [('logit scale exp(t)', f"{scale0:.1f}", f"{scale:.1f}")], align='lrr')))


# %%
#| fig-cap: "Histograms of cosine similarities between pictures, between captions, and between pictures and captions, at random initialisation (left) and after training (right). In the trained panel the picture–picture (thick), caption–caption (dashed) and unpaired picture–caption (dotted) curves lie on top of one another."
#| fig-alt: "Two panels of histograms over cosine similarity from -1 to 1. Left, random initialisation: picture-picture similarities pile up near 1, caption-caption ones lower and wider, in the upper half of the positive range, and picture-caption similarities, paired or not, sit together near zero: each modality sits in its own cone, the pictures' tighter than the captions'. Right, trained: picture-picture, caption-caption and unpaired picture-caption similarities form one broad bump centred on zero, their three curves drawn over each other, while each picture's similarity to its own caption peaks near the top of the scale with a long tail towards zero. The table above gives the means."
def offdiag(M): return M[~torch.eye(M.shape[0], dtype=torch.bool)]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
for ax, (I_, T_, name) in zip(axes, [(I_0, T_0, 'random initialisation'), (I_e, T_e, 'book MiniCLIP, trained')]):
    S_ = I_ @ T_.T
    for vals, lab, ls, lw in [(offdiag(I_ @ I_.T), 'picture–picture', '-', 3.2), (offdiag(T_ @ T_.T), 'caption–caption', '--', 2.0),
                              (offdiag(S_), 'picture–caption, unpaired', ':', 1.6), (S_.diagonal(), 'picture–own caption', '-', 1.6)]:
        ax.hist(vals.numpy(), bins=60, range=(-1, 1), density=True, histtype='step', lw=lw, ls=ls, label=lab)
    ax.set(title=name, xlabel='cosine similarity', ylabel='density')
axes[0].legend(fontsize=8); fig.suptitle('Cosine similarities within and between modalities (held-out emoji)', fontsize=11)
plt.tight_layout(); plt.show()


# %% [markdown]
# ## How mixed are they? Nearest neighbours, with intervals
#
# The averages above can hide structure, so the direct question comes next: for each picture and each
# caption, what share of its 10 nearest neighbours (by cosine in the full 128-dimensional space, itself
# and its own pair excluded) is of its own modality? In a fully mixed cloud about half would be; with a
# gap, nearly all. The pair is left out because training puts it among the nearest on purpose: counted,
# it would pull even a fully mixed cloud's share below one half.
# The same count by category says how well each modality groups like with like. Every share gets a
# 95% interval by resampling the points, and the gap statistics one by resampling the pairs. <!-- fixed: 95% -->

# %%
#| exports
def neighbour_share(x: torch.Tensor, labels, k: int = 10, partner=None) -> np.ndarray:
    "Per row of `x` [N, d]: the share of its k nearest rows (cosine; itself and `partner[i]`, its pair, excluded) that carry its own label."
    x = F.normalize(x.float(), dim=-1)
    C = x @ x.T
    C.fill_diagonal_(-float('inf'))
    if partner is not None: C[torch.arange(len(x)), torch.as_tensor(partner)] = -float('inf')
    lab = np.asarray(labels)
    return (lab[C.topk(k, dim=1).indices.numpy()] == lab[:, None]).mean(1)          # [N]

def bootstrap_mean(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    "(mean, lo, hi) of `values` [N], the interval a percentile bootstrap over the N items."
    v = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    idx = torch.randint(len(v), (n_boot, len(v)), generator=torch.Generator().manual_seed(seed))
    return (v.mean().item(), *percentile_interval(v[idx].mean(1).numpy(), level))

def gap_bootstrap(img: torch.Tensor, txt: torch.Tensor, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> dict:
    "Intervals, pairs resampled, of the centroid distance and of each within-modality cosine minus the between-modality one over unmatched pairs."
    img, txt = F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)    # [N, d] paired rows
    Ci, Ct, Cb = img @ img.T, txt @ txt.T, img @ txt.T
    g, reps = torch.Generator().manual_seed(seed), []
    for _ in range(n_boot):
        i = torch.randint(len(img), (len(img),), generator=g)
        other = i[:, None] != i[None, :]                     # a pair drawn twice is not a pair of two pictures
        between = Cb[i][:, i][other].mean()                 # unmatched pairs only, as within: a pair's own cosine is no cone
        reps.append([(img[i].mean(0) - txt[i].mean(0)).norm().item(),
                     (Ci[i][:, i][other].mean() - between).item(), (Ct[i][:, i][other].mean() - between).item()])
    reps, m = np.array(reps), modality_gap(img, txt)
    point = [m['centroid_distance'], m['cos_within_image'] - m['cos_unpaired'], m['cos_within_text'] - m['cos_unpaired']]
    return {name: (v, *percentile_interval(reps[:, j], level)) for j, (name, v) in
            enumerate(zip(('centroid_distance', 'image_minus_between', 'text_minus_between'), point))}

def centroid_null(img: torch.Tensor, txt: torch.Tensor, n_perm: int = 200, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    "Central `level` range of the centroid distance with the modality labels shuffled among the pooled unit rows: a fully mixed cloud of these same vectors."
    x = F.normalize(torch.cat([img.float(), txt.float()]), dim=-1)                  # [N + M, d] pooled
    g, n = torch.Generator().manual_seed(seed), len(img)
    reps = []
    for _ in range(n_perm):
        p = torch.randperm(len(x), generator=g)                                      # which rows count as pictures
        reps.append((x[p[:n]].mean(0) - x[p[n:]].mean(0)).norm().item())
    return percentile_interval(reps, level)


# %% [markdown]
# Checks on made-up points: two far-apart clouds have only own-modality neighbours; one cloud whose
# points each carry one of two labels at random is about half and half; points whose pair sits right
# beside them with the other label have none of their own label nearest, until the pair is left out;
# the intervals contain their
# estimates. `centroid_null` answers "how far apart would the centroids be if the two sets were one
# mixed cloud?": finite samples never give exactly 0, so the measured distance is read against this
# range, not against 0.

# %%
g = torch.Generator().manual_seed(0)
apart = torch.cat([torch.randn(40, 8, generator=g) * 0.1 + 5, torch.randn(40, 8, generator=g) * 0.1 - 5])
test_eq(neighbour_share(apart, [0] * 40 + [1] * 40).mean(), 1.0)
mixed = torch.randn(400, 8, generator=g)
assert abs(neighbour_share(mixed, torch.randint(2, (400,), generator=g).tolist()).mean() - 0.5) < 0.05
twins = torch.cat([mixed[:200], mixed[:200] + 0.01])                   # each point's pair right beside it, of the other label
test_eq(neighbour_share(twins, [0] * 200 + [1] * 200, k=1).mean(), 0.0)
assert abs(neighbour_share(twins, [0] * 200 + [1] * 200, k=1, partner=[*range(200, 400), *range(200)]).mean() - 0.5) < 0.1
mu, lo, hi = bootstrap_mean(np.r_[np.zeros(50), np.ones(50)])
assert lo < mu == 0.5 < hi
b = gap_bootstrap(apart[:40], apart[40:], n_boot=50)
assert all(lo <= v <= hi for v, lo, hi in b.values()) and b['centroid_distance'][1] > 1.9
assert centroid_null(apart[:40], apart[40:])[1] < 1.9                  # shuffled, the two clouds mix: no gap left
one = F.normalize(torch.randn(400, 8, generator=g), dim=-1)
lo, hi = centroid_null(one[:200], one[200:])
assert 0 < lo < (one[:200].mean(0) - one[200:].mean(0)).norm() < hi   # two halves of one cloud: inside the range

# %%
both = torch.cat([I_e, T_e])
modality = ['picture'] * len(keep) + ['caption'] * len(keep)
pair_of = list(range(len(keep), 2 * len(keep))) + list(range(len(keep)))    # row i's pair: its caption, or its picture
share_k = {k: neighbour_share(both, modality, k=k, partner=pair_of).mean() for k in (5, 20, 50)}   # how the count matters
share = {name: bootstrap_mean(neighbour_share(x, modality, partner=pair_of)) for name, x in
         [('random init', torch.cat([I_0, T_0])), ('trained', both)]}
gap_ci = {name: gap_bootstrap(i, t, n_boot=pick(gpu=200, cpu=200, test=20)) for name, (i, t) in
          [('random init', (I_0, T_0)), ('trained', (I_e, T_e))]}
null = {name: centroid_null(i, t, n_perm=pick(gpu=200, cpu=200, test=20)) for name, (i, t) in
        [('random init', (I_0, T_0)), ('trained', (I_e, T_e))]}
cat_share = {name: bootstrap_mean(neighbour_share(x, cats)) for name, x in [('pictures', I_e), ('captions', T_e)]}
ci3 = lambda t, f='.3f': f"{t[0]:{f}} [{t[1]:{f}}, {t[2]:{f}}]"
rows = [(what, *(ci3(gap_ci[n][key], '+.4f' if 'minus' in key else '.3f') for n in gap_ci)) for what, key in
        [('centroid distance', 'centroid_distance'), ('within pictures − between (unmatched pairs)', 'image_minus_between'),
         ('within captions − between (unmatched pairs)', 'text_minus_between')]]
rows.insert(1, ('centroid distance, modality labels shuffled (95% range)', *(f"[{null[n][0]:.3f}, {null[n][1]:.3f}]" for n in null)))
rows.append(('own-modality share of 10 nearest neighbours', *(ci3(share[n], '.1%') for n in share)))
display(Markdown(markdown_table(['95% intervals', *gap_ci], rows, align='lrr')))
def label_chance(labels) -> float:
    "The own-label share of neighbours drawn at random: the chance that another point shares a point's label."
    n, counts = len(labels), np.unique(np.asarray(labels), return_counts=True)[1]
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))
print(f"own-category share of 10 nearest neighbours, trained model (neighbours at random: {label_chance(cats):.1%}):")
for n, v in cat_share.items(): print(f"  {n:9} {ci3(v, '.1%')}")


# %%
#| echo: false
def apartness(sh) -> tuple[float, float, float]:
    "The own-modality share rescaled: 0 is a fully mixed cloud (a share of one half), 1 all neighbours of the own modality."
    return tuple(2 * v - 1 for v in sh)

APART, MIXED = 0.75, 0.25            # cut-offs on the rescaled share: a share of 87.5% and of 62.5%

def verdict(sh) -> str:
    a, lo, hi = apartness(sh)
    if lo > APART: return 'apart: nearly every neighbour is of the same modality, two separate clouds'
    if hi < 0: return 'fewer own-modality neighbours than a fully mixed cloud'
    if hi < MIXED: return ('mixed, with a small residual gap: a point has its own modality among its neighbours a little '
                          'more often than in a fully mixed cloud' if lo > 0 else 'mixed, as in one shared cloud')
    if lo <= 0: return 'not placed: the interval reaches from a fully mixed cloud past the cut-off for mixed'
    return 'partly apart: more own-modality neighbours than a mixed cloud, fewer than two separate ones'

spread = 1 / I_e.shape[1] ** 0.5      # sd of a random unit vector's reach along any direction (and of a random cosine)
bar = spread ** 2                     # the excess in mean cosine that a shared offset of that length gives: 1/d

def cones(g: dict, d: dict) -> str:
    "The within-modality cosines of `g` read against the between cosine, by the intervals and the size of their excess in `d`."
    def one(name: str, within: str, key: str) -> str:
        v, lo, hi = d[key]
        says = ('below it beyond the interval' if hi < 0 else 'not distinguishable from it' if lo <= 0 else
                'above it by more than 1/d: a cone of its own' if lo > bar else
                'above it beyond the interval, but by less than 1/d: a detectable excess too small to make a cone'
                if hi < bar else 'above it beyond the interval, by an amount the interval does not place against 1/d')
        return f"within {name} {g[within]:.3f}, {v:+.4f} [{lo:+.4f}, {hi:+.4f}] from the between cosine: {says}"
    return (f"{one('pictures', 'cos_within_image', 'image_minus_between')}; "
            f"{one('captions', 'cos_within_text', 'text_minus_between')}")

def against_null(d, rng) -> str:
    "The centroid distance's interval `d` (value, lo, hi) read against the shuffled-label range `rng` (lo, hi)."
    mixed = f"the {rng[0]:.3f} to {rng[1]:.3f} that the same vectors give with their modality labels shuffled (a fully mixed cloud)"
    if d[1] > rng[1]: return f"an interval wholly above {mixed}"
    if d[2] < rng[0]: return f"an interval wholly below {mixed}"
    return f"an interval that overlaps {mixed}: no further apart than mixing alone gives"

g0, g1, d0, d1 = gap0, gap, gap_ci['random init'], gap_ci['trained']
text = ("**Liang et al. ask** whether the two modalities sit apart. **We measured** (tables above, 95% intervals), on "
        f"{len(keep)} held-out pairs. The between cosine here is over a picture and a caption that are not each other's "
        "pair, as the within cosines are over two different pictures or captions. A modality has a cone of its own where "
        f"its mean cosine within exceeds the between cosine by more than 1/d = {bar:.4f}, the whole 95% interval of the "
        "excess above it. Why 1/d: with m and m′ the two modalities' mean vectors, the excess is about m·(m − m′), zero "
        "when the modality's mean offset is all shared with the other modality and a² when it has an own part of length a "
        f"at right angles to the shared one and to the other modality's own part. We call it a cone of its own only when that own part exceeds 1/√d = {spread:.3f}, "
        f"the standard deviation of a random unit vector's reach along any one direction in this {I_e.shape[1]}-dimensional "
        "space (and of the cosine between two random directions): a smaller own offset moves each vector less than random "
        "vectors already vary along that direction. The threshold is our convention, not Liang et al.'s. "
        f"At random initialisation the between cosine is {g0['cos_unpaired']:.3f}; "
        f"{cones(g0, d0)}. The centroids are {ci3(d0['centroid_distance'])} apart, "
        f"{against_null(d0['centroid_distance'], null['random init'])}, and "
        f"{share['random init'][0]:.1%} of a point's nearest neighbours are of its own modality: "
        f"**{verdict(share['random init'])}**. After training the between cosine is {g1['cos_unpaired']:.3f}; "
        f"{cones(g1, d1)}. The centroids are {ci3(d1['centroid_distance'])} apart, "
        f"{against_null(d1['centroid_distance'], null['trained'])}, and the own-modality "
        f"share is {ci3(share['trained'], '.1%')} against one half for a fully mixed cloud: **{verdict(share['trained'])}**. "
        f"(The share is read against two cut-offs: wholly below {(1 + MIXED) / 2:.1%} is mixed, wholly above "
        f"{(1 + APART) / 2:.1%} apart. It depends on how many neighbours are counted: with the trained model "
        + ', '.join(f"{share_k[k]:.1%} at {k}" for k in sorted(share_k))
        + f" neighbours against {share['trained'][0]:.1%} at 10, so counting fewer reads more apart"
        + ''.join(f" (at {k} the share is past the cut-off for mixed)" for k in sorted(share_k)
                  if share_k[k] >= (1 + MIXED) / 2)
        + "; and its interval "
        "resamples the points as if they were "
        "independent, which the pictures of one category are not, so it is likely too narrow.) "
        f"A picture's cosine with its own caption averages {g1['cos_paired']:.3f}, against {g1['cos_unpaired']:.3f} for the other "
        "captions: retrieval reads that difference, not closeness to one. ")
before, after = verdict(share['random init']).split(':')[0], verdict(share['trained']).split(':')[0]
if before.startswith('apart') and not after.startswith('apart'):
    text += ("So in this book the gap is mostly a property of the random start, which training nearly removed, unlike the "
             "released CLIP models, where Liang et al. find that the gap survives training. This model's learned logit "
             f"scale ended at {scale:.1f} (from {scale0:.1f}), well short of the 100 at which CLIP's is capped (Radford et "
             "al. 2021, §2.5), and their account ties the surviving gap to a low temperature; this chapter does not test "
             "that part.")
elif after.startswith('apart'):
    text += "The trained model keeps the modalities apart, as Liang et al. report for CLIP."
else:
    text += "The random start already mixed them, so there was no gap for training to keep."
display(Markdown(text))


# %% [markdown]
# ## Two dimensions: t-SNE and UMAP
#
# t-SNE (van der Maaten & Hinton 2008) and UMAP (McInnes et al. 2018) place points in the plane so that
# near neighbours stay near. Neither keeps global distances, so a gap between two clusters in the
# plane shows that they share no neighbours, not how far apart they are; that is what the numbers
# above are for, and the pictures below only illustrate them. Both are run on pictures and captions
# *together*, so they see the same space.

# %%
#| exports
def project_2d(x: torch.Tensor | np.ndarray, method: str = 'tsne', seed: int = 0, **kwargs) -> np.ndarray:
    "[N, 2] t-SNE ('tsne', scikit-learn) or UMAP ('umap', umap-learn) coordinates of the rows of `x`, cosine metric."
    x = np.asarray(x, dtype=np.float32)
    if method == 'tsne':
        from sklearn.manifold import TSNE
        kw = dict(perplexity=min(30.0, (len(x) - 1) / 3), init='pca', metric='cosine', random_state=seed) | kwargs
        return TSNE(2, **kw).fit_transform(x)
    if method == 'umap':
        with warnings.catch_warnings():                                  # umap imports tqdm.auto, which warns in a
            warnings.filterwarnings('ignore', message='IProgress not found')    # notebook without ipywidgets
            import umap                                                  # imported here: it is slow to import
        kw = dict(n_neighbors=min(15, len(x) - 1), metric='cosine', random_state=seed, n_jobs=1) | kwargs
        return umap.UMAP(n_components=2, **kw).fit_transform(x)
    raise ValueError(f"method {method!r}: choose 'tsne' or 'umap'")


# %%
r = torch.randn(40, 6)
test_eq(project_2d(r, seed=1, max_iter=250), project_2d(r, seed=1, max_iter=250))   # same seed, same picture
test_eq(project_2d(r, max_iter=250).shape, (40, 2))

# %%
#| exports
DISTINCT = ('#BBBBBB', '#0072B2', '#E69F00', '#009E73', '#CC79A7', '#D55E00', '#56B4E9', '#000000', '#F0E442',
            '#8C564B', '#9467BD', '#17BECF')    # grey for the largest group, then Okabe-Ito's eight hues and three more

def plot_projection(xy: np.ndarray, modality: list[str], groups: list[str], title: str):
    "Two panels of the same 2-D points: coloured by modality, and by group (markers still say the modality; largest group grey)."
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.6))
    modality, groups = np.asarray(modality), np.asarray(groups)
    marks = {m: mk for m, mk in zip(dict.fromkeys(modality), 'o^sD')}
    for m in marks:
        s = modality == m
        axes[0].scatter(*xy[s].T, s=9, alpha=0.6, marker=marks[m], label=m)
    sizes = {g: int((groups == g).sum()) for g in dict.fromkeys(groups)}
    for j, g in enumerate(sorted(sizes, key=lambda g: -sizes[g])):           # largest first: grey, drawn underneath
        for m in marks:
            s = (groups == g) & (modality == m)
            axes[1].scatter(*xy[s].T, s=9, alpha=0.7, marker=marks[m], color=DISTINCT[j % len(DISTINCT)],
                            label=g if m == next(iter(marks)) else None)
    axes[0].set_title('coloured by modality', fontsize=10); axes[1].set_title('by category (o picture, ^ caption)', fontsize=10)
    for ax in axes: ax.set_xticks([]); ax.set_yticks([]); ax.set(xlabel='dimension 1', ylabel='dimension 2')
    axes[0].legend(fontsize=9, markerscale=2); axes[1].legend(fontsize=8, ncol=2, markerscale=2)
    fig.suptitle(title, fontsize=11); plt.tight_layout()
    return fig


# %%
#| fig-cap: "t-SNE of the trained model's held-out pictures and captions together, coloured by modality (left) and by category (right)."
#| fig-alt: "Two scatter plots of the same two-dimensional layout. Left: blue picture dots and orange caption triangles are thoroughly mixed, pictures beside captions. Right: the same points coloured by category, the largest, person, in grey: grey points fill most of the right half and the bottom, flags form a green cluster at the left, faces a small yellow cluster in the middle, symbols a pink group at the top, and the smaller categories mingle in the upper left."
xy_tsne = project_2d(both, 'tsne', seed=0, max_iter=pick(gpu=1000, cpu=1000, test=250))
_ = plot_projection(xy_tsne, modality, cats * 2, 't-SNE of held-out emoji pictures and their captions')
plt.show()

# %% [markdown]
# Read the plot against the table above: the own-modality share says how much the two markers should
# interleave, the own-category shares how tightly the colours should cluster. For comparison, the same
# projection of the random-init embeddings, whose share and verdict are in the same table:

# %%
#| fig-cap: "t-SNE of the same pictures and captions embedded by a randomly initialised MiniCLIP, coloured by modality (left) and by category (right)."
#| fig-alt: "Two scatter plots of the same layout. Left: orange caption triangles form one island on the left and blue picture dots another on the right, with no mixing between them. Right: inside each island the categories are only loosely grouped, grey person points in both and a green group of flag captions at the bottom of the caption island."
xy_init = project_2d(torch.cat([I_0, T_0]), 'tsne', seed=0, max_iter=pick(gpu=1000, cpu=1000, test=250))
_ = plot_projection(xy_init, modality, cats * 2, 't-SNE of the same pairs embedded by a randomly initialised MiniCLIP')
plt.show()

# %%
#| fig-cap: "UMAP of the trained model's held-out pictures and captions, coloured by modality (left) and by category (right)."
#| fig-alt: "Two scatter plots of the same layout. Left: picture dots and caption triangles are interleaved along many small strands. Right: grey person points, the largest category, fill the upper half and the rim, flags form a green group at the lower left, faces a small yellow group at the left, and the other categories mingle in a band across the middle."
#| slow
xy_umap = project_2d(both, 'umap', seed=0)
_ = plot_projection(xy_umap, modality, cats * 2, 'UMAP of held-out emoji pictures and their captions')
plt.show()


# %% [markdown]
# ## Similarity of pictures and prompts
#
# The matrix every retrieval and every zero-shot prediction reads is $S = I_e T_e^\top$. A dozen
# pictures of different categories against their own captions shows it directly: the diagonal should
# stand out in each column. Its values are the paired cosines measured above (`cos_paired`): a caption
# need not coincide with its picture, only score it higher than the other pictures.

# %%
#| exports
def _thumb(ax, image: torch.Tensor, xy, xybox=(0, -18), zoom=0.45, frame=None):
    "Draw a uint8 [3, S, S] picture as a thumbnail at data coordinates `xy` of `ax`."
    box = OffsetImage(image.permute(1, 2, 0).numpy(), zoom=zoom)
    ab = AnnotationBbox(box, xy, xybox=xybox, xycoords='data', boxcoords='offset points', frameon=frame is not None,
                        bboxprops=dict(edgecolor=frame or 'none', lw=2.5), annotation_clip=False)
    ax.add_artist(ab)

def similarity_heatmap(sim: torch.Tensor, images: torch.Tensor, prompts: list[str], ax=None, title: str = ''):
    "Heatmap of cosines `sim` [n_prompts, n_pictures] with the pictures (uint8 [n, 3, S, S]) as thumbnails under it."
    n_p, n_i = sim.shape
    ax = ax or plt.subplots(figsize=(0.5 * n_i + 3.0, 0.5 * n_p + 1.6))[1]      # about 9 inches wide for 12 pictures
    im = ax.imshow(sim.numpy(), cmap='viridis', aspect='auto')
    bright = sim.min() + 0.6 * (sim.max() - sim.min())                          # dark text on the yellow end of viridis
    for i in range(n_p):
        for j in range(n_i): ax.text(j, i, f"{sim[i, j]:.2f}", ha='center', va='center', fontsize=9,
                                     color='k' if sim[i, j] > bright else 'w')
    ax.set_yticks(range(n_p), prompts, fontsize=10); ax.set_xticks(range(n_i), [''] * n_i)
    for j in range(n_i): _thumb(ax, images[j], (j, n_p - 0.5), xybox=(0, -19), zoom=0.6)
    ax.set_xlabel('picture', labelpad=36, fontsize=10); ax.set_ylabel('prompt', fontsize=10); ax.set_title(title, fontsize=11)
    plt.colorbar(im, ax=ax, label='cosine similarity', fraction=0.04, pad=0.02)
    return ax


# %%
#| fig-cap: "Cosine similarity between twelve held-out emoji pictures and the names of the same twelve emoji; the right match is on the diagonal."
#| fig-alt: "A 12 by 12 heat map, names on the rows (keycap 7, keyboard, comet, index pointing up, man bouncing ball, flag of ascension island, evergreen tree, ear of corn, party popper, mouse, beaming face with smiling eyes, last track button) and small pictures of the same emoji under the columns, each cell printed with its cosine. The line under the figure counts the columns whose brightest cell is on the diagonal."
order = list(dict.fromkeys(cats))                                    # categories in order of appearance
pick_idx = [cats.index(c) for c in order][:12]
pick_idx += [i for i in range(len(keep)) if i not in pick_idx][:12 - len(pick_idx)]   # 12 pictures in any case
sub = S[pick_idx][:, pick_idx].T                                     # [prompts, pictures]
ax = similarity_heatmap(sub, images[pick_idx], [textwrap.shorten(captions[i], 26, placeholder='…') for i in pick_idx],
                        title='Cosine similarity of held-out emoji pictures and their names')
plt.tight_layout(); plt.show()
print(f"diagonal is its column's maximum in {(sub.argmax(0) == torch.arange(len(pick_idx))).sum()} of {len(pick_idx)} columns")


# %% [markdown]
# ## Retrieval, both ways
#
# For a caption, rank all held-out pictures by cosine and show the top 5 (a green frame marks the right
# one); for a picture, rank all held-out captions. The same matrix $S$, read along columns and rows.

# %%
#| exports
def retrieval_grid(sim: torch.Tensor, images: torch.Tensor, captions: list[str], queries: list[int],
                   k: int = 5, direction: str = 't2i', title: str = ''):
    "Top-k of each query: pictures for caption queries ('t2i'), captions for picture queries ('i2t'); right one marked."
    if direction not in ('t2i', 'i2t'): raise ValueError(f"direction {direction!r}: choose 't2i' or 'i2t'")
    rows = sim.T if direction == 't2i' else sim                          # [queries, candidates]
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.55 * (k + 1), 1.5 * len(queries)), squeeze=False)
    for r, q in enumerate(queries):
        top = rows[q].topk(k).indices.tolist()
        head = axes[r, 0]; head.axis('off')
        if direction == 't2i': head.text(0.5, 0.5, textwrap.fill(captions[q], 16), ha='center', va='center', fontsize=9)
        else: head.imshow(images[q].permute(1, 2, 0).numpy())
        for c, j in enumerate(top):
            ax = axes[r, c + 1]; ax.set_xticks([]); ax.set_yticks([])
            ok = j == q
            if direction == 't2i': ax.imshow(images[j].permute(1, 2, 0).numpy())
            else: ax.text(0.5, 0.5, textwrap.fill(textwrap.shorten(captions[j], 48, placeholder='…'), 15), ha='center',
                          va='center', fontsize=8)
            for s in ax.spines.values(): s.set(edgecolor='tab:green' if ok else '0.8', lw=4 if ok else 1)
            ax.set_xlabel(f"#{c + 1}  {rows[q, j]:.2f}", fontsize=9)
    axes[0, 0].set_title('query (caption)' if direction == 't2i' else 'query (picture)', fontsize=9)
    fig.suptitle(title, fontsize=11); plt.tight_layout()
    return fig


# %%
#| fig-cap: "Text-to-image retrieval on held-out emoji: for six captions, the five closest pictures, the right one framed in green."
#| fig-alt: "A grid of six rows, each a caption (keycap 7, keyboard, comet, index pointing up, man bouncing ball, flag of ascension island) followed by its five closest pictures with rank and cosine, the right picture framed in green where it is among them. The near misses look alike: another keycap, other raised hands, other ball players, other blue flags with a Union Jack."
qs = pick_idx[:6]
_ = retrieval_grid(S, images, captions, qs, direction='t2i', title='Caption → top-5 held-out pictures (green: the right one)')
plt.show()

# %%
#| fig-cap: "Image-to-text retrieval for the same six emoji: the five closest held-out captions to each picture, its own framed in green."
#| fig-alt: "A grid of six rows, each a picture (keycap 7, keyboard, comet, index pointing up, man bouncing ball, flag of ascension island) followed by its five closest captions with rank and cosine, the picture's own caption framed in green where it is among them. The rivals are mostly names of similar emoji: another keycap, other skin-toned people, other flags."
_ = retrieval_grid(S, images, captions, qs, direction='i2t', title='Picture → top-5 held-out captions (green: its own)')
plt.show()

# %% [markdown]
# ## Where it fails: the category confusion matrix
#
# The zero-shot category task of the zero-shot chapter (11 kinds of emoji; the mean of its templates that are no training caption) as counts of
# (true, predicted), normalised by row so that the diagonal is each category's recall.

# %%
#| fig-cap: "Row-normalised confusion matrix of the zero-shot category task on held-out emoji, with counts in the cells."
#| fig-alt: "An 11 by 11 heat map of true category, with its count, against predicted category, each non-empty cell printed with its count and shaded by its share of the row. The diagonal is dark only in a few rows; the largest row, person, is spread over many predicted categories. The lines under the figure give accuracy, chance, the majority class and each category's recall."
task = emoji_task('category')
cm = confusion(model, task, 'zero_shot').float()
recall = cm.diagonal() / cm.sum(1).clamp(min=1)
frac = cm / cm.sum(1, keepdim=True).clamp(min=1)
fig, ax = plt.subplots(figsize=(8, 6.8))
im = ax.imshow(frac.numpy(), cmap='Blues', vmin=0, vmax=1)
for i in range(len(cm)):
    for j in range(len(cm)):
        if cm[i, j]: ax.text(j, i, int(cm[i, j]), ha='center', va='center', fontsize=9,
                             color='w' if frac[i, j] > 0.6 else 'k')
ax.set_xticks(range(len(cm)), task.labels, rotation=50, ha='right', fontsize=9)
ax.set_yticks(range(len(cm)), [f"{l} ({int(n)})" for l, n in zip(task.labels, cm.sum(1))], fontsize=9)
ax.set_xlabel('predicted category', fontsize=10); ax.set_ylabel('true category (count)', fontsize=10)
ax.set_title('Zero-shot category confusion, held-out emoji (row-normalised)', fontsize=11)
plt.colorbar(im, ax=ax, label='fraction of the row', fraction=0.04); plt.tight_layout(); plt.show()
n_cat, n_all = len(cm), int(cm.sum())
cat_acc, cat_chance, cat_major = (cm.diagonal().sum() / cm.sum()).item(), 1 / n_cat, (cm.sum(1).max() / cm.sum()).item()
print(f"accuracy {cat_acc:.1%} on {n_all} pictures; chance {cat_chance:.1%}; majority class {cat_major:.1%} "
      f"(always '{task.labels[int(cm.sum(1).argmax())]}')")
print(f"mean per-class recall {recall.mean():.1%} (chance and the majority rule: {cat_chance:.1%})")
print("recall by category:")
for l, r, n in zip(task.labels, recall, cm.sum(1)): print(f"  {l:20} {r:4.0%} of {int(n)}")

# %%
#| echo: false
acc_lo, acc_hi = wilson_interval(cm.diagonal().sum().item(), n_all)
level = 1 - 0.05 / n_cat                            # Bonferroni: one test per category
k_j, n_j, c_j = cm.diagonal().tolist(), cm.sum(1).tolist(), cm.sum(0).tolist()    # right, pictures, answers per category
others = [(c - k) / (n_all - n) for k, n, c in zip(k_j, n_j, c_j)]                 # its name given to the other pictures
diff = [wilson_difference(k, n, c - k, n_all - n, level) if n else (-1.0, 1.0) for k, n, c in zip(k_j, n_j, c_j)]
above = [f"{l} ({recall[j]:.0%} against {others[j]:.1%}: {100 * (recall[j] - others[j]):+.0f} points "
         f"[{100 * diff[j][0]:+.0f}, {100 * diff[j][1]:+.0f}])" for j, l in enumerate(task.labels) if diff[j][0] > 0]
big = int(cm.sum(1).argmax()); wrong = cm[big].clone(); wrong[big] = 0
vs = lambda bar: 'above' if acc_lo > bar else 'below' if acc_hi < bar else 'not distinguishable from'
text = (f"In the matrix, numbers are counts and colour is the row fraction. The accuracy, {cat_acc:.1%} "
        f"[{acc_lo:.1%}, {acc_hi:.1%}] (95% Wilson interval), is "
        f"{vs(cat_chance)} chance ({cat_chance:.1%}) and {vs(cat_major)} the majority class ({cat_major:.1%}: always "
        f"answering '{task.labels[big]}'). A model that answered without looking at the picture would give a category's "
        "name to that category's pictures as often as to the others'; a category is recognised beyond that where its "
        "recall exceeds the share of the other pictures that get its name, beyond Newcombe's interval of the difference "
        "(built from the two shares' Wilson intervals; two separate sets of pictures), at a level of "
        f"{level:.2%} per category so that all {n_cat} hold together at 95% (Bonferroni): "
        f"{', '.join(above) if above else 'none'}. The largest category, '{task.labels[big]}', is "
        f"called right on {recall[big]:.0%} of its {int(cm[big].sum())} pictures; its most common wrong answer is "
        f"'{task.labels[int(wrong.argmax())]}' ({wrong.max() / cm[big].sum():.0%} of the row).")
display(Markdown(text))

# %% [markdown]
# ## Which held-out emoji are retrieved worst, and why
#
# For every held-out picture, the rank of its own caption among all held-out captions (0 is a hit at
# top-1). The training chapter counted about one test caption in five with a token that no training
# caption contains; such a token's embedding never received a gradient, so the text tower has nothing
# learned to say about that word. We split the captions by that property and compare.

# %%
train_all = EmojiDataset('train', train=False)
train_tokens = set(tokenize([r.name for r in train_all.records], context_length=77, truncate=True).unique().tolist())
novel = torch.tensor([not set(row.tolist()) <= train_tokens
                      for row in tokenize(captions, context_length=77, truncate=True)])
rank_i2t = (S > S.diagonal()[:, None]).sum(1)                     # captions scoring above the right one
rank_t2i = (S.T > S.diagonal()[:, None]).sum(1)                   # pictures scoring above the right one
print(f"{novel.float().mean():.1%} of these {len(captions)} captions have a token unseen in training")
for name, m in [('with an unseen token', novel), ('all tokens seen', ~novel)]:
    if m.any():
        print(f"{name:20} n={int(m.sum()):3}  R@5 i→t {(rank_i2t[m] < 5).float().mean():5.1%}, "
              f"t→i {(rank_t2i[m] < 5).float().mean():5.1%}; median rank {rank_i2t[m].median().item()}")
m = retrieval_metrics(I_e, T_e, ks=(1, 5))
print(f"all: image→text R@1 {m['i2t_R@1']:.1%} (chance {m['i2t_chance@1']:.2%}), R@5 {m['i2t_R@5']:.1%} (chance {m['i2t_chance@5']:.1%})")


# %% [markdown]
# A word that no training name contains mostly names an object that no training picture shows, so the
# split above may be a split of the pictures as much as of the words. The picture side, measured without
# any caption: for each held-out picture, its nearest training picture by image embedding, the cosine
# to it, and whether it is of the same category. Pictures new to the image tower would sit further
# from everything it was trained on. `group_difference` gives each comparison an interval, the two
# groups resampled separately.

# %%
#| exports
def group_difference(values, in_a, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    "(mean of group a − mean of group b, lo, hi): `values` [N] split by the bool mask `in_a` [N], each group resampled separately."
    v, a = torch.as_tensor(np.asarray(values), dtype=torch.float64), torch.as_tensor(np.asarray(in_a), dtype=torch.bool)
    if a.all() or not a.any(): raise ValueError(f"group_difference needs both groups non-empty, got {int(a.sum())} of {len(a)} in a")
    va, vb, g = v[a], v[~a], torch.Generator().manual_seed(seed)
    d = (va[torch.randint(len(va), (n_boot, len(va)), generator=g)].mean(1)
         - vb[torch.randint(len(vb), (n_boot, len(vb)), generator=g)].mean(1))       # [n_boot]
    return ((va.mean() - vb.mean()).item(), *percentile_interval(d.numpy(), level))


# %%
d, lo, hi = group_difference([1.0] * 30 + [0.0] * 30, [True] * 30 + [False] * 30)
test_eq(d, 1.0); test_eq((lo, hi), (1.0, 1.0))                       # no spread inside either group
d, lo, hi = group_difference(torch.rand(400, generator=torch.Generator().manual_seed(1)), [True, False] * 200)
assert lo < d < hi and lo < 0 < hi                                  # one population split in two: no difference

# %%
I_train, _ = encode_images(model, Labelled(train_all, range(len(train_all))), progress=False)   # [N_train, d] unit
near = (I_e @ I_train.T).max(1)                                     # each held-out picture's nearest training picture
nn_cos = near.values.double()                                       # [N] its cosine
nn_same = torch.tensor([train_all.records[j].category == c for j, c in zip(near.indices.tolist(), cats)]).double()
for name, m in [('with an unseen token', novel), ('all tokens seen', ~novel)]:
    if m.any():
        print(f"{name:20} n={int(m.sum()):3}  nearest training picture: cosine {nn_cos[m].mean():.3f}, "
              f"same category {nn_same[m].mean():.1%}")

# %% [markdown]
# The worst-retrieved pictures (the rank of their own caption; a star marks a caption with a token unseen
# in training), what the model retrieves for them instead, and the category of each:

# %%
worst = rank_i2t.argsort(descending=True)[:12].tolist()
for i in worst:
    j = S[i].argmax().item()
    print(f"{rank_i2t[i].item():4} {'*' if novel[i] else ' '} {captions[i][:24]:24} [{cats[i]:7}] → {captions[j][:24]:24} [{cats[j]}]")
w10 = rank_i2t.argsort(descending=True)[:max(1, len(keep) // 10)]
print(f"share with an unseen token: 10% worst-retrieved {novel[w10].float().mean():.0%}, all {novel.float().mean():.0%}")
print("categories of the 10% worst:", ', '.join(f"{c} {n}" for c, n in Counter(cats[i] for i in w10.tolist()).most_common()))

# %%
#| echo: false
hit5 = (rank_i2t < 5).double()
if novel.any() and (~novel).any():
    seen_r, new_r = bootstrap_mean(hit5[~novel]), bootstrap_mean(hit5[novel])
    _, lo, hi = group_difference(hit5, ~novel)                   # seen − unseen, the two groups resampled separately
    w_sh = bootstrap_mean(novel[w10].double())
    pic = {k: (v[~novel].mean().item(), v[novel].mean().item(), group_difference(v, ~novel))
           for k, v in [('same', nn_same), ('cos', nn_cos)]}
    pic_new = [k for k, (_, _, (_, plo, _)) in pic.items() if plo > 0]   # the unseen-token pictures further from training
    text = (f"Image→text R@5 is {seen_r[0]:.1%} [{seen_r[1]:.1%}, {seen_r[2]:.1%}] for captions whose tokens were all seen "
            f"in training and {new_r[0]:.1%} [{new_r[1]:.1%}, {new_r[2]:.1%}] for those with an unseen token: a difference "
            f"of {100 * (seen_r[0] - new_r[0]):+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] (95%, each group resampled). "
            f"Among the 10% worst-retrieved pictures, {w_sh[0]:.0%} [{w_sh[1]:.0%}, {w_sh[2]:.0%}] of the captions have an "
            f"unseen token, against {novel.double().mean():.0%} of all. On the picture side, with no caption involved, "
            f"a held-out picture's nearest training picture is of its own category for {pic['same'][0]:.1%} of the "
            f"seen-token group and {pic['same'][1]:.1%} of the unseen-token group (difference {100 * pic['same'][2][0]:+.1f} "
            f"points [{100 * pic['same'][2][1]:+.1f}, {100 * pic['same'][2][2]:+.1f}]), at a cosine of {pic['cos'][0]:.3f} "
            f"and {pic['cos'][1]:.3f} (difference {pic['cos'][2][0]:+.3f} [{pic['cos'][2][1]:+.3f}, {pic['cos'][2][2]:+.3f}]). ")
    if lo > 0 and w_sh[1] > novel.double().mean() and pic_new:
        text += ("So the worst failures go with words never seen in training, and the pictures of those captions are also "
                 "further from what the image tower was trained on: word novelty and picture novelty go together in this "
                 "split, and this test does not say whether the words or the pictures fail.")
    elif lo > 0 and w_sh[1] > novel.double().mean():
        text += ("So the worst failures go with words never seen in training, while their pictures are not measurably "
                 "further from the training pictures by these two measures. That points at the words; it does not rule "
                 "out that the image tower also fails on those objects in a way a nearest neighbour does not show.")
    else:
        text += "The intervals do not single out unseen words as the main cause of the failures in this run."
    display(Markdown(text))

# %% [markdown]
# ## Inside the ViT: attention over the patch grid
#
# The image embedding is read from the [class] token after the last layer; what the picture
# contributes reaches it through attention. `capture_attention` of the model chapter switches the
# attention layers of a module to an explicit path that keeps the probabilities, `[batch, heads,
# 1 + grid², 1 + grid²]` per layer, from the real forward pass. First the check that looking does not
# change what is looked at:

# %%
x = torch.stack([test_ds[keep[i]][0] for i in pick_idx[:8]])       # [8, 3, 48, 48] normalised
with torch.no_grad():
    plain = model.encode_image(x)
    with capture_attention(model.visual) as maps: recorded = model.encode_image(x)
test_close(recorded, plain, eps=1e-4)
grid = model.visual.input_resolution // model.visual.conv1.kernel_size[0]
print(f"{len(maps)} layers, maps {tuple(maps[0].shape)}, grid {grid}×{grid}, "
      f"max |difference| {(recorded - plain).abs().max():.1e}")


# %% [markdown]
# The book's mini-cpu preset cuts a 48-pixel picture into 12-pixel patches: a 4×4 grid, 16 patches and
# the [class] token. Each attention map is therefore 16 numbers per picture. That is enough to say
# *which quarter-by-quarter region* the model reads (the centre of a face or the whole of a flag,
# object versus white background) and nothing finer: the eyes of a face, the skin-tone patch of a hand
# or the stripes of a flag are each inside one or two patches, so attention cannot single them out.
# The ViT-B/32 of the paper has a 7×7 grid at 224 pixels, not a much finer one either.
#
# Two readings of the maps:
# 1. **[CLS] attention:** row 0 of a layer's map, columns 1..16, reshaped to the grid: where the class
#    token looks in that layer and head.
# 2. **Attention rollout** (Abnar & Zuidema 2020): attention mixes tokens layer after layer, and the
#    residual connection carries each token's own state past every layer. Averaging the heads, adding
#    the identity for the residual and renormalising rows gives a row-stochastic matrix per layer;
#    multiplying them from the last layer down estimates how much each input token feeds each output.

# %%
#| exports
def cls_attention(maps: list[torch.Tensor], grid: int) -> torch.Tensor:
    "The [class] token's attention to the patches, [layers, batch, heads, grid, grid], from `capture_attention` maps."
    A = torch.stack([m.float() for m in maps])                       # [L, b, h, 1 + grid², 1 + grid²]
    if A.shape[-1] != 1 + grid * grid: raise ValueError(f"maps have {A.shape[-1]} tokens, not 1 + {grid}² for grid {grid}")
    return A[..., 0, 1:].unflatten(-1, (grid, grid))

def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    "Attention rollout [batch, n, n]: per layer mean over heads, + identity, rows renormalised; product last layer first."
    R = None
    for m in maps:                                                   # first layer first
        A = m.float().mean(1)                                        # [b, n, n]
        A = A + torch.eye(A.shape[-1], device=A.device)
        A = A / A.sum(-1, keepdim=True)
        R = A if R is None else A @ R                                # later layers multiply from the left
    return R


# %% [markdown]
# Checks by hand: with uniform attention everywhere, each residual-adjusted layer is $(U + I)/2$ and the
# rollout keeps rows summing to 1; with identity attention (every token looks only at itself), the
# rollout is the identity.

# %%
n = 1 + 2 * 2
eye = [torch.eye(n).expand(1, 3, n, n)] * 4
test_close(attention_rollout(eye)[0], torch.eye(n))
uni = [torch.full((2, 3, n, n), 1 / n)] * 3
R = attention_rollout(uni)
test_close(R.sum(-1), torch.ones(2, n))
one = (torch.full((n, n), 1 / n) + torch.eye(n)) / 2
test_close(R[0], one @ one @ one)
test_eq(cls_attention(uni, 2).shape, (3, 2, 3, 2, 2))
test_close(cls_attention(maps, grid).sum((-1, -2)) + torch.stack(maps)[..., 0, 0], torch.ones(len(maps), 8, maps[0].shape[1]))


# %%
#| exports
def overlay(image: torch.Tensor, heat: torch.Tensor, ax=None, alpha: float = 0.55, cmap: str = 'inferno'):
    "Draw uint8 picture [3, S, S] with `heat` [g, g] upsampled (bilinear) to S×S and scaled to [0, 1] on top."
    S = image.shape[-1]
    h = F.interpolate(heat.float()[None, None], size=(S, S), mode='bilinear', align_corners=False)[0, 0]
    h = (h - h.min()) / (h.max() - h.min()).clamp(min=1e-8)
    ax = ax or plt.gca()
    ax.imshow(image.permute(1, 2, 0).numpy()); ax.imshow(h.numpy(), cmap=cmap, alpha=alpha)
    ax.set_xticks([]); ax.set_yticks([])
    return ax


# %%
#| fig-cap: "Where the [class] token looks: attention over the grid of patches for five held-out emoji, for both heads of the first and last layers, and the attention rollout."
#| fig-alt: "A grid of 5 rows (keycap 7, keyboard, comet, index pointing up, man bouncing ball) by 6 columns: the picture, then heat overlays, bright where attention is high, for layer 1 head 1, layer 1 head 2, layer 4 head 1, layer 4 head 2 and the rollout. Layer 1 head 1 mostly lights up the bottom edge or the background; the other heads and the rollout mostly highlight patches on the drawing, such as the keyboard's keys, the comet's tail and the ball player's legs."
ca = cls_attention(maps, grid)                                       # [L, 8, heads, 4, 4]
roll = attention_rollout(maps)[:, 0, 1:].unflatten(-1, (grid, grid))   # [8, 4, 4] [class] row of the rollout
L, heads = len(maps), maps[0].shape[1]
cols = [(0, h) for h in range(heads)] + [(L - 1, h) for h in range(heads)]
show = list(range(5))
fig, axes = plt.subplots(len(show), len(cols) + 2, figsize=(1.5 * (len(cols) + 2), 1.6 * len(show)))
for r, b in enumerate(show):
    axes[r, 0].imshow(images[pick_idx[b]].permute(1, 2, 0).numpy()); axes[r, 0].set_xticks([]); axes[r, 0].set_yticks([])
    axes[r, 0].set_ylabel(textwrap.fill(textwrap.shorten(captions[pick_idx[b]], 30, placeholder='…'), 15), fontsize=8)
    for c, (l, h) in enumerate(cols): overlay(images[pick_idx[b]], ca[l, b, h], axes[r, c + 1])
    overlay(images[pick_idx[b]], roll[b], axes[r, -1])
for c, (l, h) in enumerate(cols): axes[0, c + 1].set_title(f"layer {l + 1}\nhead {h + 1}", fontsize=9)
axes[0, 0].set_title('picture', fontsize=9); axes[0, -1].set_title('rollout', fontsize=9)
fig.suptitle(f'[class] token attention over the {grid}×{grid} patch grid: first and last layer, and rollout', fontsize=11)
plt.tight_layout(); plt.show()


# %% [markdown]
# Bright is where the [class] token attends; each map is rescaled to its own range, so compare shapes,
# not brightness, across panels.
#
# Is the attention on the emoji or on the white background? Per picture, the share of each patch that
# is "ink" (a pixel that is not white) against the rollout's [class] row over the patches; the
# correlation per picture, averaged over the held-out pictures with a 95% interval by resampling them,
# and the same for the first and last layers' head-mean [CLS] maps. The same measure on the randomly
# initialised model says how much of it training put there: an untrained ViT's attention can already
# follow the ink, since white patches all embed alike. <!-- fixed: 95% -->

# %%
#| exports
def patch_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    "Per row, the Pearson correlation of `a` [N, P] with `b` [N, P] over the P patches; NaN where either row is constant."
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    c = (a * b).sum(1) / (na * nb).clamp(min=1e-12)
    return c.masked_fill((na == 0) | (nb == 0), float('nan'))                        # [N]


# %%
test_close(patch_correlation(torch.tensor([[1., 2, 3]]), torch.tensor([[2., 4, 6]])), torch.tensor([1.]))
test_close(patch_correlation(torch.tensor([[1., 2, 3]]), torch.tensor([[3., 2, 1]])), torch.tensor([-1.]))
assert patch_correlation(torch.tensor([[1., 1, 1]]), torch.tensor([[1., 2, 3]])).isnan().all()   # no spread: undefined

# %%
xs = torch.stack([test_ds[i][0] for i in keep])
ink = (images.float() < 250).any(1).float()                          # [N, 48, 48] non-white pixels
p = model.visual.conv1.kernel_size[0]
ink_patch = F.avg_pool2d(ink[:, None], p)[:, 0].flatten(1)           # [N, grid²] ink share of each patch
def ink_correlations(m) -> dict:
    "Per picture [N]: correlation of the [class] token's attention with the ink per patch (rollout, first, last layer)."
    with torch.no_grad(), capture_attention(m.visual) as mp: m.encode_image(xs)
    ca_ = cls_attention(mp, grid)                                    # [L, N, heads, grid, grid]
    return dict(rollout=patch_correlation(attention_rollout(mp)[:, 0, 1:], ink_patch),
                first_layer=patch_correlation(ca_[0].mean(1).flatten(1), ink_patch),
                last_layer=patch_correlation(ca_[-1].mean(1).flatten(1), ink_patch))
per_pic = {'trained': ink_correlations(model), 'random init': ink_correlations(init_model)}
ok = torch.stack([v for d_ in per_pic.values() for v in d_.values()]).isnan().any(0).logical_not()   # defined for all
corr = {w: {k: bootstrap_mean(v[ok]) for k, v in d_.items()} for w, d_ in per_pic.items()}
corr_gain = {k: paired_bootstrap(per_pic['trained'][k][ok], per_pic['random init'][k][ok]) for k in per_pic['trained']}
display(Markdown(markdown_table(
    ['[class] attention vs ink per patch', 'random init', 'trained', 'trained − random init (paired)'],
    [(k.replace('_', ' '), ci3(corr['random init'][k], '+.2f'), ci3(corr['trained'][k], '+.2f'),
      f"{corr_gain[k]['diff']:+.2f} [{corr_gain[k]['lo']:+.2f}, {corr_gain[k]['hi']:+.2f}]") for k in corr['trained']],
    align='lrrr') + f"\n\nMean per-picture correlation over the {int(ok.sum())} of {len(keep)} pictures where it is "
    "defined (ink and attention both vary over the patches); 95% intervals, the pictures resampled."))


# %% [markdown]
# A positive correlation says the [class] token reads the patches where the emoji is drawn rather than
# the white margin; a value near zero says its attention does not follow the ink. At 16 patches that
# is about as detailed a question as the maps can answer.

# %%
#| echo: false
def ink_reading(k: str) -> str:
    t, r, d = corr['trained'][k], corr['random init'][k], corr_gain[k]
    return (f"{k.replace('_', ' ')} {ci3(t, '+.2f')} trained against {ci3(r, '+.2f')} at random initialisation, "
            + ('higher after training' if d['lo'] > 0 else 'lower after training' if d['hi'] < 0 else
               'not distinguishable from the untrained model'))
display(Markdown("**We measured** the correlation of the [class] token's attention with the ink: "
                 + '; '.join(ink_reading(k) for k in corr['trained']) + ' (paired 95% intervals in the table). '
                 "The untrained model's values are what the architecture and the white background give before any "
                 "training; only the difference is learned."))

# %% [markdown]
# ## What we measured
#
# Printed by the cells above in this run, on the book MiniCLIP and the held-out emoji: the modality gap
# (centroid distance, beside the range the same vectors give with their modality labels shuffled; mean
# cosine within pictures, within captions, between them and of true pairs) at random initialisation and after training, how much of a point's neighbourhood is its own modality
# and category, with intervals and the verdict they decide, the t-SNE and UMAP pictures of both, the
# category confusion with chance, the majority class and per-category recall, image-to-text recall@5 for captions with and
# without a token unseen in training and how near their pictures sit to the training pictures, the
# worst-retrieved emoji and what they were taken for, that recording attention changes no output, and
# how well the [class] token's attention follows the ink, after training and at random initialisation.

# %%
print(f"modality gap, random init → trained: centroid distance {ci3(d0['centroid_distance'])} → {ci3(d1['centroid_distance'])} "
      f"(labels shuffled: [{null['random init'][0]:.3f}, {null['random init'][1]:.3f}] → [{null['trained'][0]:.3f}, {null['trained'][1]:.3f}]); "
      f"own-modality neighbour share {share['random init'][0]:.1%} → {share['trained'][0]:.1%} (one half: fully mixed); "
      f"{before} → {after}")
print(f"cosines after training: within pictures {gap['cos_within_image']:.3f}, within captions {gap['cos_within_text']:.3f}, "
      f"between (unmatched pairs) {gap['cos_unpaired']:.3f}, paired {gap['cos_paired']:.3f}")
print(f"category task: accuracy {cat_acc:.1%} (chance {cat_chance:.1%}, majority class {cat_major:.1%}); "
      f"attention–ink correlation (rollout) {ci3(corr['trained']['rollout'], '+.2f')}, at random init "
      f"{ci3(corr['random init']['rollout'], '+.2f')}")
_ = footer()

# %% [markdown]
# # Benchmarks
#
# > Our code and open_clip's, timed side by side in one process on the same inputs, outputs checked equal first; and the two trainers end to end, judged alike.

# %%
#| default_exp bench

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import argparse, contextlib, json, math, os, platform, random, re, tempfile, time, warnings
from pathlib import Path
import torch
from clip_annotated.core import hardware, markdown_table
from clip_annotated.tokenizer import SimpleTokenizer, tokenize

# %%
#| hide
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer
from clip_annotated.efficiency import gpu_check_results, gpu_check_table


# %% [markdown]
# The speed claims in this book come from this chapter's functions, and each of them follows the
# same three rules: the inputs are built offline and deterministically, so two runs time the same
# work; our output is checked equal to open_clip's *before* anything is timed, so a fast wrong answer
# can never be reported; and both sides run in the same process, interleaved, best of a few repeats
# (`time.perf_counter`), so that machine noise hits both alike. `python -m clip_annotated.bench` (or
# `make bench`) runs them all and prints one table row per measurement; `--only tokenizer` runs one.
#
# A benchmark is a function `bench_<name>(repeats=3, ...) -> dict` that prints its rows with
# `report` and is listed in `BENCHES`. open_clip is a development dependency, so it is imported inside
# the functions (with `import_open_clip`), never at the top of the module.
#
# ## Timing and reporting

# %%
#| exports
def best_time(fn, repeats: int = 3, setup=None) -> float:
    "Best wall time in seconds of `fn()` over `repeats` runs; `setup()`, if given, runs untimed before each."
    best = math.inf
    for _ in range(repeats):
        if setup is not None: setup()
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best

def report(name: str, n: int, ours_s: float, ref_s: float, ref: str = 'open_clip') -> float:
    "Print one table row (seconds for both sides and the speed-up of ours) and return the speed-up."
    speedup = ref_s / ours_s
    print(f"{name:28} n={n:<7,} ours {ours_s*1e3:9.1f} ms   {ref} {ref_s*1e3:9.1f} ms   speed-up {speedup:5.2f}x")
    return speedup


def import_open_clip():
    "open_clip (a development dependency), imported on first use, without the warning its tqdm import gives in Jupyter."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import open_clip
    return open_clip


# %%
test_eq(best_time(lambda: None, repeats=2) >= 0, True)
test_eq(report('example', 10, 1.0, 2.5), 2.5)

# %% [markdown]
# ## The tokenizer
#
# The tokenizer's work depends on its input: ftfy is skipped only for ASCII text, and each distinct
# word is merged once and then cached. So the captions should look like the ones CLIP is used on:
# zero-shot prompts ("a photo of a {}."), short alt-text-like descriptions with capitals, numbers,
# contractions and punctuation, and a stated fraction of non-ASCII text (accented words, other
# scripts, emoji with skin tones and ZWJ sequences, fullwidth and curly characters, one mojibake
# word) and of HTML entities, the two things that send a caption down ftfy's slow path. All word
# lists are written out below, so the captions need no download and no extra package.

# %%
#| exports
_NOUNS = ("dog cat horse bird fish cow sheep elephant bear zebra giraffe lion tiger fox rabbit owl duck "
          "car truck bus train bicycle motorcycle airplane boat tractor scooter skateboard surfboard "
          "pizza sandwich banana apple orange cake donut coffee cup bottle bowl plate spoon fork knife "
          "chair table sofa bed lamp clock vase book laptop phone keyboard television camera guitar "
          "piano umbrella backpack suitcase kite ball tree flower mountain river beach lake forest "
          "bridge tower castle church house street road city village garden park field desert "
          "man woman child boy girl baby player chef doctor teacher soldier dancer runner family "
          "sunset snow rain storm cloud moon star fire smoke wave rock leaf mushroom cactus").split()
_ADJS = ("red blue green yellow black white brown pink purple orange small large tiny huge old young "
         "happy sad wooden metal plastic shiny dirty clean wet dry bright dark blurry sharp vintage "
         "modern cute angry sleepy hungry fluffy striped spotted empty crowded quiet famous").split()
_VERBS = ("sitting standing running sleeping playing eating jumping flying swimming walking waiting "
          "parked floating hanging lying smiling looking reading cooking riding climbing").split()
_PLACES = ("the beach|the park|a table|the street|the grass|a field|the snow|a kitchen|the city|a bench|"
           "the water|a shelf|the road|a window|the sky|the forest|a stage|the desk|the garden|a bridge").split('|')
_TEMPLATES = (
    "a photo of a {adj} {noun}.", "a photo of the {noun}.", "a bad photo of a {noun}.",
    "a close-up photo of the {adj} {noun}.", "itap of my {noun}", "a black and white photo of a {noun}.",
    "an illustration of a {adj} {noun}, digital art", "art of the {noun}.",
    "A {adj} {noun} {verb} on {place}", "Two {noun}s {verb} near {place}.",
    "{Adj} {noun} and a {noun2} in {place}, {year}", "Close-up of a {noun}'s face",
    "{num} {noun}s next to a {adj} {noun2} #{tag}", "The {noun} isn't {adj}: it's {adj2}!",
    "Stock photo - {adj} {noun} on white background (ID {id})", "{Noun} {verb} by {place}??",
    "my {noun} ({year}) - so {adj}!!", "We'll never forget this {adj} {noun} :)",
    "{Noun} #{num}: {adj}, {adj2} and {verb}", "Photo by John Smith / {Noun} on {place} in {year}",
)
_NON_ASCII = ("café", "naïve", "crème brûlée", "São Paulo", "Zürich", "piñata", "fiancée", "Ñandú",
              "東京タワー", "北京", "Москва", "Ελλάδα", "한국어", "العربية", "हिन्दी", "😀", "👍🏽",
              "👩🏾‍💻", "👨‍👩‍👧", "🇯🇵", "❤️", "🏳️‍🌈", "“quoted”", "it’s", "€5", "½ price", "Ｔシャツ", "cafÃ©")
_HTML = ("salt &amp; pepper", "Tom &amp; Jerry", "&quot;vintage&quot;", "R&amp;B", "5 &gt; 3", "caf&eacute;")

def make_captions(n: int = 10_000, seed: int = 0, non_ascii: float = 0.05, html: float = 0.01) -> list[str]:
    "`n` deterministic caption-like strings; about `non_ascii` of them carry non-ASCII text, `html` an HTML entity."
    rng = random.Random(seed)
    caps = []
    for _ in range(n):
        noun, noun2, adj, adj2 = rng.choice(_NOUNS), rng.choice(_NOUNS), rng.choice(_ADJS), rng.choice(_ADJS)
        cap = rng.choice(_TEMPLATES).format(
            noun=noun, noun2=noun2, Noun=noun.capitalize(), adj=adj, adj2=adj2, Adj=adj.capitalize(),
            verb=rng.choice(_VERBS), place=rng.choice(_PLACES), year=rng.randrange(1950, 2025),
            num=rng.randrange(2, 100), id=rng.randrange(10**6, 10**8), tag=rng.choice(_NOUNS + _ADJS))
        u = rng.random()
        if u < non_ascii: cap = f"{cap} {rng.choice(_NON_ASCII)}"
        elif u < non_ascii + html: cap = f"{cap} {rng.choice(_HTML)}"
        caps.append(cap)
    return caps


# %%
caps = make_captions(10_000)
test_eq(caps, make_captions(10_000))   # deterministic
print(*caps[:6], sep='\n')
print(f"{len(caps):,} captions, {len(set(caps)):,} distinct; {sum(not c.isascii() for c in caps) / len(caps):.1%} "
      f"with non-ASCII text, {sum('&' in c for c in caps) / len(caps):.1%} with an HTML entity")


# %% [markdown]
# `bench_tokenizer` first checks that our `tokenize(captions, truncate=True)` equals open_clip's
# `SimpleTokenizer()(captions)` (which always truncates), then times both twice: with **fresh**
# tokenizers for every repeat (empty word caches, the cost of a first pass over new text; building the
# tokenizers is not timed) and with **warm** ones that have seen the captions (the steady state of a
# training loop or a zero-shot evaluation that tokenizes the same prompts again).

# %%
#| exports
def bench_tokenizer(n: int = 10_000, repeats: int = 3) -> dict:
    "Check our tokenize equals open_clip's on `n` captions, then time both with fresh and with warm caches."
    OpenClipTokenizer = import_open_clip().tokenizer.SimpleTokenizer
    caps = make_captions(n)
    ours, ref = SimpleTokenizer(), OpenClipTokenizer()
    a, b = tokenize(caps, truncate=True, tokenizer=ours), ref(caps)
    if not torch.equal(a, b):
        bad = (a != b).any(dim=1).nonzero().flatten().tolist()
        raise AssertionError(f"our ids differ from open_clip's on {len(bad)} of {n} captions, e.g. {caps[bad[0]]!r}")
    fresh = {}
    def new(): fresh['ours'], fresh['ref'] = SimpleTokenizer(), OpenClipTokenizer()
    res = dict(bench='tokenizer', n=n, identical=True, non_ascii=sum(not c.isascii() for c in caps) / n)
    res['ours_cold_s'] = best_time(lambda: tokenize(caps, truncate=True, tokenizer=fresh['ours']), repeats, new)
    res['open_clip_cold_s'] = best_time(lambda: fresh['ref'](caps), repeats, new)
    res['ours_warm_s'] = best_time(lambda: tokenize(caps, truncate=True, tokenizer=ours), repeats)
    res['open_clip_warm_s'] = best_time(lambda: ref(caps), repeats)
    res['speedup_cold'] = report('tokenizer (fresh caches)', n, res['ours_cold_s'], res['open_clip_cold_s'])
    res['speedup_warm'] = report('tokenizer (warm caches)', n, res['ours_warm_s'], res['open_clip_warm_s'])
    return res


# %% [markdown]
# The result on this machine (the cell needs open_clip and is skipped under `nbdev_test`):

# %%
#| bench
tok_res = bench_tokenizer()
assert tok_res['identical'] and tok_res['speedup_cold'] >= 2 and tok_res['speedup_warm'] >= 2

# %% [markdown]
# ## The encoders
#
# `encode_image` and `encode_text` of ViT-B/32, float32, batch 8, on the CPU: the configuration a reader
# without a GPU runs. Both models hold the same random weights (ours is built from open_clip's state
# dict with `build_model`), and their outputs are compared before anything is timed. The texts are
# captions from `make_captions`, so the text timing includes our trimming of the padding after the
# last [EOS] (see the model chapter), which open_clip does not do. The two sides alternate, best of
# `repeats` each.

# %%
#| exports
_OPEN_CLIP_NAMES = {'ViT-B/32': 'ViT-B-32', 'ViT-B/16': 'ViT-B-16', 'ViT-L/14': 'ViT-L-14', 'ViT-L/14@336px': 'ViT-L-14-336'}

def bench_encoders(model: str = 'ViT-B/32', batch_size: int = 8, repeats: int = 5, seed: int = 0) -> dict:
    "Check, then time, `encode_image` and `encode_text` of ours and open_clip's `model` (same weights, float32, CPU)."
    cfg = import_open_clip().get_model_config(_OPEN_CLIP_NAMES.get(model, model) + '-quickgelu')
    from open_clip.model import CLIP as OpenCLIP, CLIPTextCfg, CLIPVisionCfg
    from clip_annotated.model import build_model
    torch.manual_seed(seed)
    ref = OpenCLIP(cfg['embed_dim'], vision_cfg=CLIPVisionCfg(**cfg['vision_cfg']),
                   text_cfg=CLIPTextCfg(**cfg['text_cfg']), quick_gelu=True).eval()
    ours = build_model(ref.state_dict())
    res = ours.visual.input_resolution
    inputs = {'encode_image': torch.randn(batch_size, 3, res, res),
              'encode_text': tokenize(make_captions(batch_size, seed=seed), truncate=True)}
    out = dict(bench='encoders', model=model, batch_size=batch_size, threads=torch.get_num_threads())
    with torch.inference_mode():
        for what, x in inputs.items():
            f_ours, f_ref = (lambda: getattr(ours, what)(x)), (lambda: getattr(ref, what)(x))
            a, b = f_ours(), f_ref()                                    # also the warm-up
            err = ((a - b).abs().max() / b.norm(dim=-1).max()).item()
            if err > 1e-5: raise AssertionError(f"{what}: ours differs from open_clip's by {err:.1e} (unit scale)")
            t_ours = t_ref = math.inf
            for _ in range(repeats):                                    # alternate, so noise hits both
                t_ours, t_ref = min(t_ours, best_time(f_ours, 1)), min(t_ref, best_time(f_ref, 1))
            out[what] = dict(ours_s=t_ours, open_clip_s=t_ref, max_err=err,
                             speedup=report(f"{what} {model} b{batch_size} fp32", batch_size, t_ours, t_ref))
    return out


# %% [markdown]
# The result on this machine (skipped under `nbdev_test`):

# %%
#| bench
enc_res = bench_encoders()
assert enc_res['encode_image']['max_err'] < 1e-5 and enc_res['encode_text']['max_err'] < 1e-5


# %% [markdown]
# ## A training step
#
# One optimiser step of CLIP training (encode, loss, backward, AdamW step, temperature clamp), ours
# (`forward_backward` and `optimizer_step` of the training chapter, with `make_optimizer`'s fused
# AdamW) against open_clip's (its `CLIP` forward, its `ClipLoss`, backward, and AdamW set up as its
# training script does: PyTorch's default implementation, its own no-decay rule), float32 on the CPU.
# Both models are built from the same state dict (open_clip's CLIP with `quick_gelu=True`, ours by
# `build_model`), and both see the same batch: random pictures and captions from `make_captions`.
# Before anything is timed, the two losses and all parameter gradients of one step are compared.
# Throughput is timed in this process, the sides alternating, best of `repeats`; so is the forward and
# backward pass alone (no optimiser step), which separates what the model code gains from what the
# optimiser kernel gains.
#
# Peak memory cannot be read from inside one process (the first side's peak would hide the second's,
# and `tracemalloc` does not see PyTorch's allocations), so each side runs once more in a fresh
# subprocess: it builds its model, optimiser and batch, records its resident memory (Linux `VmRSS`),
# resets the kernel's high-water mark (`/proc/self/clear_refs`), runs three training steps, and
# reports the new high-water mark (`VmHWM`) minus that baseline: the memory the training steps
# themselves need (activations, gradients, AdamW's two moments). Where the reset is not available,
# it falls back to `resource.getrusage`'s maximum RSS, which then also counts the construction.
#
# `train_sides` builds the two steps; besides the CPU and float32 of this chapter it takes a `device`, an
# autocast `amp_dtype` and `compile` (`torch.compile` of our `Towers` and of open_clip's model), which the
# [GPU check](99a_gpucheck.ipynb) uses to time the same two steps on a GPU in bfloat16.

# %%
#| exports
def open_clip_config(cfg) -> dict:
    "open_clip `CLIP` arguments for one of our ViT `CLIPConfig`s."
    return dict(embed_dim=cfg.embed_dim,
                vision_cfg=dict(image_size=cfg.image_resolution, layers=cfg.vision_layers, width=cfg.vision_width,
                                patch_size=cfg.vision_patch_size),
                text_cfg=dict(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.transformer_width,
                              heads=cfg.transformer_heads, layers=cfg.transformer_layers))

def _open_clip_optimizer(model, tc):
    "AdamW as open_clip's training script sets it up: PyTorch's default implementation; no decay on ndim < 2, 'bn', 'ln', 'bias', 'logit_scale'."
    no_decay = lambda n, p: p.ndim < 2 or 'bn' in n or 'ln' in n or 'bias' in n or 'logit_scale' in n
    named = list(model.named_parameters())
    groups = [dict(params=[p for n, p in named if no_decay(n, p)], weight_decay=0.0),
              dict(params=[p for n, p in named if not no_decay(n, p)], weight_decay=tc.weight_decay)]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps)

def train_sides(model, batch_size: int, seed: int = 0, sides=('ours', 'open_clip'), device='cpu',
                amp_dtype: torch.dtype | None = None, compile: bool = False) -> dict:
    "{side: (one training step, model, forward+backward only)} built from the same weights, and 'batch': (images, texts); `model` a name in CONFIGS or a `CLIPConfig`."
    from open_clip.model import CLIP as OpenCLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.loss import ClipLoss as OpenClipLoss
    from clip_annotated.core import autocast, get_device
    from clip_annotated.model import CONFIGS, build_model
    from clip_annotated.train import TrainConfig, Towers, forward_backward, make_optimizer, make_scheduler, optimizer_step
    import_open_clip()
    cfg, tc, dev = CONFIGS[model] if isinstance(model, str) else model, TrainConfig(lr=1e-4, warmup=1, steps=10**6), get_device(device)
    oc, amp = open_clip_config(cfg), autocast(dev, amp_dtype)
    torch.manual_seed(seed)
    ref = OpenCLIP(oc['embed_dim'], vision_cfg=CLIPVisionCfg(**oc['vision_cfg']), text_cfg=CLIPTextCfg(**oc['text_cfg']),
                   quick_gelu=True)
    images = torch.randn(batch_size, 3, cfg.image_resolution, cfg.image_resolution, device=dev)
    texts = tokenize(make_captions(batch_size, seed=seed), context_length=cfg.context_length, truncate=True).to(dev)
    out = dict(batch=(images, texts))
    if 'ours' in sides:
        ours = build_model(ref.state_dict()).to(dev).train()
        opt_o = make_optimizer(ours, tc); sched_o = make_scheduler(opt_o, tc)
        towers = torch.compile(Towers(ours)) if compile else Towers(ours)
        def step_ours():
            loss = forward_backward(towers, images, texts, amp=amp)
            optimizer_step(ours, opt_o, sched_o)
            return loss
        def grads_ours(): forward_backward(towers, images, texts, amp=amp); ours.zero_grad(set_to_none=True)
        out['ours'] = (step_ours, ours, grads_ours)
    if 'open_clip' in sides:
        ref.to(dev).train()
        opt_r = _open_clip_optimizer(ref, tc); sched_r = make_scheduler(opt_r, tc); loss_fn = OpenClipLoss()
        fwd = torch.compile(ref) if compile else ref
        def step_ref():
            with amp: loss = loss_fn(*fwd(images, texts))
            loss.backward()
            opt_r.step(); sched_r.step(); opt_r.zero_grad(set_to_none=True)
            with torch.no_grad(): ref.logit_scale.clamp_(0, math.log(100))
            return loss.detach()
        def grads_ref():
            with amp: loss = loss_fn(*fwd(images, texts))
            loss.backward(); ref.zero_grad(set_to_none=True)
        out['open_clip'] = (step_ref, ref, grads_ref)
    return out

def check_train_step(ours, ref, images, texts) -> tuple[float, float, float]:
    "Both losses on the same batch, and the worst relative difference of their parameter gradients."
    from open_clip.loss import ClipLoss as OpenClipLoss
    from clip_annotated.train import Towers, forward_backward
    la = forward_backward(Towers(ours), images, texts).item()
    lb = OpenClipLoss()(*ref(images, texts)); lb.backward()
    g_ref = dict(ref.named_parameters())
    worst = max(((p.grad - g_ref[n].grad).abs().max() / g_ref[n].grad.abs().max()).item()
                for n, p in ours.named_parameters() if p.grad is not None and g_ref[n].grad.abs().max() > 0)
    ours.zero_grad(set_to_none=True); ref.zero_grad(set_to_none=True)
    return la, lb.item(), worst

def _train_memory(side: str, model: str, batch_size: int, steps: int = 3) -> dict:
    "In a fresh process: the memory (MiB) `steps` training steps of `side` need beyond model, optimiser and batch."
    import gc, re, resource
    step = train_sides(model, batch_size, sides=(side,))[side][0]
    gc.collect()
    status = lambda key: int(re.search(key + r':\s+(\d+)', open('/proc/self/status').read()).group(1))  # kB
    try:
        base = status('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')        # reset the high-water mark
        method = 'VmHWM after a reset, minus VmRSS before the steps'
    except OSError:
        base, method = 0, 'ru_maxrss (includes construction)'
    for _ in range(steps): step()
    peak = status('VmHWM') if base else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(side=side, model=model, batch_size=batch_size, train_mib=(peak - base) / 1024, method=method)

def bench_train(models=('MiniCLIP', 'ViT-B/32'), batch_size: int = 8, repeats: int = 3, seed: int = 0) -> dict:
    "Check, then time, one training step of ours and open_clip's (same weights, batch and AdamW; float32); memory per side in a subprocess."
    import json, subprocess, sys
    out = dict(bench='train', batch_size=batch_size, threads=torch.get_num_threads(), models={})
    for model in models:
        sides = train_sides(model, batch_size, seed)
        (f_ours, m_ours, g_ours), (f_ref, m_ref, g_ref) = sides['ours'], sides['open_clip']
        la, lb, worst = check_train_step(m_ours, m_ref, *sides['batch'])
        if abs(la - lb) > 1e-5 * abs(lb) or worst > 1e-4:
            raise AssertionError(f"{model}: loss {la} vs open_clip's {lb}, worst relative gradient difference {worst:.1e}")
        f_ours(); f_ref()                                                   # warm-up (and AdamW's state)
        t_ours = t_ref = math.inf
        g_ours(); g_ref()
        tg_ours = tg_ref = math.inf
        for _ in range(repeats):                                            # alternate, so noise hits both
            t_ours, t_ref = min(t_ours, best_time(f_ours, 1)), min(t_ref, best_time(f_ref, 1))
            tg_ours, tg_ref = min(tg_ours, best_time(g_ours, 1)), min(tg_ref, best_time(g_ref, 1))
        del sides, f_ours, f_ref, g_ours, g_ref, m_ours, m_ref
        mem = {}
        for side in ('ours', 'open_clip'):
            code = (f"import json; from clip_annotated.bench import _train_memory; "
                    f"print(json.dumps(_train_memory({side!r}, {model!r}, {batch_size})))")
            r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=1800)
            if r.returncode: raise RuntimeError(f"memory run of {side} on {model} failed:\n{r.stderr[-2000:]}")
            mem[side] = json.loads(r.stdout.strip().splitlines()[-1])
        res = dict(loss=la, max_grad_err=worst, ours_s=t_ours, open_clip_s=t_ref, ours_samples_s=batch_size / t_ours,
                   open_clip_samples_s=batch_size / t_ref, ours_mib=mem['ours']['train_mib'],
                   open_clip_mib=mem['open_clip']['train_mib'], memory_method=mem['ours']['method'])
        res['speedup'] = report(f"train step {model} b{batch_size} fp32", batch_size, t_ours, t_ref)
        res.update(ours_fwd_bwd_s=tg_ours, open_clip_fwd_bwd_s=tg_ref,
                   fwd_bwd_speedup=report("  of which fwd+bwd", batch_size, tg_ours, tg_ref))
        print(f"{'':28} samples/s: ours {res['ours_samples_s']:.1f}, open_clip {res['open_clip_samples_s']:.1f}; "
              f"memory of the steps: ours {res['ours_mib']:.0f} MiB, open_clip {res['open_clip_mib']:.0f} MiB")
        out['models'][model] = res
    return out


# %% [markdown]
# The result on this machine (skipped under `nbdev_test`):

# %%
#| bench
train_res = bench_train()
assert all(r['speedup'] >= 1.2 and r['ours_mib'] <= r['open_clip_mib'] and r['max_grad_err'] < 1e-4
           for r in train_res['models'].values())


# %% [markdown]
# ## Zero-shot evaluation
#
# The evaluation chapters run `zeroshot.evaluate`: encode every picture, build the classifier from
# class names and templates, take the arg max. open_clip's equivalent is its
# `build_zero_shot_classifier` followed by the loop of its training repository's `zero_shot.run`
# (encode a batch, normalise, multiply by the classifier). `bench_zeroshot` runs both on the same model
# and pictures, checks that they predict the same class for every picture, then times the whole
# evaluation, classifier included, and reports pictures per second. Two cases: MiniCLIP on the held-out
# emoji's skin-tone task (5 classes × 6 templates; the printout counts its pictures), and ViT-B/32 on a
# fake CIFAR-10 in its real file format (100 pictures at 224 px, 10 classes × OpenAI's 18 CIFAR
# templates). Weights are random (the same on both sides): the point is the machinery, not the
# accuracy.

# %%
#| exports
def open_clip_twin(ours):
    "open_clip's `CLIP` with the same architecture and weights as our ViT model `ours`."
    from open_clip.model import CLIP as OpenCLIP, CLIPTextCfg, CLIPVisionCfg
    from clip_annotated.model import config_from_state_dict
    oc = open_clip_config(config_from_state_dict(ours.state_dict()))
    ref = OpenCLIP(oc['embed_dim'], vision_cfg=CLIPVisionCfg(**oc['vision_cfg']), text_cfg=CLIPTextCfg(**oc['text_cfg']),
                   quick_gelu=True)
    ref.load_state_dict(ours.state_dict())
    return ref.eval()

def _open_clip_zero_shot(ref, dataset, classnames, templates, context_length: int, batch_size: int = 256):
    "open_clip's way: build_zero_shot_classifier, then encode batches and multiply (as open_clip_train's zero_shot.run)."
    from open_clip.tokenizer import SimpleTokenizer as OpenClipTokenizer
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    W = build_zero_shot_classifier(ref, OpenClipTokenizer(context_length=context_length), classnames, templates)
    preds = []
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
            f = ref.encode_image(x, normalize=True)
            preds.append((100.0 * f @ W).argmax(dim=1))
    return torch.cat(preds)

def _ours_zero_shot(model, dataset, classnames, templates, batch_size: int = 256):
    from clip_annotated.zeroshot import encode_images, zero_shot_classifier, zero_shot_logits
    feats, _ = encode_images(model, dataset, batch_size, progress=False)
    return zero_shot_logits(feats, zero_shot_classifier(model, classnames, templates, batch_size)).argmax(dim=1)

def bench_zeroshot(repeats: int = 3, seed: int = 0) -> dict:
    "Check (same predictions), then time a whole zero-shot evaluation by our code and open_clip's utilities."
    import tempfile
    from clip_annotated.model import create_model
    from clip_annotated.pretrained import image_transform
    from clip_annotated.tasks import emoji_task
    from clip_annotated.evalsets import load_evalset, write_fake
    import_open_clip()
    out = dict(bench='zeroshot', threads=torch.get_num_threads(), cases={})
    tmp = tempfile.TemporaryDirectory(prefix='clip_annotated_bench_')
    torch.manual_seed(seed)
    mini = create_model('MiniCLIP').eval()
    tone = emoji_task('skin_tone')
    b32 = create_model('ViT-B/32').eval()
    write_fake('cifar10', tmp.name, n_per_class=10)
    cifar = load_evalset('cifar10', tmp.name, transform=image_transform(224))
    cases = {'MiniCLIP emoji skin tone': (mini, tone.dataset, tone.classnames, tone.templates),
             'ViT-B/32 fake CIFAR-10': (b32, cifar, cifar.classnames, cifar.templates)}
    for name, (model, ds, classes, temps) in cases.items():
        ref = open_clip_twin(model)
        f_ours = lambda: _ours_zero_shot(model, ds, classes, temps)
        f_ref = lambda: _open_clip_zero_shot(ref, ds, classes, temps, model.context_length)
        a, b = f_ours(), f_ref()
        same = (a == b).float().mean().item()
        if same < 1.0: raise AssertionError(f"{name}: ours and open_clip predict differently on {100 * (1 - same):.1f}% of pictures")
        t_ours = t_ref = math.inf
        for _ in range(repeats):                                                 # alternate, so noise hits both
            t_ours, t_ref = min(t_ours, best_time(f_ours, 1)), min(t_ref, best_time(f_ref, 1))
        n = len(ds)
        out['cases'][name] = dict(n=n, texts=len(classes) * len(temps), same_predictions=same, ours_s=t_ours, open_clip_s=t_ref,
                                  ours_images_s=n / t_ours, open_clip_images_s=n / t_ref,
                                  speedup=report(f"zero-shot {name}", n, t_ours, t_ref))
        print(f"{'':28} pictures/s: ours {n / t_ours:.1f}, open_clip {n / t_ref:.1f}; same predictions on all {n}")
    tmp.cleanup()
    return out


# %% [markdown]
# The result on this machine (skipped under `nbdev_test`):

# %%
#| bench
zs_res = bench_zeroshot()
assert all(c['speedup'] >= 1.0 and c['same_predictions'] == 1.0 for c in zs_res['cases'].values())

# %% [markdown]
# ## The input pipeline
#
# How many pictures a second the training loop receives from [the input pipeline](05d_loader.ipynb)
# (`TrainBatches` over `open_data`, with training augmentation), against open_clip's own data loader
# (`open_clip_train.data.get_data`, which builds its `get_csv_dataset` or `get_wds_dataset`, with
# `open_clip.image_transform(224, is_train=True)` and its tokenizer) on the same files: a CSV of JPEG
# photos and webdataset shards of the same JPEGs, with 0, 1 and 2 `DataLoader` workers.
#
# The files are made once, in one folder: photo-like JPEGs at quality 90 (crops of scikit-learn's two
# sample photos, each tinted, noised and perhaps flipped, so that no two decode alike), captions from
# `make_captions`, a CSV file with open_clip's column names and its paths relative to the file's
# folder, and shards that hold the same JPEG bytes. Both sides read one epoch at the same batch size;
# the first batch (which starts the workers and fills the shuffle buffers) is not timed, the rest are.
# The two sides cannot give the same pictures (each draws its own random crops), so what is checked
# before the figures count is that they deliver batches of the same shape. Two figures per side:
# pictures per second of wall time, and the CPU time per batch of the process
# that consumes the batches (`time.process_time`, all its threads, not its workers). With no workers
# that process decodes everything itself; with workers its share should fall to the cost of receiving
# a finished batch.
#
# open_clip's loader needs open_clip's training package (`open-clip-torch[training]`, which pins an
# older webdataset than ours), so it runs in its own Python, the one `OPEN_CLIP_TRAIN_PYTHON` names (or
# `open_clip_python=`): one subprocess serves all its measurements, reading requests on its standard
# input and timing with the same function as our side (its source is sent along). The two sides
# alternate, best of `repeats`. Without that Python, only our side is timed. `make bench-loader` makes
# such a Python in `.venv-openclip` and writes the results to `nbs/bench_loader.json`, which this
# chapter shows.

# %%
#| exports
LOADER_KINDS = {'csv': 'CSV of JPEGs', 'webdataset': 'webdataset shards'}   # open_data's and open_clip's dataset types

def loader_photos(n: int, size: tuple[int, int] = (256, 320), seed: int = 0):
    "Yield `n` different photo-like JPEGs (bytes, quality 90, `size` = (height, width)) cut from scikit-learn's sample photos."
    import io
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_image
    h, w = size
    if n < 1 or h < 1 or w < 1: raise ValueError(f"loader_photos: n={n} and size={size!r} must be positive")
    sources, rng = [load_sample_image(f) for f in ('china.jpg', 'flower.jpg')], np.random.default_rng(seed)
    for k in range(n):
        src = sources[k % 2]
        s = rng.uniform(0.5, 1.0) * min(src.shape[0] / h, src.shape[1] / w)     # a crop of the output's shape
        ch, cw = max(1, int(h * s)), max(1, int(w * s))
        y, x = rng.integers(0, src.shape[0] - ch + 1), rng.integers(0, src.shape[1] - cw + 1)
        a = np.asarray(Image.fromarray(src[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR), dtype=np.float32)
        a = a * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 4, a.shape)            # tint and noise
        if rng.random() < 0.5: a = a[:, ::-1]
        buf = io.BytesIO()
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, format='JPEG', quality=90)
        yield buf.getvalue()

def write_loader_files(folder, n: int = 512, size: tuple[int, int] = (256, 320), shards: int = 8, seed: int = 0) -> dict:
    "Once per (n, size, shards, seed): `n` JPEGs with captions in `folder` as pairs.csv + images/ and as `shards` tar shards; {kind: what open_data reads}."
    import csv, json
    import webdataset as wds
    folder = Path(folder)
    params = dict(n=n, size=list(size), shards=shards, seed=seed)
    per_shard = -(-n // max(1, shards))
    spec = f"{folder / 'shards'}/{{00000..{-(-n // per_shard) - 1:05d}}}.tar"
    files = {'csv': str(folder / 'pairs.csv'), 'webdataset': spec}
    done = folder / 'loader_files.json'
    if done.is_file() and json.loads(done.read_text()) == params: return files
    (folder / 'images').mkdir(parents=True, exist_ok=True); (folder / 'shards').mkdir(exist_ok=True)
    sink, caps = None, make_captions(n, seed=seed)
    with open(folder / 'pairs.csv', 'w', newline='', encoding='utf-8') as f:
        rows = csv.writer(f); rows.writerow(['filepath', 'title'])
        for k, jpg in enumerate(loader_photos(n, size, seed)):
            (folder / 'images' / f'{k:06d}.jpg').write_bytes(jpg)
            rows.writerow([f'images/{k:06d}.jpg', caps[k]])
            if k % per_shard == 0:
                if sink: sink.close()
                sink = wds.TarWriter(str(folder / 'shards' / f'{k // per_shard:05d}.tar'), mtime=0)
            sink.write({'__key__': f'{k:09d}', 'jpg': jpg, 'txt': caps[k]})
    sink.close()
    done.write_text(json.dumps(params))
    return files


# %%
with tempfile.TemporaryDirectory() as d:
    files = write_loader_files(d, n=6, size=(48, 64), shards=2)
    jpgs = sorted(Path(d, 'images').glob('*.jpg'))
    test_eq(len(jpgs), 6); test_eq(len(set(p.read_bytes() for p in jpgs)), 6)      # six different photos
    test_eq(files['webdataset'].endswith('shards/{00000..00001}.tar'), True)
    stamp = jpgs[0].stat().st_mtime_ns
    test_eq(write_loader_files(d, n=6, size=(48, 64), shards=2), files); test_eq(jpgs[0].stat().st_mtime_ns, stamp)   # made once
    from clip_annotated.readers import open_data
    ds = open_data(files['csv'], train=True, image_size=32)
    test_eq(len(ds), 6); test_eq(ds[0][0].shape, (3, 32, 32))
    test_eq(sum(1 for _ in open_data(files['webdataset'], train=True, image_size=32)), 6)
test_fail(lambda: next(loader_photos(0)), contains='n=0')


# %% [markdown]
# `time_batches` is the stopwatch of both sides: it takes the image tensors of successive batches,
# leaves the first one out and returns what the rest took. `ours_loader_speed` runs it over one epoch of
# `TrainBatches`; `OpenClipLoader` runs it over one epoch of open_clip's loader in the other Python,
# building the `args` object that `get_data` reads from open_clip's command line: a single process
# (`distributed=False`, `world_size=1`), comma-separated CSV columns `filepath` and `title`, and
# `train_num_samples` for the shards, which open_clip needs because a tar file does not say how many
# samples it holds.

# %%
#| exports
def time_batches(batches) -> dict:
    "Consume an iterable of image batches; time all but the first (warm-up): pictures/s, CPU ms of this process per batch."
    import time
    t, it = time.perf_counter(), iter(batches)
    first = next(it, None)
    if first is None: raise ValueError("time_batches: the loader gave no batch at all")
    t0, c0, pictures, n = time.perf_counter(), time.process_time(), 0, 0
    for images in it: pictures, n = pictures + len(images), n + 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if n == 0: raise ValueError("time_batches: only one batch, nothing left to time after the warm-up")
    return dict(batches=n, pictures=pictures, shape=list(first.shape), first_batch_s=t0 - t, wall_s=wall,
                pictures_s=pictures / wall, cpu_ms_per_batch=cpu / n * 1e3)

def ours_loader_speed(spec: str, workers: int, batch_size: int = 64, image_size: int = 224, seed: int = 0) -> dict:
    "`time_batches` over epoch 0 of our TrainBatches of `open_data(spec, train=True)` with `workers` DataLoader workers."
    import gc
    from clip_annotated.readers import open_data
    from clip_annotated.loader import TrainBatches
    pipe = TrainBatches(open_data(spec, train=True, image_size=image_size, seed=seed), batch_size, seed=seed,
                        workers=workers, context_length=77)
    try: return time_batches(images for _, images, _ in pipe.epoch(0))
    finally:
        del pipe; gc.collect()                                  # ends the persistent workers before the next side runs

_OPEN_CLIP_SERVER = r'''
import argparse, gc, json, sys, warnings
warnings.filterwarnings('ignore')
import torch, webdataset, open_clip
from open_clip_train.data import get_data

TIME_BATCHES

tokenizer, transforms = open_clip.get_tokenizer('ViT-B-32'), {}

def measure(req):
    "One epoch of open_clip's training loader as its training script builds it, timed."
    size = req['image_size']
    if size not in transforms: transforms[size] = open_clip.image_transform(size, is_train=True)
    args = argparse.Namespace(
        train_data=req['data'], val_data=None, dataset_type=req['kind'], batch_size=req['batch_size'],
        workers=req['workers'], world_size=1, rank=0, local_rank=0, distributed=False, seed=req['seed'],
        train_num_samples=req['pictures'], train_data_upsampling_factors=None, dataset_resampled=False,
        csv_img_key='filepath', csv_caption_key='title', csv_separator=',', imagenet_val=None, imagenet_v2=None)
    data = get_data(args, (transforms[size], None), epoch=0, tokenizer=tokenizer)
    data['train'].set_epoch(0)
    try: return time_batches(images for images, _ in data['train'].dataloader)
    finally:
        del data; gc.collect()

print('READY ' + json.dumps(dict(open_clip=open_clip.__version__, torch=torch.__version__,
                                 webdataset=webdataset.__version__)), flush=True)
for line in sys.stdin:
    try: out = dict(ok=True, **measure(json.loads(line)))
    except Exception as e: out = dict(ok=False, error=f'{type(e).__name__}: {e}'.splitlines()[0])
    print('RESULT ' + json.dumps(out), flush=True)
'''

class OpenClipLoader:
    "open_clip's training data loader, timed in another Python (one with open-clip-torch[training]) by one subprocess run in `folder`."
    def __init__(self, python: str, folder):
        import inspect, subprocess
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ValueError(f"open_clip Python {python!r} is not an executable file")
        self.python, self.log = python, tempfile.TemporaryFile('w+')
        script = _OPEN_CLIP_SERVER.replace('TIME_BATCHES', inspect.getsource(time_batches))
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}   # open_clip's packages only
        self.proc = subprocess.Popen([python, '-c', script], cwd=folder, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.versions = self._reply('READY')

    def _reply(self, tag: str) -> dict:
        "The next line the subprocess prints that starts with `tag`, as a dict; an error with its last words if it ends first."
        for line in self.proc.stdout:
            if line.startswith(tag + ' '): return json.loads(line[len(tag) + 1:])
        self.log.seek(0); last = (self.log.read().strip().splitlines() or ['no message'])[-1]
        raise RuntimeError(f"open_clip's loader in {self.python} ended early: {last}")

    def measure(self, kind: str, data: str, workers: int, batch_size: int, image_size: int, pictures: int, seed: int = 0) -> dict:
        "`time_batches` over one epoch of open_clip's loader of `data` (`kind` 'csv' or 'webdataset')."
        req = dict(kind=kind, data=data, workers=workers, batch_size=batch_size, image_size=image_size, pictures=pictures, seed=seed)
        self.proc.stdin.write(json.dumps(req) + '\n'); self.proc.stdin.flush()
        out = self._reply('RESULT')
        if not out.pop('ok'): raise RuntimeError(f"open_clip's loader on {kind} {data} with {workers} workers: {out['error']}")
        return out

    def close(self):
        "End the subprocess (it stops at the end of its input)."
        self.proc.stdin.close(); self.proc.wait(timeout=60); self.log.close()


# %% [markdown]
# `bench_loader` makes the files (in `folder`, or in a temporary folder it removes), then times every
# (data, workers) pair on both sides, which side goes first alternating, best of `repeats`: the most
# pictures per second and the least main-process CPU per batch. It prints `loader_table`, the table
# this chapter shows, with the machine and the load average before and after (on a busy machine the
# figures are not worth much); `save=` writes the results as JSON, which `loader_results` reads back.

# %%
#| exports
def _best(runs: list[dict], side: str, kind: str, workers: int, key: str, pick) -> float | None:
    vals = [r[key] for r in runs if (r['side'], r['kind'], r['workers']) == (side, kind, workers)]
    return pick(vals) if vals else None

def bench_loader(repeats: int = 3, pictures: int = 512, batch_size: int = 64, workers=(0, 1, 2), image_size: int = 224,
                 size: tuple[int, int] = (256, 320), shards: int = 8, folder=None, open_clip_python: str | None = None,
                 save=None, seed: int = 0) -> dict:
    "Pictures/s and main-process CPU per batch of our input pipeline and open_clip's loader, on the same CSV of JPEGs and shards."
    import itertools, shutil
    from clip_annotated.core import atomic_write
    python = os.environ.get('OPEN_CLIP_TRAIN_PYTHON') if open_clip_python is None else open_clip_python
    if not python: print("open_clip's loader is not timed (set OPEN_CLIP_TRAIN_PYTHON to a Python with open-clip-torch[training]): ours alone.")
    tmp = None if folder is not None else tempfile.mkdtemp(prefix='clip_annotated_loader_')
    files = write_loader_files(folder or tmp, pictures, size, shards, seed)
    load, runs, ref = [os.getloadavg()[0]], [], None
    try:
        ref = OpenClipLoader(python, folder or tmp) if python else None
        for r in range(repeats):
            for i, (kind, w) in enumerate(itertools.product(LOADER_KINDS, workers)):
                sides = ['ours', 'open_clip'][::1 if (r + i) % 2 == 0 else -1] if ref else ['ours']   # alternate
                for side in sides:
                    m = (ours_loader_speed(files[kind], w, batch_size, image_size, seed) if side == 'ours' else
                         ref.measure(kind, files[kind], w, batch_size, image_size, pictures, seed))
                    runs.append(dict(side=side, kind=kind, workers=w, repeat=r, **m))
                if ref and runs[-1]['shape'] != runs[-2]['shape']:
                    raise AssertionError(f"{kind} with {w} workers: our batches are {runs[-2 if sides[0] == 'ours' else -1]['shape']}, "
                                         f"open_clip's {runs[-1 if sides[0] == 'ours' else -2]['shape']}")
    finally:
        if ref: ref.close()
        if tmp: shutil.rmtree(tmp, ignore_errors=True)
    load.append(os.getloadavg()[0])
    rows = []
    for kind, w in itertools.product(LOADER_KINDS, workers):
        row = dict(kind=kind, workers=w)
        for side in ('ours', 'open_clip'):
            row[f'{side}_pictures_s'] = _best(runs, side, kind, w, 'pictures_s', max)
            row[f'{side}_cpu_ms'] = _best(runs, side, kind, w, 'cpu_ms_per_batch', min)
        row['ratio'] = row['open_clip_pictures_s'] and row['ours_pictures_s'] / row['open_clip_pictures_s']
        rows.append(row)
    res = dict(bench='loader', hardware=hardware(), python=platform.python_version(), torch=torch.__version__,
               open_clip=ref.versions if ref else None, pictures=pictures, jpeg_size=list(size), shards=shards,
               batch_size=batch_size, image_size=image_size, repeats=repeats, load_average=load, rows=rows, runs=runs)
    print(loader_table(res))
    if save: atomic_write(save, lambda f: f.write(json.dumps(res, indent=1).encode()))
    return res

def _cell(x, spec: str) -> str: return '–' if x is None else format(x, spec)

def loader_table(res: dict) -> str:
    "Markdown: a `bench_loader` result's rows (data, workers, pictures/s and main-process CPU ms per batch of both sides), then how it was measured."
    head = ['data', 'workers', 'ours pictures/s', 'open_clip pictures/s', 'ours / open_clip',
            'ours main CPU ms/batch', 'open_clip main CPU ms/batch']
    rows = [(LOADER_KINDS.get(r['kind'], r['kind']), r['workers'], _cell(r['ours_pictures_s'], ',.0f'),
             _cell(r['open_clip_pictures_s'], ',.0f'), _cell(r['ratio'], '.2f'), _cell(r['ours_cpu_ms'], ',.1f'),
             _cell(r['open_clip_cpu_ms'], ',.1f')) for r in res['rows']]
    oc = res.get('open_clip')
    h, w = res['jpeg_size']
    return (markdown_table(head, rows, align='lrrrrrr') +
            f"\n{res['pictures']} JPEGs of {h}×{w} px (quality 90) in {res['shards']} shards and a CSV file, to "
            f"{res['image_size']} px crops; batch {res['batch_size']}, first batch untimed, best of {res['repeats']}. "
            + (f"open_clip {oc['open_clip']} (webdataset {oc['webdataset']}, torch {oc['torch']}) in its own Python. "
               if oc else "open_clip's loader was not timed. ")
            + f"On {res['hardware']}, Python {res['python']}, torch {res['torch']}; "
              f"load average {res['load_average'][0]:.2f} before, {res['load_average'][-1]:.2f} after.\n")

def loader_results(path='bench_loader.json') -> dict | None:
    "The results `make bench-loader` saved at `path` (default: nbs/bench_loader.json, seen from nbs/), or None when there are none."
    path = Path(path)
    if not path.is_file(): return None
    res = json.loads(path.read_text())
    if res.get('bench') != 'loader' or 'rows' not in res: raise ValueError(f"{path} does not hold bench_loader results")
    return res


# %%
fake = dict(rows=[dict(kind='csv', workers=0, ours_pictures_s=300.0, open_clip_pictures_s=None, ratio=None, ours_cpu_ms=200.0,
                       open_clip_cpu_ms=None)], jpeg_size=[256, 320], pictures=512, shards=8, image_size=224, batch_size=64,
            repeats=3, open_clip=None, hardware='a CPU', python='3.11', torch='2', load_average=[0.5, 0.75])
t = loader_table(fake)
test_eq(t.splitlines()[2], '| CSV of JPEGs | 0 | 300 | – | – | 200.0 | – |')
assert 'load average 0.50 before, 0.75 after' in t and "not timed" in t
test_eq(loader_results('/nowhere/bench_loader.json'), None)
test_eq(time_batches([torch.zeros(4, 1)] * 3)['pictures'], 8)                 # the first batch is not counted
test_fail(lambda: time_batches([torch.zeros(4, 1)]), contains='only one batch')

# %% [markdown]
# The figures that `make bench-loader` measured and committed, when there are some; otherwise (with
# `nbdev_test --flags bench`) a small run on this machine, with open_clip's side when
# `OPEN_CLIP_TRAIN_PYTHON` is set:

# %%
loader_res = loader_results('bench_loader.json')
if loader_res: display(Markdown(loader_table(loader_res)))
else: print("No committed loader figures: `make bench-loader` measures them and writes nbs/bench_loader.json.")

# %%
#| bench
if loader_res is None: loader_res = bench_loader(repeats=1, pictures=128, batch_size=32)

# %% [markdown]
# ## End to end: our trainer against open_clip's
#
# The sections above time pieces. This one asks whether the two *trainers* reach the same place: our
# `clip-annotated train` and open_clip's training script (`open_clip_train.main`) train the same
# model on the same pairs with the same settings, and one function judges both. It does not time
# anything that matters (the wall times it keeps are of a whole process, start included); what it
# compares is held-out accuracy. Chapter 16 shows its results and what they changed in the book.
#
# What both trainers are given, held equal:
#
# - **the pairs**: the book's emoji set written once as webdataset shards (`write_emoji_shards`), each
#   picture as a PNG with its plain name as the caption, the training split for training and the test
#   split held out; both trainers read the same shard files;
# - **the model**: `E2E_SETTINGS`' `CLIPConfig`, for open_clip written as one of its model configs
#   (`write_open_clip_config`), so that its checkpoint loads into our `CLIP` without renaming a key;
# - **the recipe**: steps, batch, peak learning rate, a linear warm-up over a tenth of the steps then a
#   cosine decay, AdamW's weight decay, betas and epsilon, float32, one thread, no `DataLoader` workers,
#   and the seed;
# - **the judge**: `judge` loads either kind of checkpoint into our `CLIP` and measures held-out
#   image→name and name→image retrieval with `evaluate_retrieval` on `EmojiDataset('test', train=False)`.
#
# What is left to each trainer is everything else: how it shuffles the shards, its crop, which
# parameters it decays, how it initialises the weights. An *arm* is a trainer with some of those
# choices changed: `'ours'`, `'open_clip'`, or ours with options joined by `+`: `buffer=N` (the
# training shards' shuffle buffer; it is filled to at most `readers.SHUFFLE_INITIAL` samples before
# the first leaves) and `zoom=LO:HI` (our crop's zoom range, see `TrainTransform`). The options reach
# our trainer through `ours_data_options`, which changes how the training loop's `make_datasets` opens
# the shards; nothing else of the trainer is touched.

# %%
#| exports
E2E_SETTINGS = dict(model='MiniCLIP', model_overrides=dict(vision_patch_size=12), batch_size=64, lr=1e-3,
                    weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6, precision='fp32', threads=1, workers=0)
E2E_MODEL_NAME = 'clip-annotated-e2e'      # the name open_clip knows our model config by
E2E_ARMS = ('ours', 'open_clip', 'ours+buffer=256', 'ours+zoom=1.0:1.05')

def e2e_config(settings: dict = E2E_SETTINGS):
    "The `CLIPConfig` both trainers build: `settings['model']` with its overrides."
    from clip_annotated.model import CONFIGS
    from dataclasses import replace
    return replace(CONFIGS[settings['model']], **settings['model_overrides'])

def e2e_warmup(steps: int) -> int: return max(1, steps // 10)

def parse_e2e_arm(spec: str) -> dict:
    "An arm from its name: 'ours', 'open_clip', or 'ours' with '+buffer=N' and/or '+zoom=LO:HI'."
    trainer, *options = spec.split('+')
    if trainer not in ('ours', 'open_clip'): raise ValueError(f"arm {spec!r}: starts with 'ours' or 'open_clip'")
    if trainer == 'open_clip' and options: raise ValueError(f"arm {spec!r}: open_clip's trainer runs as it is; options change ours")
    arm = dict(name=spec, trainer=trainer, shuffle_buffer=None, zoom=None)
    for option in options:
        key, _, value = option.partition('=')
        try:
            if key == 'buffer': arm['shuffle_buffer'] = int(value); ok = arm['shuffle_buffer'] >= 0
            elif key == 'zoom': arm['zoom'] = tuple(float(v) for v in value.split(':')); ok = len(arm['zoom']) == 2 and 0 < arm['zoom'][0] <= arm['zoom'][1]
            else: ok = False
        except ValueError: ok = False
        if not ok: raise ValueError(f"arm {spec!r}: option {option!r} is not buffer=N (N >= 0) or zoom=LO:HI (0 < LO <= HI)")
    return arm

def e2e_run_name(arm: dict, seed: int) -> str:
    "The run folder's name of an arm and a seed (letters, digits, '.', '+' and '-' only)."
    return re.sub(r'[^\w.+-]', '-', arm['name']) + f'_s{seed}'


# %%
test_eq(parse_e2e_arm('ours'), dict(name='ours', trainer='ours', shuffle_buffer=None, zoom=None))
test_eq(parse_e2e_arm('ours+buffer=256+zoom=1:1.05')['zoom'], (1.0, 1.05))
test_eq(parse_e2e_arm('ours+buffer=256')['shuffle_buffer'], 256)
test_fail(lambda: parse_e2e_arm('open_clip+buffer=256'), contains='runs as it is')
test_fail(lambda: parse_e2e_arm('ours+zoom=1.2:1'), contains='zoom=LO:HI')
test_fail(lambda: parse_e2e_arm('ours+crop=1'), contains='is not buffer')
test_eq(e2e_run_name(parse_e2e_arm('ours+zoom=1.0:1.05'), 3), 'ours+zoom-1.0-1.05_s3')
test_eq(e2e_warmup(250), 25)


# %% [markdown]
# The pairs and the model, written for both trainers. `write_emoji_shards` writes each split of the
# emoji set as shards of `per_shard` samples (once: a second call with the same arguments finds them
# made) and returns, per split, the brace range both trainers read. `open_clip_model_config` is the
# JSON open_clip reads for a model: our `open_clip_config` with the activation (QuickGELU, as ours)
# and the width of a vision head stated.

# %%
#| exports
def write_emoji_shards(folder, per_shard: int = 256, limit: int | None = None) -> dict[str, str]:
    "The emoji set's train and test splits as shards in `folder`/train and /test (PNG + plain name), made once; {split: brace range}."
    from clip_annotated.data import EmojiDataset
    from clip_annotated.readers import write_webdataset
    folder, params = Path(folder), dict(per_shard=per_shard, limit=limit)
    done, out = folder / 'shards.json', {}
    if done.is_file() and json.loads(done.read_text())['params'] == params: return json.loads(done.read_text())['splits']
    for split in ('train', 'test'):
        ds = EmojiDataset(split, train=False)
        n = len(ds) if limit is None else min(limit, len(ds))
        for old in (folder / split).glob('*.tar'): old.unlink()
        paths = write_webdataset(((ds.images[i], ds.records[i].name) for i in range(n)), folder / split, per_shard)
        out[split] = f"{folder / split}/{{00000..{len(paths) - 1:05d}}}.tar"
    done.write_text(json.dumps(dict(params=params, splits=out)))
    return out

def open_clip_model_config(cfg, quick_gelu: bool = True) -> dict:
    "open_clip's model config (the JSON of its model_configs folder) for one of our ViT `CLIPConfig`s."
    from clip_annotated.model import HEAD_WIDTH
    oc = open_clip_config(cfg)
    return dict(embed_dim=oc['embed_dim'], quick_gelu=quick_gelu, vision_cfg=dict(oc['vision_cfg'], head_width=HEAD_WIDTH),
                text_cfg=oc['text_cfg'])

def write_open_clip_config(cfg, folder, name: str = E2E_MODEL_NAME) -> Path:
    "`folder`/`name`.json, the model config open_clip finds after `open_clip.add_model_config(folder)`."
    path = Path(folder) / f'{name}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(open_clip_model_config(cfg), indent=1) + '\n')
    return path


# %%
with tempfile.TemporaryDirectory() as d:
    shards = write_emoji_shards(d, per_shard=4, limit=10)
    test_eq(shards['train'], f"{d}/train/{{00000..00002}}.tar")
    from clip_annotated.readers import open_data
    items = list(open_data(shards['test']))
    test_eq(len(items), 10); test_eq(items[0][0].shape, (3, 48, 48))
    stamp = Path(d, 'train', '00000.tar').stat().st_mtime_ns
    test_eq(write_emoji_shards(d, per_shard=4, limit=10), shards); test_eq(Path(d, 'train', '00000.tar').stat().st_mtime_ns, stamp)
    oc = json.loads(write_open_clip_config(e2e_config(), d).read_text())
test_eq(oc['vision_cfg'], dict(image_size=48, layers=4, width=128, patch_size=12, head_width=64))
test_eq((oc['quick_gelu'], oc['text_cfg']['heads'], oc['text_cfg']['context_length']), (True, 2, 32))


# %% [markdown]
# The two trainers, each in a process of its own, as a person would run them. Ours is
# `clip_annotated.cli.main(['train', ...])` (what `clip-annotated train` runs) inside
# `ours_data_options`; open_clip's is `open_clip_train.main.main` after `open_clip.add_model_config`,
# in the Python that `OPEN_CLIP_TRAIN_PYTHON` names (its training package pins an older webdataset than
# ours, as in the input-pipeline section). Both get the same numbers: `--train-num-samples` is steps ×
# batch, which makes open_clip's single epoch exactly `steps` steps; ours is told `--steps` as well.
# Both processes run with `OMP_NUM_THREADS=1`; each returns its wall time and leaves its output in a log beside
# its run folder (`<run>.log`).

# %%
#| exports
@contextlib.contextmanager
def ours_data_options(shuffle_buffer: int | None = None, zoom: tuple[float, float] | None = None):
    "Within the block, our trainer's training shards (opened by `make_datasets`) use this shuffle buffer and crop zoom range."
    import clip_annotated.loader as loader
    from clip_annotated.readers import open_data
    from clip_annotated.pretrained import TrainTransform
    def opened(spec, *args, train: bool = False, **kw):
        if train and shuffle_buffer is not None: kw['shuffle_buffer'] = shuffle_buffer
        ds = open_data(spec, *args, train=train, **kw)
        if train and zoom is not None: ds.zoom, ds.augment = tuple(zoom), TrainTransform(ds.image_size, zoom)
        return ds
    before, loader.open_data = loader.open_data, opened
    try: yield
    finally: loader.open_data = before

def ours_train_argv(shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS) -> list[str]:
    "The `clip-annotated train` options of one run of ours."
    s = settings
    return ['--model', s['model'], '--model-overrides', json.dumps(s['model_overrides']), '--train-data', shards['train'],
            '--dataset-type', 'webdataset', '--train-num-samples', str(steps * s['batch_size']), '--steps', str(steps),
            '--batch-size', str(s['batch_size']), '--lr', str(s['lr']), '--warmup', str(e2e_warmup(steps)),
            '--weight-decay', str(s['weight_decay']), '--betas', *map(str, s['betas']), '--eps', str(s['eps']),
            '--precision', s['precision'], '--threads', str(s['threads']), '--workers', str(s['workers']), '--seed', str(seed),
            '--out', str(out), '--no-progress', '--no-resume', '--eval-every', '0', '--ckpt-every', str(steps)]

def open_clip_train_argv(shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS,
                         model: str = E2E_MODEL_NAME) -> list[str]:
    "The `open_clip_train.main` options of one run of open_clip's: the same settings in its spelling (logs in `out`)."
    s, out = settings, Path(out)
    return ['--model', model, '--train-data', shards['train'], '--dataset-type', 'webdataset',
            '--train-num-samples', str(steps * s['batch_size']), '--epochs', '1', '--batch-size', str(s['batch_size']),
            '--lr', str(s['lr']), '--warmup', str(e2e_warmup(steps)), '--wd', str(s['weight_decay']),
            '--beta1', str(s['betas'][0]), '--beta2', str(s['betas'][1]), '--eps', str(s['eps']), '--precision', s['precision'],
            '--workers', str(s['workers']), '--seed', str(seed), '--logs', str(out.parent), '--name', out.name,
            '--log-every-n-steps', '50', '--report-to', '']

_OURS_TRAINER = r'''
import json, sys
from clip_annotated.bench import ours_data_options
from clip_annotated.cli import main
options = json.loads(sys.argv[1])
with ours_data_options(options['shuffle_buffer'], options['zoom']): main(['train', *sys.argv[2:]])
'''

_OPEN_CLIP_TRAINER = r'''
import sys, warnings
warnings.filterwarnings('ignore')
import open_clip
open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
sys.exit(1 if main(sys.argv[2:]) == -1 else 0)
'''

def _trainer_process(cmd: list[str], out: Path, env: dict, what: str) -> float:
    "Run one trainer's process, its output in the log beside its run folder `out` (`out`.log); its wall time in seconds."
    import subprocess
    log = out.parent / f'{out.name}.log'
    t = time.perf_counter()
    with open(log, 'w') as f: r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        said = [l for l in log.read_text().splitlines(True) if not re.match(r'[IWE]\d{4} ', l)]   # not torch's glog lines
        raise RuntimeError(f"{what} failed (exit {r.returncode}); the end of its log {log}:\n" + ''.join(said[-15:]))
    return wall

def _trainer_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return dict(env, OMP_NUM_THREADS='1', CLIP_ANNOTATED_PROGRESS='0', **extra)

def train_ours(arm: dict, shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS) -> float:
    "Train one run of our trainer with `arm`'s options in a fresh process (this Python, this checkout); its wall time (s)."
    import sys
    import clip_annotated
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    here = str(Path(clip_annotated.__file__).resolve().parents[1])          # the package this process imported
    options = json.dumps(dict(shuffle_buffer=arm['shuffle_buffer'], zoom=arm['zoom']))
    cmd = [sys.executable, '-c', _OURS_TRAINER, options, *ours_train_argv(shards, out, seed, steps, settings)]
    return _trainer_process(cmd, out, _trainer_env(PYTHONPATH=here), f"our trainer ({arm['name']}, seed {seed})")

def train_open_clip(python: str, config_dir, shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS) -> float:
    "Train one run of open_clip's trainer in `python` (one with open-clip-torch[training]); its wall time (s)."
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ValueError(f"open_clip Python {python!r} is not an executable file")
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, '-c', _OPEN_CLIP_TRAINER, str(config_dir), *open_clip_train_argv(shards, out, seed, steps, settings)]
    return _trainer_process(cmd, out, _trainer_env(), f"open_clip's trainer (seed {seed})")


# %%
argv = ours_train_argv({'train': 'e2e/shards/train/{00000..00012}.tar'}, 'e2e/ours_s0', 0, 250)
test_eq(argv[argv.index('--warmup') + 1], '25'); test_eq(argv[argv.index('--train-num-samples') + 1], '16000')
from clip_annotated.run import parse_args
tc = parse_args(argv)
test_eq((tc.model_overrides, tc.steps, tc.batch_size, tc.lr, tc.weight_decay, tuple(tc.betas), tc.eps, tc.threads, tc.workers),
        (dict(vision_patch_size=12), 250, 64, 1e-3, 0.2, (0.9, 0.98), 1e-6, 1, 0))
oc_argv = open_clip_train_argv({'train': 'e2e/shards/train/{00000..00012}.tar'}, 'e2e/open_clip_s0', 0, 250)
test_eq((oc_argv[oc_argv.index('--logs') + 1], oc_argv[oc_argv.index('--name') + 1]), ('e2e', 'open_clip_s0'))
import clip_annotated.loader as _loader
from clip_annotated.readers import open_data
with tempfile.TemporaryDirectory() as d:
    shards = write_emoji_shards(d, per_shard=4, limit=8)
    with ours_data_options(shuffle_buffer=3, zoom=(1.0, 1.0)):
        ds = _loader.open_data(shards['train'], train=True)
        held = _loader.open_data(shards['test'], train=False)
    test_eq((ds.shuffle_buffer, ds.zoom, ds.augment.zoom, held.shuffle_buffer), (3, (1.0, 1.0), (1.0, 1.0), 0))
    test_eq(_loader.open_data is open_data, True)                      # put back after the block
    test_eq(open_data(shards['train'], train=True).zoom, (1.0, 1.2))


# %% [markdown]
# `judge` is the one measurement. Our runs leave `checkpoint.pt`; open_clip's leave
# `checkpoints/epoch_N.pt`, whose state dict (prefixed `module.` when it came from a data-parallel
# run) has OpenAI's key names, as ours, so it loads into a `CLIP` of the same config with
# `strict=True`: a mismatched config would fail there instead of being judged.

# %%
#| exports
def load_trained(run, cfg=None):
    "The model a run of either trainer left in folder `run`: ours (checkpoint.pt), or open_clip's (checkpoints/epoch_N.pt, the last) into a `CLIP` of `cfg`."
    from clip_annotated.model import create_model
    from clip_annotated.runfolder import load_checkpoint
    from clip_annotated.train import model_from_checkpoint
    run = Path(run)
    if (run / 'checkpoint.pt').is_file(): return model_from_checkpoint(load_checkpoint(run / 'checkpoint.pt'))[0]
    found = sorted(run.glob('checkpoints/epoch_*.pt'), key=lambda p: int(p.stem.split('_')[-1]))
    if not found: raise FileNotFoundError(f"{run} holds neither checkpoint.pt (ours) nor checkpoints/epoch_N.pt (open_clip's)")
    state = torch.load(found[-1], map_location='cpu', weights_only=True)['state_dict']
    model = create_model(cfg or e2e_config())
    model.load_state_dict({k.removeprefix('module.'): v for k, v in state.items()}, strict=True)
    return model

def judge(run, cfg=None, test=None) -> dict:
    "Held-out retrieval of the run in `run` on `test` (default: `EmojiDataset('test', train=False)`): image→name R@1 and R@5, name→image R@1."
    from clip_annotated.data import EmojiDataset
    from clip_annotated.train import evaluate_retrieval
    test = test if test is not None else EmojiDataset('test', train=False)
    m = evaluate_retrieval(load_trained(run, cfg).eval(), test, device='cpu')
    return dict(i2t_R1=m['i2t_R@1'], i2t_R5=m['i2t_R@5'], t2i_R1=m['t2i_R@1'])


# %%
from clip_annotated.data import EmojiDataset
from clip_annotated.model import create_model
with tempfile.TemporaryDirectory() as d:
    torch.manual_seed(0)
    m = create_model(e2e_config())
    Path(d, 'checkpoints').mkdir()
    torch.save(dict(epoch=1, state_dict={'module.' + k: v for k, v in m.state_dict().items()}), Path(d, 'checkpoints', 'epoch_1.pt'))
    test_eq(torch.equal(load_trained(d).visual.conv1.weight, m.visual.conv1.weight), True)
    test_set = torch.utils.data.Subset(EmojiDataset('test', train=False), range(16))
    r = judge(d, test=test_set)
    test_eq(sorted(r), ['i2t_R1', 'i2t_R5', 't2i_R1']); assert 0 <= r['i2t_R1'] <= r['i2t_R5'] <= 1
test_fail(lambda: load_trained('/nowhere'), contains='neither checkpoint.pt')


# %% [markdown]
# `bench_e2e` puts it together in one folder (default `runs/bench-e2e`): the shards, open_clip's
# model config, a folder per run, and `results.jsonl`, one JSON line per judged run (arm, seed, steps,
# the arm's options, the three retrieval figures, the process's wall time and the load average
# before and after it). The seeds are the outer loop, so a run cut short leaves complete pairs of
# arms; a run already in `results.jsonl` is not trained again. `e2e_summary` gathers the lines into
# one JSON object (per arm, per seed) with the settings, the commit and the machine: what `save=`
# writes and what chapter 16 reads, in the same form as the committed `nbs/bench_e2e.json`.
# `make bench-e2e` runs it (`SEEDS`, `STEPS` and `E2E_ARMS` can be set on its command line), with
# open_clip's side in `.venv-openclip`, made on first use as for `make bench-loader`; without
# `OPEN_CLIP_TRAIN_PYTHON` only our arms run.

# %%
#| exports
def _commit() -> str | None:
    "The commit (short) of the checkout this package was imported from, '+' when it has uncommitted changes; None outside git."
    import subprocess
    import clip_annotated
    root = Path(clip_annotated.__file__).resolve().parents[1]
    git = lambda *a: subprocess.run(['git', *a], cwd=root, capture_output=True, text=True, timeout=30)
    try: head, dirty = git('rev-parse', '--short', 'HEAD'), git('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.SubprocessError): return None
    return head.stdout.strip() + ('+' if dirty.stdout.strip() else '') if head.returncode == 0 else None

def read_jsonl(path) -> list[dict]:
    "The JSON objects of a JSON-lines file, one a line (none when there is no file)."
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

E2E_CHANGES = {'buffer': "shuffle buffer {}", 'zoom': "crop zoom range {}"}

def e2e_summary(lines: list[dict], steps: int, settings: dict = E2E_SETTINGS, **about) -> dict:
    "The runs in `lines` (results.jsonl's) at `steps`, per arm and seed, with the settings they share; `about`: commit, hardware and the like."
    arms = {}
    for r in lines:
        if r['steps'] != steps: continue
        a = arms.setdefault(r['arm'], dict(trainer=parse_e2e_arm(r['arm'])['trainer'], changes=r['arm'].split('+')[1:], runs={}))
        a['runs'][str(r['seed'])] = {k: r[k] for k in ('i2t_R1', 't2i_R1', 'i2t_R5', 'wall_s', 'load_average') if k in r}
    changes = {c: E2E_CHANGES[c.split('=')[0]].format(c.split('=')[1]) for a in arms.values() for c in a['changes']}
    return dict(bench='e2e', **about, settings=dict(settings, steps=steps, warmup=e2e_warmup(steps)),
                reference={k: k for k in ('ours', 'open_clip') if k in arms}, changes=changes, arms=arms)

def _open_clip_version(python: str) -> str | None:
    import subprocess
    r = subprocess.run([python, '-c', 'import open_clip; print(open_clip.__version__)'], capture_output=True, text=True,
                       env=_trainer_env(), timeout=300)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None

def bench_e2e(seeds=(0, 1, 2, 3), steps: int = 250, arms=E2E_ARMS, folder=None, open_clip_python: str | None = None,
              save=None, per_shard: int = 256) -> dict:
    "Train every arm for every seed on the emoji shards, judge each run alike, one JSON line per run in `folder`/results.jsonl; the summary."
    import shutil
    from clip_annotated.core import atomic_write
    from clip_annotated.data import EmojiDataset
    from clip_annotated.run import runs_dir
    if steps < 1 or not seeds: raise ValueError(f"bench_e2e: steps ({steps}) must be at least 1 and seeds ({seeds}) not empty")
    python = os.environ.get('OPEN_CLIP_TRAIN_PYTHON') if open_clip_python is None else open_clip_python
    arms = [parse_e2e_arm(a) for a in arms]
    if not python and any(a['trainer'] == 'open_clip' for a in arms):
        print("open_clip's trainer is not run (set OPEN_CLIP_TRAIN_PYTHON to a Python with open-clip-torch[training]): our arms only.")
        arms = [a for a in arms if a['trainer'] == 'ours']
    folder, cfg = Path(folder) if folder is not None else runs_dir() / 'bench-e2e', e2e_config()
    shards = write_emoji_shards(folder / 'shards', per_shard)
    config_dir = write_open_clip_config(cfg, folder / 'open_clip_configs').parent
    results, test = folder / 'results.jsonl', EmojiDataset('test', image_size=cfg.image_resolution, train=False)
    done = {(r['arm'], r['seed'], r['steps']) for r in read_jsonl(results)}
    for seed in seeds:                                       # seeds outside: a run cut short leaves whole pairs
        for arm in arms:
            if (arm['name'], seed, steps) in done: continue
            out = folder / e2e_run_name(arm, seed)
            shutil.rmtree(out, ignore_errors=True)           # a run cut short before; open_clip refuses an existing folder
            load = os.getloadavg()[0]
            wall = (train_ours(arm, shards, out, seed, steps) if arm['trainer'] == 'ours' else
                    train_open_clip(python, config_dir, shards, out, seed, steps))
            line = dict(arm=arm['name'], seed=seed, steps=steps, trainer=arm['trainer'], shuffle_buffer=arm['shuffle_buffer'],
                        zoom=arm['zoom'], **judge(out, cfg, test), wall_s=wall, load_average=[load, os.getloadavg()[0]])
            with open(results, 'a') as f: f.write(json.dumps(line) + '\n')
            print(f"{arm['name']:24} seed {seed}: image→name R@1 {100 * line['i2t_R1']:5.1f}%, process wall time {wall:.0f} s")
    names = {a['name'] for a in arms}
    res = e2e_summary([r for r in read_jsonl(results) if r['arm'] in names and r['seed'] in seeds], steps,
                      commit=_commit(), hardware=hardware(), python=platform.python_version(), torch=torch.__version__,
                      open_clip=_open_clip_version(python) if python else None,
                      judge="held-out image→name R@1: clip_annotated.train.evaluate_retrieval on EmojiDataset('test', train=False)",
                      wall_note="process wall time (start-up included), one run at a time; not a speed comparison")
    for name, a in res['arms'].items():
        r1 = [100 * r['i2t_R1'] for r in a['runs'].values()]
        print(f"{name:24} image→name R@1 over {len(r1)} seed(s): mean {sum(r1) / len(r1):.1f}%, per seed " + ', '.join(f"{x:.1f}" for x in r1))
    if save: atomic_write(save, lambda f: f.write((json.dumps(res, indent=1) + '\n').encode()))
    return res


# %%
lines = [dict(arm='ours', seed=0, steps=250, i2t_R1=0.2, t2i_R1=0.1, i2t_R5=0.5, wall_s=60.0),
         dict(arm='ours+zoom=1.0:1.05', seed=0, steps=250, i2t_R1=0.3, t2i_R1=0.1, i2t_R5=0.5),
         dict(arm='ours', seed=1, steps=20, i2t_R1=0.0, t2i_R1=0.0, i2t_R5=0.0)]
s = e2e_summary(lines, 250, commit='abc1234')
test_eq(list(s['arms']), ['ours', 'ours+zoom=1.0:1.05'])
test_eq(s['arms']['ours']['runs'], {'0': dict(i2t_R1=0.2, t2i_R1=0.1, i2t_R5=0.5, wall_s=60.0)})
test_eq((s['changes'], s['commit'], s['settings']['warmup']), ({'zoom=1.0:1.05': 'crop zoom range 1.0:1.05'}, 'abc1234', 25))
with tempfile.TemporaryDirectory() as d:
    Path(d, 'r.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
    test_eq(read_jsonl(Path(d, 'r.jsonl')), lines); test_eq(read_jsonl(Path(d, 'none.jsonl')), [])

# %% [markdown]
# A short run on this machine (skipped under `nbdev_test`; both trainers when `OPEN_CLIP_TRAIN_PYTHON`
# is set): a few steps, so it shows that the pieces fit, not which trainer is better. The measured
# comparison is in [chapter 16](16_experiments.ipynb).

# %%
#| bench
with tempfile.TemporaryDirectory() as d: e2e_res = bench_e2e(seeds=(0,), steps=10, arms=('ours', 'open_clip'), folder=d)

# %% [markdown]
# ## On a GPU
#
# The rows above are a CPU's, float32. On a GPU the same training step and zero-shot encoding are timed
# by `make gpu-check` (the [GPU check](99a_gpucheck.ipynb) appendix) in bfloat16, at batch `256` and at
# the largest batch that fits, with and without `torch.compile`, with peak memory and MFU. Its figures
# appear here once it has run on CUDA:

# %%
gpu = gpu_check_results()
if gpu: display(Markdown(gpu_check_table(gpu)))
else: print("No GPU figures have been measured yet: `make gpu-check` on a machine with CUDA writes them to runs/gpu-check/gpu_check.json.")

# %% [markdown]
# ## Running all of them
#
# `BENCHES` maps a name to its function; `main` parses the command line and runs the selected ones
# (all but `loader` and `e2e`, which need open_clip's other Python and run only when named:
# `make bench-loader`, `make bench-e2e`).
# The last cell calls `main` only when the module runs as a script: inside Jupyter or `nbdev_test`,
# `__name__` is `'__main__'` too, so the guard also checks that no IPython shell is active.

# %%
#| exports
BENCHES = {'tokenizer': bench_tokenizer, 'encoders': bench_encoders, 'train': bench_train, 'zeroshot': bench_zeroshot,
           'loader': bench_loader, 'e2e': bench_e2e}
NAMED_ONLY = ('loader', 'e2e')             # run only when --only names them

def main(argv: list[str] | None = None) -> list[dict]:
    "Command line: `python -m clip_annotated.bench [--only NAME ...] [--repeats R] [loader or e2e options]`; returns the results."
    p = argparse.ArgumentParser(prog='python -m clip_annotated.bench',
                                description="Time clip_annotated against open_clip on the same inputs; train both end to end (e2e).")
    p.add_argument('--only', nargs='+', choices=list(BENCHES), metavar='NAME',
                   help=f"run only these benchmarks (of: {', '.join(BENCHES)}; {' and '.join(NAMED_ONLY)} run only when named)")
    p.add_argument('--repeats', type=int, default=3, help="best of this many timed runs (default 3)")
    p.add_argument('--open-clip-python', help="loader, e2e: a Python with open-clip-torch[training] (default $OPEN_CLIP_TRAIN_PYTHON)")
    p.add_argument('--save', help="loader, e2e: write the results as JSON to this file (make bench-loader: nbs/bench_loader.json)")
    g = p.add_argument_group('loader', "options of --only loader (make bench-loader)")
    g.add_argument('--pictures', type=int, default=512, help="JPEG files to make (default 512)")
    g.add_argument('--batch-size', type=int, default=64, help="pictures per batch (default 64)")
    g.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2], help="DataLoader workers to try (default 0 1 2)")
    g.add_argument('--data', help="make (or reuse) the files in this folder (default: a temporary one)")
    e = p.add_argument_group('e2e', "options of --only e2e (make bench-e2e)")
    e.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3], help="seeds, each arm trained once per seed (default 0 1 2 3)")
    e.add_argument('--steps', type=int, default=250, help="optimiser steps of every run (default 250)")
    e.add_argument('--arms', nargs='+', default=list(E2E_ARMS), metavar='ARM',
                   help=f"ours, open_clip, or ours+buffer=N and/or +zoom=LO:HI (default: {' '.join(E2E_ARMS)})")
    e.add_argument('--folder', help="shards, runs and results.jsonl go here (default: runs/bench-e2e)")
    args = p.parse_args(argv)
    print(f"clip_annotated bench on {hardware()}, Python {platform.python_version()}, torch {torch.__version__}")
    options = {'loader': dict(repeats=args.repeats, pictures=args.pictures, batch_size=args.batch_size, workers=tuple(args.workers),
                              folder=args.data, open_clip_python=args.open_clip_python, save=args.save),
               'e2e': dict(seeds=tuple(args.seeds), steps=args.steps, arms=tuple(args.arms), folder=args.folder,
                           open_clip_python=args.open_clip_python, save=args.save)}
    return [BENCHES[name](**options.get(name, dict(repeats=args.repeats)))
            for name in (args.only or [n for n in BENCHES if n not in NAMED_ONLY])]


# %%
#| exports
def _in_ipython() -> bool:
    "True inside an IPython shell (Jupyter, nbdev_test), where `__name__ == '__main__'` as well."
    import builtins
    return hasattr(builtins, 'get_ipython')

if __name__ == '__main__' and not _in_ipython(): main()

# %%
assert _in_ipython()   # so the guard above did not run main() in this notebook

# %%
_ = footer()

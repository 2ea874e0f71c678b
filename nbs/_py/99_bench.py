# %% [markdown]
# # Benchmarks
#
# > Our code and open_clip's, timed side by side in one process on the same inputs, outputs checked equal first.

# %%
#| default_exp bench

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import argparse, math, platform, random, time, warnings
import torch
from clip_annotated.core import hardware
from clip_annotated.tokenizer import SimpleTokenizer, tokenize
from clip_annotated.run import in_ipython

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
# Two comparisons need open_clip's *training* package, which runs in a Python of its own, and have
# appendices of their own that build on this one: [the input pipeline against open_clip's
# loader](99c_loader_bench.ipynb) (`make bench-loader`) and [our trainer against open_clip's, end to
# end](99b_e2e.ipynb) (`make bench-e2e`), whose results chapter 16 shows.
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
# `BENCHES` maps a name to its function; `main` parses the command line and runs the selected ones.
# The last cell calls `main` only when the module runs as a script: inside Jupyter or `nbdev_test`,
# `__name__` is `'__main__'` too, so the guard also checks that no IPython shell is active
# (`in_ipython`, from the [run appendix](06a_run.ipynb), which every `python -m` entry point of the book uses).

# %%
#| exports
BENCHES = {'tokenizer': bench_tokenizer, 'encoders': bench_encoders, 'train': bench_train, 'zeroshot': bench_zeroshot}

def main(argv: list[str] | None = None) -> list[dict]:
    "Command line: `python -m clip_annotated.bench [--only NAME ...] [--repeats R]`; returns the results."
    p = argparse.ArgumentParser(prog='python -m clip_annotated.bench',
                                description="Time clip_annotated against open_clip on the same inputs.")
    p.add_argument('--only', nargs='+', choices=list(BENCHES), metavar='NAME',
                   help=f"run only these benchmarks (of: {', '.join(BENCHES)})")
    p.add_argument('--repeats', type=int, default=3, help="best of this many timed runs (default 3)")
    args = p.parse_args(argv)
    print(f"clip_annotated bench on {hardware()}, Python {platform.python_version()}, torch {torch.__version__}")
    return [BENCHES[name](repeats=args.repeats) for name in (args.only or BENCHES)]


# %%
#| exports
if __name__ == '__main__' and not in_ipython(): main()

# %%
assert in_ipython()   # so the guard above did not run main() in this notebook

# %%
_ = footer()

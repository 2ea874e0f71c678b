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

# %%
from fastcore.test import test_eq
from clip_annotated.core import footer


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
#| export
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
#| export
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
#| export
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
#| export
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
# ## Running all of them
#
# `BENCHES` maps a name to its function; `main` parses the command line and runs the selected ones.
# The last cell calls `main` only when the module runs as a script: inside Jupyter or `nbdev_test`,
# `__name__` is `'__main__'` too, so the guard also checks that no IPython shell is active.

# %%
#| export
BENCHES = {'tokenizer': bench_tokenizer, 'encoders': bench_encoders}

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
#| export
def _in_ipython() -> bool:
    "True inside an IPython shell (Jupyter, nbdev_test), where `__name__ == '__main__'` as well."
    import builtins
    return hasattr(builtins, 'get_ipython')

if __name__ == '__main__' and not _in_ipython(): main()

# %%
assert _in_ipython()   # so the guard above did not run main() in this notebook

# %%
_ = footer()

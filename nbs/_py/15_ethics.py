# %% [markdown]
# # Broader impacts
#
# > What the paper says about surveillance and social bias, the notice our demos print, and a model card for the MiniCLIP trained here, with its measured numbers and limits.

# %%
#| default_exp ethics

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import json
from pathlib import Path
import torch
from clip_annotated.core import hardware, markdown_table
from clip_annotated.data import EmojiDataset
from clip_annotated.tokenizer import tokenize
from clip_annotated.tasks import METHODS, training_caption_note
from clip_annotated.bias import bias_over_seeds

# %%
#| hide
import io
from IPython.display import Markdown, display
from fastcore.test import test_eq
from clip_annotated.model import CLIPConfig
from clip_annotated.train import TrainConfig
from dataclasses import asdict
import tempfile
from clip_annotated.core import footer, in_test, no_headings, remove_scratch, scratch_dir
from clip_annotated.run import book_model, runs_dir

# %% [markdown]
# > "CLIP makes it possible to easily create your own classes for categorization (to 'roll your own
# > classifier') without a need for re-training." (Radford et al. 2021, §7)
#
# That freedom is the zero-shot classifier of chapter 7, and it is also the problem: whoever writes the
# classes decides what the model is asked about people. The paper's §7 makes two points that matter for anyone who uses a model trained with this book's
# code. First, zero-shot classification hands the choice of classes to the user, and with it the
# responsibility for what those classes say about people: the paper shows that, with "crime-related"
# and "non-human" categories among the classes, pictures of people from some groups of FairFace land in
# them more often than others, and that adding a "child" category sharply reduced how many pictures of
# people under 20 landed there (§7.1). The [bias chapter](11_bias.ipynb) probes the mechanism
# on our data, with a skew we put in ourselves, and says with intervals whether the probe can tell the
# skewed runs from their balanced twins.
#
# Second, surveillance. The paper tests CLIP on CCTV-style pictures and on recognising celebrities
# (§7.2). On coarse questions about the footage (which of a few descriptions fits the whole scene) its
# zero-shot accuracy is high; on fine-grained ones (is a small object or person present?) it is close
# to random. And it can recognise well-known people without any task-specific data. Its conclusion is
# that such uses need care and study, not that they are out of reach.
#
# What we take from this for a teaching codebase:
#
# - The emoji set holds no real person and no photograph; its "people" are drawings whose attributes
#   (skin tone, gender presentation, occupation) come from Unicode names. Measurements on it say how a
#   model learns from captions, not how it treats real people.
# - The code loads OpenAI's released weights and trains on your data. What a model does with pictures
#   of people depends on both, and nothing in this book measures that for real photographs. The
#   FairFace-style evaluation of the paper needs that data set, which we do not ship.
# - The demo says so where it runs: `clip-annotated predict` prints `safety_notice()` on standard error
#   before any result.

# %%
#| exports
SAFETY_NOTICE = (
    "Note: CLIP ranks the labels you give it; it does not know whether any of them fits. Labels about people "
    "(gender, ethnicity, age, occupation, criminality) can reproduce and amplify social biases, and the paper "
    "cautions against surveillance uses (Radford et al. 2021, section 7). {trained_on}: do not use it, or "
    "conclusions from it, to make decisions about real people.")

def safety_notice(file=None, trained_on: str | None = "The book's MiniCLIP was trained on emoji drawings only") -> str:
    "Print (to `file`, default stdout) and return the notice the demos show, saying what the model was trained on."
    text = SAFETY_NOTICE.format(trained_on=trained_on or "Nothing here measured how this model treats real people")
    print(text, file=file)
    return text


# %%
_ = safety_notice()
assert 'surveillance' in SAFETY_NOTICE and 'real people' in SAFETY_NOTICE
assert 'trained on my_pairs.csv:' in safety_notice(io.StringIO(), trained_on='This model was trained on my_pairs.csv')


# %% [markdown]
# The notice says what the model at hand was trained on, read from the run's own checkpoint: the
# emoji set, procedural scenes, or the reader's pairs (`--train-data`); for weights from elsewhere, it
# says that nothing here measured them.

# %%
#| exports
def trained_on(source: str | Path) -> str:
    "What the model at `source` was trained on, for `safety_notice`: read from one of our run folders or checkpoints."
    path = Path(source)
    path = path / 'checkpoint.pt' if path.is_dir() else path
    try: cfg = torch.load(path, map_location='cpu', weights_only=True)['config']
    except Exception: return f"{source} was trained on data this book has not measured"   # released or foreign weights
    start = f" (fine-tuned from {cfg['pretrained']})" if cfg.get('pretrained') else ''
    if cfg.get('train_data'): return f"This model was trained on {cfg['train_data']}{start}"
    if cfg.get('data') == 'scenes': return f"This model was trained on procedural scenes of shapes only{start}"
    return f"The book's MiniCLIP was trained on emoji drawings only{start}"


# %%
stand_in = scratch_dir()
torch.save(dict(config=dict(data='emoji', train_data='my_pairs.csv', pretrained=None)), stand_in / 'checkpoint.pt')
test_eq(trained_on(stand_in), 'This model was trained on my_pairs.csv')
test_eq(trained_on('ViT-B/32'), 'ViT-B/32 was trained on data this book has not measured')


# %% [markdown]
# ## A model card for the book's MiniCLIP
#
# A model card (Mitchell et al. 2019) states what a model is for, what it was trained on, how it was
# measured and where it fails, next to the model. `model_card` writes one for any run folder of the
# training chapter, from the run's own files: the configuration and wall time in its checkpoint and
# `results.json` (which `make reproduce` writes), so every number in it is a measurement of that run.

# %%
#| exports
def _pct(x: float) -> str: return f"{100 * x:.1f}%" if x >= 0.01 else f"{100 * x:.2f}%"   # 20.0%, 0.16%

def task_name(task: str) -> str:
    "A task's key as a reader writes it: 'emoji skin_tone' → 'emoji skin tone'."
    return task.replace('_', ' ')

def _other_rule(z: dict, k: str) -> tuple:
    "One non-headline rule of a zero-shot result as a table row: task, rule, top-1, majority class, how many prompts are training captions, how many pictures meet their own caption, and what that makes it."
    own, cp = z.get('own_captions', {}), z.get('caption_prompts', {})
    kind = ('caption retrieval, not zero-shot' if k == 'captions_nearest' and own.get(k) else
            'nearest training caption, not zero-shot' if k in ('captions_nearest', 'unseen_nearest') else
            "prompted with training captions and test pictures' own captions, not zero-shot" if cp.get(k) and own.get(k) else
            "prompted with test pictures' own captions, not zero-shot" if own.get(k) else
            'prompted with training captions, not zero-shot' if cp.get(k) else
            'zero-shot: no prompt is a training caption' if cp.get(k) == 0 else '–')
    rule = METHODS[k].split(' (')[0]          # one name per rule in every task; the last column says what it is here, from the counts
    return (task_name(z['task']), rule, _pct(z[f'{k}_top1']), _pct(z.get('chance', 1 / z['classes'])), _pct(z['majority']), training_caption_note(z, k),
            f"{own[k]} of {z['n']}" if own.get(k) is not None else '–', kind)

def zero_shot_line(z: dict) -> str:
    "One task's zero-shot result for a model card: the zero-shot classifier beside chance and the majority class, and the paired difference from the majority class."
    v = z.get('vs_majority')
    head = 'zero_shot' if 'zero_shot_top1' in z else 'ensemble'     # results written before the zero-shot templates
    return (f"{_pct(z[f'{head}_top1'])} top-1 with "
            + ("the book's templates that fill to no training caption" if head == 'zero_shot' else "the book's templates")
            + ", averaged in embedding space as the paper does"
            + f" ({z['n']} pictures, {z['classes']} classes); "
            f"chance {_pct(z['chance'])}, majority class {_pct(z['majority'])}"
            + (f" (always answering {z['majority_class']!r})" if 'majority_class' in z else '')
            + (f": {v['reading']}, {100 * v['diff']:+.1f} points [{100 * v['lo']:+.1f}, {100 * v['hi']:+.1f}] (paired bootstrap)" if v else '')
            + '.')

def other_rules_table(zeroshot: list) -> str:
    "Markdown table of the rules besides each task's headline one (`zero_shot_line`): for reference, none chosen on the pictures."
    head = lambda z: 'zero_shot' if 'zero_shot_top1' in z else 'ensemble'
    rows = [_other_rule(z, k) for z in zeroshot for k in z['prompts'] if k != head(z)]
    if not rows: return ''
    return markdown_table(['task', 'rule', 'top-1', 'chance', 'majority class', 'prompts that are training captions',
                           'pictures with their own caption among them', 'what it is'], rows, align='llrrrrrl')

def bias_line(res: dict, seeds: dict | None = None) -> str | None:
    "The bias probe for a model card: the bias chapter's result over seeds (`bias_over_seeds`) if given, else the run's own one-seed result."
    what = ("excess man-or-woman separation (how far apart a model holds the men and the women of the skewed "
            "occupations, minus the same for the other probed occupations)")
    sign = lambda r: (" (negative: the skewed twin lost separation, the direction the injected skew predicts; the separation "
                      "is the men's mean minus the women's, so this does not say which side moved)") if r['gap'] < 0 else ''
    found = lambda r: ('found (both intervals exclude zero)' if r['excludes_zero'] and r['gap'] < 0 else
                       'the opposite of the injected skew (both intervals exclude zero)' if r['excludes_zero'] else
                       'not found (an interval includes zero)')
    if seeds and 'captions' in seeds.get('over_seeds', {}):
        o = seeds['over_seeds']['captions']
        return (f"Bias probe with a controlled skew (bias chapter, {len(seeds['seeds'])} seeds per arm; this run is the "
                f"balanced arm of seed 0): {what}, of the twin whose women of the skewed occupations were captioned as men "
                f"minus that of its balanced twin, mean over seeds {o['gap']:+.3f}; 95% interval over seeds "
                f"[{o['lo']:+.3f}, {o['hi']:+.3f}], over occupations and pictures [{o['data_lo']:+.3f}, {o['data_hi']:+.3f}]"
                f"{sign(o)}: {found(o)}.")
    b = res.get('bias')
    if not b: return None
    if 'paired' not in b: return f"Bias probe with a controlled skew (bias chapter, run by `make reproduce`): {b['summary']}."
    p, own = b['paired'], b['balanced']['excess']
    says = lambda r: 'excludes' if r['excludes_zero'] else 'includes'
    return (f"Bias probe with a controlled skew (bias chapter, run by `make reproduce`; one seed): {what}, of the twin whose "
            f"women of the skewed occupations were captioned as men minus this run's, {p['gap']:+.3f}; 95% interval "
            f"[{p['lo']:+.3f}, {p['hi']:+.3f}] (paired bootstrap; {says(p)} zero){sign(p)}; this run's own excess "
            f"{own['gap']:+.3f} [{own['lo']:+.3f}, {own['hi']:+.3f}] ({says(own)} zero).")

def unseen_token_captions() -> tuple[int, int]:
    "(k, n): k of the n held-out emoji captions contain a token that no training caption has (as in the training chapter)."
    seen = set(tokenize([r.name for r in EmojiDataset('train', train=False).records], context_length=77, truncate=True).unique().tolist())
    names = [r.name for r in EmojiDataset('test', train=False).records]
    rows = tokenize(names, context_length=77, truncate=True)
    return sum(not set(row.tolist()) <= seen for row in rows), len(names)

def model_card(run: str | Path) -> str:
    "Markdown model card of the run in folder `run`, built from its checkpoint and results.json (written to model_card.md)."
    run = Path(run)
    ck = torch.load(run / 'checkpoint.pt', map_location='cpu', weights_only=True)
    res = json.loads((run / 'results.json').read_text()) if (run / 'results.json').exists() else {}
    cfg, mcfg = ck['config'], ck['model_config']
    own = res.get('data') if cfg.get('train_data') else None     # the user's pairs (describe_data in the training chapter)
    n_params = sum(v.numel() for v in ck['model'].values())
    lines = [f"# Model card: `{run.name}`", "",
             "## Model", f"- CLIP dual encoder (Radford et al. 2021) as implemented in clip_annotated: ViT image tower "
             f"({mcfg['vision_layers']} layers, width {mcfg['vision_width']}, {mcfg['vision_patch_size']}-pixel patches on "
             f"{mcfg['image_resolution']}-pixel pictures), Transformer text tower ({mcfg['transformer_layers']} layers, width "
             f"{mcfg['transformer_width']}, context {mcfg['context_length']}), joint space of {mcfg['embed_dim']} dimensions; "
             f"{n_params:,} parameters.",
             f"- {'Fine-tuned from ' + str(cfg['pretrained']) if cfg.get('pretrained') else 'Trained from scratch'}: "
             f"{ck['data']['step']:,} steps of {cfg['batch_size']} ({own['source'] if own else cfg['data'] + ' data'}), AdamW lr "
             f"{cfg['lr']:g}, weight decay {cfg['weight_decay']}, seed {cfg['seed']}, {ck['wall_s']:.0f} s of training.", "",
             "## Intended use",
             "- Teaching and research on how contrastive language-image pre-training works: retrieval and zero-shot "
             + ("classification on the data described below." if own else "classification of procedural scenes of shapes."
                if cfg.get('data') == 'scenes' else "classification of emoji-like drawings."),
             "- Not intended for decisions about people or for any deployed system" + ("." if own else ", nor for photographs."), "",
             "## Training data"]
    if own:                                # the user's pairs: what the run's own record says of them
        skipped = lambda k: f" ({sum(own[k].values()):,} skipped: {', '.join(f'{n} {r}' for r, n in own[k].items())})" if own.get(k) else ''
        count = lambda n, what: f"{n:,} {what}" if n is not None else f"{what}, streamed"
        lines += [f"- {own['source']}: {count(own['train_items'], 'training pairs')}{skipped('train_skipped')}.",
                  f"- Held out: {own['held_out']}, {count(own['held_out_items'], 'pairs')}{skipped('held_out_skipped')}." if own['held_out']
                  else "- Held out: none (no --val-data), so nothing below measures generalisation.", ""]
    elif cfg.get('data') == 'scenes':
        lines += ["- Procedural scenes of coloured shapes on white with generated captions (scenes chapter). No photographs "
                  "and no real people.", ""]
    else:
        held = f"{res['test']['n_images']:,}" if 'test' in res else 'some'
        lines += ["- OpenMoji drawings of Unicode emoji (CC BY-SA 4.0) with captions from their Unicode names; a fixed split "
                  f"holds out {held} pictures, including unseen combinations of seen parts (an occupation with a skin tone it "
                  "never appeared with). No photographs and no real people.", ""]
    if 'test' in res:
        t = res['test']
        lines += [f"## Measured (held-out {'pairs' if own else 'scenes' if cfg.get('data') == 'scenes' else 'emoji'})",
                  *([] if own else [f"- Every figure below is on held-out {'scenes' if cfg.get('data') == 'scenes' else 'emoji'} "
                                    "of the training distribution (pictures and captions of the same kind as training), not on "
                                    "a new data set: generalisation within that distribution, not transfer."]),
                  f"- Retrieval, all {t['n_images']} pictures against all captions: image→text R@1 {_pct(t['i2t_R@1'])}, "
                  f"R@5 {_pct(t['i2t_R@5'])}; text→image R@1 {_pct(t['t2i_R@1'])} (chance {_pct(t['i2t_chance@1'])})."]
        for z in res.get('zeroshot', []):
            lines.append(f"- Zero-shot {task_name(z['task'])}: " + zero_shot_line(z))
        if table := other_rules_table(res.get('zeroshot', [])):
            lines += ["", "Other prompt rules, for reference (none chosen on these pictures), beside each task's majority class:",
                      "", table.rstrip('\n')]
        lines.append("")
    if own: lines += ["## Limits and biases", "- Not measured here beyond held-out retrieval: a model inherits the "
                      "biases of its pictures and captions, and of the weights it started from (`--pretrained`).", "",
                      f"Hardware of this card's writing: {hardware()}.", ""]
    else:
        k, n = unseen_token_captions() if cfg.get('data') != 'scenes' else (0, 0)
        lines += ["## Limits and biases",
              *([f"- {k} of the {n:,} held-out captions ({k / n:.0%}) contain a token no training caption has; the text "
                 "tower has nothing learned for such tokens (training chapter)."] if n else []),
              *(["- The gender-neutral drawings of an occupation resemble the men's more than the women's, so a probe of an "
                 "occupation's plain name measures that design as well as the model, and must control for it (bias chapter)."]
                if cfg.get('data') != 'scenes' else []),
              *([f"- {b}"] if (b := bias_line(res, bias_over_seeds(run))) else []),
              "- Counting and binding attributes to objects are not measured on this model. The limitations chapter "
              "measures them on a different model, the book's scenes model: zero-shot counting of one to four shapes "
              "against naming their colour and shape, and whether the true caption beats one with the two groups' colours or "
              "shapes swapped or their relation reversed, each beside a control that tests the attribute alone; its "
              "readings are there.",
              "- Measured on drawings only: nothing here predicts behaviour on photographs of people.", "",
              f"Hardware of this card's writing: {hardware()}.", ""]
    text = '\n'.join(lines)
    (run / 'model_card.md').write_text(text)
    return text


# %% [markdown]
# Checks on made-up results: the bias line takes the result over seeds when it is given, and reads its
# sign; the other rules' table keeps each rule once, names what it is, and leaves out the headline rule.

# %%
r = lambda gap, lo, hi, **k: dict(gap=gap, lo=lo, hi=hi, excludes_zero=lo > 0 or hi < 0, **k)
seeds = dict(seeds=[0, 1, 2], over_seeds={'captions': r(-0.2, -0.3, -0.1, data_lo=-0.4, data_hi=-0.01)})
one = {'bias': dict(paired=r(-0.1, -0.3, 0.1), balanced=dict(excess=r(0.0, -0.2, 0.2)))}
assert '3 seeds per arm' in bias_line(one, seeds) and "-0.200; 95% interval over seeds [-0.300, -0.100]" in bias_line(one, seeds)
assert 'lost separation' in bias_line(one, seeds) and 'found (both' in bias_line(one, seeds)
test_eq(task_name('emoji skin_tone'), 'emoji skin tone')
assert 'one seed' in bias_line(one) and '(paired bootstrap; includes zero)' in bias_line(one) and bias_line({}) is None
z = dict(task='t', n=10, classes=2, majority=0.6, zero_shot_top1=0.7, single_top1=0.5, captions_nearest_top1=0.9,
         prompts={'zero_shot': 2, 'single': 1, 'captions_nearest': 3}, caption_prompts={'single': 0, 'captions_nearest': 6},
         own_captions={'captions_nearest': 4})
rows = other_rules_table([z]).splitlines()[2:]
test_eq(len(rows), 2); assert 'zero-shot: no prompt' in rows[0] and 'caption retrieval, not zero-shot' in rows[1] and '60.0%' in rows[1]
no_own = other_rules_table([{**z, 'own_captions': {'captions_nearest': 0}}]).splitlines()[3]
assert '| caption forms, nearest prompt |' in rows[1] and '| caption forms, nearest prompt |' in no_own   # one name for the rule
assert 'nearest training caption, not zero-shot' in no_own                                           # what it is, here

# %%
model, cfg = book_model()
run = Path(cfg.out)
if in_test():                       # a stand-in run folder with the files model_card reads
    run = scratch_dir() / 'stand-in'; run.mkdir()
    torch.save(dict(config=asdict(cfg), model_config=asdict(cfg.clip_config()), model=model.state_dict(),
                    data=dict(step=0), wall_s=0.0), run / 'checkpoint.pt')
card = model_card(run)
display(Markdown(no_headings(card)))
assert (run / 'model_card.md').read_text() == card and 'Intended use' in card

# %%
_ = remove_scratch()
_ = footer()

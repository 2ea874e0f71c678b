# %% [markdown]
# # Procedural scenes
#
# > Coloured shapes drawn on the fly with captions that say exactly what is in the picture: a toy task for training, and the counting and attribute-binding tests of later chapters.

# %%
#| default_exp scenes

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import math
from dataclasses import dataclass
import numpy as np
import torch
from PIL import Image, ImageDraw
from clip_annotated.data import DEFAULT_TEMPLATES, SkipCounter
from clip_annotated.pretrained import to_tensor
from clip_annotated.pretrained import normalize

# %%
#| hide
import time
from collections import Counter
from dataclasses import replace
from fastcore.test import test_eq
from clip_annotated.core import footer, pick
from clip_annotated.data import show_grid

# %% [markdown]
# The second embedded source of pairs, after [the emoji set](05_data.ipynb): pictures drawn from a
# description, so that the caption is exactly true, and a false caption can be made by changing one word.
#
# Emoji teach names. Scenes of simple shapes test counting, which the paper names as a weakness of
# CLIP (§6; [the limitations chapter](12_limitations.ipynb) quotes it and measures it), and binding
# each attribute to the right object, a weakness of CLIP that later work documented. Each scene has one or two groups of identical shapes; a
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
#| fig-alt: "Sixteen small pictures of coloured shapes on white in three rows of six (the last with four), each titled with its caption, such as 'two small green triangles', 'three small black diamonds', 'two large black triangles above a large blue star' and 'four small red stars'; each caption states the count, size, colour and shape of what is drawn, and the position of one group relative to the other."
scenes = SceneDataset(1000, seed=0)
show_grid([scenes.image(i) for i in range(16)], [scenes.describe(i).caption for i in range(16)])

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
# ## Speed
#
# A scene is drawn when it is asked for, at four times its size and then shrunk, so that edges are
# smooth. What one costs in one process:

# %%
n_items = pick(gpu=500, cpu=500, test=50)
t0 = time.perf_counter()
for i in range(n_items): scenes[i % len(scenes)]
scene_ms = (time.perf_counter() - t0) / n_items * 1e3
print(f"scenes: {scene_ms:.2f} ms per item in one process")

# %% [markdown]
# ## What we measured
#
# Printed by the cells above in this run: the groups, object counts and relations of the seed-0 set,
# and the cost of drawing one scene. `tests/test_data.py` checks that an item depends only on
# (seed, i). The [training chapter](06a_run.ipynb) trains a small model on scenes as its toy run, and
# [Limitations](12_limitations.ipynb) builds its counting and binding tests from `describe`.

# %%
_ = footer()

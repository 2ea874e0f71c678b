# %% [markdown]
# # Appendix: your own pictures
#
# > Your own pictures in the form the evaluation chapters use: a folder per class, or a CSV of paths and labels, with class names ready for prompts; unlabelled pictures and caption pairs for embedding and retrieval; broken files skipped and counted.

# %%
#| default_exp pictures

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import os
from collections import Counter
from pathlib import Path
from typing import Callable
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from clip_annotated.data import SkipCounter
from clip_annotated.readers import csv_cell_path, open_image, parse_caption, read_csv

# %%
#| hide
import shutil, tempfile, warnings
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer, remove_scratch, scratch_dir
from clip_annotated.pretrained import image_transform
from clip_annotated.evalsets import fake_label, save_fake_jpeg

scratch = scratch_dir('clip_annotated_07c_')   # every file this appendix writes goes here


# %% [markdown]
# The benchmarks of [the evaluation sets appendix](07b_evalsets.ipynb) have fixed formats; a reader's
# own pictures come in two common ones. A folder with one subfolder per class (`photos/golden_retriever/1.jpg`), the layout torchvision's
# `ImageFolder` reads and most tutorials use; and a CSV file with a column of image paths and a column
# of labels, in open_clip's convention that the path column is called `filepath` and that relative
# paths start from the CSV's own folder. In both the class names are the folder names or labels with
# `_` turned into spaces (they go into prompts), and the classes are sorted: alphabetically, or by
# number when every label is an integer, so that a `--classnames` file can be written in label order.
#
# Real folders hold a few broken files: a truncated download, a `.jpg` that is really an HTML error
# page. One such file should not end an evaluation of ten thousand pictures, nor vanish without a
# trace. So these readers return `None` for a picture they cannot open, which `encode_images` of the
# zero-shot chapter leaves out, and count it in a `SkipCounter` (the data chapter's) by reason, so that
# the report can say how many were skipped. Hidden folders (`.ipynb_checkpoints`) are not classes.

# %%
#| exports
def _read_or_skip(path, transform: Callable | None, skips: SkipCounter):
    "transform(picture at `path`), or None when it is missing or cannot be decoded (counted in `skips` by reason)."
    if not os.path.isfile(path): skips.add('missing image'); return None
    try: image = open_image(path)
    except Exception: skips.add('corrupt image'); return None       # PIL raises OSError, SyntaxError, ValueError, ...
    skips.add(None)
    return image if transform is None else transform(image)

def _is_folder(entry: os.DirEntry) -> bool:
    "Whether a folder's entry is a folder (following links); a ValueError naming a link that loops or cannot be followed."
    try: return entry.is_dir()
    except OSError as e:
        raise ValueError(f"{entry.path} is a symbolic link that cannot be followed ({e.strerror.lower()}): remove it, "
                         f"or give a folder without it") from None

class SafeImageFolder(ImageFolder):
    "torchvision's ImageFolder (root/class_name/picture): class names with '_' as spaces; unreadable pictures give None, counted in `.skips`."
    def __init__(self, root: str | os.PathLike, transform: Callable | None = None):
        super().__init__(str(root), transform=transform)
        self.classnames = [c.replace('_', ' ') for c in self.classes]
        self.skips = SkipCounter()

    def find_classes(self, directory):
        classes = sorted(e.name for e in os.scandir(directory) if _is_folder(e) and not e.name.startswith('.'))
        if not classes:
            raise FileNotFoundError(f"{directory} has no class folders: expected one folder per class, "
                                    f"{Path(directory) / 'CLASS_NAME' / 'picture.jpg'} …")
        return classes, {c: i for i, c in enumerate(classes)}

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        x = _read_or_skip(path, self.transform, self.skips)
        return None if x is None else (x, label)


# %% [markdown]
# A CSV file is read by `read_csv` of [Appendix: readers](05c_readers.ipynb), with the same care as its `CsvDataset`: a file
# without the expected column names the columns it does have, a byte-order mark (which spreadsheet
# programs write) is read past, a `.tsv` or `.tab` file is split at tabs unless told otherwise, and a
# file that is not UTF-8 text is named in a warning that says what to do. A bad row costs only itself:
# a row whose fields do not match the header, or whose label is empty or not UTF-8, is kept out of the
# classes and returns `None`, counted (`'malformed row'`, `'empty label'`, `'undecodable label'`).

# %%
#| exports
def sorted_labels(labels) -> list[str]:
    "The distinct labels, sorted: by number when every label is an integer, else as strings."
    distinct = sorted(set(labels))
    try: return sorted(distinct, key=int)
    except ValueError: return distinct

class LabelledCsv(Dataset):
    "(transform(picture), label) from a CSV/TSV of image paths and class labels; classes sorted; bad rows and unreadable pictures give None, counted in `.skips`."
    def __init__(self, path: str | os.PathLike, image_key: str = 'filepath', label_key: str = 'label',
                 sep: str | None = None, transform: Callable | None = None, encoding: str = 'utf-8'):
        self.path, self.transform = Path(path), transform
        rows = read_csv(self.path, [image_key, label_key], sep, encoding)      # (image path, label) or None
        if not rows: raise ValueError(f"{self.path} has a header but no rows")
        labels = [(None, 'malformed row') if r is None else parse_caption(r[1], 'label') for r in rows]   # (label, why)
        self.bad = {i: why for i, (_, why) in enumerate(labels) if why}       # row -> why it is skipped
        self.classes = sorted_labels(y for y, _ in labels if y is not None)
        if not self.classes:
            raise ValueError(f"{self.path}: no row has a label in column {label_key!r} "
                             f"({', '.join(f'{n} {w}' for w, n in Counter(self.bad.values()).items())})")
        self.classnames = [c.replace('_', ' ') for c in self.classes]
        index = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(None, -1) if y is None else (csv_cell_path(r[0], self.path.parent), index[y]) for r, (y, _) in zip(rows, labels)]
        self.targets = [y for _, y in self.samples]                            # -1 for a skipped row
        self.skips = SkipCounter()

    def __len__(self): return len(self.samples)

    def __getitem__(self, i: int):
        if i in self.bad: self.skips.add(self.bad[i]); return None
        path, label = self.samples[i]
        x = _read_or_skip(path, self.transform, self.skips)
        return None if x is None else (x, label)

    def __repr__(self): return f"LabelledCsv({self.path}: {len(self)} pictures, {len(self.classes)} classes)"


# %% [markdown]
# The check, on fake pictures (each spells its label: `save_fake_jpeg` and `fake_label` of the
# evaluation sets appendix): a class folder with a broken file and
# a hidden folder, and a CSV of the same pictures with string labels and a relative, an absolute and a
# missing path. Labels and pictures agree, the broken and missing files come back as `None` and are
# counted, and numeric labels sort as numbers.

# %%
mine = scratch / 'mine'
for k, name in enumerate(['golden_retriever', 'cat', 'zebra']):
    for j in range(2): save_fake_jpeg(mine / 'folder' / name / f'{j}.jpg', k)
(mine / 'folder' / 'cat' / 'broken.jpg').write_bytes(b'<html>not a picture</html>')
save_fake_jpeg(mine / 'folder' / '.ipynb_checkpoints' / 'x.jpg', 0)
ds = SafeImageFolder(mine / 'folder')
test_eq(ds.classnames, ['cat', 'golden retriever', 'zebra'])
items = [ds[i] for i in range(len(ds))]
test_eq(sum(x is None for x in items), 1)
test_eq([ds.classes[y] for _, y in filter(None, items)], [['golden_retriever', 'cat', 'zebra'][fake_label(x)] for x, _ in filter(None, items)])
print(ds.skips.report('folder'))
test_fail(lambda: SafeImageFolder(mine / 'folder' / 'cat'), contains='no class folders')

rows = ['filepath,label', 'folder/zebra/0.jpg,zebra', f"{mine / 'folder' / 'cat' / '1.jpg'},cat", 'folder/cat/broken.jpg,cat',
        'nowhere.jpg,cat', 'folder/golden_retriever/0.jpg,golden_retriever']
(mine / 'labels.csv').write_text('\n'.join(rows) + '\n')
ds = LabelledCsv(mine / 'labels.csv', transform=image_transform(32))
test_eq((ds.classnames, ds.targets), (['cat', 'golden retriever', 'zebra'], [2, 0, 0, 0, 1]))
items = [ds[i] for i in range(len(ds))]
test_eq([x is None for x in items], [False, False, True, True, False]); test_eq(items[0][0].shape, (3, 32, 32))
test_eq(ds.skips.counts, {'missing image': 1, 'corrupt image': 1})
print(str(ds).replace(f'{scratch}/', ''), '|', ds.skips.report('labels.csv'))
test_eq(sorted_labels(['10', '2', '1']), ['1', '2', '10']); test_eq(sorted_labels(['b', '10', 'a']), ['10', 'a', 'b'])
test_fail(lambda: LabelledCsv(mine / 'labels.csv', label_key='class'), contains="the file has columns ['filepath', 'label']")
(mine / 'bad_rows.csv').write_text('filepath,label\nfolder/cat/0.jpg,cat\nfolder/cat/1.jpg,\nfolder/zebra/0.jpg,zebra,extra\n')
with warnings.catch_warnings(record=True) as caught:                       # the malformed row is named in a warning
    warnings.simplefilter('always'); ds = LabelledCsv(mine / 'bad_rows.csv')
test_eq([ds[i] is None for i in range(3)], [False, True, True]); test_eq(ds.skips.counts, {'malformed row': 1, 'empty label': 1})
print(str(caught[0].message).replace(f'{scratch}/', ''))


# %% [markdown]
# For embedding a whole folder (the command line's `embed`), the pictures have no labels: `image_paths`
# lists them, every image file under a folder in sorted order or a CSV's path column in file order, and
# `ImageFiles` reads them with the same skip-and-count, returning each picture's index as its label so
# that the caller knows which ones were kept. `caption_pairs` reads a CSV of (image, caption) pairs for
# retrieval, with open_clip's column names `filepath` and `title` by default.

# %%
#| exports
def image_paths(source: str | os.PathLike, image_key: str = 'filepath', sep: str | None = None,
                encoding: str = 'utf-8') -> tuple[list[str], list[Path]]:
    "(names, paths): every image file under a folder (recursive, sorted, hidden ones left out), or a CSV's `image_key` column in file order ('' for a malformed row)."
    source = Path(source)
    if source.is_dir():
        found = [p for p in source.rglob('*') if p.suffix.lower() in IMG_EXTENSIONS
                 and not any(part.startswith('.') for part in p.relative_to(source).parts) and p.is_file()]
        found.sort(key=lambda p: p.relative_to(source).as_posix())
        return [str(p) for p in found], found
    names = ['' if r is None else r[0] for r in read_csv(source, [image_key], sep, encoding)]
    return names, [csv_cell_path(n, source.parent) for n in names]

def caption_pairs(path: str | os.PathLike, image_key: str = 'filepath', caption_key: str = 'title',
                  sep: str | None = None, encoding: str = 'utf-8', skips: SkipCounter | None = None) -> tuple[list[Path], list[str]]:
    "(image paths, captions stripped) of a CSV/TSV of pairs, in file order; caption '' for a row that has none usable (its reason counted in `skips`)."
    path = Path(path)
    rows = read_csv(path, [image_key, caption_key], sep, encoding)           # None: a malformed row
    parsed = [(None, 'malformed row') if r is None else parse_caption(r[1]) for r in rows]
    if skips is not None:
        for _, why in parsed:
            if why: skips.add(why)
    return [csv_cell_path(r[0] if r else '', path.parent) for r in rows], [c or '' for c, _ in parsed]

class ImageFiles(Dataset):
    "(transform(picture), index) for a list of image files; a missing or unreadable one gives None, counted in `.skips`."
    def __init__(self, paths, transform: Callable | None = None):
        self.paths, self.transform, self.skips = [Path(p) for p in paths], transform, SkipCounter()
    def __len__(self): return len(self.paths)
    def __getitem__(self, i: int):
        x = _read_or_skip(self.paths[i], self.transform, self.skips)
        return None if x is None else (x, i)


# %%
names, paths = image_paths(mine / 'folder')
test_eq([Path(n).relative_to(mine / 'folder').as_posix() for n in names],
        ['cat/0.jpg', 'cat/1.jpg', 'cat/broken.jpg', 'golden_retriever/0.jpg', 'golden_retriever/1.jpg', 'zebra/0.jpg', 'zebra/1.jpg'])
test_eq(image_paths(mine / 'labels.csv')[0][:2], ['folder/zebra/0.jpg', str(mine / 'folder' / 'cat' / '1.jpg')])
(mine / 'pairs.csv').write_text('filepath,title\nfolder/cat/0.jpg, a cat \nfolder/zebra/1.jpg,a zebra\n')
test_eq(caption_pairs(mine / 'pairs.csv'), ([mine / 'folder/cat/0.jpg', mine / 'folder/zebra/1.jpg'], ['a cat', 'a zebra']))
files = ImageFiles(paths)
test_eq([None if files[i] is None else files[i][1] for i in range(len(files))], [0, 1, None, 3, 4, 5, 6])
print(files.skips.report('folder'))

# %% [markdown]
# ## What we checked
#
# The cells above checked each reader on fake pictures that spell their labels; `tests/test_robust_data.py`
# adds hostile folders and CSV files (links, undecodable labels, rows of the wrong width, files that are
# not pictures), and the command line's `eval`, `embed` and `retrieval` read through these classes.

# %%
_ = remove_scratch()
_ = footer()

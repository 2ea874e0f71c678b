# %% [markdown]
# # Readers for your own data
#
# > Image-caption pairs of your own, read from a CSV file or from webdataset tar shards (local files, URLs, `pipe:` commands) and dealt out to DDP ranks and DataLoader workers; a bad sample is skipped and counted by reason, never a crash.

# %%
#| default_exp readers

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import codecs, csv, http.client, io, itertools, json, os, random, re, tarfile, urllib.error, urllib.request, warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from glob import glob
from pathlib import Path
from urllib.parse import urlparse
import numpy as np
import torch
from PIL import Image
import webdataset as wds
from webdataset.gopen import gopen, rewrite_url
from clip_annotated.loss import world_info
from clip_annotated.pretrained import TRAIN_ZOOM, TrainTransform, fix_mode, image_transform, to_rgb
from clip_annotated.data import SkipCounter

# %%
#| hide
import shutil, socket, tempfile, threading, time
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, remove_scratch, scratch_dir
from clip_annotated.data import collate, emoji_images, emoji_records
from clip_annotated.pretrained import normalize


# %% [markdown]
# The book's chapters train on pairs they draw themselves: [the emoji set](05_data.ipynb) and
# [the procedural scenes](05b_scenes.ipynb). A reader with pairs of their own keeps them in one of the two formats the
# public replications of CLIP use: a CSV file that lists image paths and captions, or tar shards in
# webdataset's layout, as img2dataset writes them when it downloads LAION and friends. This appendix is
# the machinery that reads both into the same `(image, caption)` samples as the built-in sets, so that
# the rest of the book cannot tell them apart.
#
# Real files are not clean, so most of what follows is about bad samples: a missing or corrupt
# picture, a caption that is empty or not UTF-8, a row with a field too many, a shard cut short. Each
# is skipped and counted by reason in the dataset's `SkipCounter` (chapter 5), and the count is
# reported; only a source with nothing usable in it is an error, and the error names the file.
#
# ```{mermaid}
# flowchart LR
#   C["CSV file<br/>filepath, title"] --> O["open_data"]
#   T["tar shards<br/>key.png + key.txt"] --> O
#   O --> D["(image [3,S,S], caption)<br/>or None, counted"]
#   D --> B["collate (chapter 5)"]
# ```
#
# Who uses it: training's `--train-data` and `--val-data` take any source `open_data` takes
# ([Training](06_train.ipynb)); [Your own data](06b_own_data.ipynb) walks through training and
# evaluating on such files from the command line; and the evaluation appendix and the bias chapter
# open their pictures and read their labels with the same `open_image` and `parse_caption`.

# %% [markdown]
# ## Deciding what is bad
#
# Two small readers decide what is bad: `parse_caption` gives the caption or the reason to skip it, and
# `open_image` decodes a picture fully (so a truncated file fails here, not in the middle of a batch).
# A picture larger than PIL's warning limit (about 89 million pixels) is decoded without the warning,
# which would otherwise repeat for every such file; one beyond twice that is refused, as PIL refuses
# a decompression bomb.
# A dataset returns `None` for a bad sample after counting it, and `collate` drops the `None`s.

# %%
#| exports
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
    "Decode a picture fully (a path or bytes) as RGB; raises on a missing or corrupt file, or one beyond PIL's decompression-bomb limit."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)   # large, under PIL's hard limit: decoded quietly
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im.load()
            return to_rgb(fix_mode(im))                        # 16-bit and premultiplied modes as in chapter 3


# %%
test_eq(parse_caption(b'caf\xc3\xa9 '), ('café', None)); test_eq(parse_caption(b'caf\xe9'), (None, 'undecodable caption'))
test_eq(parse_caption('  '), (None, 'empty caption')); test_eq(parse_caption(None, 'label'), (None, 'missing label'))
buf = io.BytesIO(); Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 4), dtype=np.uint8)).save(buf, format='PNG')
png = buf.getvalue()                                                  # an RGBA picture of noise
test_eq(open_image(png).mode, 'RGB')
test_fail(lambda: open_image(png[:len(png) // 2]), contains='truncated')   # a cut file fails here, not in a batch

# %% [markdown]
# ## CSV files
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
#   is read;
# - a quote that opens a caption and is never closed (`'malformed row'` too). The `csv` module then
#   reads every later line, up to the next quote or the end of the file, as part of that one caption,
#   and the rows in between would vanish without a word. So a row that runs over several lines, one
#   of which (after its first) reads on its own as a whole row, is skipped, and a warning names the
#   line where the quote opens and the lines it swallowed; if no other row is left, it is an error.
#   (A caption that really spans lines, quoted, and has a line of the header's shape inside, would be
#   taken for one: captions of pictures seldom have line breaks.)
#
# A file saved in another encoding (Latin-1, Windows-1252: what old spreadsheet programs write) is
# mostly "bad rows" of this kind, so the reader warns once, naming the file and the first line that is
# not UTF-8, and says what to do: save it again as UTF-8 (the command line reads UTF-8 only), or, from
# Python, pass the `encoding` it was written in.
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
                f"save the file again as UTF-8 (iconv -f latin1 -t utf-8 < old > new, say; from Python, CsvDataset(..., "
                f"encoding='latin-1') reads it as it is)")

def _swallowed(fields: list[str], width: int, sep: str) -> int | None:
    "The index of a field with a later line that reads alone as a whole row (`width` fields, none empty), else None."
    for i, f in enumerate(fields):
        for line in f.splitlines()[1:]:
            cells = next(csv.reader([line], delimiter=sep), [])
            if len(cells) == width and all(c.strip() for c in cells): return i
    return None

def _open_quote(path: Path, spans: list[tuple[int, int]], end: int) -> str:
    "A sentence naming the line where a quote opens and the lines it swallowed into one row, and what to do."
    first, last = spans[0]
    how = 'is never closed' if last == end else f'is closed only on line {last}'
    more = f' ({len(spans)} such rows in all)' if len(spans) > 1 else ''
    return (f"{path}: the quote opened on line {first} {how}, so lines {first}-{last} were read as one row{more}; "
            f"close the quote or remove it")

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
        index, rows, bad_lines, quotes = [columns.index(k) for k in keys], [], [], []
        while True:
            first = reader.line_num + 1                          # the row's first physical line
            try: fields = next(reader)
            except StopIteration: break
            except csv.Error: fields = None                      # a field the csv module cannot parse
            if fields == []: continue                            # a blank line is no row
            k = _swallowed(fields, len(columns), sep) if fields and reader.line_num > first else None
            if k is not None:                                    # an open quote ran over lines that are rows
                rows.append(None); quotes.append((first + sum(f.count('\n') for f in fields[:k]), reader.line_num))
            elif fields is None or len(fields) != len(columns): rows.append(None); bad_lines.append(reader.line_num)
            else: rows.append(tuple(fields[i] for i in index))
        end = reader.line_num                                    # the file's last line
    finally: csv.field_size_limit(limit)
    if quotes and all(r is None for r in rows): raise ValueError(_open_quote(path, quotes, end))   # nothing else to read
    if quotes: warnings.warn(f"{_open_quote(path, quotes, end)}. The row is skipped and counted as 'malformed row'")
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
def csv_cell_path(value: str, root: Path) -> Path:
    "A path from a CSV cell: `~` expanded, absolute as written, else relative to the CSV's folder `root`."
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p

class CsvDataset(torch.utils.data.Dataset):
    "Pairs listed in a CSV/TSV file: an image path (relative to the file's folder, or absolute) and a caption."
    def __init__(self, path: str | os.PathLike, image_key: str = 'filepath', caption_key: str = 'title',
                 sep: str | None = None, image_size: int = 48, train: bool = False, seed: int = 0, zoom=TRAIN_ZOOM,
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
        self.preprocess, self.augment = image_transform(image_size), TrainTransform(image_size, zoom)
        self.epoch = 0
        self.skips = SkipCounter()

    def _check(self, row) -> tuple[Path | None, str | None, str | None]:
        "(image path, caption, None) for a row that looks usable (the picture is not opened), else (None, None, why)."
        if row is None: return None, None, 'malformed row'
        caption, why = parse_caption(row[1])
        if caption is None: return None, None, why
        p = csv_cell_path(row[0], self.root)
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
        return self.augment(image, np.random.default_rng([self.seed, self.epoch, i])), caption


# %% [markdown]
# ## Tar shards
#
# img2dataset, the tool most CLIP replications use to download LAION and friends, writes tar files
# `00000.tar`, `00001.tar`, … in which each sample is a few members sharing a key: `000000123.jpg`,
# `000000123.txt` (the caption) and perhaps `000000123.json`. We read them with the `webdataset`
# library, the field's standard reader (open_clip uses it): it streams each tar file member by member,
# from a local file, from a URL (`https://host/data/{00000..00099}.tar`) or from a
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
#   shard, and shards are often written in some order of their own (by source, by class, by date).
#   Training keeps a buffer of up to 5,000 samples, still undecoded (in each worker of each rank: a few
#   hundred megabytes of web-sized JPEGs, more for large pictures), fills it with 1,000 before it hands out the first, and then hands out a random one of them
#   as each new sample comes in, which mixes samples over that window and across shard boundaries.
#   (These are open_clip's sizes. The paper says nothing about shuffling. This book's first buffer,
#   256 samples, left the emoji set written as shards in code-point order badly mixed, and cost a short
#   run much of its held-out accuracy against open_clip's trainer on the same shards: the comparison,
#   one difference at a time, is at the end of [the experiments chapter](16_experiments.ipynb).)
# <!-- fixed: 5,000 1,000 256 -->
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
# ### Streams that do not answer
#
# A shard at a URL can fail in ways a file cannot: the server refuses the connection, or it accepts
# and then never sends a byte. webdataset opens an `http(s)://` shard with a `curl` pipe that has no
# limit on the wait, so a server of the second kind stops training for good; and a refused connection
# reaches the tar reader as an empty stream, which it reports as "not a tar archive". So we open
# `http(s)` URLs ourselves, with Python's `urllib`, and give every read a deadline: `read_timeout`
# seconds (`60` by default) for the connection, for the first answer and for each later piece of data.
# A shard that misses it, or whose connection is refused, raises `StreamError` with the cause in a few
# words, and the dataset counts the shard as unreadable like any other. Every other kind of source
# (`pipe:` commands, `gs://`, `s3://` through a pipe, local files) is opened by webdataset's `gopen` as
# before; a `pipe:` command you write sets its own limits (`curl --max-time`, say).

# %%
#| exports
class StreamError(OSError):
    "An http(s) shard that could not be read; the message is the cause in a few words (the URL is named by the caller)."

def _cause(exn: BaseException, timeout: float, at: str = '') -> str:
    "Why an http(s) read failed (`at`: ' after N bytes'), in a few words: refused, no answer in time, an HTTP status, …"
    if isinstance(exn, urllib.error.HTTPError): return f"HTTP {exn.code} {exn.reason}"
    if isinstance(exn, urllib.error.URLError) and isinstance(exn.reason, BaseException): exn = exn.reason
    if isinstance(exn, TimeoutError): return f"no answer within {timeout:g} s{at}; a slow server needs a longer read_timeout"
    if isinstance(exn, ConnectionRefusedError): return "connection refused; is the server up, and the port right?"
    return f"{type(exn).__name__}{at}: {exn}"

class _HttpStream:
    "An http(s) response whose every read waits at most `timeout` s; a failed read raises StreamError, and so does any after it."
    def __init__(self, url: str, timeout: float):
        self.url, self.timeout, self.n, self.failed = url, timeout, 0, None
        try: self.response = urllib.request.urlopen(url, timeout=timeout)     # the deadline holds for every socket call
        except (OSError, http.client.HTTPException) as e: raise StreamError(_cause(e, timeout)) from None
    def read(self, size: int = -1) -> bytes:
        if self.failed is None:
            try: data = self.response.read(size); self.n += len(data); return data
            except (OSError, http.client.HTTPException) as e:
                self.failed = _cause(e, self.timeout, f' after {self.n} bytes'); self.response.close()
        raise StreamError(self.failed)
    def close(self): self.response.close()
    def __repr__(self): return f"<http stream {self.url}>"

def _open_shards(src, handler, timeout: float):
    "webdataset stage (its url_opener, with a deadline for http): dict(url=…) -> dict(url=…, stream=…); a failure goes to `handler`."
    for d in src:
        try:
            url = rewrite_url(d['url'])                                       # webdataset's GOPEN_REWRITE, as gopen does
            d['stream'] = _HttpStream(url, timeout) if urlparse(url).scheme in ('http', 'https') else gopen(url)
        except Exception as exn:
            if handler(exn): continue
            break
        yield d


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

SHUFFLE_BUFFER, SHUFFLE_INITIAL = 5000, 1000   # undecoded samples in training's shuffle buffer; filled this far first (open_clip's)

class ShardDataset(torch.utils.data.IterableDataset):
    "(image [3,S,S] float32 normalised, caption) samples from webdataset tar shards ({key}.jpg/.png/.webp… + {key}.txt)."
    def __init__(self, urls, image_size: int = 48, train: bool = False, seed: int = 0, shuffle_buffer: int | None = None,
                 resampled: bool = False, zoom=TRAIN_ZOOM, *, split: bool = True, rank: int | None = None,
                 world: int | None = None, read_timeout: float = 60.0):
        if not read_timeout > 0: raise ValueError(f"read_timeout={read_timeout!r} for {urls!r}: expected seconds > 0")
        self.shards = expand_shards(urls)
        self.read_timeout = read_timeout                # seconds an http(s) shard may keep us waiting for each read
        self.image_size, self.train, self.seed, self.resampled, self.zoom = image_size, train, seed, resampled, zoom
        self.shuffle_buffer = (SHUFFLE_BUFFER if train else 0) if shuffle_buffer is None else shuffle_buffer
        self.split = split                              # False: every rank reads every shard (evaluation on one rank)
        self.rank, self.world = rank, world             # None: torch.distributed's, read when iterating
        self.preprocess, self.augment = image_transform(image_size), TrainTransform(image_size, zoom)
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

    def shards_for(self, rank: int, world: int) -> list[str]:
        "The shards `rank` of `world` reads in this epoch, in order, before they are split among its workers (no resampling)."
        if self.resampled: raise ValueError("resampled shards are drawn with replacement: no rank has a fixed share")
        order, by_rank = self._shard_stages(rank, world, 0)[:2] if self.split else (self._shard_stages(rank, world, 0)[0], iter)
        return [d['url'] for d in by_rank(iter(order))]

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
        return self.augment(image, rng), caption

    def _nothing_usable(self, urls: list[str], seen: _Pass) -> str:
        "The error for a pass without a valid sample: the shards, the skip counts, what was wrong with each unreadable shard."
        names = ', '.join(urls[:10]) + (f", … ({len(urls)} shards)" if len(urls) > 10 else '')
        why = []
        for url, exn in seen.errors.items():
            n = seen.samples[url]
            if isinstance(exn, StreamError): why.append(f"{url}: {_why(exn)}")
            elif not isinstance(exn, tarfile.TarError): why.append(f"{url} could not be read ({type(exn).__name__}: {_why(exn)})")
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
                  partial(_open_shards, handler=unreadable, timeout=self.read_timeout), _check_ends,   # webdataset's
                  partial(tar.tar_file_expander, handler=unreadable), _mark_ends,   # tarfile_to_samples, with checks
                  partial(tar.group_by_keys, handler=unreadable)]                   # of the ends: {'__key__', 'txt', …}
        if self.shuffle_buffer > 1:
            rng = random.Random(_seed(self.seed, self.epoch, rank, worker, 1))
            stages.append(wds.shuffle(self.shuffle_buffer, initial=min(SHUFFLE_INITIAL, self.shuffle_buffer), rng=rng))
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
# `read_timeout` is the deadline, in seconds, for each read of an `http(s)` shard (`60` unless you pass another).

# %%
#| exports
DATASET_TYPES = ('auto', 'csv', 'webdataset')

def open_data(spec, dataset_type: str = 'auto', image_size: int = 48, train: bool = False, seed: int = 0,
              csv_img_key: str = 'filepath', csv_caption_key: str = 'title', csv_separator: str | None = None,
              resampled: bool = False, shuffle_buffer: int | None = None, split: bool = True,
              read_timeout: float = 60.0, zoom=TRAIN_ZOOM) -> CsvDataset | ShardDataset:
    "A CsvDataset or a ShardDataset for `spec`; 'auto' reads .csv/.tsv/.tab as CSV and anything else as shards."
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"unknown dataset_type {dataset_type!r} for {spec!r}; expected one of {DATASET_TYPES}")
    if dataset_type == 'auto':
        is_csv = isinstance(spec, (str, os.PathLike)) and str(spec).lower().endswith(('.csv', '.tsv', '.tab'))
        dataset_type = 'csv' if is_csv else 'webdataset'
    if dataset_type == 'csv':
        return CsvDataset(spec, csv_img_key, csv_caption_key, csv_separator, image_size=image_size, train=train, seed=seed, zoom=zoom)
    return ShardDataset(spec, image_size, train, seed, shuffle_buffer=shuffle_buffer, resampled=resampled, zoom=zoom, split=split,
                        read_timeout=read_timeout)


# %%
test_fail(lambda: open_data('x.parquet', 'parquet'), contains="unknown dataset_type 'parquet' for 'x.parquet'")
test_fail(lambda: open_data('/nowhere/pairs.tsv'), contains='no CSV file at /nowhere/pairs.tsv')     # auto: a CSV
test_fail(lambda: open_data('/nowhere/{0..1}.tar'), contains='shard /nowhere/0.tar does not exist')  # auto: shards
assert isinstance(open_data('pipe:cat /nowhere.tar'), ShardDataset)       # a stream is opened only when read

# %% [markdown]
# ## Bad input, end to end
#
# We write a CSV file and two tar shards from 40 emoji, then break them on purpose: a missing file, a
# corrupt PNG, a caption of invalid UTF-8 bytes, an empty caption. A DataLoader with two worker
# processes must read everything else, and the counts gathered in the workers must reach the main
# process.

# %%
images, records = emoji_images(48), emoji_records(48)                     # chapter 5's emoji set
tmp = scratch_dir('clip_readers_')
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
# Two faults would not stop anything by themselves, and so must be named: a quote left open in a CSV
# file would read the rest of the file as one caption, and an `http(s)` shard whose server never
# answers would keep training waiting for ever. Here a quote opens on line 5 of ten rows and is never
# closed: the three rows before it load, and the warning says where to look.

# %%
lines = csv_path.read_text(encoding='utf-8', errors='replace').splitlines()[:11]   # the header and 10 good rows
lines[4] = lines[4].replace(',', ',"', 1)                                          # line 5 opens a quote
(tmp / 'quote.csv').write_text('\n'.join(lines) + '\n')
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ds = CsvDataset(tmp / 'quote.csv')
print(str(caught[0].message).replace(f'{tmp}/', ''))
test_eq(len(ds), 4); test_eq([ds[i][1] for i in range(3)], [c for _, c in pairs[:3]]); test_eq(ds[3], None)

# %% [markdown]
# And two shards at URLs that cannot be read, each alone and with a deadline of one second: a
# loopback server that takes connections and never answers (it listens, and the system accepts for
# it), and a port where nothing listens. Each is an error within the deadline that names the URL and
# the cause.

# %%
mute, closed = socket.socket(), socket.socket()
mute.bind(('127.0.0.1', 0)); mute.listen(4)                  # connections are accepted, and never answered
closed.bind(('127.0.0.1', 0))                                # bound but not listening: connections are refused
for sock in (mute, closed):
    url, t0 = f'http://127.0.0.1:{sock.getsockname()[1]}/00000.tar', time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                                      # the error says it too
        try: list(ShardDataset(url, read_timeout=1)); raise AssertionError(f'{url} was read')
        except ValueError as e: msg = str(e)
    assert time.monotonic() - t0 < 10 and f'{url}: ' in msg
    print(msg.split('; ', 2)[-1].replace(f':{sock.getsockname()[1]}/', ':PORT/'))
mute.close(); closed.close()

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
# Which shards a rank reads in an epoch is known before it reads them (`shards_for`: the epoch's order,
# dealt by rank), and often so is how many samples each shard holds (`shard_sizes`): open_clip's
# `sizes.json` beside the shards says it, or, for up to a thousand local files, the tar headers do,
# read without decoding a picture. The training loop uses both to warn, before it starts, when shards
# of very unequal size would leave a rank without a full batch in some epoch, and to name each rank's
# share when that happens ([the input pipeline](05d_loader.ipynb)).

# %%
#| exports
def shard_sizes(shards: list[str], most: int = 1000) -> dict[str, int] | None:
    "Samples per shard: from a sizes.json beside them (open_clip's), else counted in local tar headers (up to `most` shards); None if not known cheaply."
    if not shards or any(_is_stream(u) for u in shards): return None
    folders = {os.path.dirname(u) for u in shards}
    listed = Path(folders.pop(), 'sizes.json') if len(folders) == 1 else None
    if listed is not None and listed.is_file():
        try: table = json.loads(listed.read_text(encoding='utf-8'))
        except (OSError, ValueError): table = None
        if isinstance(table, dict) and all(isinstance(table.get(os.path.basename(u)), int) for u in shards):
            return {u: table[os.path.basename(u)] for u in shards}
    if len(shards) > most: return None
    sizes = {}
    for u in shards:
        try:
            with tarfile.open(u) as tf:                                   # headers only: no picture is decoded
                sizes[u] = len({k for m in tf if m.isfile() and (k := wds.tariterators.base_plus_ext(m.name)[0])})
        except (OSError, tarfile.TarError): return None
    return sizes


# %%
test_eq([Path(u).name for u in ShardDataset(tmp / 'six', rank=1, world=2).shards_for(1, 2)], ['00001.tar', '00003.tar', '00005.tar'])
uneven = write_webdataset(pairs[:5], tmp / 'uneven' / 'a', samples_per_shard=4) + write_webdataset(pairs[:3], tmp / 'uneven' / 'b', samples_per_shard=3)
test_eq(list(shard_sizes([str(u) for u in uneven]).values()), [4, 1, 3])
(tmp / 'uneven' / 'a' / 'sizes.json').write_text(json.dumps({'00000.tar': 40, '00001.tar': 10}))   # open_clip's file wins
test_eq(list(shard_sizes([str(u) for u in uneven[:2]]).values()), [40, 10])
test_eq(shard_sizes(['https://example.com/00000.tar']), None)               # a stream is not opened to count it


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
# Where the emoji set indexes a tensor in memory, a sample of your own opens a file (or a tar member),
# decodes a PNG and passes the picture through a PIL transform. The cost per sample in one process, on
# the small files of the checks above (the CSV file's rows include its four bad ones):

# %%
def per_item_ms(ds, n):
    t0 = time.perf_counter()
    for i in range(n): ds[i % len(ds)]
    return (time.perf_counter() - t0) / n * 1e3

def per_sample_ms(ds):
    t0 = time.perf_counter(); n = sum(1 for _ in ds)
    return (time.perf_counter() - t0) / n * 1e3

speeds = {'CSV (PNG files)': per_item_ms(CsvDataset(csv_path), 40), 'shards (PNG members)': per_sample_ms(ShardDataset(tmp / 'shards'))}
for name, ms in speeds.items(): print(f"{name:22} {ms:6.3f} ms per sample in one process")

# %% [markdown]
# ## What we measured
#
# Every number below was computed by a cell of this chapter in this run. `tests/test_data.py` checks
# the same promises (exact skip counts with forked and spawned workers, read-back of CSV and shards,
# shards through `pipe:` and a local HTTP server, resampled streams per rank, a shard cut short, errors
# that name the file); `tests/test_robust_data.py` breaks files one way at a time (a row with a field
# too many or too few, a file in Latin-1, a caption of 200,000 characters, a quote never closed, a shard
# cut on a block boundary, an `http` shard whose server never answers, …) and checks that each bad sample is skipped and counted, and that only a source with
# nothing usable is an error.
# <!-- fixed: 200,000 -->

# %%
shutil.rmtree(tmp, ignore_errors=True)
print(f"- bad input, read by 2 worker processes: {'; '.join(reports)}")
print(f"- cost per sample in one process: " + ', '.join(f'{k} {v:.2f} ms' for k, v in speeds.items()))
_ = remove_scratch()
_ = footer()

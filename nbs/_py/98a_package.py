# %% [markdown]
# # The package: import clip_annotated as clip
#
# > How the package's top level offers the three names of OpenAI's `clip` (`available_models`, `load`, `tokenize`), two of open_clip's (`get_tokenizer`, `create_model_and_transforms`) and the book's own (`decode`, `create_model`, ...) while staying light to import: each public name is imported from its chapter's module the first time it is used.

# %%
#| default_exp __init__

# %% [markdown]
# OpenAI's package is used as `import clip` and then `clip.load(...)`, `clip.tokenize(...)`: its top
# level exports `available_models`, `load` and `tokenize`, and nothing else. Ours is used the same way,
# as `import clip_annotated as clip`, with those three names and a few more: open_clip's
# `get_tokenizer` and `create_model_and_transforms`, and the book's own (`decode`, `create_model`,
# `count_parameters`, ...). The names live in the chapters that explain them
# ([the tokenizer](01_tokenizer.ipynb), [the model](02_model.ipynb), [checkpoints](02b_checkpoints.ipynb),
# [pretrained weights](03_pretrained.ipynb)). Importing all of those modules at once would load
# PyTorch and torchvision, much slower than importing the package's top level (the check below times
# both), and the [command line](98_cli.ipynb) would pay that before it could answer `--help`. So the
# top level only records where each public name lives, and Python's module-level `__getattr__`
# (PEP 562) imports a name's module the first time the name is asked for.

# %%
#| exports
# `import clip_annotated` stays light (the command line answers `--help` without loading PyTorch): each public
# name is imported from its chapter's module the first time it is used.
_PUBLIC = {'tokenizer': ('tokenize', 'decode'),
           'model': ('CLIP', 'CLIPConfig', 'CONFIGS', 'build_model', 'create_model', 'count_parameters', 'uses_quick_gelu'),
           'checkpoints': ('download',),
           'pretrained': ('available_models', 'load', 'image_transform', 'export_model', 'get_tokenizer',
                          'create_model_and_transforms')}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

def __getattr__(name: str):
    "Import a public name (`clip_annotated.load`, ...) from its module on first use."
    if name not in _WHERE: raise AttributeError(f"module 'clip_annotated' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f'clip_annotated.{_WHERE[name]}'), name)
    globals()[name] = value
    return value

def __dir__():
    "The names `dir(clip_annotated)` lists, tab completion's among them: the module's own and every public name."
    return sorted([*globals(), *_WHERE])


# %%
#| hide
# The two module hooks are documented by the prose above and their docstrings: naming them here keeps nbdev from
# adding API headings for them (which would read "getattr" and "dir", and come before their code).
from nbdev.showdoc import show_doc
show_doc(__getattr__); show_doc(__dir__);

# %% [markdown]
# The check, in a fresh Python: importing the package loads no PyTorch, the first use of a name
# imports its module, tab completion (`dir`) lists the public names, and a name that is not there gets
# Python's usual error. The same process times `import clip_annotated`, then the import of every
# module behind a public name (printed only: times depend on the machine and its disk cache).

# %%
import subprocess, sys, time
t_chapter = time.perf_counter()                 # the footer's wall time counts from here
probe = ("import sys, time, importlib; t0 = time.perf_counter(); import clip_annotated as clip; t1 = time.perf_counter(); "
         "before = 'torch' in sys.modules; clip.tokenize; after = 'torch' in sys.modules; "
         "[importlib.import_module('clip_annotated.' + m) for m in clip._PUBLIC]; t2 = time.perf_counter(); "
         "print(before, after, 'load' in dir(clip), t1 - t0, t2 - t1)")
out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, check=True).stdout.split()
torch_at_import, torch_after_use, listed = out[:3]
t_package, t_modules = map(float, out[3:])
print(f"PyTorch loaded by `import clip_annotated`: {torch_at_import}; after `clip.tokenize`: {torch_after_use};\n"
      f"'load' in dir(clip): {listed}")
print(f"in that fresh process: `import clip_annotated` took {t_package:.3f} s;\nthen importing the modules behind "
      f"its public names ({', '.join(_PUBLIC)}) took {t_modules:.2f} s")
assert (torch_at_import, torch_after_use, listed) == ('False', 'True', 'True')

# %%
import clip_annotated as clip
from fastcore.test import test_fail
test_fail(lambda: clip.no_such_name, contains="has no attribute 'no_such_name'")
assert clip.load is __import__('clip_annotated.pretrained', fromlist=['load']).load

# %%
#| echo: false
from clip_annotated.core import footer
_ = footer(t_chapter)

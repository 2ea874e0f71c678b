# %% [markdown]
# # The package: import clip_annotated as clip
#
# > How the package's top level gives OpenAI's names (`clip.load`, `clip.tokenize`, ...) while staying light to import: each public name is imported from its chapter's module the first time it is used.

# %%
#| default_exp __init__

# %% [markdown]
# OpenAI's package is used as `import clip` and then `clip.load(...)`, `clip.tokenize(...)`; ours is
# used the same way, as `import clip_annotated as clip`. The names live in the chapters that explain
# them ([the tokenizer](01_tokenizer.ipynb), [the model](02_model.ipynb), [checkpoints](02b_checkpoints.ipynb),
# [pretrained weights](03_pretrained.ipynb)). Importing all of those modules at once would load
# PyTorch and torchvision, which takes seconds; the [command line](98_cli.ipynb) would then take
# seconds to answer `--help`. So the top level only records where each public name lives, and Python's
# module-level `__getattr__` (PEP 562) imports a name's module the first time the name is asked for.

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


# %% [markdown]
# The check, in a fresh Python: importing the package loads no PyTorch, the first use of a name
# imports its module, tab completion (`dir`) lists the public names, and a name that is not there gets
# Python's usual error.

# %%
import subprocess, sys
probe = ("import sys, clip_annotated as clip; before = 'torch' in sys.modules; clip.tokenize; "
         "print(before, 'torch' in sys.modules, 'load' in dir(clip))")
torch_at_import, torch_after_use, listed = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                                                          check=True).stdout.split()
print(f"PyTorch loaded by `import clip_annotated`: {torch_at_import}; after `clip.tokenize`: {torch_after_use}; "
      f"'load' in dir(clip): {listed}")
assert (torch_at_import, torch_after_use, listed) == ('False', 'True', 'True')

# %%
import clip_annotated as clip
from fastcore.test import test_fail
test_fail(lambda: clip.no_such_name, contains="has no attribute 'no_such_name'")
assert clip.load is __import__('clip_annotated.pretrained', fromlist=['load']).load

# %%
#| echo: false
from clip_annotated.core import footer
_ = footer()

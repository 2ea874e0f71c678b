"""Run by tests/test_own_data.py under torchrun: train on the given data, then write what this rank did to
OUT/rank{R}.json (its steps per epoch) and, with --record, the captions it was given in each epoch."""
import json, sys
from pathlib import Path
import torch
from clip_annotated.run import parse_args
from clip_annotated.train import train
from clip_annotated.loss import world_info
from clip_annotated.readers import open_data


class Recording(torch.utils.data.Dataset):
    "A map-style data set that notes every caption it hands out, with the epoch."
    def __init__(self, base): self.base, self.epoch, self.seen = base, 0, []
    def set_epoch(self, epoch): self.epoch = epoch; self.base.set_epoch(epoch)
    def __len__(self): return len(self.base)
    def __getitem__(self, i):
        item = self.base[i]
        if item is not None: self.seen.append((self.epoch, item[1]))
        return item


argv = sys.argv[1:]
record = '--record' in argv
argv = [a for a in argv if a != '--record']
cfg = parse_args(argv)
if record:
    ds = Recording(open_data(cfg.train_data, train=True, image_size=cfg.clip_config().image_resolution, seed=cfg.seed))
    summary = train(cfg, datasets=(ds, None))
else:
    ds, summary = None, train(cfg)
rank, world = world_info()
Path(cfg.out, f'rank{rank}.json').write_text(json.dumps(dict(
    rank=rank, world=world, epoch_steps=summary['epoch_steps'], steps=summary['steps'],
    seen=ds.seen if ds is not None else None)))
if torch.distributed.is_initialized():
    import gc; gc.collect(); torch.distributed.barrier(); torch.distributed.destroy_process_group()

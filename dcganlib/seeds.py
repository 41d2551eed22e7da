"""A run's random streams: one table of what each seed drives, and the RNG states that an exact resume restores.

Every stream of a run is seeded from `Config.seed` and the stream's name through a hash, so that no two (seed,
stream) pairs share draws (seed 0's noise is not seed 1's weights) and a change to one stream (more evaluation
samples, another augmentation) leaves the others as they were. Runs whose checkpoints predate `Config.seeding`
seeded each stream with an offset instead, and resume with it (`Config.seeding` "offset").
"""

from __future__ import annotations

import hashlib
import random
import warnings

import numpy as np
import torch

from . import distributed
from .config import SEEDINGS

STREAMS = {
    "weights": "the global torch RNG as the networks are built: their initial weights",
    "data_order": "BatchLoader's seed: one permutation of the data per epoch, drawn from (seed, epoch)",
    "noise": "the z of every training step, on the training device",
    "fixed_noise": "the z behind every epoch's sample grid (kept in the checkpoint)",
    "evaluation": "the z of every evaluation (Config.metrics): the same latents each time",
    "augment": "DiffAugment's draws, on the training device",
    "recalibration": "the z behind the EMA generator's own BatchNorm statistics",
}
# The seeding before Config.seeding: Config.seed plus an offset per stream (seed s's noise was seed s+1's weights).
OFFSETS = {"weights": 0, "data_order": 0, "noise": 1, "fixed_noise": 2, "evaluation": 3, "augment": 4,
           "recalibration": 5}


def stream_seed(seed: int, stream: str, seeding: str = "hashed") -> int:
    """The seed of `stream` in a run seeded `seed`: 63 bits of a BLAKE2 hash of both ("hashed"), or the seed plus
    the stream's offset ("offset", runs from before `Config.seeding`)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; the streams are {', '.join(STREAMS)}")
    if seeding == "offset":
        return seed + OFFSETS[stream]
    if seeding != "hashed":
        raise ValueError(f"unknown seeding {seeding!r}; use one of {', '.join(SEEDINGS)}")
    digest = hashlib.blake2b(f"dcganlib/{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def stream_generator(seed: int, stream: str, device: torch.device | str = "cpu",
                     seeding: str = "hashed") -> torch.Generator:
    """A fresh torch.Generator on `device` for `stream` in a run seeded `seed`."""
    return torch.Generator(device).manual_seed(stream_seed(seed, stream, seeding))


def global_rng_state(device: torch.device | None = None) -> dict:
    """Python's, NumPy's and torch's global RNG states as plain data (NumPy's array as a tensor, which
    weights_only loading accepts). With a CUDA `device` (a data-parallel rank) only that GPU's state is read:
    reading all would make every process open a context on every GPU."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what `global_rng_state` read."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)
    elif "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingStreams:
    """The generators a run draws from while it trains (its noise and DiffAugment's), stored and restored with
    the global RNGs; under torchrun every rank's global states are kept."""

    def __init__(self, seed: int, device: torch.device, group: distributed.Group = distributed.SINGLE,
                 seeding: str = "hashed"):
        self.noise = stream_generator(seed, "noise", device, seeding)
        self.augment = stream_generator(seed, "augment", device, seeding)
        self.device, self.group = device, group

    def state_dict(self) -> dict:
        """Every stream's state. Under torchrun every rank must call it (it gathers the ranks' states)."""
        device = self.device if self.group.active else None
        states = {**global_rng_state(device), "noise": self.noise.get_state(), "augment": self.augment.get_state()}
        if self.group.active:
            states["ranks"] = distributed.gather(global_rng_state(device), self.group)
        return states

    def load_state_dict(self, states: dict) -> None:
        """Restore `state_dict()`'s states, this rank's own where every rank's were kept."""
        set_global_rng_state(self._own(states), self.device)
        self.noise.set_state(states["noise"])
        if "augment" in states:  # checkpoints from before DiffAugment have none, and made no draws
            self.augment.set_state(states["augment"])

    def _own(self, states: dict) -> dict:
        """This rank's global states; from another number of processes, rank 0's, with a warning."""
        saved = len(states.get("ranks") or [None])
        if saved != self.group.world_size:
            if self.group.is_main:
                warnings.warn(f"this checkpoint was written by {saved} process(es) and resumes on "
                              f"{self.group.world_size}: training goes on from the same step, data order and noise, "
                              "but is no longer bit-exact (BatchNorm statistics are per process, and gradients are "
                              "summed in another order)", stacklevel=4)
            return states
        return states["ranks"][self.group.rank] if self.group.active else states

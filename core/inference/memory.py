"""Memories of a space-time memory network: what past frames the query frame may read from.

`FirstPreviousMemory` (the MobileVOS student) keeps only the annotated frame and the previous frame, so memory
and time per frame are constant however long the video. `InfiniteMemory` (the teacher, and the comparison in
`core.evaluation.bench`) also keeps every k-th frame, so it grows with the video. Both work on batched tensors, with or
without gradients, so training and inference share them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class MemoryTensors(NamedTuple):
    """Memory flattened for reading: keys (B, Ck, N), their squared norms (B, N, 1), values (B, K, Cv, N)."""

    key: torch.Tensor
    sq: torch.Tensor
    value: torch.Tensor


def _flatten(key: torch.Tensor, value: torch.Tensor) -> MemoryTensors:
    """key (B, Ck, h, w), value (B, K, Cv, h, w) → one flattened memory entry."""
    k = key.flatten(2)
    return MemoryTensors(k, k.pow(2).sum(dim=1).unsqueeze(2), value.flatten(3))


def _concat(entries: list[MemoryTensors]) -> MemoryTensors:
    """Entries side by side along the memory-pixel axis."""
    if len(entries) == 1:
        return entries[0]
    return MemoryTensors(
        torch.cat([e.key for e in entries], dim=2),
        torch.cat([e.sq for e in entries], dim=1),
        torch.cat([e.value for e in entries], dim=3),
    )


def _select(entry: MemoryTensors, objects: list[int]) -> MemoryTensors:
    """The entry with only the value slices of `objects` (indices along K)."""
    return MemoryTensors(entry.key, entry.sq, entry.value[:, objects])


class FirstPreviousMemory:
    """The annotated frame and the previous frame: two entries, constant size."""

    def __init__(self) -> None:
        self.first: MemoryTensors | None = None
        self.previous: MemoryTensors | None = None

    def add(self, key: torch.Tensor, value: torch.Tensor, index: int) -> None:
        """Store frame `index`: the first call becomes the annotated entry, later calls the previous one."""
        entry = _flatten(key, value)
        if self.first is None:
            self.first = entry
        else:
            self.previous = entry

    def entries(self) -> list[MemoryTensors]:
        """The stored entries, oldest first."""
        return [e for e in (self.first, self.previous) if e is not None]

    def tensors(self) -> MemoryTensors:
        """All entries, flattened for `read_memory`."""
        if self.first is None:
            raise RuntimeError("memory is empty: add the annotated frame first")
        return _concat(self.entries())

    def select_objects(self, objects: list[int]) -> None:
        """Keep only the values of the objects at these indices."""
        self.first = _select(self.first, objects) if self.first is not None else None
        self.previous = _select(self.previous, objects) if self.previous is not None else None

    def __len__(self) -> int:
        return len(self.entries())


class InfiniteMemory(FirstPreviousMemory):
    """The annotated frame, every `every`-th frame after it, and the previous frame: grows with the video."""

    def __init__(self, every: int = 5) -> None:
        super().__init__()
        self.every = every
        self.kept: list[MemoryTensors] = []
        self._start: int | None = None

    def add(self, key: torch.Tensor, value: torch.Tensor, index: int) -> None:
        if self._start is None:
            self._start = index
            super().add(key, value, index)
            return
        entry = _flatten(key, value)
        if (index - self._start) % self.every == 0:
            self.kept.append(entry)
            self.previous = None
        else:
            self.previous = entry

    def entries(self) -> list[MemoryTensors]:
        return [e for e in (self.first, *self.kept, self.previous) if e is not None]

    def select_objects(self, objects: list[int]) -> None:
        super().select_objects(objects)
        self.kept = [_select(e, objects) for e in self.kept]


MEMORIES = ("first_previous", "infinite")  # the names `make_memory` knows


def make_memory(kind: str, every: int = 5) -> FirstPreviousMemory:
    """A memory by name: "first_previous" (constant) or "infinite"."""
    if kind == "first_previous":
        return FirstPreviousMemory()
    if kind == "infinite":
        return InfiniteMemory(every)
    raise ValueError(f"unknown memory {kind!r}: use one of {', '.join(MEMORIES)}")

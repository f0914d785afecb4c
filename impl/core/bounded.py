"""Remember the most recent N things: closed comm ids, ended requests.

h2 remembers how each stream closed, in a bounded map, so frames that were in
flight when a stream was reset are expected rather than errors. The cores do the
same for comms and requests (a late reply, a comm_close for a comm that just
closed). Insertion order is age: the oldest entry goes first when the bound is
reached; remembering a key again makes it the newest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["BoundedMap", "BoundedSet"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    __slots__ = ("_items", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def remember(self, key: K, value: V) -> None:
        if self.capacity == 0:
            return
        items = self._items
        items[key] = value
        items.move_to_end(key)
        if len(items) > self.capacity:
            items.popitem(last=False)

    def remember_all(self, pairs: Iterable[tuple[K, V]]) -> None:
        """``remember`` each pair in order, without inserting what the batch itself
        would evict again (failing 100k requests remembers only the last N)."""
        if self.capacity == 0:
            return
        batch = list(pairs)
        if len(batch) >= self.capacity:
            self._items.clear()
            batch = batch[-self.capacity :]
        for key, value in batch:
            self.remember(key, value)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)


class BoundedSet(Generic[K]):
    __slots__ = ("_map",)

    def __init__(self, capacity: int) -> None:
        self._map: BoundedMap[K, None] = BoundedMap(capacity)

    def add(self, key: K) -> None:
        self._map.remember(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __len__(self) -> int:
        return len(self._map)

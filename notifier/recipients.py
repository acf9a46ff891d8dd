"""Who a batch goes to: its recipients with their current addresses (personal data)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload


@dataclass(slots=True)  # not frozen: a batch makes 500 of these, and frozen init is slow
class Recipient:
    id: str
    address: str = field(repr=False)  # personal data: never in repr or logs
    name: str = field(default="", repr=False)


class Recipients(Sequence[Recipient]):
    """A batch's recipients as three columns: a LINE batch holds 500, and its multicast
    needs only ``addresses``, so no object is made for each unless one is asked for."""

    __slots__ = ("addresses", "ids", "names")

    def __init__(self, ids: list[str], addresses: list[str], names: list[str]) -> None:
        if not len(ids) == len(addresses) == len(names):
            raise ValueError("ids, addresses and names must be as many")
        self.ids, self.addresses, self.names = ids, addresses, names

    @classmethod
    def of(cls, recipients: Iterable[Recipient]) -> Recipients:
        listed = list(recipients)
        return cls([r.id for r in listed], [r.address for r in listed], [r.name for r in listed])

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Recipient: ...
    @overload
    def __getitem__(self, index: slice) -> Recipients: ...
    def __getitem__(self, index: int | slice) -> Recipient | Recipients:
        if isinstance(index, slice):
            return Recipients(self.ids[index], self.addresses[index], self.names[index])
        return Recipient(self.ids[index], self.addresses[index], self.names[index])

    def __iter__(self) -> Iterator[Recipient]:
        for sid, address, name in zip(self.ids, self.addresses, self.names, strict=True):
            yield Recipient(sid, address, name)

    def __repr__(self) -> str:  # addresses and names are personal data
        return f"Recipients({len(self)})"

"""Parquet files whose footer no writer would produce, encoded by hand in Thrift's compact protocol: a schema of
SchemaElements and no row groups. For footers that pyarrow reads differently from how it prints them."""

from __future__ import annotations

import struct

INT32 = 1  # Type
OPTIONAL, REPEATED = 1, 2  # FieldRepetitionType
LIST = 3  # ConvertedType LIST; and LogicalType's union field of LIST (an empty struct)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Struct:
    """Fields written in increasing id order, each header one byte (id delta << 4 | type)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.last = 0

    def _field(self, fid: int, kind: int) -> None:
        assert 0 < fid - self.last <= 15
        self.data.append((fid - self.last) << 4 | kind)
        self.last = fid

    def i32(self, fid: int, value: int) -> _Struct:
        self._field(fid, 5)
        self.data += _varint((value << 1) ^ (value >> 31))
        return self

    def i64(self, fid: int, value: int) -> _Struct:
        self._field(fid, 6)
        self.data += _varint((value << 1) ^ (value >> 63))
        return self

    def binary(self, fid: int, value: bytes) -> _Struct:
        self._field(fid, 8)
        self.data += _varint(len(value)) + value
        return self

    def struct(self, fid: int, value: _Struct) -> _Struct:
        self._field(fid, 12)
        self.data += value.end()
        return self

    def structs(self, fid: int, values: list[_Struct]) -> _Struct:
        self._field(fid, 9)
        self.data += bytes([len(values) << 4 | 12]) if len(values) < 15 else bytes([0xFC]) + _varint(len(values))
        for value in values:
            self.data += value.end()
        return self

    def end(self) -> bytes:
        return bytes(self.data) + b"\x00"


def element(name: str, *, kind: int | None = None, repetition: int | None = None, children: int | None = None, annotated_list: bool = False) -> _Struct:
    """A SchemaElement: a leaf of physical type `kind`, or a group of `children`, LIST-annotated (both ways) if asked."""
    node = _Struct()
    if kind is not None:
        node.i32(1, kind)
    if repetition is not None:
        node.i32(3, repetition)
    node.binary(4, name.encode())
    if children is not None:
        node.i32(5, children)
    if annotated_list:
        node.i32(6, LIST).struct(10, _Struct().struct(LIST, _Struct()))
    return node


def parquet_file(elements: list[_Struct]) -> bytes:
    footer = _Struct().i32(1, 1).structs(2, elements).i64(3, 0).structs(4, []).end()
    return b"PAR1" + footer + struct.pack("<I", len(footer)) + b"PAR1"

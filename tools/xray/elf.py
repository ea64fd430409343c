"""Which kind of ELF file a file is, from its first bytes and program headers."""

from __future__ import annotations

import posixpath
import re
import struct
from typing import IO

PT_INTERP = 3


def elf_kind(reader: IO[bytes], path: str) -> str | None:
    """ELF or not, by magic; PIE executables and libraries are both ET_DYN, PT_INTERP tells."""
    head = reader.read(64)
    if len(head) < 52 or head[:4] != b"\x7fELF":
        return None
    order = "<" if head[5] == 1 else ">"
    (e_type,) = struct.unpack_from(order + "H", head, 16)
    if e_type == 2:
        return "executable"
    if e_type != 3:
        return "other"
    if re.search(r"\.so(\.|$)", posixpath.basename(path)):
        return "library"  # libc.so.6 has an interpreter too, yet is a library
    # Program header table: offset, entry size and count sit elsewhere in 32-bit ELF.
    if head[4] == 2:
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
    else:
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
    if phentsize < 4 or phnum == 0:
        return "library"
    reader.seek(phoff)
    table = reader.read(min(phentsize * phnum, 1 << 16))
    for offset in range(0, len(table) - 3, phentsize):
        if struct.unpack_from(order + "I", table, offset)[0] == PT_INTERP:
            return "executable"
    return "library"

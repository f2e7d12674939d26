"""The framing between the migration and its reader child: a length, then a pickle.

Both ends are this package's code, started by the parent, so unpickling is safe here.
"""

from __future__ import annotations

import pickle
from typing import IO

_HEADER = 8


def encode_message(message: tuple) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "little") + data


def write_message(stream: IO[bytes], message: tuple) -> None:
    stream.write(encode_message(message))
    stream.flush()


def read_message(stream: IO[bytes]) -> tuple:
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        raise EOFError("pipe closed")
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("pipe closed mid-message")
    return pickle.loads(data)

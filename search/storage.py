"""Small file I/O on a local path or a URI (s3://, gs://, ...) through pyarrow.fs, as Ray does."""
from __future__ import annotations

import io
import os
import uuid

import numpy as np
import pyarrow.fs as pafs


def is_uri(path: str) -> bool:
    return "://" in str(path)


def _fs(path: str):
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def join(base: str, *parts: str) -> str:
    return "/".join([str(base).rstrip("/"), *parts])


def write_bytes(path: str, data: bytes) -> None:
    """Atomic on local disks (temp + rename); object stores write whole objects anyway."""
    fs, p = _fs(path)
    parent = p.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = p if is_uri(path) else f"{parent}/.{p.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as fh:
        fh.write(data)
    if tmp != p:
        fs.move(tmp, p)


def read_bytes(path: str) -> bytes:
    fs, p = _fs(path)
    with fs.open_input_stream(p) as fh:
        return fh.read()


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def delete(path: str) -> None:
    fs, p = _fs(path)
    fs.delete_file(p)


def probe_write(folder: str) -> None:
    """Write and delete a small marker in ``folder`` (created if missing) through the filesystem Ray
    will use; raises pyarrow's error (an OSError) where that fails. Folders it had to create are
    removed again, so a probe alone leaves nothing behind."""
    fs, p = _fs(folder)
    p = p.rstrip("/")
    top = None  # the outermost folder the probe creates
    parent = p
    while parent and fs.get_file_info(parent).type == pafs.FileType.NotFound:
        top = parent
        if "/" not in parent.strip("/"):
            break
        parent = parent.rsplit("/", 1)[0]
    marker = f"{p}/.telesweep-probe-{uuid.uuid4().hex}"
    try:
        fs.create_dir(p, recursive=True)
        with fs.open_output_stream(marker) as fh:
            fh.write(b"telesweep storage probe\n")
        fs.delete_file(marker)
    finally:
        if top is not None:
            try:
                fs.delete_dir(top)
            except OSError:
                pass  # never created (the probe failed there): nothing to remove


def list_names(path: str) -> list[str]:
    """Names of the files directly in folder ``path`` (empty when it does not exist)."""
    fs, p = _fs(path)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def write_npz(path: str, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def read_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(read_bytes(path))) as z:
        return {k: z[k] for k in z.files}

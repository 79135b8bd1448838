"""Loading telemetry files: challenge parquet (column projection, float32), CSV, and NAB series.

Only the requested columns are read, batch by batch into one preallocated float32 array, so the
14.7 M-row challenge file never exists as float64 in memory.

Channels may be chosen by name, by range (``"41-46"``) or by pattern (``"device*"``,
``"re:device\\d+"``, a compiled ``re.Pattern``): see :func:`telemetry.schema.select_channels`.

Many series in one file: ``series="<column>"`` names a series-id column (a device, a run); each
series' rows must be contiguous and in time order (sort by series, then time), and the Series gets
``segments`` at the changes of that column (windows and lags never cross them). A discharge JSON
(``.json``, telemetry.discharges) is one series per discharge.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from telemetry.checks import check_finite, check_ids, check_labels
from telemetry.errors import TelemetryError
from telemetry.schema import CHANNEL_PREFIX, ID, LABEL, TELECOMMAND_PREFIX, select_channels, sort_key
from telemetry.series import Series

log = logging.getLogger("telemetry.loading")
_BATCH_ROWS = 1 << 20


def _describe_available(columns: Sequence[str]) -> str:
    chans = sorted((c for c in columns if c.startswith(CHANNEL_PREFIX)), key=sort_key)
    if chans:
        return f"{chans[0]}..{chans[-1]}" if len(chans) > 2 else ", ".join(chans)
    cols = list(columns)
    shown = ", ".join(cols[:8]) + (f", ... ({len(cols)} columns)" if len(cols) > 8 else "")
    if not cols:
        return shown
    # A file without challenge channels (e.g. device1..device30): say how to pick its columns.
    stem = cols[-1].rstrip("0123456789")
    example = f"{stem}*" if stem and stem != cols[-1] else "name*"
    return f"{shown}; choose columns by name or by a pattern such as {example!r}"


def _resolve_columns(path: str, columns: Sequence[str], channels, telecommands, labels, require_id: bool = True,
                     series: str | None = None):
    if series is not None and series not in columns:
        raise TelemetryError(f"{path}: missing series column {series!r} (data.series; file has {_describe_available(columns)})")
    chans = select_channels(channels, columns, path, exclude=(ID, LABEL, *([series] if series else [])))
    if series is not None and series in chans:
        raise TelemetryError(f"{path}: the series column {series!r} cannot also be a channel")
    missing = [c for c in chans if c not in columns]
    if missing:
        raise TelemetryError(f"{path}: unknown channel {missing[0]!r} (file has {_describe_available(columns)})")
    if require_id and ID not in columns:
        raise TelemetryError(f"{path}: missing column {ID!r}")
    if telecommands == "all":
        tcs = sorted((c for c in columns if c.startswith(TELECOMMAND_PREFIX)), key=sort_key)
    else:
        tcs = list(telecommands or [])
        for t in tcs:
            if t not in columns:
                raise TelemetryError(f"{path}: missing telecommand column {t!r}")
    if labels == "auto":
        labels = LABEL in columns
    elif labels and LABEL not in columns:
        raise TelemetryError(f"{path}: missing column {LABEL!r} (labels are required for this file)")
    return chans, tcs, bool(labels)


def with_series_column(s: Series, keys, path: str, column: str) -> Series:
    """``s`` cut into series at the changes of ``keys`` (one series id per row, any type)."""
    from dataclasses import replace

    keys = np.asarray(keys).astype(str)
    starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
    names = keys[starts]
    uniq, first = np.unique(names, return_index=True)
    if uniq.size != names.size:  # a name seen again after another series: its rows are not contiguous
        dup = np.setdiff1d(np.arange(names.size), first)[0]
        again = str(names[dup])
        raise TelemetryError(f"{path}: the rows of series {again!r} (column {column!r}) are not contiguous (again at row "
                             f"{int(starts[dup])} after another series); sort the file by {column}, then time")
    return replace(s, segments=np.append(starts, len(keys)).astype(np.int64), segment_names=tuple(names.tolist()))


def load_parquet(path: str | os.PathLike, channels=None, telecommands=None, labels="auto",
                 validate: bool = True, series: str | None = None) -> Series:
    """Load a challenge-schema parquet file, reading only ``id``, the channels, telecommands and label
    (and the ``series`` column, if named)."""
    import pyarrow.parquet as pq

    path = str(path)
    if not Path(path).is_file():
        raise TelemetryError(f"{path}: file not found")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TelemetryError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    chans, tcs, with_labels = _resolve_columns(path, pf.schema_arrow.names, channels, telecommands, labels,
                                               series=series)
    n = pf.metadata.num_rows
    if n == 0:
        raise TelemetryError(f"{path}: file has no rows")
    ids = np.empty(n, dtype=np.int64)
    values = np.empty((n, len(chans)), dtype=np.float32)
    tc = np.empty((n, len(tcs)), dtype=np.uint8) if tcs else None
    lab = np.empty(n, dtype=np.int64) if with_labels else None
    cols = [ID, *chans, *tcs, *([LABEL] if with_labels else [])]
    row = 0
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=cols, use_threads=True):
        m = batch.num_rows
        sl = slice(row, row + m)
        for c, name in enumerate(batch.schema.names):
            col = batch.column(c)
            if col.null_count and name not in chans:  # channel nulls become NaN: check_finite names the id
                raise TelemetryError(f"{path}: column {name!r} has {col.null_count} missing values")
            arr = col.to_numpy(zero_copy_only=False)
            if name == ID:
                ids[sl] = arr
            elif name == LABEL:
                lab[sl] = arr
            elif name in tcs:
                tc[sl, tcs.index(name)] = arr
            else:
                values[sl, chans.index(name)] = arr  # casts to float32 in place
        row += m
    if validate:
        check_ids(ids, path)
        check_finite(values, ids, chans, path)
    if lab is not None:
        check_labels(lab, ids, path)
        lab = lab.astype(np.uint8)
    out = Series(ids, values, lab, tuple(chans), source=path, telecommands=tc, telecommand_names=tuple(tcs))
    if series is not None:
        keys = pf.read(columns=[series]).column(0)
        if keys.null_count:
            raise TelemetryError(f"{path}: series column {series!r} has {keys.null_count} missing values")
        out = with_series_column(out, keys.to_numpy(zero_copy_only=False), path, series)
    return out


def _csv_header(path: str) -> list[str]:
    import pandas as pd

    if not Path(path).is_file():
        raise TelemetryError(f"{path}: file not found")
    try:
        return pd.read_csv(path, nrows=0).columns.tolist()
    except pd.errors.EmptyDataError:
        raise TelemetryError(f"{path}: file is empty") from None


def _non_numeric_error(path: str, chans: list[str]) -> TelemetryError | None:
    """Locate the first cell in ``chans`` that is not a number (only run after a failed fast read)."""
    import pandas as pd

    raw = pd.read_csv(path, usecols=chans, dtype=str, keep_default_na=True)
    for c in chans:
        col = raw[c]
        bad = np.flatnonzero((pd.to_numeric(col, errors="coerce").isna() & col.notna()).to_numpy())
        if bad.size:
            r = int(bad[0])
            return TelemetryError(f"{path}: column {c!r} has {bad.size} non-numeric value{'s' if bad.size > 1 else ''} (first {col.iloc[r]!r} at row {r}, "
                                  f"line {r + 2} of the file)")
    return None


def load_csv(path: str | os.PathLike, channels=None, labels="auto", validate: bool = True,
             series: str | None = None) -> Series:
    """A CSV in the challenge schema (``id``, ``channel_*``, optional ``is_anomaly``) or a wide CSV.

    A wide CSV has arbitrary column names (``device1 .. device30``); pick them with ``channels`` as
    a list of names or a pattern (``"device*"``, ``"re:device\\d+"``). Without an ``id`` column
    the ids are made up as row numbers 0..N-1 (messages then say "row 12": the 13th data row).
    Without ``is_anomaly`` the series is unlabelled. Bad input raises a one-line TelemetryError
    naming the file and column: missing column, non-numeric value, NaN/inf. ``series``: the name of a
    series-id column (see the module docstring).
    """
    import pandas as pd

    path = str(path)
    header = _csv_header(path)
    chans, _, with_labels = _resolve_columns(path, header, channels, None, labels, require_id=False, series=series)
    has_id = ID in header
    cols = [*([ID] if has_id else []), *chans, *([LABEL] if with_labels else []), *([series] if series else [])]
    try:
        df = pd.read_csv(path, usecols=cols, dtype={**{c: np.float32 for c in chans}, **({series: str} if series else {})})
    except ValueError as exc:  # a cell pandas cannot parse as a number: find and name it
        err = _non_numeric_error(path, chans)
        raise (err or TelemetryError(f"{path}: cannot read the CSV ({exc})")) from None
    if df.empty:
        raise TelemetryError(f"{path}: file has no rows")
    if has_id:
        if df[ID].isna().any() or not np.issubdtype(df[ID].dtype, np.integer):
            raise TelemetryError(f"{path}: column {ID!r} must hold integers")
        ids = df[ID].to_numpy(np.int64)
    else:
        log.info("%s: no %r column, ids are row numbers 0..%d", path, ID, len(df) - 1)
        ids = np.arange(len(df), dtype=np.int64)
    values = np.ascontiguousarray(df[chans].to_numpy(np.float32))
    lab = None
    if with_labels:
        raw = df[LABEL].to_numpy()
        check_labels(raw, ids, path)
        lab = raw.astype(np.uint8)
    if validate:
        if has_id:
            check_ids(ids, path)
        check_finite(values, ids, chans, path, id_name="id" if has_id else "row")
    out = Series(ids, values, lab, tuple(chans), source=path)
    if series is not None:
        if df[series].isna().any():
            raise TelemetryError(f"{path}: series column {series!r} has {int(df[series].isna().sum())} missing values")
        out = with_series_column(out, df[series].to_numpy(), path, series)
    return out


def load_nab(path: str | os.PathLike, windows_json: str | os.PathLike | None = None) -> Series:
    """A NAB ``timestamp,value`` series; ids are row numbers; channel ``value``.

    With NAB's ``combined_windows.json``, rows inside the file's labelled anomaly windows get label 1.
    """
    import pandas as pd

    path = str(path)
    if not Path(path).is_file():
        raise TelemetryError(f"{path}: file not found")
    df = pd.read_csv(path)
    for col in ("timestamp", "value"):
        if col not in df.columns:
            raise TelemetryError(f"{path}: missing column {col!r} (a NAB file has timestamp,value)")
    if df.empty:
        raise TelemetryError(f"{path}: file has no rows")
    ts = pd.to_datetime(df["timestamp"])
    values = df[["value"]].to_numpy(np.float32)
    ids = np.arange(len(df), dtype=np.int64)
    check_finite(values, ids, ("value",), path)
    labels = None
    if windows_json is not None:
        windows = json.loads(Path(windows_json).read_text())
        key = next((k for k in windows if k.endswith("/" + Path(path).name) or k == Path(path).name), None)
        if key is None:
            raise TelemetryError(f"{windows_json}: no anomaly windows for {Path(path).name!r}")
        labels = np.zeros(len(df), dtype=np.uint8)
        for lo, hi in windows[key]:
            labels[((ts >= pd.Timestamp(lo)) & (ts <= pd.Timestamp(hi))).to_numpy()] = 1
    return Series(ids, values, labels, ("value",), source=path)


def load_json_discharges(path: str, channels=None, labels="auto", warning_rows: int = 0) -> Series:
    """A discharge JSON (telemetry.discharges) as one Series with one series per discharge. Its ids
    are row numbers over the file (made up, like a CSV without ``id``). ``channels``: None for all."""
    from telemetry.discharges import load_discharges

    disc = load_discharges(path, warning_rows=warning_rows)
    cat, _ = disc.concatenated()
    if channels is not None:
        chans = select_channels(channels, cat.channels, path)
        missing = [c for c in chans if c not in cat.channels]
        if missing:
            raise TelemetryError(f"{path}: unknown channel {missing[0]!r} (the discharges have {', '.join(cat.channels)})")
        cols = [cat.channels.index(c) for c in chans]
        from dataclasses import replace

        cat = replace(cat, values=np.ascontiguousarray(cat.values[:, cols]), channels=tuple(chans))
    if labels is False:
        cat = cat.without_labels()
    elif labels is True and cat.labels is None:
        raise TelemetryError(f"{path}: labels are required for this file")
    return cat


def made_up_ids(path: str | os.PathLike) -> bool:
    """Whether :func:`load` numbers the rows of ``path`` itself (a CSV without ``id``, a discharge JSON)."""
    p = str(path)
    if p.endswith(".json"):
        return True
    return p.endswith(".csv") and ID not in _csv_header(p)


def load(path: str | os.PathLike, channels=None, labels="auto", telecommands=None, series: str | None = None,
         warning_rows: int = 0) -> Series:
    """Load by file type: ``.parquet`` (challenge schema), ``.csv`` (challenge schema, wide, or NAB),
    ``.json`` (discharges, one series each; ``warning_rows`` labels that many rows before each onset).

    ``channels``: names, ranges or patterns (``"device*"``); a CSV without an ``id`` column gets
    row numbers as ids (see :func:`load_csv`). ``series``: the series-id column of a file holding
    many series (not for NAB files or discharge JSON).
    """
    p = str(path)
    if p.endswith(".json"):
        if series is not None:
            raise TelemetryError(f"{p}: a discharge file is already one series per discharge; leave data.series unset")
        return load_json_discharges(p, channels, labels, warning_rows)
    if p.endswith(".parquet") or p.endswith(".pq"):
        return load_parquet(p, channels, telecommands, labels, series=series)
    if p.endswith(".csv"):
        if _csv_header(p)[:2] == ["timestamp", "value"]:
            if series is not None:
                raise TelemetryError(f"{p}: a NAB file holds one series; leave data.series unset")
            return load_nab(p)
        return load_csv(p, channels, labels, series=series)
    raise TelemetryError(f"{p}: unsupported file type (expected .parquet, .csv or .json)")


def load_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids, labels) from a parquet or CSV file with ``id`` and ``is_anomaly`` (e.g. test_labels.parquet)."""
    import pandas as pd

    p = str(path)
    if not Path(p).is_file():
        raise TelemetryError(f"{p}: file not found")
    df = pd.read_parquet(p, columns=[ID, LABEL]) if p.endswith(".parquet") else pd.read_csv(p, usecols=[ID, LABEL])
    ids = df[ID].to_numpy(np.int64)
    raw = df[LABEL].to_numpy()
    check_ids(ids, p)
    check_labels(raw, ids, p)
    return ids, raw.astype(np.uint8)

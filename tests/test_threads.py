import threading
import time

import pytest

from telemetry.threads import cores, in_background, thread_map


def test_thread_map_keeps_input_order_whatever_finishes_first():
    def slow_for_small(x):
        time.sleep(0.02 * (5 - x))  # the first items finish last
        return x * x, threading.get_ident()

    out = thread_map(slow_for_small, range(5), workers=3)
    assert [v for v, _ in out] == [0, 1, 4, 9, 16]
    assert len({t for _, t in out}) > 1  # it did run on several threads


def test_thread_map_serial_for_one_worker_and_raises_the_first_error():
    main = threading.get_ident()
    assert thread_map(lambda x: threading.get_ident(), [1, 2, 3], workers=1) == [main] * 3

    def boom(x):
        if x == 2:
            raise ValueError("item 2 is bad")
        return x

    with pytest.raises(ValueError, match="item 2 is bad"):
        thread_map(boom, [1, 2, 3], workers=2)
    assert thread_map(boom, [], workers=2) == [] and cores() >= 1


def test_in_background_returns_the_value_or_the_error():
    assert in_background(lambda: 41 + 1).result(timeout=5) == 42
    with pytest.raises(RuntimeError, match="no data"):
        in_background(lambda: (_ for _ in ()).throw(RuntimeError("no data"))).result(timeout=5)

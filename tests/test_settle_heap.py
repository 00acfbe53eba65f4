"""``settle_heap`` leaves what a process holds before its first study out of later collections,
once per process, and frozen objects are still freed when nothing refers to them."""

from __future__ import annotations

import gc
import weakref

from qc_pipeline import pipeline


class _Held:
    pass


def test_the_heap_is_frozen_once_and_frozen_objects_are_still_freed(monkeypatch):
    monkeypatch.setattr(pipeline, "_HEAP_SETTLED", False)
    freezes: list[int] = []
    real_freeze = gc.freeze

    def counted_freeze() -> None:
        freezes.append(1)
        real_freeze()

    monkeypatch.setattr(pipeline.gc, "freeze", counted_freeze)
    held = _Held()
    alive = weakref.ref(held)
    try:
        pipeline.settle_heap()
        assert freezes == [1] and gc.get_freeze_count() > 0
        pipeline.settle_heap()  # the second call freezes nothing more
        assert freezes == [1]
        del held  # no cycle: reference counting frees it, frozen or not
        assert alive() is None
    finally:
        gc.unfreeze()

"""The lifeline a supervised service watches: its end means the supervisor is gone."""

from __future__ import annotations

import os
import threading

from storyboard_common.lifeline import LIFELINE_ENV, watch_lifeline


def test_without_the_variable_there_is_no_lifeline(monkeypatch):
    monkeypatch.delenv(LIFELINE_ENV, raising=False)
    assert watch_lifeline(lambda: None) is False


def test_a_closed_write_end_calls_on_lost_and_the_variable_is_not_passed_on(monkeypatch):
    read_end, write_end = os.pipe()
    lost = threading.Event()
    try:
        monkeypatch.setenv(LIFELINE_ENV, str(read_end))
        assert watch_lifeline(lost.set) is True
        assert LIFELINE_ENV not in os.environ and not os.get_inheritable(read_end)
        os.write(write_end, b"x")  # data is not the end
        assert not lost.wait(0.2)
        os.close(write_end)
        write_end = -1
        assert lost.wait(10)
        os.close(read_end)  # the watcher is done with it
    finally:
        if write_end >= 0:
            os.close(write_end)


def test_a_bad_descriptor_is_ignored(monkeypatch):
    monkeypatch.setenv(LIFELINE_ENV, "not-a-number")
    assert watch_lifeline(lambda: None) is False

"""The driver's memory does not grow with a streamed stage (bench/stream, issue 13 part 5).

Each size is a real run in a fresh process (its own peak RSS): the ``respond`` stage over N tasks
made lazily, scripted sampler, SQLite lineage, each chunk written as it finishes. 200,000 records
must peak within 1.5x of 100,000 (bench/stream prints 1,000,000 against 100,000; its docstring
says why the sizes start at 100k). The check fails if the driver keeps outputs: 100,000 more
Response records held in memory are over 150 MB (``runner.call`` peaks at about 560 MB for 100k).
"""

from __future__ import annotations

from bench.stream.run import measure


def test_peak_rss_of_a_streamed_stage_does_not_grow_with_it() -> None:
    small, large = measure(100_000, "stream"), measure(200_000, "stream")
    assert small["responses"] == 100_000 and large["responses"] == 200_000, (small, large)
    ratio = large["rss_mb"] / small["rss_mb"]
    print(f"peak RSS {small['rss_mb']:.0f} MB at 100k, {large['rss_mb']:.0f} MB at 200k: {ratio:.2f}x")
    assert ratio <= 1.5, f"the driver grew with the stage: {ratio:.2f}x ({small}, {large})"

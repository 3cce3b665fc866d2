"""Every kind of bad input, for each of the six binaries: one line, exit 1, nothing written.

The cases and the harness are ``benchmarks.bad_inputs`` (which also prints them as a table):
each case changes one thing in a valid command; each binary runs its cases in-process, in a
process of its own (absl flags are per process); all six processes run at once. Also here:
the defaults a newcomer meets first (a video shorter than the default 32 frames).
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bad_inputs
from lrgen import jobs, loading, sequences


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    return bad_inputs.make_fixtures(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def results(fixtures) -> dict[str, list[dict]]:
    with concurrent.futures.ThreadPoolExecutor(len(bad_inputs.BINARIES)) as pool:
        runs = {b: pool.submit(bad_inputs.run_binary_in_subprocess, b, fixtures) for b in bad_inputs.BINARIES}
        return {b: f.result() for b, f in runs.items()}


@pytest.mark.parametrize("binary", bad_inputs.BINARIES)
def test_every_kind_of_bad_input_is_one_line_naming_the_culprit_and_writes_nothing(results, binary):
    rows = results[binary]
    assert len(rows) == len(bad_inputs.CASES[binary])
    unclean = [(r["what"], r["problems"], r["message"]) for r in rows if not r["clean"]]
    assert not unclean, unclean
    # Every binary is tried with every kind of mistake that applies to it.
    kinds = {r["kind"] for r in rows}
    assert {"missing file", "empty file", "wrong type", "corrupt file", "unwritable output"} <= kinds, kinds
    assert kinds & {"negative count", "zero count"} and kinds & {"NaN values", "out of range"}, kinds


def test_the_table_names_every_case(results):
    text = bad_inputs.table([r for b in bad_inputs.BINARIES for r in results[b]])
    assert text.count("\n| ") >= sum(len(c) for c in bad_inputs.CASES.values())
    assert "**NO**" not in text


# --------------------------------------------------------------------------- defaults
def test_unset_num_frames_takes_a_shorter_video_whole_and_says_so(fixtures):
    said = []
    job = jobs.RecoverJob(video=str(fixtures / "video20.npy"), image_size=32)
    assert job.num_frames is None
    assert jobs.load_frames(job, said.append).shape[0] == 20
    assert len(said) == 1 and "has 20 frames, fewer than the default 32: using all 20" in said[0]
    # An explicit count is exact: fewer frames than asked for are refused, naming the file.
    with pytest.raises(ValueError, match="video20.npy.*has 20 frames but num_frames=21 were asked for"):
        jobs.load_frames(jobs.RecoverJob(video=job.video, image_size=32, num_frames=21))
    assert jobs.load_frames(jobs.RecoverJob(video=job.video, image_size=32, num_frames=0)).shape[0] == 20


def test_unset_num_frames_takes_at_most_32_and_builtins_their_own_length(tmp_path):
    long = tmp_path / "long.npy"
    np.save(long, np.zeros((40, 8, 8), np.float32))
    said = []
    assert jobs.load_frames(jobs.RecoverJob(video=str(long), image_size=8), said.append).shape[0] == 32
    assert not said
    assert jobs.load_frames(jobs.RecoverJob(video=str(long), image_size=8, num_frames=0)).shape[0] == 40
    assert loading.load_video(long, image_size=8, max_frames=50).shape[0] == 40
    # Built-in sequences: their natural length, at most 32 (rotating_digit: 32, so no message).
    digit = jobs.RecoverJob(video="builtin:rotating_digit", image_size=32)
    assert jobs.load_frames(digit, said.append).shape[0] == sequences.BUILTIN_FRAMES["rotating_digit"] == 32
    assert not said


def test_recover_with_default_num_frames_runs_a_20_frame_video(fixtures, tmp_path, capsys):
    """The binary itself (in this process: no second jax start), with --num_frames unset."""
    from absl import flags

    from experiments import recover as binary

    work = tmp_path / "run"
    argv = [*bad_inputs.BASE["recover"][:-1], "--iterations=2", "--log_every=1", f"--workdir={work}"]
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["recover", *(a.replace("{F}", str(fixtures)) for a in argv)])
        binary.main(["recover"])
    finally:
        flags.FLAGS.unparse_flags()
    assert "has 20 frames, fewer than the default 32: using all 20" in capsys.readouterr().out
    m = json.loads((work / "metrics.json").read_text())
    assert m["num_frames"] == 20 and m["flags"]["num_frames"] is None and m["job"]["num_frames"] is None

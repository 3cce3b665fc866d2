"""The Python API: README.md's example runs as written."""

import re
from pathlib import Path

import numpy as np

import lrgen

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_example_runs(capsys):
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 10
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    out = scope["out"]
    assert out.frames.shape == (8, 32, 32, 1) and out.z.shape[0] == 8
    assert np.isfinite(out.psnr) and "PSNR" in capsys.readouterr().out
    assert out.result.batching == "single" and out.result.iterations == 40


def test_the_api_draws_what_the_binary_draws():
    """Same seed: the API's operator and measurements are those of a recovery job."""
    from lrgen import jobs

    job = jobs.RecoverJob(image_size=32, num_frames=4, seed=3)
    frames = jobs.load_frames(job)
    spec, _ = jobs.load_model(job, 1)
    seq = jobs.prepare_sequence(job, frames, spec)
    _, y = lrgen.measure_frames(frames, "missing", missing_ratio=job.measurement.missing_ratio, seed=3)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(seq.y))

"""Old name of the interpolation modules.  # SHIM: removed at merge

The code lives in :mod:`lrgen.interpolation` (the application), :mod:`lrgen.latent_paths` (the
paths and rendering), :mod:`lrgen.baselines`, :mod:`lrgen.selection` and :mod:`lrgen.observed`.
"""

# SHIM: removed at merge
from lrgen.baselines import BASELINES, FLOW_MIN_SIZE, blend_frames, flow_frames, nearest_frames, optical_flow
from lrgen.interpolation import (
    GRID_FRAMES,
    MAX_FACTOR,
    InterpolateConfig,
    InterpolateJob,
    interpolate_video,
    run_interpolate,
)
from lrgen.latent_paths import METHODS, fine_times, interpolate, interpolate_codes, render
from lrgen.observed import Fit, fit_observed, job_from_dict, load_recover_workdir, make_job, observed_frames
from lrgen.selection import (
    AUTO,
    AUTO_UPDATES,
    SELECT_ITERATIONS,
    Candidate,
    candidate_grid,
    score,
    select_candidates,
    select_path,
    validation_folds,
)

__all__ = [
    "AUTO",
    "AUTO_UPDATES",
    "BASELINES",
    "FLOW_MIN_SIZE",
    "GRID_FRAMES",
    "MAX_FACTOR",
    "METHODS",
    "SELECT_ITERATIONS",
    "Candidate",
    "Fit",
    "InterpolateConfig",
    "InterpolateJob",
    "blend_frames",
    "candidate_grid",
    "fine_times",
    "fit_observed",
    "flow_frames",
    "interpolate",
    "interpolate_codes",
    "interpolate_video",
    "job_from_dict",
    "load_recover_workdir",
    "make_job",
    "nearest_frames",
    "observed_frames",
    "optical_flow",
    "render",
    "run_interpolate",
    "score",
    "select_candidates",
    "select_path",
    "validation_folds",
]

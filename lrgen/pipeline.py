"""Old name of the single-video recovery: see :mod:`lrgen.recovery`, :mod:`lrgen.jobs`, :mod:`lrgen.outputs`."""

# SHIM: removed at merge
from lrgen.jobs import (  # noqa: F401
    BUILTIN,
    DEFAULT_NUM_FRAMES,
    ENCODER_INPUTS,
    IMAGE_ADJOINTS,
    RecoverJob,
    Sequence,
    candidate_batch,
    check_encoder,
    check_job,
    check_workdir,
    init_params,
    load_frames,
    load_model,
    prepare_sequence,
)
from lrgen.outputs import WORKDIR_FILES, environment  # noqa: F401
from lrgen.outputs import write_json as _write_json  # noqa: F401
from lrgen.outputs import write_video_results as write_outputs  # noqa: F401
from lrgen.recovery import (  # noqa: F401
    choose_candidate,
    describe,
    progress_printer,
    run_recover,
    screen_then_continue,
)

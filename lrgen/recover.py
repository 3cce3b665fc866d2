"""Old name of the recovery engine: see :mod:`lrgen.engine`, :mod:`lrgen.solver`, :mod:`lrgen.config`."""

# SHIM: removed at merge
from lrgen.config import *  # noqa: F401,F403
from lrgen.config import (  # noqa: F401
    LOOPS,
    MAX_SEED,
    PRESET_Z_INIT,
    PRESETS,
    SCHEDULES,
    UPDATES,
    Z_INITS,
    Z_OPTIMIZERS,
    RecoverConfig,
    check_seed,
    resolve,
)
from lrgen.engine import (  # noqa: F401
    MAX_UNROLLED_BATCH,
    Problem,
    RecoverState,
    compile_fast,
    holdout_mask,
    init_codes,
)
from lrgen.solver import RecoverResult, Recoverer  # noqa: F401

"""Old name of the manifest runner: see :mod:`lrgen.recovery`."""

# SHIM: removed at merge
from lrgen.outputs import SUMMARY_FIELDS  # noqa: F401
from lrgen.recovery import BatchOptions, read_manifest, run_manifest, video_key, write_summary  # noqa: F401

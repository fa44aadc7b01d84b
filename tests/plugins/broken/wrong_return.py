"""A plugin returning the wrong type."""
from sidbench.api import hookimpl


@hookimpl
def sidbench_detectors():
    return ["not a spec"]

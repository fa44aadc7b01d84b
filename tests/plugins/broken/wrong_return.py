"""A plugin returning the wrong type."""
from sidbench.hookspecs import hookimpl


@hookimpl
def sidbench_detectors():
    return ["not a spec"]

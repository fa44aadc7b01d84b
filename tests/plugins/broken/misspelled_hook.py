"""A plugin with a misspelled hook name."""
from sidbench.api import hookimpl


@hookimpl
def sidbench_detector():  # missing the final 's'
    return []

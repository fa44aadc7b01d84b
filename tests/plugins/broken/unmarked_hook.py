"""A plugin that forgot the @hookimpl decorator."""


def sidbench_detectors():
    return []

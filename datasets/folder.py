"""The generic layout: ``0_real``/``1_fake`` anywhere in the path; the folder above them names the split."""
from sidbench.api import DatasetSpec, hookimpl


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="folder",
            factory="sidbench.data.layout:FolderLayout",
            description="any folder with 0_real/ and 1_fake/ below it; the folder above them names the split",
            priority=-100,  # the fallback: specific layouts are tried first
        )
    ]

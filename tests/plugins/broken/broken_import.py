"""A plugin whose import fails."""
import sidbench_this_module_does_not_exist  # noqa: F401

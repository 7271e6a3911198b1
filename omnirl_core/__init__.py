"""OmniRL Workbench: the tested package behind the notebooks.

Submodules are imported explicitly (``from omnirl_core.workbook import load_config``) so that importing
the package stays cheap.
"""

__version__ = "0.1.0"

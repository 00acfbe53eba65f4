"""Where the data that ships with qc-pipeline lives: thresholds, AI models, templates, static files.

Everything is package data of ``qc_pipeline``, found with :mod:`importlib.resources`, so an
installed wheel (``pip install .``, not editable) needs no environment variable and no checkout.

The thresholds and the models are edited, reviewed and retrained at the repository root
(``thresholds/``, ``models/``: the paths the README, the model cards and the operators name). In a
checkout, ``qc_pipeline/thresholds`` and ``qc_pipeline/models`` are symbolic links to those
folders; building the wheel copies what they point to into the package. So there is one copy in
the repository and one in each wheel, and the lookups below resolve the links: in a checkout they
return the root folders themselves (where training writes), in an installed wheel the copies.

The override variables stay: ``$QC_THRESHOLDS_DIR`` (``rules.loader``) and ``$QC_MODELS_DIR``
(``ai.registry``) take precedence over the shipped folders.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from qc_pipeline.errors import ConfigError

PACKAGE: Final = "qc_pipeline"
THRESHOLDS: Final = "thresholds"
MODELS: Final = "models"
REVIEW_TEMPLATES: Final = "review/templates"
REVIEW_STATIC: Final = "review/static"
SPOTCHECK_TEMPLATES: Final = "spotcheck/templates"
MIGRATIONS: Final = "store/migrations"

SHIPPED: Final = (THRESHOLDS, MODELS, REVIEW_TEMPLATES, REVIEW_STATIC, SPOTCHECK_TEMPLATES, MIGRATIONS)
"""Every folder of package data; the packaging test checks each one is in the wheel."""


def shipped_path(relative: str) -> Path:
    """The file-system path of a folder of package data (links resolved).

    The consumers (YAML loader, onnxruntime, Jinja2, Starlette's static files, Alembic) need real
    paths; a qc-pipeline imported from a zip archive has none, and that is said, with the way out,
    instead of reading nothing.
    """
    resource = files(PACKAGE).joinpath(*relative.split("/"))
    if not isinstance(resource, Path):
        raise ConfigError(
            f"qc-pipeline's {relative} folder is inside an archive ({resource}); install qc-pipeline "
            "unpacked (pip install), or point $QC_THRESHOLDS_DIR / $QC_MODELS_DIR at copies of "
            "thresholds/ and models/"
        )
    return resource.resolve()

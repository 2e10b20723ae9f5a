"""The application side of a trial: cognitive architectures as DAGs, output formats, repair, semantic cache."""

from autotune.fmware.app import ARCHITECTURES, CONSTRAINTS, PROMPT_VARIANTS, REPAIRS, AppConfig
from autotune.fmware.cache import SemanticCache, minilm_embedder
from autotune.fmware.formats import FORMATS
from autotune.fmware.roles import ROLES, role_of, roles_of
from autotune.fmware.runner import run_task

__all__ = [
    "ARCHITECTURES", "AppConfig", "CONSTRAINTS", "FORMATS", "PROMPT_VARIANTS", "REPAIRS", "ROLES", "SemanticCache",
    "minilm_embedder", "role_of", "roles_of", "run_task",
]

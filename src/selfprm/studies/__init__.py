"""Studies: each module exposes ``Config`` (a dataclass of nested component configs), ``PRESETS``
(``{"full": ..., "quick": ...}``, factories of configs) and ``run(config, out, *, progress=True) -> dict``.

Every study caches and resumes through :mod:`selfprm.rundir`; the ``selfprm`` command builds each
one's flags from its ``Config`` (:mod:`selfprm.cli`). Modules are imported only when asked for.
"""

from selfprm.registry import Registry

STUDIES: Registry = Registry("study")
STUDIES.register_lazy("demo", "selfprm.studies.demo")
STUDIES.register_lazy("label-efficiency", "selfprm.studies.label_efficiency")
STUDIES.register_lazy("real", "selfprm.studies.real")
STUDIES.register_lazy("rl", "selfprm.studies.rl")
STUDIES.register_lazy("jepa", "selfprm.studies.jepa")
STUDIES.register_lazy("eval-processbench", "selfprm.studies.processbench")
STUDIES.register_lazy("generate", "selfprm.studies.generate")
STUDIES.register_lazy("label", "selfprm.studies.label")
STUDIES.register_lazy("train", "selfprm.studies.train")
STUDIES.register_lazy("eval-bon", "selfprm.studies.eval_bon")
STUDIES.register_lazy("serve", "selfprm.studies.serve")
STUDIES.register_lazy("selfeval", "selfprm.studies.selfeval")
STUDIES.register_lazy("study", "selfprm.studies.study")

__all__ = ["STUDIES"]

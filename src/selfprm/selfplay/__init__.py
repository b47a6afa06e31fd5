"""Self-play over natural-language skills: Ctx2Skill (Challenger, Reasoner, Judge, Proposer, Generator).

:func:`~selfprm.selfplay.ctx2skill.run_ctx2skill` is the entry point; it is imported lazily by
callers (``from selfprm.selfplay.ctx2skill import run_ctx2skill``) so importing this package
loads neither torch nor transformers.
"""

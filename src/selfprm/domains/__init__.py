"""Domains: problems with a checkable outcome and, where possible, a step oracle.

:data:`DOMAINS` maps a name to its domain class, imported on first use (``DOMAINS.get("math")``).
"""
from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.base import Domain
from selfprm.domains.tools import ToolsConfig, ToolsDomain
from selfprm.registry import Registry

DOMAINS: Registry[type] = Registry("domain")
DOMAINS.register_lazy("arith", "selfprm.domains.arith:ArithDomain")
DOMAINS.register_lazy("arith-fuzzy", "selfprm.domains.arith_fuzzy:FuzzyArithDomain")
DOMAINS.register_lazy("math", "selfprm.domains.math:MathDomain")
DOMAINS.register_lazy("tools", "selfprm.domains.tools:ToolsDomain")
DOMAINS.register_lazy("code", "selfprm.domains.code:CodeDomain")

__all__ = ["ArithConfig", "ArithDomain", "DOMAINS", "Domain", "ToolsConfig", "ToolsDomain"]

"""Domains: problems with a checkable outcome and, where possible, a step oracle."""
from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.base import Domain
from selfprm.domains.tools import ToolsConfig, ToolsDomain

__all__ = ["ArithConfig", "ArithDomain", "Domain", "ToolsConfig", "ToolsDomain"]

"""Studies on real data (``selfprm study real``)."""

"""Rendering result tables (reporters are plugins; see :mod:`rbench.report.reporters`)."""

"""Reporting: the run report, the comparison of runs, their figures."""

"""Checks on answers: specs (spec.py), suites of shared checks (suite.py), grading (grade.py), the judge's
prompt and verdict (judge.py) and pass rates (rates.py). Logic only: ui/checks.py shows the results."""

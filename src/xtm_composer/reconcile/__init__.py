"""Reconciliation: a pure planner deciding actions, an executor carrying them out."""

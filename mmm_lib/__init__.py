"""Bayesian MMM notebook suite library."""

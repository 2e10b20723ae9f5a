"""Shipped tasks: deterministic dataset generators and their quality scorers."""

"""What to try next. Only this package imports the optimisation libraries."""

"""Engines run as processes; the tuner never imports them."""

"""Load generation: Locust in its own process (it monkey-patches the stdlib; it must not share ours)."""

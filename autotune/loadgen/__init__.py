"""Load generation: Locust in its own process (it monkey-patches the stdlib; it must not share ours)."""

STANDBY_READY = "autotune: load generator standing by"  # a standby's locustfile prints it once imported

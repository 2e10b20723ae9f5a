"""The measurement protocol: SLA attainment with its interval, and the capacity search over load levels."""

"""cartesia-retention: enforce data-retention policies on Cartesia voice-agent calls."""

__version__ = "0.1.0"

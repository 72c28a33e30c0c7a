"""Retention policies: YAML loading with precise errors, compiled matchers, the decision engine."""

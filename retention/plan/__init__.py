"""Plan, review, apply: a plan file of due calls, and applying exactly it."""

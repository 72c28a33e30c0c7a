"""Policy sets the benchmarks run with, written to a temporary directory."""

from __future__ import annotations

from pathlib import Path

# Every terminal, unredacted, non-ZDR call with a timestamp is due: the
# execute benchmarks delete all of them, and bench.naive applies the same rule.
DELETE_EVERYTHING = """\
policies:
  - name: delete-everything
    delete_after: 0d
"""

# A realistic company set of 20 rules (14 deletion, 6 retention) for the dry
# runs and the engine benchmark: globs, regions, statuses and metadata.
TWENTY = """\
policies:
  - name: support-90d
    delete_after: 90d
    match: {agents: ["support-*"]}
  - name: sales-us-30d
    delete_after: 30d
    match: {agents: ["sales-*"], regions: [US]}
  - name: billing-1y
    delete_after: 52w
    match: {agents: [billing]}
  - name: appointments-60d
    delete_after: 60d
    match: {agents: ["appoint*"]}
  - name: collections-completed-180d
    delete_after: 180d
    match: {agents: [collections], statuses: [completed]}
  - name: collections-failed-7d
    delete_after: 7d
    match: {agents: [collections], statuses: [failed]}
  - name: claims-apac-2y
    delete_after: 104w
    match: {agents: ["claims-*"], regions: [APAC]}
  - name: onboarding-14d
    delete_after: 14d
    match: {agents: ["onboard?ng*"]}
  - name: eu-production-30d
    delete_after: 30d
    match: {regions: [EU], metadata: {env: production}}
  - name: free-tier-7d
    delete_after: 7d
    match: {metadata: {tier: [free, trial]}}
  - name: failed-calls-10d
    delete_after: 10d
    match: {statuses: [failed]}
  - name: test-envs-1d
    delete_after: 24h
    match: {metadata: {env: [staging, "dev*"]}}
  - name: customer-erasure
    delete_after: 0d
    match: {metadata: {customer_id: "cus_100[0-4]"}}
  - name: catch-all-2y
    delete_after: 730d
  - name: legal-hold
    retain_for: forever
    match: {metadata: {legal_hold: true}}
  - name: disputes-1y
    retain_for: 365d
    match: {metadata: {case_type: dispute}}
  - name: enterprise-180d
    retain_for: 180d
    match: {metadata: {tier: enterprise}}
  - name: sales-eu-60d
    retain_for: 60d
    match: {agents: ["sales-*"], regions: [EU]}
  - name: vip-30d
    retain_for: 30d
    match: {metadata: {vip: true}}
  - name: apac-completed-90d
    retain_for: 90d
    match: {regions: [APAC], statuses: [completed]}
"""


def write(directory: Path, name: str, text: str) -> Path:
    """Write one policy file into its own directory; return the file's path."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policies.yaml"
    path.write_text(text)
    return path

"""The Cartesia Agents API: typed models, an async client, retries and typed errors."""

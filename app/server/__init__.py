"""The engine as an authenticated service for a remote GPU box."""

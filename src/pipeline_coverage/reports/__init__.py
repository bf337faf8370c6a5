"""The domain: one module per report."""

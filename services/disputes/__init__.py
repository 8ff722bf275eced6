"""Disputes: customer disputes and short-pay deductions, their reason codes and resolution."""

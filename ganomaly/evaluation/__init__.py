"""Evaluation: metrics at the shipped threshold, reports and plots."""

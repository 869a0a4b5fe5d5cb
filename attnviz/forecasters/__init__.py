"""Forecasters attnviz can open up."""

"""Shared app widgets and state: URL and run picker, colours, token view, figure export,
jobs panel, fork panel, settings forms."""

"""Advertising disclosure and AI-content labels: the rules engine behind DisclosureService."""

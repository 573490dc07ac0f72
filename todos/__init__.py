"""The Todo resource: model, services (writes), selectors (reads), API and admin."""

"""The HTTP API: storefront order intake, staff moves and reads."""

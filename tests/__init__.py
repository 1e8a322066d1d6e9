"""The test suite as a package, so `tests.fixtures.*` plugins import ahead of a third-party `tests` package
(medspacy_quickumls installs one into site-packages)."""

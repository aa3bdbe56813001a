"""The package version, in a leaf module: the report and the CLI read it without importing the
package root (which imports the pipeline, which imports the report)."""

__version__ = "0.1.0"

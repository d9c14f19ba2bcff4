"""The run store (one directory per run, loaded as a pandas table), reports and plots."""

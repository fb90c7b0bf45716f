"""Thin entry points, one per job: `python -m jobs.NAME --config jobs/configs/NAME.yaml key=value ...`."""

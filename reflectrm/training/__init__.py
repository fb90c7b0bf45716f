"""Training pieces (method.md §3) as pure functions: rewards, advantages, the GRPO loss, SFT labels.
The distributed loop that uses them (jobs/train.py, Ray Train) is separate; no Ray in here."""

"""The search: study, scheduler, workers, trials, pretraining, soups, warm start."""

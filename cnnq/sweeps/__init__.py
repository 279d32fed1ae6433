"""Hyperparameter sweeps (`cnnq sweep`): an Optuna study in cnnq's own database whose trials are ordinary
train jobs, children of the sweep's job. `spec` and `params` say what to search (torch- and Optuna-free);
`study` builds Optuna's storage, sampler and pruner; `trials` asks, creates trials exactly once, tells and
ends the sweep; `pruning` reports each epoch of a trial and prunes it; `report` sums a sweep up.
"""

"""Layer pruning validated by measurement: rank layers by a criterion, remove them, measure.

``criteria`` ranks layers (the paper's future effect, ShortGPT's Block Influence, Gromov et al.'s
angular distance, random); ``evaluate`` measures perplexity and answer accuracy with layers removed
(trace once, replay from the first removed layer); ``surgery`` deletes layers from a model and
saves it; ``command`` is ``depthscope prune``.
"""

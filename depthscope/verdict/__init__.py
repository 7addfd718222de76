"""The effective-depth verdict: what a run's saved results say about how the model uses its depth.

Statistics on profiles (pure functions of arrays, below the analyses, which use them for their
own verdict lines):

- :mod:`.regime`: step or trend, against a null that keeps neighbouring layers' correlation;
- :mod:`.depth`: the threshold-free effective depth;
- :mod:`.bootstrap`: resampled prompts, intervals;
- :mod:`.differences`: paired and independent comparisons, Holm, equivalence margins;
- :mod:`.rules`: the thresholded rules (layers used by future tokens, lens boundaries, operands);
- :mod:`.sensitivity`: each threshold swept over a documented range;
- :mod:`.calibration`: false-positive rate and power of the step rule on simulated profiles;
- :mod:`.words`: how a depth is written (layer, relative depth, ranges).

Reading a run (above the analyses, through the cards' declarations):

- :mod:`.evidence`: the transition indicators of a run and where they agree;
- :mod:`.transition`: the transition and effective-depth lines built from them;
- :mod:`.summary`: the verdict document (``summary.json``);
- :mod:`.card`: the verdict for the terminal and the report.

Rules, constants and their calibration: docs/summary.md.
"""

"""The built-in cards as the command line describes them: written by
``python tests/cli/test_catalogue.py`` from the cards (:func:`depthscope.core.registry.describe`);
that test fails when this differs from them. Data only: reading it imports nothing.
"""

BUILTIN: list[dict] = [
    {
        "name": "contributions",
        "order": 2,
        "runnable": True,
        "default_run": True,
        "description": "norms, relative contributions and cosine similarities of "
        "each sublayer (E2)",
        "default_data": "builtin:arith-words+builtin:prose",
        "settings": [["eps", "1e-06", "norm-ratio denominators are clamped at this (paper value)"]],
        "presets": ["paper"],
        "quantities": ["relative-contribution", "cosine"],
    },
    {
        "name": "current-effects",
        "order": 3,
        "runnable": True,
        "default_run": True,
        "description": "skip each layer on all tokens: change of later layers' "
        "contributions and of the output (E3)",
        "default_data": "builtin:arith-words+builtin:prose",
        "settings": [
            [
                "front",
                "1",
                "positions before this are never intervened on (protects BOS/first token)",
            ],
            ["n_splits", "4", "future: split points per prompt"],
            ["split_stride", "8", "future: split points are multiples of this ..."],
            ["split_margin", "4", "... in [stride, T - margin)"],
            [
                "split_min",
                "0",
                "... and >= this (fine-tuning analysis, App. D.5: stride 1, margin 1, min 3)",
            ],
            [
                "parts",
                "layer,attention,mlp",
                "what is removed: layer (skip), attention, mlp (zeroed)",
            ],
            ["aggregate", "max", "over prompts: max (paper) or mean; both are stored"],
        ],
        "presets": ["paper"],
        "quantities": ["current-output-change", "current-output-change-max"],
    },
    {
        "name": "future-effects",
        "order": 4,
        "runnable": True,
        "default_run": True,
        "description": "skip each layer on past tokens only: change at future tokens (E4)",
        "default_data": "builtin:arith-words+builtin:prose",
        "settings": [
            [
                "front",
                "1",
                "positions before this are never intervened on (protects BOS/first token)",
            ],
            ["n_splits", "4", "future: split points per prompt"],
            ["split_stride", "8", "future: split points are multiples of this ..."],
            ["split_margin", "4", "... in [stride, T - margin)"],
            [
                "split_min",
                "0",
                "... and >= this (fine-tuning analysis, App. D.5: stride 1, margin 1, min 3)",
            ],
            [
                "parts",
                "layer,attention,mlp",
                "what is removed: layer (skip), attention, mlp (zeroed)",
            ],
            ["aggregate", "max", "over prompts: max (paper) or mean; both are stored"],
        ],
        "presets": ["paper"],
        "quantities": ["future-effect", "future-output-change"],
    },
    {
        "name": "logit-lens",
        "order": 5,
        "runnable": True,
        "default_run": True,
        "description": "KL and top-k overlap of each layer's logit-lens prediction "
        "with the output (E5)",
        "default_data": "builtin:arith-words+builtin:prose",
        "settings": [
            ["k", "5", "size of the top-k sets whose overlap is measured"],
            ["kl_direction", "lens||final", "lens||final (paper) or final||lens"],
            [
                "weighting",
                "prompt",
                "prompt: mean per prompt, then over prompts (paper); token: token-mean",
            ],
            [
                "top_tokens",
                "0",
                "keep the N most likely tokens of every layer at every position (0: off)",
            ],
            ["top_prompts", "4", "... for this many prompts (the first ones)"],
            [
                "lens",
                "logit",
                "logit, or tuned:DIR to measure a tuned lens (from `depthscope "
                "lens train` or the tuned-lens project) beside the logit "
                "lens",
            ],
        ],
        "presets": ["paper"],
        "quantities": ["lens-kl", "lens-overlap", "tuned-lens-kl", "tuned-lens-overlap"],
    },
    {
        "name": "local-effects",
        "order": 6,
        "runnable": True,
        "default_run": True,
        "description": "direct layer-to-layer effects without propagation, all and "
        "future tokens (E6)",
        "default_data": "builtin:arith-words+builtin:prose",
        "settings": [
            [
                "front",
                "1",
                "positions before this are never intervened on (protects BOS/first token)",
            ],
            ["n_splits", "4", "future: split points per prompt"],
            ["split_stride", "8", "future: split points are multiples of this ..."],
            ["split_margin", "4", "... in [stride, T - margin)"],
            [
                "split_min",
                "0",
                "... and >= this (fine-tuning analysis, App. D.5: stride 1, margin 1, min 3)",
            ],
            ["aggregate", "max", "over prompts: max (paper) or mean; both are stored"],
        ],
        "presets": ["paper"],
        "quantities": [],
    },
    {
        "name": "igrad",
        "order": 7,
        "runnable": True,
        "default_run": False,
        "description": "integrated gradients of the answer probability over layers × tokens (E7)",
        "default_data": "builtin:paper",
        "settings": [
            [
                "rule",
                "auto",
                "auto (simpson when adaptive, riemann with steps=N), riemann, "
                "trapezoid, simpson, gauss (paper: riemann)",
            ],
            ["steps", "0", "0: adaptive panels; N: exactly N steps (paper: 256)"],
            ["tolerance", "0.005", "adaptive: bound on the completeness gap (probability)"],
            ["max_steps", "256", "adaptive: most model evaluations per (prompt, layer)"],
            [
                "stop",
                "bound",
                "adaptive panels stop when the panel errors' magnitudes "
                "(bound: safe) or the completeness gap itself (gap: cheaper, "
                "errors may cancel) is <= tolerance",
            ],
            ["block", "16", "interpolation steps run together as batch rows"],
            ["targets", "layer,attention,mlp", "layer, attention, mlp"],
        ],
        "presets": ["paper"],
        "quantities": [],
    },
    {
        "name": "erasure",
        "order": 8,
        "runnable": True,
        "default_run": False,
        "description": "replace one (layer, token) residual by a mean and measure "
        "the answer change (E8)",
        "default_data": "builtin:paper",
        "settings": [
            [
                "baseline_data",
                "",
                "source of the baseline prompts (default: builtin:arith-words; paper: GSM8K)",
            ],
            ["baseline_n", "10", "number of baseline prompts (paper: 10)"],
        ],
        "presets": ["paper"],
        "quantities": [],
    },
    {
        "name": "depth-score",
        "order": 9,
        "runnable": True,
        "default_run": False,
        "description": "per difficulty level: future effects inside the answer, "
        "layer importance, depth score (E9)",
        "default_data": "builtin:hops",
        "settings": [
            [
                "split_rule",
                "auto",
                "answer-start (MQuAKE), in-answer (MATH), auto: the data "
                "source's rule (by answer length, in-answer over 4 tokens, for "
                "prompts given without a source)",
            ],
            ["n_splits", "4", "in-answer: split points per example"],
            ["split_stride", "4", "in-answer: offsets 0, stride, ..."],
            ["front", "1", "positions before this are never skipped"],
            ["aggregate", "max", "over examples: max or mean"],
        ],
        "presets": ["paper"],
        "quantities": [],
    },
    {
        "name": "linear-map",
        "order": 10,
        "runnable": False,
        "default_run": False,
        "description": "closed-form maps from every layer of a shallow model to a "
        "deeper one (E10; `depthscope map`)",
        "default_data": None,
        "settings": [],
        "presets": [],
        "quantities": [],
    },
]

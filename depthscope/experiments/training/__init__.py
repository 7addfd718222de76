"""The paper's two training experiments at laptop scale (paper §3.5 / App. E and App. D.5).

- ``depthscope scratch`` (E11): train a small Transformer or a weight-shared σ-MoE Transformer
  (our CPU analogue of MoEUT) from scratch on generated DeepMind-style arithmetic, with the loss on
  all tokens or on answer tokens only;
- ``depthscope finetune`` (E12): fully fine-tune any causal LM depthscope loads on arithmetic.

Both write a Hugging Face model folder that ``depthscope analyze DIR`` loads like any other model.
"""

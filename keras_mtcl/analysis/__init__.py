"""The library code behind the scripts of `tools/`: analyses, tables and benchmark helpers.

Each module imports what it needs when a function is called, so importing one
is cheap; none imports TensorFlow at import time, and the modules the GPU
benchmark runs (`gpu_bench`, `timing`, `train_bench`, `reference_torch`)
never import it on the JAX or PyTorch path.

- `consistency`: cross-task consistency of feature distances (AUC, triplet accuracy).
- `ablation`: the ablation's configurations, runs and tables (seed spread, paired differences).
- `flops`: parameters and FLOPs of models, serving graphs and the regularizer.
- `timing`: alternating timing blocks, step statistics, CPU-seconds, peak memory.
- `train_bench`: training throughput of the baseline and the regularized trainer.
- `contrastive_bench`: the regularizer alone: step time, triplet fractions, graph size.
- `inference_cost`: the exported SavedModels of a baseline and a regularized run, compared.
- `reference_torch`: the plain-PyTorch reference network, losses and optimiser (the `torch` extra).
- `gpu_bench`: the plan and runner of the one-command benchmark against the PyTorch reference (GPU or CPU).
- `step_profile`: a training step's time per operation, by the backend's own profiler (JAX, PyTorch).
- `data_bench`: speed of the input pipeline and of the synthetic scenes; the input pipeline against the reference.
- `reference_data`: the reference numpy / OpenCV training transforms in a PyTorch DataLoader, timed (torch, OpenCV).
- `boundaries`: speed and conventions of the boundary benchmark (`keras_mtcl.edge_eval`).
"""
